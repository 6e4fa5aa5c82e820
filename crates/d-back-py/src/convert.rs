//! Python callback results, as JSON text, into the engine's types.
//!
//! d-back 0.0.18 passed whatever a callback returned straight to the browser,
//! so bots return loosely shaped dicts: snowflakes as ints, a missing
//! `roleColor`, `"invisible"` for a status. The conversions here accept what
//! 0.0.18 accepted and the client can draw, fill in what is missing, and say
//! precisely what is wrong when an answer is unusable.

use d_back::{DataProvider, MockWorld, Roster, ServerInfo, ServerList, Status, User};
use pyo3::prelude::*;
use serde_json::{Map, Value};

/// The colour of a user whose callback gave none (what d-zone draws by default).
const DEFAULT_ROLE_COLOR: &str = "#ffffff";

/// A JSON value that names something (a snowflake, an id), as a string.
fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_object(hook: &str, json: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(format!(
            "{hook} must return a dict, not {}",
            json_kind(&other)
        )),
        Err(error) => Err(format!(
            "{hook} returned something that is not JSON-like: {error}"
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "None",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

/// `on_get_server_data()`'s dict: snowflake → `{id, name, default, passworded, password?}`.
pub fn server_list(json: &str) -> Result<ServerList, String> {
    const HOOK: &str = "on_get_server_data";
    let mut list = ServerList::new();
    for (snowflake, entry) in parse_object(HOOK, json)? {
        let Value::Object(entry) = entry else {
            return Err(format!("{HOOK}: server '{snowflake}' must be a dict"));
        };
        let id = entry.get("id").and_then(as_text).ok_or_else(|| {
            format!("{HOOK}: server '{snowflake}' has no 'id' (its public id, e.g. \"dworld\")")
        })?;
        let name = entry
            .get("name")
            .and_then(as_text)
            .unwrap_or_else(|| id.clone());
        let mut info = ServerInfo::new(id, name);
        info.default = entry.get("default").is_some_and(truthy);
        info.passworded = entry.get("passworded").is_some_and(truthy);
        info.password = entry
            .get("password")
            .and_then(as_text)
            .filter(|p| !p.is_empty());
        list.insert(snowflake, info);
    }
    Ok(list)
}

/// Python truthiness for the flags (`True`, `1`, a non-empty string).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// A status word as bots send it; `invisible` is how Discord spells a hidden `offline`.
pub fn status(word: &str) -> Option<Status> {
    match word {
        "online" => Some(Status::Online),
        "idle" => Some(Status::Idle),
        "dnd" => Some(Status::Dnd),
        "offline" | "invisible" => Some(Status::Offline),
        _ => None,
    }
}

/// `on_get_user_data(server_id)`'s dict: uid → `{uid, username, status, roleColor}`.
///
/// A user without a username is left out: the client cannot draw it.
pub fn roster(json: &str) -> Result<Roster, String> {
    const HOOK: &str = "on_get_user_data";
    let mut roster = Roster::new();
    for (key, entry) in parse_object(HOOK, json)? {
        let Value::Object(entry) = entry else {
            return Err(format!("{HOOK}: user '{key}' must be a dict"));
        };
        let uid = entry
            .get("uid")
            .and_then(as_text)
            .unwrap_or_else(|| key.clone());
        let Some(username) = entry.get("username").and_then(as_text) else {
            continue;
        };
        let status = match entry.get("status") {
            None | Some(Value::Null) => Status::Offline,
            Some(value) => {
                let word = as_text(value).unwrap_or_default();
                status(&word).ok_or_else(|| {
                    format!(
                        "{HOOK}: user '{key}' has status '{word}'; use online, idle, dnd or offline"
                    )
                })?
            }
        };
        let color = entry
            .get("roleColor")
            .and_then(as_text)
            .unwrap_or_else(|| DEFAULT_ROLE_COLOR.to_owned());
        roster.insert(key, User::new(uid, username, status, color));
    }
    Ok(roster)
}

/// `on_validate_discord_user`'s answer, by Python truthiness.
pub fn verdict(json: &str) -> Result<bool, String> {
    serde_json::from_str::<Value>(json)
        .map(|v| truthy(&v))
        .map_err(|e| format!("on_validate_discord_user returned something that is not a bool: {e}"))
}

/// `on_get_client_id`'s answer; `None` or an empty string means "no login button".
pub fn client_id(json: &str) -> Result<Option<String>, String> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Null) => Ok(None),
        Ok(value) => Ok(as_text(&value).filter(|id| !id.is_empty())),
        Err(e) => Err(format!(
            "on_get_client_id returned something that is not a string: {e}"
        )),
    }
}

/// The built-in world as JSON `{"servers": {...}, "users": {snowflake: {...}}}`,
/// for `d_back.MockDataProvider`.
#[pyfunction]
pub fn mock_world_json(py: Python<'_>) -> PyResult<String> {
    py.detach(|| {
        let world = MockWorld::new();
        // A throwaway single-threaded runtime: asking for the built-in world
        // must not start the engine's threads.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let servers = world.servers().await.map_err(|e| e.to_string())?;
            let mut users = Map::new();
            for snowflake in servers.keys() {
                let roster = world.users(snowflake).await.map_err(|e| e.to_string())?;
                users.insert(
                    snowflake.clone(),
                    serde_json::to_value(roster).map_err(|e| e.to_string())?,
                );
            }
            let servers = serde_json::to_value(&servers).map_err(|e| e.to_string())?;
            Ok::<_, String>(serde_json::json!({ "servers": servers, "users": users }).to_string())
        })
    })
    .map_err(pyo3::exceptions::PyRuntimeError::new_err)
}

//! A project's change log, like the cloud log Scratch shows project owners:
//! who changed which variable to what, and when.
//!
//! Each project keeps its last `--history` changes (default 100), in memory
//! while it is loaded and in the store beside its variables, so the log
//! survives restarts as the variables do. The admin API reads it. A value
//! over [`MAX_LOGGED_VALUE_BYTES`] is left out of its entry (marked
//! `valueOmitted`): a log of a hundred 100 KB values would otherwise cost
//! each project a hundred times its variables.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One change to a project's variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"user": "player1", "method": "set", "variable": "☁ score", "value": "120", "time": 1_764_000_000_000_u64}))]
pub struct LogEntry {
    /// The username of the client that made it (`admin` for the admin API).
    pub user: String,
    /// `set`, `create`, `rename` or `delete`.
    pub method: String,
    /// The variable's name (before a rename).
    pub variable: String,
    /// The value set (`set` and `create`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<Value>,
    /// The value was set but is too long to keep in the log.
    #[serde(
        default,
        skip_serializing_if = "std::ops::Not::not",
        rename = "valueOmitted"
    )]
    pub value_omitted: bool,
    /// The new name (`rename`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    /// When, in milliseconds since 1970-01-01 UTC.
    pub time: u64,
}

impl LogEntry {
    /// The entry for a change `user` made now: `method` of variable `name`,
    /// with `value` (`set`, `create`) or `new_name` (`rename`). A value too
    /// long to log is left out and marked.
    pub(crate) fn now(
        user: &str,
        method: &str,
        name: &str,
        value: Option<&Value>,
        new_name: Option<&str>,
    ) -> Self {
        let value = value.filter(|_| matches!(method, "set" | "create"));
        let logged = value.filter(|v| fits(v));
        Self {
            user: user.to_owned(),
            method: method.to_owned(),
            variable: name.to_owned(),
            value: logged.cloned(),
            value_omitted: value.is_some() && logged.is_none(),
            new_name: new_name.filter(|_| method == "rename").map(str::to_owned),
            time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        }
    }
}

/// Longest value kept in a log entry, in bytes of its JSON text.
pub const MAX_LOGGED_VALUE_BYTES: usize = 1024;

/// Whether a value is short enough to keep in the log.
pub(crate) fn fits(value: &Value) -> bool {
    match value {
        Value::String(text) => text.len() + 2 <= MAX_LOGGED_VALUE_BYTES,
        Value::Number(_) | Value::Bool(_) | Value::Null => true,
        other => serde_json::to_vec(other).is_ok_and(|v| v.len() <= MAX_LOGGED_VALUE_BYTES),
    }
}

/// Adds `entry` to `log`, keeping only the last `keep` entries.
pub(crate) fn record(log: &mut VecDeque<LogEntry>, entry: LogEntry, keep: usize) {
    if keep == 0 {
        return;
    }
    while log.len() >= keep {
        log.pop_front();
    }
    log.push_back(entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_entries_are_kept() {
        let mut log = VecDeque::new();
        for n in 0..5 {
            let entry = LogEntry {
                user: "u".into(),
                method: "set".into(),
                variable: "v".into(),
                value: Some(n.into()),
                value_omitted: false,
                new_name: None,
                time: n,
            };
            record(&mut log, entry, 3);
        }
        let times: Vec<u64> = log.iter().map(|e| e.time).collect();
        assert_eq!(times, [2, 3, 4]);
    }
}

//! The Scratch cloud-variable protocol: messages keyed by `method`.
//!
//! A client says `handshake` with a project id and a username, which puts it
//! into the project's room and sends it every variable the room holds; then
//! `set`, `create`, `rename` and `delete` change the room's variables and are
//! broadcast to every Scratch member of the room, the sender included. The
//! server never answers with JSON errors: a broken message is ignored, and a
//! message that cannot be honoured closes the connection with one of the codes
//! below, after a text saying why where 0.2.0 sends one.
//!
//! Variables live in the room. Without a store they go when its last member
//! leaves (as in CloudLink 0.2.0); with one they are written to it at each
//! flush and read back when the project is next joined (see
//! [`crate::store`]).

use std::borrow::Cow;
use std::sync::Arc;

use edge::outbox::{Frame, Urgency};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::cl4::wire::encode;
use crate::client::{Client, Protocol};
use crate::extension::ExceptionKind;
use crate::handle::CloudLink;
use crate::history;
use crate::host_rules::Refusal;
use crate::metrics::Dropped;
use crate::pytext;
use crate::schema::{Field, validate};
use crate::session::Flow;
use crate::set_rate::{self, Admit};

/// Close code: a message failed its checks.
pub const CLOSE_PROTOCOL_ERROR: u16 = 4000;
/// Close code: the username is not allowed (TurboWarp's code; 0.2.0 gives 4000).
pub const CLOSE_USERNAME: u16 = 4002;
/// Close code: the server or the project is full.
pub const CLOSE_OVERLOADED: u16 = 4003;
/// Close code: the message names a project the client is not in, or a
/// project id that is not allowed.
pub const CLOSE_UNAVAILABLE: u16 = 4004;
/// Close code: the host requires a `User-Agent` and the client sent none.
pub const CLOSE_IDENTIFY: u16 = 4006;
/// Close code: the client sent its Scratch login token.
pub const CLOSE_SECURITY: u16 = 4005;
/// Close code (the standard "internal error"): the project's stored
/// variables could not be read, so joining would show it wrongly.
pub const CLOSE_STORE_FAILED: u16 = 1011;

/// Sent before closing a client that sent a `scratchsessionsid`.
pub const SECURITY_WARNING: &str = "The cloud data library you are using is putting your Scratch account at risk by sending your login token for no reason. Change your Scratch password immediately, then contact the maintainers of that library for further information. This connection is being closed to protect your security.";

const VALUE: &[&str] = &[
    "string", "integer", "float", "boolean", "dict", "list", "set",
];
const PROJECT: &[&str] = &["string", "integer", "float", "boolean"];

/// What every Scratch message must satisfy; also what identifies a Scratch client.
pub(crate) const DEFAULT_SCHEMA: &[Field] = &[
    Field::required("method", &["string"]),
    Field::optional("name", &["string"]),
    Field::optional("new_name", &["string"]),
    Field::optional("value", VALUE),
    Field::optional("project_id", PROJECT),
    Field::optional("user", &["string"]).length(1, 20),
];

const HANDSHAKE: &[Field] = &[
    Field::required("method", &["string"]),
    Field::required("project_id", PROJECT),
    Field::required("user", &["string"]),
];

const VARIABLE: &[Field] = &[
    Field::required("method", &["string"]),
    Field::required("name", &["string"]),
    Field::optional("new_name", &["string"]),
    Field::optional("value", VALUE),
    Field::required("project_id", PROJECT),
    Field::optional("user", &["string"]).length(1, 20),
];

/// What the server sends a Scratch client.
#[derive(Debug, Serialize)]
struct Update<'a> {
    method: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_name: Option<&'a str>,
}

impl Update<'_> {
    fn wire(&self) -> edge::ws::Wire {
        // Straight into the frame: this runs for every accepted change.
        edge::ws::text_frame_with(|out| {
            let start = out.len();
            // Serializing plain data with string keys cannot fail.
            if serde_json::to_writer(&mut *out, self).is_err() {
                out.truncate(start);
                out.extend_from_slice(b"{}");
            }
        })
    }
}

/// A project id as a room name: a number is read as its digits (Scratch
/// project ids are numeric strings, and some clients send numbers).
/// Borrowed when it is a string, as it is on every `set`.
fn room_name(project_id: &Value) -> Cow<'_, str> {
    match project_id {
        Value::String(id) => Cow::Borrowed(id),
        other => Cow::Owned(other.to_string()),
    }
}

/// Handles one message object from a Scratch client.
pub(crate) async fn handle(server: &CloudLink, client: &Client, message: Value) -> Flow {
    let hooks = server.hooks();
    let Some(object) = message.as_object() else {
        return Flow::Continue;
    };
    // Before the schema, which would ignore it: a handshake's bad name gets
    // TurboWarp's close code, which Scratch clients know.
    if is_handshake_with_bad_name(object) && !client.is_handshaken() {
        return refuse(server, client, CLOSE_USERNAME, "Invalid username");
    }
    if let Err(errors) = validate(object, DEFAULT_SCHEMA) {
        hooks
            .failure(server, client, ExceptionKind::ValidationError, || {
                crate::schema::errors_value(&errors)
            })
            .await;
        return Flow::Continue;
    }
    let method = object
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let builtin = matches!(method, "handshake" | "set" | "create" | "rename" | "delete");
    let custom = hooks.commands(Protocol::Scratch, method);
    if !builtin && custom.is_none() {
        hooks
            .failure(server, client, ExceptionKind::InvalidCommand, || {
                Value::String(method.to_owned())
            })
            .await;
        return Flow::Continue;
    }
    if server.settings().disabled_commands.contains(method) {
        hooks
            .failure(server, client, ExceptionKind::DisabledCommand, || {
                Value::String(method.to_owned())
            })
            .await;
        return Flow::Continue;
    }
    if builtin {
        let flow = match method {
            "handshake" => handshake(server, client, object).await,
            _ => variable(server, client, method, object),
        };
        if flow == Flow::Stop {
            return flow;
        }
    }
    hooks.command(server, client, message, custom, || {}).await;
    Flow::Continue
}

/// Whether the upgrade request carried a Scratch login token.
fn sent_session_id(client: &Client) -> bool {
    let headers = client.headers();
    headers.contains_key("scratchsessionsid")
        || headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .any(|c| c.to_str().is_ok_and(|c| c.contains("scratchsessionsid=")))
}

/// Characters a username may have.
const USERNAME_CHARS: std::ops::RangeInclusive<usize> = 1..=20;
/// Characters a project id may have (TurboWarp's limit).
const ROOM_ID_CHARS: std::ops::RangeInclusive<usize> = 1..=999;

/// A `handshake` whose `user` is text of the wrong length: the schema would
/// not even identify it as Scratch, but it is one, with a bad name.
pub(crate) fn is_handshake_with_bad_name(object: &Map<String, Value>) -> bool {
    object.get("method").and_then(Value::as_str) == Some("handshake")
        && object
            .get("user")
            .and_then(Value::as_str)
            .is_some_and(|user| !USERNAME_CHARS.contains(&user.chars().count()))
}

/// Sent before closing a client without a `User-Agent` when the host requires one.
pub const IDENTIFY_YOURSELF: &str = "This server requires a User-Agent header that says who you are (your project or bot, and a way to contact you). This connection is being closed.";

/// Closes a client that the host's rules refuse, with TurboWarp's code.
pub(crate) fn refuse_by_rule(server: &CloudLink, client: &Client, refusal: Refusal) -> Flow {
    match refusal {
        Refusal::Username => refuse(server, client, CLOSE_USERNAME, "Username not allowed"),
        Refusal::Project => refuse(server, client, CLOSE_UNAVAILABLE, "Project not available"),
        Refusal::Anonymous => {
            client.push_wire(edge::ws::text_frame(IDENTIFY_YOURSELF));
            refuse(server, client, CLOSE_IDENTIFY, "Identify yourself")
        }
    }
}

/// Closes a client that a limit or rule refuses, and counts it.
fn refuse(server: &CloudLink, client: &Client, code: u16, reason: &'static str) -> Flow {
    server.metrics().closed(code);
    client.finish(code, reason);
    Flow::Stop
}

/// Sends the 0.2.0 text for failed checks, then closes with 4000.
fn validation_failed(client: &Client, errors: &crate::schema::Errors) -> Flow {
    let errors = crate::schema::errors_value(errors);
    let text = format!("Validation failed: {}", pytext::repr(&errors));
    client.push_wire(edge::ws::text_frame(&text));
    client.finish(CLOSE_PROTOCOL_ERROR, "Validation failed");
    Flow::Stop
}

async fn handshake(server: &CloudLink, client: &Client, message: &Map<String, Value>) -> Flow {
    if !client.first_handshake() {
        return Flow::Continue;
    }
    if sent_session_id(client) {
        client.push_wire(edge::ws::text_frame(SECURITY_WARNING));
        client.finish(CLOSE_SECURITY, "Connection closed for security reasons");
        return Flow::Stop;
    }
    if let Err(errors) = validate(message, HANDSHAKE) {
        return validation_failed(client, &errors);
    }
    let user = message
        .get("user")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let room = room_name(message.get("project_id").unwrap_or(&Value::Null));
    if !ROOM_ID_CHARS.contains(&room.chars().count()) {
        return refuse(server, client, CLOSE_UNAVAILABLE, "Invalid project ID");
    }
    let has_user_agent = client
        .headers()
        .contains_key(axum::http::header::USER_AGENT);
    if let Err(refusal) = server.host_rules_now().check(user, &room, has_user_agent) {
        return refuse_by_rule(server, client, refusal);
    }
    // In a cluster, a project this node does not hold is read from Redis first.
    let read = match server.cluster() {
        Some(cluster) if server.registry().lock().room(&room).is_none() => {
            match cluster.read_project(&room).await {
                Ok(variables) => Some((cluster, variables)),
                Err(error) => return store_failed(client, &room, &error),
            }
        }
        _ => None,
    };
    let settings = server.settings();
    let mut state = server.registry().lock();
    // Whatever happens below, changes held for the read are applied or let go.
    let held = read.as_ref().map(|(cluster, _)| cluster.loaded(&room));
    if state.room(&room).is_none() && state.room_total() >= settings.max_rooms {
        // Rooms kept only for the store give way first: their variables are
        // safe in it, and otherwise anyone could fill the server with
        // projects they left, for the whole empty-room time.
        if let Some(Some(record)) = state.evict_oldest_emptied()
            && let Some(store) = server.store()
        {
            store.stage([record]);
        }
    }
    if state.room(&room).is_none() && state.room_total() >= settings.max_rooms {
        drop(state);
        return refuse(
            server,
            client,
            CLOSE_OVERLOADED,
            "Too many projects are open; try again later",
        );
    }
    if state
        .room(&room)
        .is_some_and(|r| r.scratch.len() >= settings.max_room_clients)
    {
        drop(state);
        return refuse(server, client, CLOSE_OVERLOADED, "This project is full");
    }
    if let (Some((_, variables)), Some(held)) = (read, held)
        && state.room(&room).is_none()
    {
        state.insert_loaded(
            &room,
            crate::store::Stored {
                variables,
                log: Default::default(),
            },
        );
        crate::cluster::apply_held(server, &mut state, held);
    }
    let mut state = match server.load_room(state, &room) {
        Ok(state) => state,
        Err(error) => return store_failed(client, &room, &error),
    };
    if client.set_username(user) {
        state.index_username(client);
    }
    state.subscribe(client, &room);
    if let Some(room) = state.room_mut(&room) {
        for (name, value) in &room.variables {
            let update = Update {
                method: "set",
                name,
                value: Some(value),
                new_name: None,
            };
            client.push_wire(update.wire());
        }
        // A batched member reads sets from the room's table from here on,
        // after the values above (see `crate::latest`).
        if settings.writer.batch.is_some() {
            let latest = room.latest.get_or_insert_with(Default::default);
            client.follow(Arc::clone(latest) as Arc<dyn edge::source::Source>);
        }
    }
    Flow::Continue
}

/// Closes a client whose project's variables could not be read (from the
/// store, or the cluster's Redis): joining would show the project wrongly.
fn store_failed(client: &Client, room: &str, error: &dyn std::fmt::Display) -> Flow {
    tracing::error!(%error, room, "could not read a project's variables");
    client.finish(
        CLOSE_STORE_FAILED,
        "The cloud-variable store could not be read",
    );
    Flow::Stop
}

fn variable(
    server: &CloudLink,
    client: &Client,
    method: &str,
    message: &Map<String, Value>,
) -> Flow {
    if !client.is_handshaken() {
        return Flow::Continue;
    }
    let mut errors = validate(message, VARIABLE).err().unwrap_or_default();
    let needs = match method {
        "set" | "create" => Some("value"),
        "rename" => Some("new_name"),
        _ => None,
    };
    if let Some(field) = needs.filter(|f| !message.contains_key(*f)) {
        errors
            .entry(field)
            .or_default()
            .push("required field".to_owned());
    }
    if !errors.is_empty() {
        return validation_failed(client, &errors);
    }
    if matches!(method, "set" | "create")
        && let Some(value) = message.get("value")
        && let Some(why) = refused_value(server.settings(), value)
    {
        server.metrics().dropped(why);
        return Flow::Continue;
    }
    let names = ["name", "new_name"].map(|field| message.get(field).and_then(Value::as_str));
    if names.into_iter().flatten().any(|name| !name_allowed(name)) {
        server.metrics().dropped(Dropped::NameTooLong);
        return Flow::Continue;
    }
    let Some(limit) = server.settings().max_sets_per_second else {
        return change(server, client, method, message);
    };
    // Held to the end of the change: see `set_rate` for the order it keeps.
    let mut window = client.set_window().lock();
    let now = tokio::time::Instant::now();
    let ended = window.take_if_ended(now);
    if apply_waiting(server, client, ended) == Flow::Stop {
        return Flow::Stop;
    }
    if method == "set" {
        let project = room_name(message.get("project_id").unwrap_or(&Value::Null));
        let name = message
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = message.get("value").unwrap_or(&Value::Null);
        if let Admit::Waits {
            replaced,
            start_timer,
        } = window.admit(limit, now, &project, name, value)
        {
            if replaced {
                server.metrics().dropped(Dropped::Coalesced);
            }
            if start_timer {
                let ends = window.ends_at().unwrap_or(now + set_rate::WINDOW);
                tokio::spawn(apply_at_window_end(server.clone(), client.clone(), ends));
            }
            return Flow::Continue;
        }
    }
    change(server, client, method, message)
}

/// Applies the values that waited out a window, in the order they came.
fn apply_waiting(
    server: &CloudLink,
    client: &Client,
    waiting: indexmap::IndexMap<(String, String), Value>,
) -> Flow {
    for ((project, name), value) in waiting {
        let message = Map::from_iter([
            ("method".to_owned(), Value::from("set")),
            ("project_id".to_owned(), Value::from(project)),
            ("name".to_owned(), Value::from(name)),
            ("value".to_owned(), value),
        ]);
        if change(server, client, "set", &message) == Flow::Stop {
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// The timer of a window in which sets waited: applies them when the window
/// ends, unless a set of the next window did first (then it waits for that
/// window's end, in case more wait).
async fn apply_at_window_end(server: CloudLink, client: Client, mut ends: tokio::time::Instant) {
    loop {
        tokio::time::sleep_until(ends).await;
        let mut window = client.set_window().lock();
        match window.ends_at() {
            Some(later) if later > tokio::time::Instant::now() => ends = later,
            _ => {
                // Applied even if the client has left since: it set them.
                let waiting = window.take_for_timer();
                apply_waiting(&server, &client, waiting);
                return;
            }
        }
    }
}

/// Applies one validated change to its room and broadcasts it.
fn change(server: &CloudLink, client: &Client, method: &str, message: &Map<String, Value>) -> Flow {
    let project = message.get("project_id").unwrap_or(&Value::Null);
    let room_id = room_name(project);
    let name = message
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut state = server.registry().lock();
    // A client that has gone can only be here through the set timer; what it
    // set before leaving still counts.
    if !state.is_in(client, &room_id) && state.is_registered(client) {
        drop(state);
        let reason = format!("Invalid room ID: {}", pytext::str(project));
        client.finish(CLOSE_UNAVAILABLE, reason);
        return Flow::Stop;
    }
    let change = Change {
        user: client.username().unwrap_or_default(),
        method,
        name,
        value: message.get("value"),
        new_name: message.get("new_name").and_then(Value::as_str),
    };
    let applied = match server.cluster() {
        Some(cluster) => match too_many(server, &state, &room_id, &change) {
            Some(max) => Applied::TooManyVariables(max),
            None => {
                let current = state.room(&room_id).and_then(|r| r.variables.get(name));
                let sent = crate::cluster::ProjectChange::new(&room_id, &change);
                if cluster.publish(&sent, current) {
                    // Applied here, as everywhere, when it comes back from the log.
                    Applied::Changed
                } else {
                    apply(server, &mut state, &room_id, &change)
                }
            }
        },
        None => apply(server, &mut state, &room_id, &change),
    };
    if let Applied::TooManyVariables(max) = applied {
        drop(state);
        let text = format!("Too many variables: a project may have at most {max}.");
        client.push_wire(edge::ws::text_frame(&text));
        client.finish(CLOSE_PROTOCOL_ERROR, "Too many variables");
        return Flow::Stop;
    }
    Flow::Continue
}

/// One change to a project's variables, from a client or the admin API.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Change<'a> {
    /// Who made it, for the project's log.
    pub user: &'a str,
    /// `set`, `create`, `rename` or `delete`.
    pub method: &'a str,
    pub name: &'a str,
    /// For `set` and `create`.
    pub value: Option<&'a Value>,
    /// For `rename`.
    pub new_name: Option<&'a str>,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Changed and broadcast to the project's members.
    Changed,
    /// Nothing to do: the same value, or no such variable to delete.
    Unchanged,
    /// The project is not in memory.
    NoRoom,
    /// It would make one variable more than the project may hold.
    TooManyVariables(usize),
}

/// Applies `change` to the project `room_id` in memory, marks it for the
/// store and broadcasts it to the project's Scratch members.
pub(crate) fn apply(
    server: &CloudLink,
    state: &mut crate::registry::State,
    room_id: &str,
    change: &Change<'_>,
) -> Applied {
    let Change {
        user,
        method,
        name,
        value,
        new_name,
    } = *change;
    if let Some(max) = too_many(server, state, room_id, change) {
        return Applied::TooManyVariables(max);
    }
    let Some(room) = state.room_mut(room_id) else {
        return Applied::NoRoom;
    };
    // What each member is queued; `None` when they follow the room's table.
    let queued = match (method, value, new_name) {
        ("set", Some(value), _) => {
            // Exact JSON equality: 1, 1.0 and true are different values.
            if room.variables.get(name) == Some(value) {
                return Applied::Unchanged;
            }
            room.variables.insert(name.to_owned(), value.clone());
            let update = Update {
                method: "set",
                name,
                value: Some(value),
                new_name: None,
            };
            if let Some(latest) = &room.latest {
                // Batched: one table write, whatever the number of members.
                latest.set(name, update.wire());
                None
            } else {
                let key = format!("set\0{room_id}\0{}\0{name}", room.generation);
                Some((update.wire(), Urgency::Collapsible(Arc::from(key))))
            }
        }
        ("create", Some(value), _) => {
            room.variables.insert(name.to_owned(), value.clone());
            if let Some(latest) = &room.latest {
                latest.forget(name);
            }
            let update = Update {
                method: "create",
                name,
                value: Some(value),
                new_name: None,
            };
            Some((update.wire(), Urgency::Essential))
        }
        ("rename", _, Some(new_name)) => {
            let value = room
                .variables
                .shift_remove(name)
                .unwrap_or_else(|| Value::String(String::new()));
            room.variables.insert(new_name.to_owned(), value);
            room.generation += 1;
            if let Some((position, set)) = room
                .latest
                .as_ref()
                .and_then(|latest| latest.rename(name, new_name))
            {
                // Whoever has not read the old name's last set gets it first.
                for member in room.scratch.values().filter(|m| m.missed(position)) {
                    member.push_wire(set.clone());
                }
            }
            let update = Update {
                method: "rename",
                name,
                value: None,
                new_name: Some(new_name),
            };
            Some((update.wire(), Urgency::Essential))
        }
        ("delete", _, _) => {
            if room.variables.shift_remove(name).is_none() {
                return Applied::Unchanged;
            }
            room.generation += 1;
            if let Some(latest) = &room.latest {
                latest.forget(name);
            }
            let update = Update {
                method: "delete",
                name,
                value: None,
                new_name: None,
            };
            Some((update.wire(), Urgency::Essential))
        }
        _ => return Applied::Unchanged,
    };
    if let Some((update, urgency)) = queued {
        for member in room.scratch.values() {
            member.push(Frame {
                urgency: urgency.clone(),
                wire: update.clone(),
            });
        }
    }
    let keep = server.settings().history;
    history::record(&mut room.log, keep, user, method, name, value, new_name);
    state.mark_dirty(room_id);
    if matches!(method, "set" | "create") {
        server.metrics().set_accepted();
    }
    Applied::Changed
}

/// Empties a project held in memory and closes its Scratch members with
/// 4004; `false` if it holds nothing. Emptied, its record leaves the store
/// at the next flush.
pub(crate) fn delete_project(
    server: &CloudLink,
    state: &mut crate::registry::State,
    id: &str,
) -> bool {
    let Some(room) = state
        .room_mut(id)
        .filter(|r| !r.scratch.is_empty() || !r.variables.is_empty() || !r.log.is_empty())
    else {
        return false;
    };
    room.variables.clear();
    room.log.clear();
    room.generation += 1;
    for client in room.scratch.values() {
        refuse_by_rule(server, client, crate::host_rules::Refusal::Project);
    }
    state.mark_dirty(id);
    true
}

/// The project's variable limit, if `change` would make one variable more
/// than it allows.
fn too_many(
    server: &CloudLink,
    state: &crate::registry::State,
    room_id: &str,
    change: &Change<'_>,
) -> Option<usize> {
    let room = state.room(room_id)?;
    let has = |name: &str| room.variables.contains_key(name);
    let grows = match change.method {
        "set" | "create" => !has(change.name),
        "rename" => !has(change.name) && change.new_name.is_some_and(|new| !has(new)),
        _ => false,
    };
    let max = server.settings().max_variables_per_room;
    (grows && room.variables.len() >= max).then_some(max)
}

/// Characters a variable's name may have (TurboWarp's limit): without one,
/// names would be the unbounded part of a project's memory.
pub const MAX_NAME_CHARS: usize = 1024;

/// Whether a variable may have this name.
pub(crate) fn name_allowed(name: &str) -> bool {
    name.len() <= MAX_NAME_CHARS || name.chars().count() <= MAX_NAME_CHARS
}

/// Why a value may not be stored, if it may not: too long (in bytes of its
/// text) or not allowed by the value rule.
pub(crate) fn refused_value(
    settings: &crate::settings::Settings,
    value: &Value,
) -> Option<Dropped> {
    let bytes = match value {
        Value::String(text) => text.len(),
        other => encode(other).len(),
    };
    if bytes > settings.max_value_bytes {
        return Some(Dropped::TooLong);
    }
    (!settings.values.allows(value)).then_some(Dropped::NotAllowed)
}

/// Takes a leaving client out of its room, silently.
pub(crate) fn leave_all(state: &mut crate::registry::State, client: &Client) {
    for room in state.rooms_of(client) {
        state.unsubscribe(client, &room);
    }
}

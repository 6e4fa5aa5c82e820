//! The CloudLink 4 protocol: messages keyed by `cmd`.
//!
//! [`handle`] takes one message object from an identified CL4 client and runs
//! 0.2.0's pipeline: check the default schema (E:101), find the command
//! (E:109), refuse a disabled one (E:110), check the command's own schema,
//! run the built-in command (see [`rooms`] and [`messages`]) and then any
//! custom handlers, and finally the `on_message` hooks. Frames that never
//! became a message object (empty, not JSON) are answered by the session.

pub(crate) mod messages;
pub(crate) mod rooms;
pub mod status;
pub(crate) mod wire;

use serde_json::Value;

use crate::client::{Client, Protocol};
use crate::extension::ExceptionKind;
use crate::handle::CloudLink;
use crate::schema::{Field, errors_value, validate};
use status::StatusCode;
use wire::Packet;

/// Every JSON type but `null`, in 0.2.0's names.
const ANY: &[&str] = &[
    "string", "integer", "float", "number", "boolean", "dict", "list", "set",
];
const STRING: &[&str] = &["string"];
const LISTENER: &[&str] = &["string", "integer", "float", "boolean", "number"];
const ID: &[&str] = &["string", "dict", "list", "set"];
const ROOMS: &[&str] = &[
    "string", "integer", "float", "boolean", "number", "list", "set",
];

/// What every CL4 message must satisfy; also what identifies a CL4 client.
pub(crate) const DEFAULT_SCHEMA: &[Field] = &[
    Field::required("cmd", STRING),
    Field::optional("val", ANY),
    Field::optional("name", STRING),
    Field::optional("id", ID),
    Field::optional("listener", LISTENER),
    Field::optional("rooms", ROOMS),
];

/// The commands the server knows by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Builtin {
    Handshake,
    Ping,
    Gmsg,
    Gvar,
    Pmsg,
    Pvar,
    Setid,
    Link,
    Unlink,
    Direct,
}

impl Builtin {
    fn named(cmd: &str) -> Option<Self> {
        Some(match cmd {
            "handshake" => Builtin::Handshake,
            "ping" => Builtin::Ping,
            "gmsg" => Builtin::Gmsg,
            "gvar" => Builtin::Gvar,
            "pmsg" => Builtin::Pmsg,
            "pvar" => Builtin::Pvar,
            "setid" => Builtin::Setid,
            "link" => Builtin::Link,
            "unlink" => Builtin::Unlink,
            "direct" => Builtin::Direct,
            _ => return None,
        })
    }

    /// The keys this command needs beyond the default schema.
    fn schema(self) -> &'static [Field] {
        const VAL: Field = Field::required("val", ANY);
        const NAME: Field = Field::required("name", STRING);
        const ANY_ID: Field = Field::required("id", ID);
        const VAL_ONLY: &[Field] = &[VAL];
        const GVAR: &[Field] = &[NAME, VAL];
        const PMSG: &[Field] = &[ANY_ID, VAL];
        const PVAR: &[Field] = &[NAME, ANY_ID, VAL];
        const SETID: &[Field] = &[Field::required("val", STRING)];
        const DIRECT: &[Field] = &[Field::required("id", STRING), VAL];
        match self {
            Builtin::Handshake | Builtin::Ping => &[],
            Builtin::Gmsg | Builtin::Link | Builtin::Unlink => VAL_ONLY,
            Builtin::Gvar => GVAR,
            Builtin::Pmsg => PMSG,
            Builtin::Pvar => PVAR,
            Builtin::Setid => SETID,
            Builtin::Direct => DIRECT,
        }
    }
}

/// One message being handled, and the ways to answer it.
pub(crate) struct Request<'a> {
    pub server: &'a CloudLink,
    pub client: &'a Client,
    pub message: &'a Value,
}

impl<'a> Request<'a> {
    /// A key of the message.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.message.get(key)
    }

    /// The message's `listener`, copied into the replies that carry one.
    pub fn listener(&self) -> Option<&'a Value> {
        self.get("listener")
    }

    /// Answers with a status code and the listener.
    pub fn reply(&self, status: StatusCode, details: Option<&str>) {
        let details = details.map(|d| Value::String(d.to_owned()));
        let packet = Packet {
            details: details.as_ref(),
            listener: self.listener(),
            ..Packet::status(status)
        };
        self.client.push_wire(packet.frame());
    }

    /// Whether the client has a username; if not, answers E:111.
    pub fn require_username(&self) -> bool {
        if self.client.username().is_some() {
            return true;
        }
        self.reply(
            StatusCode::IdRequired,
            Some("This command requires setting a username."),
        );
        false
    }
}

/// A status code from the generic pipeline: never with a listener.
fn pipeline_status(client: &Client, status: StatusCode, details: &Value) {
    let packet = Packet {
        details: Some(details),
        ..Packet::status(status)
    };
    client.push_wire(packet.frame());
}

/// Answers a frame that is not a message (empty, not JSON, not an object).
pub(crate) fn reject(client: &Client, status: StatusCode, details: &Value) {
    pipeline_status(client, status, details);
}

/// Handles one message object from a CL4 client.
pub(crate) async fn handle(server: &CloudLink, client: &Client, message: Value) {
    let hooks = server.hooks();
    let Some(object) = message.as_object() else {
        return;
    };
    if let Err(errors) = validate(object, DEFAULT_SCHEMA) {
        return syntax_error(server, client, errors_value(&errors)).await;
    }
    let cmd = object
        .get("cmd")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let builtin = Builtin::named(cmd);
    let custom = hooks.commands(Protocol::Cl4, cmd);
    if builtin.is_none() && custom.is_none() {
        let details = Value::String(format!("{cmd} is an invalid command."));
        pipeline_status(client, StatusCode::InvalidCommand, &details);
        return hooks
            .failure(server, client, ExceptionKind::InvalidCommand, || details)
            .await;
    }
    if server.settings().disabled_commands.contains(cmd) {
        let details = Value::String(format!("{cmd} is a disabled command."));
        pipeline_status(client, StatusCode::CommandDisabled, &details);
        return hooks
            .failure(server, client, ExceptionKind::DisabledCommand, || {
                Value::String(cmd.to_owned())
            })
            .await;
    }
    if let Some(builtin) = builtin {
        if let Err(errors) = validate(object, builtin.schema()) {
            return syntax_error(server, client, errors_value(&errors)).await;
        }
        run_builtin(
            builtin,
            &Request {
                server,
                client,
                message: &message,
            },
        );
    }
    let request = Request {
        server,
        client,
        message: &message,
    };
    let panicked = || request.reply(StatusCode::InternalError, None);
    hooks
        .command(server, client, message.clone(), custom, panicked)
        .await;
}

async fn syntax_error(server: &CloudLink, client: &Client, details: Value) {
    pipeline_status(client, StatusCode::Syntax, &details);
    server
        .hooks()
        .failure(server, client, ExceptionKind::ValidationError, || details)
        .await;
}

fn run_builtin(builtin: Builtin, request: &Request<'_>) {
    match builtin {
        Builtin::Handshake => rooms::handshake(request),
        Builtin::Ping => request.reply(StatusCode::Ok, None),
        Builtin::Gmsg => messages::global(request, "gmsg"),
        Builtin::Gvar => messages::global(request, "gvar"),
        Builtin::Pmsg => messages::private(request, "pmsg"),
        Builtin::Pvar => messages::private(request, "pvar"),
        Builtin::Setid => rooms::setid(request),
        Builtin::Link => rooms::link(request),
        Builtin::Unlink => rooms::unlink(request),
        Builtin::Direct => messages::direct(request),
    }
}

/// Room names from a `rooms` or `link` value: a string, a number or boolean
/// (read as its JSON text, since the TurboWarp extension turns a typed `123`
/// into a number), or an array of those, duplicates removed. `None` for
/// anything else.
pub(crate) fn room_names(value: &Value) -> Option<Vec<String>> {
    fn scalar(value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    match value {
        Value::Array(items) => {
            let mut names: Vec<String> = Vec::with_capacity(items.len());
            for item in items {
                let name = scalar(item)?;
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            Some(names)
        }
        other => scalar(other).map(|name| vec![name]),
    }
}

/// E:102 for a room list of the wrong shape.
pub(crate) fn bad_rooms(request: &Request<'_>) {
    request.reply(
        StatusCode::Datatype,
        Some("Room names must be strings, numbers or booleans, or an array of them."),
    );
}

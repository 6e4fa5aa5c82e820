//! What the CL4 server sends, and its encoding into a WebSocket frame.
//!
//! Every server message is one JSON object with a `cmd` and a few of the same
//! optional keys, so one [`Packet`] type describes them all. A packet is
//! encoded once into a shared frame however many clients it goes to.

use edge::ws::Wire;
use serde::Serialize;
use serde_json::Value;

use crate::cl4::status::StatusCode;
use crate::client::UserObject;

/// A value a packet carries in `val`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub(crate) enum Val<'a> {
    Json(&'a Value),
    Text(&'a str),
    User(UserObject<'a>),
    Users(Vec<UserObject<'a>>),
}

/// One server-to-client CL4 message; absent keys are left out.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Packet<'a> {
    pub cmd: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val: Option<Val<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<UserObject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listener: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rooms: Option<&'a str>,
}

impl<'a> Packet<'a> {
    /// A bare `{"cmd": cmd}`.
    pub fn new(cmd: &'a str) -> Self {
        Self {
            cmd,
            ..Self::default()
        }
    }

    /// A `statuscode` message.
    pub fn status(status: StatusCode) -> Self {
        Self {
            code: Some(status.code()),
            code_id: Some(status.code_id()),
            ..Self::new("statuscode")
        }
    }

    /// A `ulist` message for one room.
    pub fn ulist(mode: &'a str, val: Val<'a>, room: &'a str) -> Self {
        Self {
            mode: Some(mode),
            val: Some(val),
            rooms: Some(room),
            ..Self::new("ulist")
        }
    }

    pub fn val(mut self, val: Val<'a>) -> Self {
        self.val = Some(val);
        self
    }

    pub fn listener(mut self, listener: Option<&'a Value>) -> Self {
        self.listener = listener;
        self
    }

    /// The text frame, ready for any number of outboxes.
    pub fn frame(&self) -> Wire {
        edge::ws::text_frame(&encode(self))
    }
}

/// JSON text of anything the server sends.
pub(crate) fn encode(message: &impl Serialize) -> String {
    // Serializing plain data with string keys cannot fail.
    serde_json::to_string(message).unwrap_or_else(|_| "{}".to_owned())
}

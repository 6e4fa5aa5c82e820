//! The d-zone wire format: what the browser sends and what it is sent.
//!
//! Everything here is plain data plus its JSON encoding. Nothing in this module
//! touches a socket, a lock or the clock, so the rest of the server can encode a
//! frame once and hand the same bytes to every watcher.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Discord server's snowflake as a decimal string, e.g. `"232769614004748288"`.
///
/// Broadcasts are addressed by snowflake; clients ask for servers by public id.
pub type Snowflake = String;

/// The servers a client may join, keyed by snowflake, in the provider's order.
pub type ServerList = IndexMap<Snowflake, ServerInfo>;

/// The users of one Discord server, keyed by user id, in the provider's order.
pub type Roster = IndexMap<String, User>;

/// One entry of the `server-list` message.
///
/// ```
/// use d_back::ServerInfo;
/// let info = ServerInfo::new("dworld", "D-World").default_server().with_password("hunter2");
/// let json = serde_json::to_string(&info).unwrap();
/// assert!(json.contains("\"passworded\":true"));
/// assert!(!json.contains("hunter2"), "the legacy password is never sent to browsers");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Short public id that browsers ask for (`?s=dworld`).
    pub id: String,
    /// Human name shown by the client.
    pub name: String,
    /// Whether a request for `default` (or no request) lands here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Whether joining needs a Discord login (or the legacy password).
    #[serde(default)]
    pub passworded: bool,
    /// Legacy shared password; compared in constant time and never serialized.
    #[serde(default, skip_serializing)]
    pub password: Option<String>,
}

impl ServerInfo {
    /// A public, non-default server.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            default: false,
            passworded: false,
            password: None,
        }
    }

    /// Marks this server as the one `default` resolves to.
    pub fn default_server(mut self) -> Self {
        self.default = true;
        self
    }

    /// Requires a Discord login to join.
    pub fn passworded(mut self) -> Self {
        self.passworded = true;
        self
    }

    /// Requires a login, and also admits anyone who knows this legacy password.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.passworded = true;
        self.password = Some(password.into());
        self
    }
}

/// A user's presence as the client draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Green, wandering around.
    Online,
    /// Yellow, sleepy.
    Idle,
    /// Red, do not disturb.
    Dnd,
    /// Grey, asleep.
    Offline,
}

impl Status {
    /// Every status, for picking one at random.
    pub const ALL: [Status; 4] = [Status::Online, Status::Idle, Status::Dnd, Status::Offline];

    /// The status as the wire spells it: `online`, `idle`, `dnd` or `offline`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Online => "online",
            Status::Idle => "idle",
            Status::Dnd => "dnd",
            Status::Offline => "offline",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One actor in the world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Discord user id.
    pub uid: String,
    /// Display name shown under the actor.
    pub username: String,
    /// Current presence.
    pub status: Status,
    /// Colour of the user's highest coloured role, `#rrggbb`.
    pub role_color: String,
}

impl User {
    /// A user with the given id, name, status and colour.
    pub fn new(
        uid: impl Into<String>,
        username: impl Into<String>,
        status: Status,
        role_color: impl Into<String>,
    ) -> Self {
        Self {
            uid: uid.into(),
            username: username.into(),
            status,
            role_color: role_color.into(),
        }
    }
}

/// A change to one user, as broadcast in a `presence` frame.
///
/// ```
/// use d_back::{PresenceUpdate, Status};
/// let joined = PresenceUpdate::new("42", Status::Online).with_username("nelly").with_role_color("#ff0000");
/// let left = PresenceUpdate::removed("42");
/// assert!(left.delete);
/// # let _ = joined;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceUpdate {
    /// Discord user id.
    pub uid: String,
    /// New presence.
    pub status: Status,
    /// Name, needed when the user may be new to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Role colour, `#rrggbb`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_color: Option<String>,
    /// True when the user left the Discord server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete: bool,
}

impl PresenceUpdate {
    /// What a client that missed `older` must be told instead of `older` and
    /// then `newer` for the same user, so that it ends in the same place: the
    /// newer status, with the name and colour the older one carried unless
    /// the newer one has its own. A removal wins over an earlier update; an
    /// update without a name after a removal cannot bring the user back, so
    /// the removal stands.
    ///
    /// ```
    /// use d_back::{PresenceUpdate, Status};
    /// let joined = PresenceUpdate::new("7", Status::Online).with_username("newbie");
    /// let merged = joined.merged_with(PresenceUpdate::new("7", Status::Idle));
    /// assert_eq!(merged.status, Status::Idle);
    /// assert_eq!(merged.username.as_deref(), Some("newbie"));
    /// ```
    pub fn merged_with(self, newer: PresenceUpdate) -> PresenceUpdate {
        if newer.delete || (self.delete && newer.username.is_none()) {
            return if newer.delete { newer } else { self };
        }
        if self.delete {
            return newer;
        }
        PresenceUpdate {
            username: newer.username.or(self.username),
            role_color: newer.role_color.or(self.role_color),
            ..newer
        }
    }

    /// A status change for a user the client already knows.
    pub fn new(uid: impl Into<String>, status: Status) -> Self {
        Self {
            uid: uid.into(),
            status,
            username: None,
            role_color: None,
            delete: false,
        }
    }

    /// The user left the Discord server: the client removes the actor.
    pub fn removed(uid: impl Into<String>) -> Self {
        Self {
            delete: true,
            ..Self::new(uid, Status::Offline)
        }
    }

    /// Adds the display name (required for a user the client has not seen).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Adds the role colour.
    pub fn with_role_color(mut self, role_color: impl Into<String>) -> Self {
        self.role_color = Some(role_color.into());
        self
    }
}

/// A chat line, as broadcast in a `message` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks.
    pub uid: String,
    /// What they say.
    pub message: String,
    /// The Discord channel it was said in; the client queues bubbles per channel.
    pub channel: String,
}

/// The user a browser says it logged in as through Discord OAuth2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscordUser {
    /// Discord user id.
    pub id: String,
    /// Discord username.
    pub username: String,
}

/// The human sentences the client shows in an alert box.
///
/// These are the reference server's words, which d-zone users already know.
pub mod errors {
    /// The frame was not JSON.
    pub const INVALID_JSON: &str = "Invalid JSON";
    /// A binary frame was not UTF-8.
    pub const INVALID_BINARY: &str = "Invalid binary encoding";
    /// `type` missing or not one we know.
    pub const UNKNOWN_TYPE: &str = "Unknown event type";
    /// Nothing is listed yet (a fresh ingest-fed or bot-fed server): said
    /// instead of [`NO_SUCH_SERVER`], which would suggest the person asked wrong.
    pub const NO_SERVERS_YET: &str =
        "There are no Discord servers here yet. Please come back once one has been added.";
    /// No server matches the request.
    pub const NO_SUCH_SERVER: &str = "Sorry, couldn't connect to that Discord server.";
    /// The OAuth2 validator said no.
    pub const AUTH_FAILED: &str = "Discord authentication failed. Please try logging in again.";
    /// A passworded server and no usable credentials.
    pub const AUTH_REQUIRED: &str =
        "This server requires Discord authentication. Please login with Discord.";
    /// The data behind the server failed (a provider error or panic).
    pub const PROVIDER_FAILED: &str =
        "Sorry, the server could not load that Discord server right now. Please try again.";
    /// The client sends faster than the server allows.
    pub const RATE_LIMITED: &str = "You are sending too fast. Please slow down.";
}

/// A frame the server sends, before encoding.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Outgoing<'a> {
    /// Sent on connect.
    ServerList {
        /// The servers, keyed by snowflake.
        data: &'a ServerList,
    },
    /// Reply to a successful `connect`.
    ServerJoin {
        /// The world to draw.
        data: ServerJoin<'a>,
    },
    /// A user's presence changed.
    Presence {
        /// Snowflake of the Discord server.
        server: &'a str,
        /// The change.
        data: &'a PresenceUpdate,
    },
    /// A chat line.
    Message {
        /// Snowflake of the Discord server.
        server: &'a str,
        /// The line.
        data: &'a ChatMessage,
    },
    /// The OAuth2 application id changed.
    #[serde(rename = "update-clientid")]
    UpdateClientId {
        /// Snowflake of the Discord server.
        server: &'a str,
        /// The new id.
        data: ClientIdData<'a>,
    },
    /// Something the person should know; never closes the connection.
    Error {
        /// The sentence.
        data: ErrorData<'a>,
    },
}

/// Body of `server-join`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerJoin<'a> {
    /// Every user with their current status.
    pub users: &'a Roster,
    /// Echo of what the client asked for (only `server`: secrets are never echoed).
    pub request: JoinRequestEcho<'a>,
    /// Human name of the server.
    pub server_name: &'a str,
    /// OAuth2 application id for the login button.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<&'a str>,
}

/// The `request` field of `server-join`.
#[derive(Debug, Clone, Serialize)]
pub struct JoinRequestEcho<'a> {
    /// The id the client asked for, after trimming; `default` stays `default`.
    pub server: &'a str,
}

/// Body of `update-clientid`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientIdData<'a> {
    /// The new OAuth2 application id.
    pub client_id: &'a str,
}

/// Body of `error`.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorData<'a> {
    /// The sentence to show.
    pub message: &'a str,
}

impl Outgoing<'_> {
    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("outgoing frames contain only strings, maps and bools")
    }
}

/// What a client asked for, decoded from one text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// Join (or switch to) a Discord server.
    Connect(ConnectRequest),
}

/// A decoded `connect` request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectRequest {
    /// The requested public id, trimmed; `default` when missing, null or blank.
    pub server: String,
    /// OAuth2 access token from the client's Discord login.
    pub discord_token: Option<String>,
    /// The Discord user the client says it is.
    pub discord_user: Option<DiscordUser>,
    /// Legacy password.
    pub password: Option<String>,
}

/// Why a frame could not be understood; each maps to one of the spec's sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON at all.
    InvalidJson,
    /// `type` missing, not a string, or unknown.
    UnknownType,
    /// A `connect` whose server is given as something that cannot name one
    /// (`true`, a list...): answered like an unknown server, never by joining
    /// one the client did not ask for.
    UnnamedServer,
}

impl DecodeError {
    /// The sentence the client shows for this error.
    pub fn message(self) -> &'static str {
        match self {
            DecodeError::InvalidJson => errors::INVALID_JSON,
            DecodeError::UnknownType => errors::UNKNOWN_TYPE,
            DecodeError::UnnamedServer => errors::NO_SUCH_SERVER,
        }
    }
}

/// The raw shape of a client frame, before we know its type.
#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawConnect {
    #[serde(default)]
    server: Value,
    #[serde(default)]
    discord_token: Value,
    #[serde(default)]
    discord_user: Value,
    #[serde(default)]
    password: Value,
}

impl Incoming {
    /// Decodes one client frame.
    ///
    /// Lenient where the d-zone client is loose (a `null` or numeric `server`,
    /// missing `data`), strict where it matters (credentials must be strings).
    ///
    /// ```
    /// use d_back::protocol::{Incoming, DecodeError};
    /// let Incoming::Connect(req) = Incoming::decode(r#"{"type":"connect","data":{"server":null}}"#).unwrap();
    /// assert_eq!(req.server, "default");
    /// assert_eq!(Incoming::decode("{oops").unwrap_err(), DecodeError::InvalidJson);
    /// ```
    pub fn decode(text: &str) -> Result<Incoming, DecodeError> {
        let value: Value = serde_json::from_str(text).map_err(|_| DecodeError::InvalidJson)?;
        let raw: RawFrame = serde_json::from_value(value).map_err(|_| DecodeError::UnknownType)?;
        match raw.kind.as_ref().and_then(Value::as_str) {
            Some("connect") => Ok(Incoming::Connect(ConnectRequest::from_data(raw.data)?)),
            _ => Err(DecodeError::UnknownType),
        }
    }
}

impl ConnectRequest {
    /// Reads `connect`'s `data`: an object with `server` and credentials, or
    /// (as some clients send it) the server itself, bare.
    fn from_data(data: Value) -> Result<ConnectRequest, DecodeError> {
        let raw: RawConnect = match data {
            Value::Object(_) => serde_json::from_value(data).unwrap_or_default(),
            bare @ (Value::String(_) | Value::Number(_) | Value::Null) => RawConnect {
                server: bare,
                ..RawConnect::default()
            },
            Value::Bool(_) | Value::Array(_) => return Err(DecodeError::UnnamedServer),
        };
        let server = match &raw.server {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            Value::Bool(_) | Value::Array(_) | Value::Object(_) => {
                return Err(DecodeError::UnnamedServer);
            }
        };
        let server = if server.is_empty() {
            "default".to_owned()
        } else {
            server
        };
        let discord_user = match &raw.discord_user {
            Value::Object(map) => {
                let field = |name: &str| match map.get(name) {
                    Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                    Some(Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                };
                match (field("id"), field("username")) {
                    (Some(id), Some(username)) => Some(DiscordUser { id, username }),
                    _ => None,
                }
            }
            _ => None,
        };
        let text = |value: Value| match value {
            Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        };
        Ok(ConnectRequest {
            server,
            discord_token: text(raw.discord_token),
            discord_user,
            password: text(raw.password),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(text: &str) -> ConnectRequest {
        match Incoming::decode(text) {
            Ok(Incoming::Connect(req)) => req,
            other => panic!("expected connect, got {other:?}"),
        }
    }

    #[test]
    fn server_request_is_normalised() {
        assert_eq!(connect(r#"{"type":"connect","data":{}}"#).server, "default");
        assert_eq!(
            connect(r#"{"type":"connect","data":"repos"}"#).server,
            "repos"
        );
        assert_eq!(
            connect(r#"{"type":"connect","data":" dworld "}"#).server,
            "dworld"
        );
        for unnamed in [
            r#"{"type":"connect","data":true}"#,
            r#"{"type":"connect","data":["repos"]}"#,
            r#"{"type":"connect","data":{"server":{"id":"repos"}}}"#,
            r#"{"type":"connect","data":{"server":false}}"#,
        ] {
            assert_eq!(
                Incoming::decode(unnamed).unwrap_err(),
                DecodeError::UnnamedServer,
                "{unnamed}"
            );
        }
        assert_eq!(connect(r#"{"type":"connect"}"#).server, "default");
        assert_eq!(
            connect(r#"{"type":"connect","data":{"server":"  "}}"#).server,
            "default"
        );
        assert_eq!(
            connect(r#"{"type":"connect","data":{"server":" dworld\n"}}"#).server,
            "dworld"
        );
        assert_eq!(
            connect(r#"{"type":"connect","data":{"server":123}}"#).server,
            "123"
        );
    }

    #[test]
    fn credentials_are_kept_only_when_usable() {
        let req = connect(
            r#"{"type":"connect","data":{"server":"oauth","discordToken":"t","discordUser":{"id":"1","username":"n"}}}"#,
        );
        assert_eq!(req.discord_token.as_deref(), Some("t"));
        assert_eq!(req.discord_user.unwrap().username, "n");
        let req = connect(
            r#"{"type":"connect","data":{"server":"oauth","discordToken":5,"discordUser":{"id":"1"}}}"#,
        );
        assert_eq!(req.discord_token, None);
        assert_eq!(req.discord_user, None);
    }

    #[test]
    fn bad_frames_map_to_the_reference_sentences() {
        assert_eq!(
            Incoming::decode("not json").unwrap_err(),
            DecodeError::InvalidJson
        );
        assert_eq!(
            Incoming::decode(r#"{"data":{}}"#).unwrap_err(),
            DecodeError::UnknownType
        );
        assert_eq!(
            Incoming::decode(r#"{"type":"dance"}"#).unwrap_err(),
            DecodeError::UnknownType
        );
        assert_eq!(
            Incoming::decode("[1,2]").unwrap_err(),
            DecodeError::UnknownType
        );
        assert_eq!(Incoming::decode("7").unwrap_err(), DecodeError::UnknownType);
    }

    #[test]
    fn no_input_makes_decoding_panic() {
        use rand::{Rng, SeedableRng};
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            "\"type\"",
            ":",
            ",",
            "\"connect\"",
            "\"data\"",
            "null",
            "1e999",
            "\"server\"",
            "\"discordUser\"",
            "\"\\u0000\"",
            "true",
            "-0",
            "\"\\ud800\"",
            " ",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let text: String = (0..rng.random_range(0..24))
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            let _ = Incoming::decode(&text);
        }
        let deep = "[".repeat(100_000);
        assert_eq!(
            Incoming::decode(&deep).unwrap_err(),
            DecodeError::InvalidJson
        );
    }

    #[test]
    fn outgoing_frames_match_the_wire_contract() {
        let update = PresenceUpdate::new("1", Status::Idle).with_username("n");
        let text = Outgoing::Presence {
            server: "9",
            data: &update,
        }
        .encode();
        assert_eq!(
            text,
            r#"{"type":"presence","server":"9","data":{"uid":"1","status":"idle","username":"n"}}"#
        );
        let text = Outgoing::UpdateClientId {
            server: "9",
            data: ClientIdData { client_id: "5" },
        }
        .encode();
        assert_eq!(
            text,
            r#"{"type":"update-clientid","server":"9","data":{"clientId":"5"}}"#
        );
    }
}

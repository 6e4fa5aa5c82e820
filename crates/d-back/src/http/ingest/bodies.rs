//! What ingest calls send and what they get back, as Rust types.
//!
//! These types both parse the requests and describe them in the OpenAPI
//! document (`ToSchema`), so the document cannot say one thing while the
//! parser does another. Each request type carries the example the document
//! shows; a test sends every one of them to a running server. Field names
//! follow the wire (`roleColor`, `hideOffline`, `clientId`) and the data file's
//! spelling (`role_color`, `hide_offline`, `client_id`) is accepted as well, so
//! a bot author can copy entries from either.
//!
//! Nothing here touches the store: the handlers do that.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::protocol::{ChatMessage, ServerInfo, Status};
use crate::provider::ServerSettings;
use crate::provider::records::{UserRecord, optional_role_color};

/// `PUT /api/ingest/servers`: every server, keyed by Discord snowflake.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(example = json!({
    "232769614004748288": {"id": "dworld", "name": "D-World", "default": true},
    "123456789012345678": {"id": "secret", "name": "Members only", "passworded": true, "hideOffline": true}
}))]
pub(super) struct ServerListBody(pub IndexMap<String, ServerEntry>);

/// One server of the list.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = Server)]
pub(super) struct ServerEntry {
    /// Public id browsers ask for (`?s=...`); must not be empty.
    pub id: String,
    /// The name shown above the world.
    pub name: String,
    /// Where browsers asking for `default` land; the first server when none is marked.
    #[serde(default)]
    #[schema(default = false)]
    pub default: bool,
    /// Joining needs a Discord login of a member.
    #[serde(default)]
    #[schema(default = false)]
    pub passworded: bool,
    /// Legacy shared password; implies `passworded`; never sent to browsers.
    #[serde(default)]
    pub password: Option<String>,
    /// Do not show offline members. Also accepted as `hide_offline`.
    #[serde(default, alias = "hide_offline")]
    #[schema(default = false)]
    pub hide_offline: bool,
}

impl ServerEntry {
    /// The `server-list` entry and the settings browsers are not sent.
    pub(super) fn into_parts(self) -> (ServerInfo, ServerSettings) {
        let settings = ServerSettings {
            hide_offline: self.hide_offline,
        };
        let info = ServerInfo {
            id: self.id,
            name: self.name,
            default: self.default,
            passworded: self.passworded || self.password.is_some(),
            password: self.password,
        };
        (info, settings)
    }
}

/// `PUT /api/ingest/servers/{server}/users`: every user of one server.
///
/// A user is the same entry as in the data file.
#[derive(Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(example = json!([
    {"uid": "123456789012345001", "username": "vegeta897", "status": "online", "roleColor": "#ff6b6b"},
    {"uid": "123456789012345002", "username": "nelly", "roleColor": "#1abc9c"}
]))]
pub(super) struct UsersBody(pub Vec<UserRecord>);

/// `POST /api/ingest/servers/{server}/presence`: one user's change.
///
/// `status` is required unless `delete` is true. Send `username` (and
/// `roleColor`) whenever the user may be new to the browsers: they draw no
/// actor without a name.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(
    as = Presence,
    example = json!({"uid": "123456789012345001", "status": "idle", "username": "vegeta897"})
)]
pub(super) struct PresenceBody {
    /// Discord user id.
    pub uid: String,
    /// The new presence.
    #[serde(default)]
    pub status: Option<Status>,
    /// The name, for a user the browsers may not know yet.
    #[serde(default)]
    pub username: Option<String>,
    /// `#rrggbb`. Also accepted as `role_color`.
    #[serde(
        default,
        alias = "role_color",
        deserialize_with = "optional_role_color"
    )]
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    pub role_color: Option<String>,
    /// The user left the server.
    #[serde(default)]
    #[schema(default = false)]
    pub delete: bool,
}

/// `POST /api/ingest/servers/{server}/messages`: a chat line.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = Message,
    example = json!({"uid": "123456789012345001", "message": "hello", "channel": "527964146659229701"})
)]
pub(super) struct MessageBody {
    /// Who speaks; browsers ignore lines from users they draw no actor for.
    pub uid: String,
    /// What they say, shown as a speech bubble.
    pub message: String,
    /// Channel id; bubbles queue per channel.
    pub channel: String,
}

impl From<MessageBody> for ChatMessage {
    fn from(body: MessageBody) -> Self {
        ChatMessage {
            uid: body.uid,
            message: body.message,
            channel: body.channel,
        }
    }
}

/// `PUT /api/ingest/client-id`: the OAuth2 application id browsers log in with.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = ClientId, example = json!({"clientId": "506432803173433344"}))]
pub(super) struct ClientIdBody {
    /// The Discord application id; must not be empty. Also accepted as `client_id`.
    #[serde(alias = "client_id")]
    pub client_id: String,
    /// Snowflake of one listed server; leave out to set it for every server without its own.
    #[serde(default)]
    pub server: Option<String>,
}

/// Answer to `PUT /api/ingest/servers`.
#[derive(Serialize, ToSchema)]
pub(super) struct ServersReplaced {
    /// How many servers are listed now.
    pub servers: usize,
}

/// Answer to `PUT /api/ingest/servers/{server}/users`.
#[derive(Serialize, ToSchema)]
pub(super) struct UsersReplaced {
    /// How many users the server has now.
    pub users: usize,
}

/// Answer to a presence or a chat line.
#[derive(Serialize, ToSchema)]
pub(super) struct Delivered {
    /// How many watching browsers were sent the frame (0 when nobody watches).
    pub delivered: usize,
}

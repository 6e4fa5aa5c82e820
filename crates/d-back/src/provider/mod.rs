//! The seam for real data: where the server asks which Discord servers exist,
//! who is in them, and whether a login is genuine.
//!
//! A provider answers questions; it never talks to sockets. Live changes go the
//! other way, through the [`Hub`](crate::Hub)'s broadcast methods, which any task
//! may call. The defaults fail closed: a provider that does not override
//! [`DataProvider::validate_discord_user`] lets no one into a passworded server.

mod data_file;
pub mod discord;
mod mock;
mod oauth;
pub(crate) mod records;
mod store;

pub use data_file::{DataFile, DataFileError};
pub use mock::{MOCK_CHANNEL, MockWorld};
pub use oauth::{DISCORD_API, OAuthValidator};
pub use store::{DEFAULT_ROLE_COLOR, ServerSettings, Store, UnknownServer};

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::Hub;
use crate::protocol::{DiscordUser, Roster, ServerList};

/// A provider could not answer; the client gets a short apology, the log gets this text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    message: String,
}

impl ProviderError {
    /// An error whose text says what went wrong, for the operator's log.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProviderError {}

/// A response a provider serves itself for an HTTP path (the reference's `on_static_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticResponse {
    /// HTTP status code, 200 unless set otherwise.
    pub status: u16,
    /// Value of the `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

impl StaticResponse {
    /// A `200 OK` with the given content type and body.
    pub fn ok(content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            content_type: content_type.into(),
            body: body.into(),
        }
    }
}

/// Where the server's data comes from.
///
/// Implement the two required methods to serve your own Discord servers; override
/// the others as needed. Every method may be called concurrently from many
/// connections, so keep them cheap or cache inside.
///
/// ```
/// use d_back::{async_trait, DataProvider, ProviderError, Roster, ServerInfo, ServerList, Status, User};
///
/// struct OneRoom;
///
/// #[async_trait]
/// impl DataProvider for OneRoom {
///     async fn servers(&self) -> Result<ServerList, ProviderError> {
///         let mut list = ServerList::new();
///         list.insert("1000".into(), ServerInfo::new("room", "The Room").default_server());
///         Ok(list)
///     }
///
///     async fn users(&self, server: &str) -> Result<Roster, ProviderError> {
///         let mut roster = Roster::new();
///         if server == "1000" {
///             roster.insert("7".into(), User::new("7", "alice", Status::Online, "#ff0000"));
///         }
///         Ok(roster)
///     }
/// }
/// ```
#[async_trait]
pub trait DataProvider: Send + Sync + 'static {
    /// The Discord servers a client may join, keyed by snowflake.
    async fn servers(&self) -> Result<ServerList, ProviderError>;

    /// The users of one Discord server (by snowflake) with their current statuses.
    ///
    /// Asked when the first client starts watching that server; while anyone
    /// watches, the hub keeps the roster current from broadcasts.
    async fn users(&self, server: &str) -> Result<Roster, ProviderError>;

    /// Whether `token` is a genuine OAuth2 token of `user`, who may see `server`.
    ///
    /// The default refuses everyone, so a passworded server stays closed until
    /// something can really check a login.
    async fn validate_discord_user(
        &self,
        server: &str,
        token: &str,
        user: &DiscordUser,
    ) -> Result<bool, ProviderError> {
        let _ = (server, token, user);
        Ok(false)
    }

    /// The Discord OAuth2 application id clients of `server` should log in with.
    async fn client_id(&self, server: &str) -> Result<Option<String>, ProviderError> {
        let _ = server;
        Ok(None)
    }

    /// Lets the provider answer an HTTP path itself, before static files are looked at.
    async fn static_response(&self, path: &str) -> Option<StaticResponse> {
        let _ = path;
        None
    }

    /// Work to run while at least one client watches `server`, stopped when the last leaves.
    ///
    /// The built-in world uses this to make its servers feel alive; a real
    /// provider might poll an external system here. The future is aborted,
    /// not asked, when nobody watches any more.
    fn activity(&self, server: &str, hub: Hub) -> Option<BoxFuture<'static, ()>> {
        let _ = (server, hub);
        None
    }
}

/// Makes rustls use the `ring` crypto provider for every HTTPS and WSS
/// connection to Discord; harmless when called again.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

//! # d-back
//!
//! The backend of [d-zone](https://github.com/NNTin/d-zone), the ambient-life
//! visualiser in which every member of a Discord server is a little actor in an
//! isometric world. One WebSocket + HTTP server on one port tells each browser
//! which Discord servers exist (`server-list`), gives it the users of the one it
//! joins (`server-join`), and streams presence changes and chat lines to
//! everyone watching that server.
//!
//! The pieces, in the order data flows:
//!
//! - a [`DataProvider`] answers "which servers, which users, is this login
//!   genuine"; the built-in [`MockWorld`] is the default, and the shared
//!   [`Store`](provider::Store) serves real data from a data file, a Discord
//!   bot and the ingest API;
//! - the [`Hub`] keeps one shared state per watched Discord server and fans out
//!   broadcasts (encoded once) to the bounded outbox of every watcher;
//! - each WebSocket is a session that answers `connect` and drains its outbox;
//! - [`Server`] puts it together on a port, with static files and `/api/version`.
//!
//! ```no_run
//! use d_back::{ChatMessage, PresenceUpdate, Server, Status};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), d_back::StartError> {
//! let server = Server::builder().port(3000).bind().await?;
//! let hub = server.hub();
//! hub.broadcast_presence("232769614004748288", PresenceUpdate::new("123456789012345001", Status::Dnd));
//! hub.broadcast_message("232769614004748288", ChatMessage {
//!     uid: "123456789012345001".into(),
//!     message: "hello from Rust".into(),
//!     channel: "527964146659229701".into(),
//! });
//! tokio::signal::ctrl_c().await.ok();
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod cluster;
#[doc(hidden)]
pub mod fuzzing;
mod http;
mod hub;
mod limits;
mod metrics;
pub mod protocol;
pub mod provider;
mod server;
mod session;

pub use async_trait::async_trait;
pub use broker::ClusterConfig;
pub use edge::TlsFiles;
pub use edge::outbox::CLOSE_TOO_SLOW;
pub use edge::{AccessRules, Deadlines};
pub use hub::{Hub, HubStats};
pub use ipnet::IpNet;
pub use protocol::{
    ChatMessage, DiscordUser, PresenceUpdate, Roster, ServerInfo, ServerList, Snowflake, Status,
    User,
};
pub use provider::{DataProvider, MOCK_CHANNEL, MockWorld, ProviderError, StaticResponse};
pub use server::{RunningServer, Server, ServerBuilder, StartError};
pub use session::{CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG};

/// The README's examples, compiled as doctests so they cannot drift from the API.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

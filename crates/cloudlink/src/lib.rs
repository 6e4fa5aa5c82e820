//! # cloudlink
//!
//! A CloudLink server: the WebSocket server that Scratch and TurboWarp makers
//! use for multiplayer projects (usernames, rooms, global and private
//! messages and variables, direct messages, user lists), and a self-hosted
//! Scratch cloud-variable server, both on one port. It speaks what the
//! CloudLink 0.2.0 Python server speaks, so the real clients (the TurboWarp
//! extension, the `cloudlink` Python client, Scratch cloud-variable
//! libraries) work unchanged; where 0.2.0 crashes or misbehaves on ordinary
//! input it answers clearly instead (`docs/cloudlink.md` lists each case).
//!
//! Data flows one way, as in every server of this workspace:
//!
//! ```text
//! client frames ─▶ Session ─▶ cl4 / scratch ─▶ Registry (clients, rooms) ─▶ member outboxes ─▶ sockets
//!                   (reader)   (commands)       one lock, no waiting          (edge::outbox)     (edge::writer)
//! ```
//!
//! - [`session`]: one connection; identifies its protocol from the first
//!   message and runs each frame through 0.2.0's pipeline.
//! - `cl4` and `scratch`: the two protocols' commands.
//! - `registry`: every client and room behind one lock, so memberships and
//!   the user lists sent about them never disagree.
//! - [`CloudLink`] and [`Builder`]: the shared state, its settings, and the
//!   extension API (custom commands, hooks, helpers).
//! - [`server`]: the listening socket and the WebSocket upgrade.
//!
//! The transport (listener, TLS, admission, frames, outboxes, the writer,
//! rate limits) is the protocol-neutral `edge` crate's; this crate never
//! depends on another protocol's crate. A room message is encoded once and the
//! same frame is pushed into each member's outbox. The edge's shared feed (for
//! frames a lagging client may simply miss) is not used: every CloudLink
//! message must arrive, so a client that cannot keep up is closed instead,
//! and only frames that a newer one makes pointless (a variable's value) are
//! merged in a slow client's outbox.
//!
//! ```no_run
//! use cloudlink::{CloudLink, Protocol, Server, StatusCode};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), cloudlink::StartError> {
//! let cloudlink = CloudLink::builder()
//!     .motd("Hello from Rust")
//!     .on_command(Protocol::Cl4, "foo", |command| async move {
//!         command.server.send_status(&command.client, StatusCode::Ok, None, Some(&command.message));
//!     })
//!     .build();
//! let server = Server::builder().host("127.0.0.1").port(3000).bind(cloudlink).await?;
//! println!("serving on {}", server.url());
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub(crate) mod cl4;
mod client;
mod cluster;
mod extension;
mod handle;
pub mod history;
mod host_rules;
mod latest;
mod metrics;
mod pytext;
mod registry;
mod schema;
pub mod scratch;
pub mod server;
pub mod session;
mod set_rate;
mod settings;
mod store;

pub use cl4::status::StatusCode;
pub use client::{Client, ClientInfo, Protocol, UserObject};
pub use edge::IpNet;
pub use extension::{Command, Event, ExceptionKind, Failure, HookFuture};
pub use handle::{Builder, CloudLink};
pub use host_rules::{HostRuleFiles, HostRules};
pub use server::{AccessRules, Deadlines, RunningServer, Server, ServerBuilder, StartError};
pub use settings::{SERVER_VERSION, ValueRule};
pub use store::{StoreError, VariableStore};
/// The type of [`Client::uuid`].
pub use uuid::Uuid;

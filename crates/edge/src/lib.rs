//! # edge
//!
//! The protocol-neutral edge shared by the d-back servers (`d_back` for
//! d-zone, `cloudlink` for CloudLink and Scratch cloud variables): everything
//! between the network and a protocol's own state, and nothing about Discord
//! servers, rooms or users.
//!
//! - [`Edge`] binds the port and serves an axum router on it, with TLS, a
//!   connection budget and per-address limits ([`gate`]), and a deadline for
//!   every stage of a connection ([`Deadlines`]);
//! - [`WebSockets`] turns a request into a [`Connection`] for a protocol's
//!   session, after the access rules ([`AccessRules`]: caps, origins, the real
//!   client address behind trusted proxies);
//! - [`ws`]: the WebSocket wire format, frames encoded once and shared by every
//!   socket they go to;
//! - [`outbox`]: each connection's bounded queue between a broadcaster and the
//!   socket, which degrades (drop, collapse, resynchronise) instead of growing;
//! - [`feed`]: a shared ring of broadcast frames that every watcher's writer
//!   copies from, for the frames a lagging client may miss;
//! - [`source`]: what an outbox can follow besides its own queue (a feed, or a
//!   protocol's table of the newest frame per key);
//! - [`writer`]: the task that drains an outbox to its socket, pings, and
//!   drops a client that stops reading;
//! - [`rate`]: a client's allowance of frames per second;
//! - `process`: logging set-up and the stop signal, for server commands
//!   (the default `logging` feature; a library embedding a server leaves it out);
//! - [`EdgeMetrics`]: what all of this counts, registered into the protocol's
//!   Prometheus registry.
//!
//! A protocol crate depends on this one, never the other way round.

mod admission;
pub mod bearer;
pub mod deflate;
pub mod driver;
pub mod feed;
pub mod gate;
pub mod http_api;
mod io;
mod metrics;
mod moment;
pub mod outbox;
#[cfg(feature = "logging")]
pub mod process;
pub mod rate;
mod server;
pub mod source;
mod tls;
pub mod values;
mod websocket;
pub mod writer;
pub mod ws;

pub use admission::{AccessRules, Admission, Refusal};
pub use ipnet::IpNet;
pub use metrics::EdgeMetrics;
pub use server::{Deadlines, Edge, SHUTDOWN_GRACE, Serving, Settings, StartError};
pub use tls::TlsFiles;
pub use websocket::{
    Connection, Control, Earn, Peer, StopReason, Upgraded, WebSockets, WsRead, WsWrite,
    wants_websocket,
};

//! # edge
//!
//! The protocol-neutral edge shared by the d-back servers (`d_back` for
//! d-zone, `cloudlink` for CloudLink and Scratch cloud variables): everything
//! between the network and a protocol's own state, and nothing about Discord
//! servers, rooms or users.
//!
//! - [`ws`]: the WebSocket wire format, frames encoded once and shared by every
//!   socket they go to;
//! - [`outbox`]: each connection's bounded queue between a broadcaster and the
//!   socket, which degrades (drop, collapse, resynchronise) instead of growing;
//! - [`feed`]: a shared ring of broadcast frames that every watcher's writer
//!   copies from, for the frames a lagging client may miss;
//! - [`writer`]: the task that drains an outbox to its socket, pings, and
//!   drops a client that stops reading;
//! - [`rate`]: how many frames a client may send, and when to give up on it.
//!
//! A protocol crate depends on this one, never the other way round.

pub mod feed;
pub mod outbox;
pub mod rate;
pub mod writer;
pub mod ws;

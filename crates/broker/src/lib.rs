//! # broker
//!
//! The cluster seam of the d-back servers: what lets several nodes serve one
//! world. It is protocol-neutral: a protocol's hub hands it opaque events and
//! the state writes that go with them, and gets every node's events back in
//! one order. Protocols never talk to Redis themselves.
//!
//! - **One order everywhere.** Every event goes into one Redis stream (the
//!   cluster's log), and every node, the sender included, applies events as it
//!   reads them from there. So a change made on any node reaches every node,
//!   and two changes reach every node in the same order.
//! - **Shared state beside the log.** An event may carry [`StateWrite`]s to
//!   Redis hashes (a d-zone roster, a Scratch project's variables). They are
//!   applied in the same atomic step as the append (a Lua script), so a node
//!   that reads the state and then follows the log from that point misses
//!   nothing and sees nothing twice.
//! - **Redis is not required to keep serving.** When Redis cannot be reached,
//!   [`Broker::publish`] says so and the caller applies its change locally, so
//!   local fan-out goes on; the broker keeps the change (the last 10,000) and
//!   sends it to the other nodes once Redis is back. Both connections come
//!   back with backoff, and the log is read on from where it was left, so
//!   changes other nodes made meanwhile arrive in order.
//! - **Leases** ([`Broker::hold_lease`]): one node at a time does a job (the
//!   Discord connection), and another takes over when it stops or dies.
//!
//! `d_back` uses it for its hub and its store, `cloudlink` for Scratch
//! projects (`docs/cluster.md` says how it is to serve CL4 rooms too).
//!
//! Built on [`redis`] (redis-rs): the Redis client that the Redis project
//! maintains, async on tokio, with `rediss://` over rustls and Sentinel
//! (`redis+sentinel://`) for failover. Reconnection is
//! this crate's own (a few lines in `publisher` and `reader`) because it must
//! also decide what happens to the events in flight, which no client can.
//!
//! ```no_run
//! use broker::{Broker, ClusterConfig, Event, Sent, StateWrite};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), broker::BrokerError> {
//! let (broker, mut deliveries) = Broker::start(ClusterConfig::new("redis://127.0.0.1:6379/0", "d-back")?);
//! let event = Event::new(&b"hello"[..]).with(StateWrite::put("greetings", "last", "hello"));
//! if broker.publish(event) == Sent::Offline {
//!     // Redis is unreachable: apply the change here only.
//! }
//! let first = deliveries.recv().await;
//! # let _ = first;
//! # Ok(())
//! # }
//! ```

mod backoff;
mod config;
mod event;
mod handle;
mod lease;
mod publisher;
mod reader;
mod shared;

pub use config::{ClusterConfig, DEFAULT_CLUSTER_NAME};
pub use event::{Event, StateWrite};
pub use handle::{Broker, BrokerError, BrokerStats, Sent};
#[cfg(feature = "testing")]
pub mod testing;

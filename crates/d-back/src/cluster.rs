//! Cluster mode: several `d_back` nodes serving one world through Redis.
//!
//! Every change is published to the cluster's log instead of being applied at
//! once; every node, the sender included, applies the log's events in its
//! order, so watchers on every node see the same changes in the same order.
//! Two kinds travel:
//!
//! - **A hub's broadcasts** (`presence`, `message`, `client-id`) from callers
//!   of [`Hub`](crate::Hub) with a provider of their own (the built-in world,
//!   a library caller's provider). With each presence the log's script merges
//!   the user's latest state into a Redis hash per Discord server, and a
//!   client id into another, which the hub lays over what its provider says
//!   when it loads a server: so a browser joining any node, or a node that
//!   started late, sees the current statuses.
//! - **A [`Store`](crate::provider::Store)'s changes** (server list, settings,
//!   rosters, presences, client ids), with the whole store kept in Redis
//!   beside them, so that a node's store is the cluster's store: the Discord
//!   source on one node, the ingest API on another, all feed one world. The
//!   store module encodes and applies them; here they are opaque.
//!
//! The hub's fetch-again rule (a change during a load repeats the load)
//! covers the moment between reading the state and following the log; a
//! presence applied twice changes nothing.
//!
//! When Redis is unreachable the broker says so and the change is applied on
//! this node only: its browsers keep a live world, and the broker sends the
//! change to the other nodes once Redis is back. See `docs/cluster.md`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use broker::{Broker, BrokerError, ClusterConfig, Event, Sent, StateWrite};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::warn;

use crate::protocol::{ChatMessage, PresenceUpdate};

/// The shared map with each Discord server's OAuth2 client id, for hubs.
const CLIENT_IDS: &str = "client-ids";

/// One change, as it travels through the cluster's log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub(crate) enum Change {
    Presence {
        server: String,
        update: PresenceUpdate,
    },
    Message {
        server: String,
        message: ChatMessage,
    },
    ClientId {
        server: String,
        client_id: String,
    },
    /// A store's change, in the store's own encoding.
    Store {
        change: serde_json::Value,
    },
}

/// Where a store's changes from the log are applied.
type StoreSink = Box<dyn Fn(serde_json::Value) + Send + Sync>;

/// The hub's link to the cluster.
#[derive(Clone)]
pub(crate) struct Cluster {
    broker: Broker,
    store: Arc<OnceLock<StoreSink>>,
    /// False while a store that follows the cluster has not read its state yet.
    caught_up: Arc<AtomicBool>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.broker.config().name())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Joins the cluster; `apply` gets every hub change from the log, in order.
    pub(crate) fn join(config: ClusterConfig, apply: impl Fn(Change) + Send + 'static) -> Self {
        let (broker, deliveries) = Broker::start(config);
        let store: Arc<OnceLock<StoreSink>> = Arc::default();
        tokio::spawn(follow(deliveries, apply, Arc::clone(&store)));
        Self {
            broker,
            store,
            caught_up: Arc::new(AtomicBool::new(true)),
        }
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Whether this node shows the cluster's world: Redis was reached, and a
    /// store that follows the cluster has read its state.
    pub(crate) fn ready(&self) -> bool {
        self.broker.stats().ready && self.caught_up.load(Ordering::Relaxed)
    }

    /// Whether a store keeps the world here, so hubs need no state of their own.
    pub(crate) fn follows_store(&self) -> bool {
        self.store.get().is_some()
    }

    /// Sends a store's changes from the log to `sink`; readiness waits for
    /// [`Cluster::store_caught_up`]. The first store wins.
    pub(crate) fn follow_store(&self, sink: StoreSink) -> bool {
        let first = self.store.set(sink).is_ok();
        if first {
            self.caught_up.store(false, Ordering::Relaxed);
        }
        first
    }

    /// The store has read the cluster's state.
    pub(crate) fn store_caught_up(&self) {
        self.caught_up.store(true, Ordering::Relaxed);
    }

    /// Sends a store's change to every node; `false`: apply it here.
    pub(crate) fn store_change(&self, change: serde_json::Value, state: Vec<StateWrite>) -> bool {
        let mut event = Event::new(encode(&Change::Store { change }));
        event.state = state;
        self.broker.publish(event) == Sent::Queued
    }

    /// Sends a presence to every node, with the roster state it leaves behind.
    /// `false`: Redis is unreachable, apply it here.
    pub(crate) fn presence(&self, server: &str, update: &PresenceUpdate) -> bool {
        let state = StateWrite::merge(roster_map(server), &update.uid, remembered(update));
        let change = Change::Presence {
            server: server.to_owned(),
            update: update.clone(),
        };
        let event = Event::new(encode(&change)).with(state);
        self.broker.publish(event) == Sent::Queued
    }

    /// Sends a chat line to every node; `false`: apply it here.
    pub(crate) fn message(&self, server: &str, message: &ChatMessage) -> bool {
        let change = Change::Message {
            server: server.to_owned(),
            message: message.clone(),
        };
        self.broker.publish(Event::new(encode(&change))) == Sent::Queued
    }

    /// Sends a client id to every node, and keeps it; `false`: apply it here.
    pub(crate) fn client_id(&self, server: &str, client_id: &str) -> bool {
        let change = Change::ClientId {
            server: server.to_owned(),
            client_id: client_id.to_owned(),
        };
        let state = StateWrite::put(CLIENT_IDS, server, client_id);
        self.broker.publish(Event::new(encode(&change)).with(state)) == Sent::Queued
    }

    /// The latest presences the hubs' broadcasts left for `server`.
    pub(crate) async fn roster_state(
        &self,
        server: &str,
    ) -> Result<Vec<PresenceUpdate>, BrokerError> {
        self.presences(&roster_map(server)).await
    }

    /// The presences kept in the map `map`, each as the update that recreates it.
    pub(crate) async fn presences(&self, map: &str) -> Result<Vec<PresenceUpdate>, BrokerError> {
        let fields = self.broker.read_map(map).await?;
        Ok(fields
            .into_iter()
            .filter_map(
                |(uid, state)| match serde_json::from_str::<PresenceUpdate>(&state) {
                    Ok(update) if update.uid == uid => Some(update),
                    _ => {
                        warn!(
                            map,
                            uid, "cluster: ignoring an unreadable roster entry in Redis"
                        );
                        None
                    }
                },
            )
            .collect())
    }

    /// The client id the hubs' broadcasts left for `server`.
    pub(crate) async fn client_id_state(
        &self,
        server: &str,
    ) -> Result<Option<String>, BrokerError> {
        self.broker.read_field(CLIENT_IDS, server).await
    }
}

fn encode(change: &Change) -> Vec<u8> {
    serde_json::to_vec(change).expect("changes always serialize")
}

fn roster_map(server: &str) -> String {
    format!("roster:{server}")
}

/// What a roster hash keeps of a presence, as a JSON object merged over the
/// last one: the new status always, a name or colour when given, and
/// `delete` whenever it decides whether the user is there (a removal, or an
/// update with a name, which brings a user back). A nameless update after a
/// removal leaves the removal standing, as on a client.
pub(crate) fn remembered(update: &PresenceUpdate) -> String {
    let mut state = serde_json::json!({ "uid": update.uid, "status": update.status });
    if let Some(name) = &update.username {
        state["username"] = name.as_str().into();
    }
    if let Some(color) = &update.role_color {
        state["roleColor"] = color.as_str().into();
    }
    if update.delete || update.username.is_some() {
        state["delete"] = update.delete.into();
    }
    state.to_string()
}

/// Applies the log's events, in order, until the node stops.
async fn follow(
    mut deliveries: mpsc::Receiver<Bytes>,
    apply: impl Fn(Change),
    store: Arc<OnceLock<StoreSink>>,
) {
    while let Some(payload) = deliveries.recv().await {
        match serde_json::from_slice::<Change>(&payload) {
            Ok(Change::Store { change }) => match store.get() {
                Some(sink) => sink(change),
                None => warn!(
                    "cluster: a store's change arrived at a node without a store; is every node started with the same sources?"
                ),
            },
            Ok(change) => apply(change),
            Err(error) => warn!(%error, "cluster: ignoring an event this version cannot read"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    #[test]
    fn remembered_state_decides_presence_only_when_the_update_does() {
        let nameless = remembered(&PresenceUpdate::new("7", Status::Idle));
        assert_eq!(nameless, r#"{"status":"idle","uid":"7"}"#);
        let named = remembered(&PresenceUpdate::new("7", Status::Online).with_username("a"));
        assert!(named.contains(r#""delete":false"#), "{named}");
        let mut gone = PresenceUpdate::new("7", Status::Offline);
        gone.delete = true;
        assert!(remembered(&gone).contains(r#""delete":true"#));
        let back: PresenceUpdate = serde_json::from_str(&named).unwrap();
        assert_eq!(back.username.as_deref(), Some("a"));
    }
}

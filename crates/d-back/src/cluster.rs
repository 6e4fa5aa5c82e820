//! Cluster mode: several `d_back` nodes serving one world through Redis.
//!
//! Every change the hub is asked to broadcast, whatever its source (the
//! ingest API, the Discord source, the data file, a library caller, the
//! built-in world), is published to the cluster's log instead of being applied
//! at once; every node, the sender included, applies the log's events in its
//! order, so watchers on every node see the same changes in the same order.
//!
//! With each presence the log's script also merges the user's latest state
//! into a Redis hash per Discord server (`{cluster}:roster:<id>`), and a client
//! id into `{cluster}:client-ids`. A node that loads a server's roster from its
//! provider lays those over it, so a browser joining any node, or a node that
//! started late, sees the current statuses. The hub's fetch-again rule (a
//! change during a load repeats the load) covers the moment between reading
//! that state and following the log; a presence applied twice changes nothing.
//!
//! When Redis is unreachable the broker says so and the change is applied on
//! this node only: its browsers keep a live world, the other nodes catch up
//! on what follows once Redis is back. See `docs/cluster.md`.

use broker::{Broker, ClusterConfig, Event, Sent, StateWrite};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::warn;

use crate::Hub;
use crate::protocol::{ChatMessage, PresenceUpdate, Roster};

/// The shared map with each Discord server's OAuth2 client id.
const CLIENT_IDS: &str = "client-ids";

/// One change, as it travels through the cluster's log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
enum Change {
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
}

/// The hub's link to the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    broker: Broker,
}

impl Cluster {
    /// Joins the cluster and starts applying its log to `hub`.
    pub(crate) fn join(config: ClusterConfig, hub: &Hub) -> Self {
        let (broker, deliveries) = Broker::start(config);
        tokio::spawn(apply(deliveries, hub.downgrade()));
        Self { broker }
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Sends a presence to every node, with the roster state it leaves behind.
    /// `false`: Redis is unreachable, apply it here.
    pub(crate) fn presence(&self, server: &str, update: &PresenceUpdate) -> bool {
        let state = StateWrite::merge(roster_map(server), &update.uid, remembered(update));
        let change = Change::Presence {
            server: server.to_owned(),
            update: update.clone(),
        };
        self.send(&change, Some(state))
    }

    /// Sends a chat line to every node; `false`: apply it here.
    pub(crate) fn message(&self, server: &str, message: &ChatMessage) -> bool {
        let change = Change::Message {
            server: server.to_owned(),
            message: message.clone(),
        };
        self.send(&change, None)
    }

    /// Sends a client id to every node, and keeps it; `false`: apply it here.
    pub(crate) fn client_id(&self, server: &str, client_id: &str) -> bool {
        let state = StateWrite::put(CLIENT_IDS, server, client_id);
        let change = Change::ClientId {
            server: server.to_owned(),
            client_id: client_id.to_owned(),
        };
        self.send(&change, Some(state))
    }

    fn send(&self, change: &Change, state: Option<StateWrite>) -> bool {
        let payload = serde_json::to_vec(change).expect("changes always serialize");
        let mut event = Event::new(payload);
        event.state.extend(state);
        self.broker.publish(event) == Sent::Queued
    }

    /// Lays the cluster's latest state of `server` over what the provider
    /// gave; if Redis does not answer, the provider's answer stands.
    pub(crate) async fn overlay(
        &self,
        server: &str,
        roster: &mut Roster,
        client_id: &mut Option<String>,
    ) {
        match self.broker.read_map(&roster_map(server)).await {
            Ok(fields) => {
                for (uid, state) in fields {
                    match serde_json::from_str::<PresenceUpdate>(&state) {
                        Ok(update) if update.uid == uid => {
                            crate::hub::apply_presence(roster, update)
                        }
                        _ => warn!(
                            server,
                            uid, "cluster: ignoring an unreadable roster entry in Redis"
                        ),
                    }
                }
            }
            Err(error) => {
                warn!(server, %error, "cluster: roster state unavailable; using the provider's")
            }
        }
        match self.broker.read_field(CLIENT_IDS, server).await {
            Ok(Some(id)) => *client_id = Some(id),
            Ok(None) => {}
            Err(error) => {
                warn!(server, %error, "cluster: client id unavailable; using the provider's")
            }
        }
    }
}

fn roster_map(server: &str) -> String {
    format!("roster:{server}")
}

/// What the roster hash keeps of a presence, as a JSON object merged over the
/// last one: the new status always, a name or colour when given, and
/// `delete` whenever it decides whether the user is there (a removal, or an
/// update with a name, which brings a user back). A nameless update after a
/// removal leaves the removal standing, as on a client.
fn remembered(update: &PresenceUpdate) -> String {
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

/// Applies the log's events to the hub, in order, until the hub is gone.
async fn apply(mut deliveries: mpsc::Receiver<Bytes>, hub: crate::hub::WeakHub) {
    while let Some(payload) = deliveries.recv().await {
        let Some(hub) = hub.upgrade() else { return };
        match serde_json::from_slice::<Change>(&payload) {
            Ok(Change::Presence { server, update }) => {
                hub.deliver_presence(&server, update);
            }
            Ok(Change::Message { server, message }) => {
                hub.deliver_message(&server, message);
            }
            Ok(Change::ClientId { server, client_id }) => {
                hub.deliver_client_id(&server, &client_id);
            }
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

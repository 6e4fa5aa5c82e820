//! The store in cluster mode: its changes as they travel through the
//! cluster's log, and the copy of the whole store kept in Redis.
//!
//! Two kinds of change, because of what callers need back at once:
//!
//! - **The server list** (replace, add, remove, settings) is applied here at
//!   once *and* sent: a caller that lists a server and then posts its users
//!   must find it listed. Every node, this one again, applies it from the log;
//!   applying one twice changes nothing.
//! - **Everything else** (rosters, presences, client ids) is only sent, and
//!   applied by every node as it comes back from the log, so that two nodes
//!   changing one user end in the same state everywhere.
//!
//! When Redis is unreachable a change is applied here only, and the broker
//! sends it to the other nodes once Redis is back.
//!
//! Redis holds, under the cluster's prefix: `store:servers` (snowflake → the
//! entry with its password, settings and place in the list),
//! `store:roster:<snowflake>` (uid → the user's latest presence) and
//! `store:client-ids` (snowflake, or `*` for the default → id). A node that
//! joins reads them before it reports ready; the first node of a cluster
//! (Redis holds no servers) puts its own store there instead, if it has
//! servers, and so does any such node that finds them gone after Redis came
//! back empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use broker::{BrokerError, StateWrite};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Inner, ServerSettings, State, Store, apply, ensure_default, full_presence};
use crate::cluster::{Cluster, remembered};
use crate::protocol::{PresenceUpdate, Roster, ServerInfo, ServerList, Snowflake, User};

const SERVERS: &str = "store:servers";
const CLIENT_IDS: &str = "store:client-ids";
/// The field of [`CLIENT_IDS`] for servers without their own.
const DEFAULT_CLIENT_ID: &str = "*";

/// How often a node checks whether Redis came back empty and needs the store again.
const RESEED_CHECK: Duration = Duration::from_secs(2);

fn roster_map(server: &str) -> String {
    format!("store:roster:{server}")
}

/// One change to the store, as every node applies it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub(super) enum Change {
    ReplaceServers {
        servers: Vec<(Snowflake, Listed)>,
    },
    UpsertServer {
        snowflake: Snowflake,
        info: Listed,
    },
    RemoveServer {
        snowflake: Snowflake,
    },
    SetSettings {
        snowflake: Snowflake,
        settings: ServerSettings,
    },
    ReplaceUsers {
        server: Snowflake,
        users: Vec<User>,
    },
    Presence {
        server: Snowflake,
        update: PresenceUpdate,
    },
    ClientId {
        server: Option<Snowflake>,
        client_id: String,
    },
}

/// A listed server as the cluster keeps it: unlike [`ServerInfo`] on the
/// wire, with its password (so every node can check it) and settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Listed {
    id: String,
    name: String,
    #[serde(default)]
    default: bool,
    #[serde(default)]
    passworded: bool,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    settings: ServerSettings,
}

impl Listed {
    pub(super) fn new(info: &ServerInfo, settings: ServerSettings) -> Self {
        Self {
            id: info.id.clone(),
            name: info.name.clone(),
            default: info.default,
            passworded: info.passworded,
            password: info.password.clone(),
            settings,
        }
    }

    fn info(&self) -> ServerInfo {
        ServerInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            default: self.default,
            passworded: self.passworded,
            password: self.password.clone(),
        }
    }
}

/// The server list with its settings, in order, as the cluster keeps it.
pub(super) fn listed(
    servers: &ServerList,
    settings: &HashMap<Snowflake, ServerSettings>,
) -> Vec<(Snowflake, Listed)> {
    servers
        .iter()
        .map(|(snowflake, info)| {
            let own = settings.get(snowflake).copied().unwrap_or_default();
            (snowflake.clone(), Listed::new(info, own))
        })
        .collect()
}

/// A store's link to the cluster.
pub(super) struct Replica {
    cluster: Cluster,
    /// Changes from the log held back while the store reads the cluster's
    /// copy, applied on top of it once it is in.
    held: Mutex<Option<Vec<Change>>>,
}

impl Replica {
    fn held(&self) -> std::sync::MutexGuard<'_, Option<Vec<Change>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes `store` follow `cluster`: its changes go through the log from now
/// on, and it reads the cluster's copy (retrying until Redis answers).
pub(super) fn follow(store: &Store, cluster: Cluster) {
    let replica = Replica {
        cluster: cluster.clone(),
        held: Mutex::new(Some(Vec::new())),
    };
    if store.inner.replica.set(replica).is_err() {
        return;
    }
    let weak: Weak<Inner> = Arc::downgrade(&store.inner);
    let sink = {
        let weak = weak.clone();
        Box::new(move |change: serde_json::Value| {
            let Some(inner) = weak.upgrade() else { return };
            let store = Store { inner };
            match serde_json::from_value::<Change>(change) {
                Ok(change) => store.arrived(change),
                Err(error) => {
                    warn!(%error, "cluster: ignoring a store change this version cannot read")
                }
            }
        })
    };
    if !cluster.follow_store(sink) {
        warn!("cluster: another store already follows this node's cluster; this one stays local");
        return;
    }
    tokio::spawn(keep_in_step(weak, cluster));
}

/// Reads the cluster's copy until it succeeds, then puts the store back in
/// Redis whenever Redis comes back empty.
async fn keep_in_step(store: Weak<Inner>, cluster: Cluster) {
    let mut wait = Duration::from_millis(100);
    loop {
        let Some(inner) = store.upgrade() else { return };
        match (Store { inner }).catch_up().await {
            Ok(()) => break,
            Err(error) => {
                // Joining takes a moment; a wait that grows is worth a warning.
                if wait >= Duration::from_secs(1) {
                    warn!(%error, "cluster: cannot read the cluster's store yet; trying again");
                } else {
                    tracing::debug!(%error, "cluster: store not read yet");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
    cluster.store_caught_up();
    let mut reconnects = cluster.broker().stats().reconnects;
    loop {
        tokio::time::sleep(RESEED_CHECK).await;
        let Some(inner) = store.upgrade() else { return };
        let now = cluster.broker().stats().reconnects;
        if now == reconnects {
            continue;
        }
        match cluster.broker().read_map(SERVERS).await {
            Ok(servers) if servers.is_empty() && inner_has_servers(&inner) => {
                info!("cluster: Redis came back without the store; putting this node's there");
                Store { inner }.seed();
                reconnects = now;
            }
            Ok(_) => reconnects = now,
            Err(_) => {}
        }
    }
}

impl Store {
    /// Sends a change to every node with what it leaves in Redis; `false`
    /// without a cluster, or when Redis is unreachable.
    fn send(&self, change: &Change) -> bool {
        let Some(replica) = self.inner.replica.get() else {
            return false;
        };
        let state = state_writes(change, &self.read());
        let encoded = serde_json::to_value(change).expect("store changes always serialize");
        replica.cluster.store_change(encoded, state)
    }

    /// Sends a change that was applied here already (a server-list change,
    /// or the whole store when seeding the cluster).
    pub(super) fn publish(&self, change: Change) {
        self.send(&change);
    }

    /// Sends a change to every node, or applies it here when there is no
    /// cluster or Redis is unreachable; `Some(reached)` when applied here.
    pub(super) fn submit(&self, change: Change) -> Option<usize> {
        if self.send(&change) {
            return None;
        }
        Some(self.apply(change))
    }

    /// A change from the log: held while catching up, applied otherwise.
    fn arrived(&self, change: Change) {
        if let Some(replica) = self.inner.replica.get()
            && let Some(held) = replica.held().as_mut()
        {
            held.push(change);
            return;
        }
        self.apply(change);
    }

    /// Applies a change here; returns how many watchers it reached.
    fn apply(&self, change: Change) -> usize {
        match change {
            Change::ReplaceServers { servers } => {
                let settings = servers
                    .iter()
                    .map(|(k, l)| (k.clone(), l.settings))
                    .collect();
                let list = servers.into_iter().map(|(k, l)| (k, l.info())).collect();
                self.set_servers(list, settings);
                0
            }
            Change::UpsertServer { snowflake, info } => {
                self.add_server(&snowflake, info.info());
                0
            }
            Change::RemoveServer { snowflake } => {
                self.drop_server(&snowflake);
                0
            }
            Change::SetSettings {
                snowflake,
                settings,
            } => {
                self.write().settings.insert(snowflake, settings);
                0
            }
            Change::ReplaceUsers { server, users } => {
                let _ = self.set_users(&server, users);
                0
            }
            Change::Presence { server, update } => {
                self.record_presence(&server, update).unwrap_or(0)
            }
            Change::ClientId { server, client_id } => {
                let _ = self.record_client_id(server.as_deref(), client_id);
                0
            }
        }
    }

    /// Replaces this store with the cluster's copy (or, if the cluster has
    /// none, gives it this one), then applies the changes held meanwhile.
    async fn catch_up(&self) -> Result<(), BrokerError> {
        let replica = self
            .inner
            .replica
            .get()
            .expect("only a following store catches up");
        let broker = replica.cluster.broker();
        if !broker.stats().connected {
            // A seed sent now would stay on this node.
            return Err(BrokerError::Redis("not connected yet".to_owned()));
        }
        let entries = broker.read_map(SERVERS).await?;
        if entries.is_empty() {
            if self.server_count() > 0 {
                info!("cluster: the cluster has no store yet; putting this node's there");
                self.seed();
                // Ready means another node that starts now finds it there.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while broker.read_map(SERVERS).await?.is_empty() {
                    if tokio::time::Instant::now() > deadline {
                        return Err(BrokerError::Redis(
                            "the store did not reach Redis".to_owned(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        } else {
            let mut listed: Vec<(usize, Snowflake, Listed)> = entries
                .into_iter()
                .filter_map(|(snowflake, value)| {
                    let entry: serde_json::Value = serde_json::from_str(&value).ok()?;
                    let order = entry.get("order")?.as_u64()? as usize;
                    let listed = serde_json::from_value::<Listed>(entry).ok()?;
                    Some((order, snowflake, listed))
                })
                .collect();
            listed.sort_by_key(|(order, ..)| *order);
            let mut state = State::default();
            for (_, snowflake, entry) in listed {
                state.settings.insert(snowflake.clone(), entry.settings);
                state.servers.insert(snowflake, entry.info());
            }
            ensure_default(&mut state.servers);
            for snowflake in state.servers.keys() {
                let mut roster = Roster::new();
                for update in replica.cluster.presences(&roster_map(snowflake)).await? {
                    apply(&mut roster, update, false);
                }
                state.rosters.insert(snowflake.clone(), roster);
            }
            for (server, id) in broker.read_map(CLIENT_IDS).await? {
                if server == DEFAULT_CLIENT_ID {
                    state.client_id = Some(id);
                } else if state.servers.contains_key(&server) {
                    state.server_client_ids.insert(server, id);
                }
            }
            info!(
                servers = state.servers.len(),
                "cluster: read the cluster's store"
            );
            *self.write() = state;
        }
        let held = replica.held().take().unwrap_or_default();
        for change in held {
            self.apply(change);
        }
        Ok(())
    }

    /// Puts this store in Redis: the server list, every roster and the client ids.
    fn seed(&self) {
        let (servers, settings, rosters, client_id, own_ids) = {
            let state = self.read();
            (
                state.servers.clone(),
                state.settings.clone(),
                state.rosters.clone(),
                state.client_id.clone(),
                state.server_client_ids.clone(),
            )
        };
        self.publish(Change::ReplaceServers {
            servers: listed(&servers, &settings),
        });
        for (server, roster) in rosters {
            self.publish(Change::ReplaceUsers {
                server,
                users: roster.into_values().collect(),
            });
        }
        let ids = client_id
            .map(|id| (None, id))
            .into_iter()
            .chain(own_ids.into_iter().map(|(s, id)| (Some(s), id)));
        for (server, client_id) in ids {
            self.publish(Change::ClientId { server, client_id });
        }
    }
}

fn inner_has_servers(inner: &Arc<Inner>) -> bool {
    Store {
        inner: Arc::clone(inner),
    }
    .server_count()
        > 0
}

/// What a change leaves in the cluster's copy of the store.
fn state_writes(change: &Change, state: &State) -> Vec<StateWrite> {
    let entry = |listed: &Listed, order: usize| {
        let mut value = serde_json::to_value(listed).expect("serializes");
        value["order"] = order.into();
        value.to_string()
    };
    match change {
        Change::ReplaceServers { servers } => std::iter::once(StateWrite::clear(SERVERS))
            .chain(
                servers
                    .iter()
                    .enumerate()
                    .map(|(order, (snowflake, listed))| {
                        StateWrite::put(SERVERS, snowflake, entry(listed, order))
                    }),
            )
            .collect(),
        Change::UpsertServer { snowflake, info } => {
            let order = state
                .servers
                .get_index_of(snowflake)
                .unwrap_or(state.servers.len());
            vec![StateWrite::add(SERVERS, snowflake, entry(info, order))]
        }
        Change::RemoveServer { snowflake } => vec![
            StateWrite::remove(SERVERS, snowflake),
            StateWrite::clear(roster_map(snowflake)),
        ],
        Change::SetSettings {
            snowflake,
            settings,
        } => {
            let value = serde_json::json!({ "settings": settings }).to_string();
            vec![StateWrite::merge(SERVERS, snowflake, value)]
        }
        Change::ReplaceUsers { server, users } => {
            std::iter::once(StateWrite::clear(roster_map(server)))
                .chain(users.iter().map(|user| {
                    StateWrite::put(
                        roster_map(server),
                        &user.uid,
                        remembered(&full_presence(user)),
                    )
                }))
                .collect()
        }
        Change::Presence { server, update } => {
            vec![StateWrite::merge(
                roster_map(server),
                &update.uid,
                remembered(update),
            )]
        }
        Change::ClientId { server, client_id } => {
            let field = server.as_deref().unwrap_or(DEFAULT_CLIENT_ID);
            vec![StateWrite::put(CLIENT_IDS, field, client_id)]
        }
    }
}

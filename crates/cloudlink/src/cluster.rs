//! Cluster mode for Scratch cloud variables: several `cloudlink` nodes serve
//! the same projects through Redis, so a project's members may be spread
//! over any of them.
//!
//! Through the same seam as `d_back`'s cluster (the `broker` crate): a
//! `set`, `create`, `rename` or `delete` is not applied where it arrives but
//! appended to the cluster's log, and every node, the receiving one included,
//! applies the log's changes to the projects it holds in memory, in the log's
//! order, so every member on every node sees the same changes in the same
//! order. With each change the same atomic step writes the project's
//! variables to a Redis hash (`{NAME}:scratch:<project>`, variable → JSON
//! value): Redis is the cluster's store, read when a node first holds a
//! project (instead of the node's own `--store`). Changes that arrive while a
//! project is being read are held and applied after it.
//!
//! When Redis is unreachable, a change is applied on its node only (its
//! members keep playing), sent to the others once Redis is back, and a
//! project no node holds cannot be opened (1011, as when a store cannot be
//! read). CL4 rooms are not shared yet: each node's CL4 clients see only
//! that node's.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};

use broker::{Broker, BrokerError, ClusterConfig, Event, Sent, StateWrite};
use bytes::Bytes;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::warn;

use crate::handle::{CloudLink, Shared};
use crate::scratch::{self, Change};

/// A change to a project, owned, as the log carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProjectChange {
    pub project: String,
    pub user: String,
    pub method: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
}

impl ProjectChange {
    pub(crate) fn new(project: &str, change: &Change<'_>) -> Self {
        Self {
            project: project.to_owned(),
            user: change.user.to_owned(),
            method: change.method.to_owned(),
            name: change.name.to_owned(),
            value: change.value.cloned(),
            new_name: change.new_name.map(str::to_owned),
        }
    }

    fn as_change(&self) -> Change<'_> {
        Change {
            user: &self.user,
            method: &self.method,
            name: &self.name,
            value: self.value.as_ref(),
            new_name: self.new_name.as_deref(),
        }
    }
}

/// The method of a change that deletes a whole project (the admin API's).
const DELETE_PROJECT: &str = "delete-project";

/// The shared map of one project's variables.
fn project_map(project: &str) -> String {
    format!("scratch:{project}")
}

/// A node's link to the cluster.
pub(crate) struct Cluster {
    broker: Broker,
    /// Projects being read from Redis, with the changes that arrived meanwhile.
    loading: Mutex<HashMap<String, Vec<ProjectChange>>>,
}

impl Cluster {
    /// Joins the cluster; the receiver gets every change of the log, in order.
    pub(crate) fn join(config: ClusterConfig) -> (Self, mpsc::Receiver<Bytes>) {
        let (broker, deliveries) = Broker::start(config);
        let cluster = Self {
            broker,
            loading: Mutex::default(),
        };
        (cluster, deliveries)
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.broker
    }

    fn loading(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<ProjectChange>>> {
        self.loading.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a change to every node with what it leaves in the project's
    /// variables (`current`: the value a rename carries); `false` when Redis
    /// is unreachable and the caller applies it here.
    pub(crate) fn publish(&self, change: &ProjectChange, current: Option<&Value>) -> bool {
        let map = project_map(&change.project);
        let json = |value: &Value| serde_json::to_string(value).expect("JSON values serialize");
        let state = match (change.method.as_str(), &change.value, &change.new_name) {
            ("set" | "create", Some(value), _) => {
                vec![StateWrite::put(&map, &change.name, json(value))]
            }
            ("rename", _, Some(new_name)) => {
                let value = current
                    .cloned()
                    .unwrap_or_else(|| Value::String(String::new()));
                vec![
                    StateWrite::remove(&map, &change.name),
                    StateWrite::put(&map, new_name, json(&value)),
                ]
            }
            ("delete", _, _) => vec![StateWrite::remove(&map, &change.name)],
            _ => Vec::new(),
        };
        let payload = serde_json::to_vec(change).expect("changes serialize");
        let mut event = Event::new(payload);
        event.state = state;
        self.broker.publish(event) == Sent::Queued
    }

    /// Sends the deletion of a whole project to every node (each empties it
    /// and closes its members with 4004) and clears it in Redis; `false`
    /// when Redis is unreachable and the caller deletes it here.
    pub(crate) fn publish_deletion(&self, project: &str) -> bool {
        let change = ProjectChange {
            project: project.to_owned(),
            user: String::new(),
            method: DELETE_PROJECT.to_owned(),
            name: String::new(),
            value: None,
            new_name: None,
        };
        let payload = serde_json::to_vec(&change).expect("changes serialize");
        let event = Event::new(payload).with(StateWrite::clear(project_map(project)));
        self.broker.publish(event) == Sent::Queued
    }

    /// Reads a project's variables from Redis; changes to it that arrive
    /// from now until [`Cluster::loaded`] are held for it.
    pub(crate) async fn read_project(
        &self,
        project: &str,
    ) -> Result<IndexMap<String, Value>, BrokerError> {
        self.loading().entry(project.to_owned()).or_default();
        let read = self.read_variables(project).await;
        if read.is_err() {
            self.loading().remove(project);
        }
        read
    }

    /// A project's variables as Redis holds them.
    pub(crate) async fn read_variables(
        &self,
        project: &str,
    ) -> Result<IndexMap<String, Value>, BrokerError> {
        let fields = self.broker.read_map(&project_map(project)).await?;
        Ok(fields
            .into_iter()
            .filter_map(|(name, value)| Some((name, serde_json::from_str(&value).ok()?)))
            .collect())
    }

    /// Ends a read: the changes held meanwhile, to apply on top of it.
    pub(crate) fn loaded(&self, project: &str) -> Vec<ProjectChange> {
        self.loading().remove(project).unwrap_or_default()
    }

    /// Holds `change` if its project is being read; gives it back otherwise.
    fn hold(&self, change: ProjectChange) -> Option<ProjectChange> {
        match self.loading().get_mut(&change.project) {
            Some(held) => {
                held.push(change);
                None
            }
            None => Some(change),
        }
    }
}

/// Applies changes held while `project` was read, on top of what was read:
/// the read may already hold some of them, so a rename whose old name is gone
/// and whose new name is there is not made again.
pub(crate) fn apply_held(
    server: &CloudLink,
    state: &mut crate::registry::State,
    held: Vec<ProjectChange>,
) {
    for change in held {
        if change.method == "rename"
            && let Some(room) = state.room(&change.project)
            && !room.variables.contains_key(&change.name)
            && change
                .new_name
                .as_ref()
                .is_some_and(|new| room.variables.contains_key(new))
        {
            continue;
        }
        apply_change(server, state, &change);
    }
}

/// Applies one change from the log to this node's copy of its project, if
/// it holds the project.
fn apply_change(server: &CloudLink, state: &mut crate::registry::State, change: &ProjectChange) {
    if change.method == DELETE_PROJECT {
        scratch::delete_project(server, state, &change.project);
    } else if state.room(&change.project).is_some() {
        scratch::apply(server, state, &change.project, &change.as_change());
    }
}

/// Applies the log's changes to the projects this node holds, until it stops.
pub(crate) async fn follow(mut deliveries: mpsc::Receiver<Bytes>, server: Weak<Shared>) {
    while let Some(payload) = deliveries.recv().await {
        let Some(shared) = server.upgrade() else {
            return;
        };
        let server = CloudLink(shared);
        let change = match serde_json::from_slice::<ProjectChange>(&payload) {
            Ok(change) => change,
            Err(error) => {
                warn!(%error, "cluster: ignoring a change this version cannot read");
                continue;
            }
        };
        let Some(cluster) = server.cluster() else {
            return;
        };
        // The registry first, then the loading map, as `handshake` takes them.
        let mut state = server.registry().lock();
        let Some(change) = cluster.hold(change) else {
            continue;
        };
        apply_change(&server, &mut state, &change);
    }
}

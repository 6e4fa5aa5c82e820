//! The Discord source in cluster mode: one bot connection for the whole
//! cluster, on whichever node holds the cluster's Discord lease.
//!
//! Every node started with a bot token runs a [`DiscordLeader`]. One of them
//! takes the lease and connects the bot; its store's changes reach every
//! node through the cluster. It extends the lease every [`RENEW`]; the others
//! ask for it every [`ASK`]. When the holder stops it gives the lease up, so
//! another node connects within a second; when it dies, the lease expires
//! after [`TTL`] and another node connects within `TTL + ASK` (11 s), which
//! is inside the 15 s a d-zone audience should wait at most. The new holder
//! starts a new Discord session (the old one's resume data died with its
//! node); Discord sends it every guild afresh, and the world goes on.
//!
//! While Redis cannot be reached the holder keeps its connection (its own
//! browsers keep a live world) and the others keep waiting; should another
//! node hold the lease once Redis answers again, this one disconnects.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{DiscordConfig, DiscordError, DiscordSource};
use crate::Hub;
use crate::provider::Store;

/// The lease's name in the cluster.
const LEASE: &str = "discord";
/// How long the lease lasts without being extended.
pub const TTL: Duration = Duration::from_secs(10);
/// How often the holder extends it.
const RENEW: Duration = Duration::from_secs(3);
/// How often a node without it asks for it.
const ASK: Duration = Duration::from_secs(1);

/// A bot connection that runs on one node of the cluster at a time.
#[derive(Debug)]
pub struct DiscordLeader {
    stop: CancellationToken,
    task: JoinHandle<()>,
    failed: watch::Receiver<Option<DiscordError>>,
}

impl DiscordLeader {
    /// Competes for the cluster's Discord lease and, while it holds it, keeps
    /// `store` current from Discord. Without a cluster (`hub` not a cluster
    /// node) it connects at once, like [`DiscordSource::start`] in the background.
    pub fn start(config: DiscordConfig, store: Store, hub: &Hub) -> Self {
        let stop = CancellationToken::new();
        let (failed, failed_rx) = watch::channel(None);
        let node = node_name();
        let broker = hub.cluster().map(|c| c.broker().clone());
        let task = tokio::spawn(lead(config, store, broker, node, stop.clone(), failed));
        Self {
            stop,
            task,
            failed: failed_rx,
        }
    }

    /// Resolves with Discord's reason if it refuses the bot for good (as
    /// [`DiscordSource::failed`]), or with `None` once stopped.
    pub fn failed(&self) -> impl Future<Output = Option<DiscordError>> + Send + 'static {
        super::first_refusal(self.failed.clone())
    }

    /// Disconnects the bot if this node has it, and gives the lease up.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// This node's name in the lease: host, process and a random part, so two
/// processes never take each other for the holder.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "node".to_owned());
    format!(
        "{host}/{}/{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

async fn lead(
    config: DiscordConfig,
    store: Store,
    broker: Option<broker::Broker>,
    node: String,
    stop: CancellationToken,
    failed: watch::Sender<Option<DiscordError>>,
) {
    let mut source: Option<DiscordSource> = None;
    loop {
        let holds = match &broker {
            None => true,
            Some(broker) => match broker.hold_lease(LEASE, &node, TTL).await {
                Ok(holds) => holds,
                // Redis is unreachable: nobody else can take the lease either.
                Err(_) => source.is_some(),
            },
        };
        if holds && source.is_none() {
            info!(
                node,
                "this node holds the cluster's Discord lease; connecting the bot"
            );
            match start_extending(&config, &store, broker.as_ref(), &node, &stop).await {
                Some(Ok(started)) => source = Some(started),
                Some(Err(error)) if gives_up(&error) => {
                    release(broker.as_ref(), &node).await;
                    let _ = failed.send(Some(error));
                    return;
                }
                Some(Err(error)) => {
                    warn!(%error, "the bot could not connect; another node may try");
                    release(broker.as_ref(), &node).await;
                }
                None => break,
            }
        } else if !holds && let Some(running) = source.take() {
            warn!("another node holds the cluster's Discord lease now; disconnecting the bot here");
            running.stop().await;
        }
        let wait = if source.is_some() { RENEW } else { ASK };
        let refused = async {
            match &source {
                Some(running) => running.failed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
            refusal = refused => {
                if let Some(error) = refusal {
                    release(broker.as_ref(), &node).await;
                    let _ = failed.send(Some(error));
                    return;
                }
            }
        }
    }
    if let Some(running) = source {
        running.stop().await;
    }
    release(broker.as_ref(), &node).await;
}

/// Starts the bot while extending the lease (the start may take longer than
/// the lease lasts); `None` if stopped meanwhile.
async fn start_extending(
    config: &DiscordConfig,
    store: &Store,
    broker: Option<&broker::Broker>,
    node: &str,
    stop: &CancellationToken,
) -> Option<Result<DiscordSource, DiscordError>> {
    let start = DiscordSource::start(config.clone(), store.clone());
    tokio::pin!(start);
    loop {
        tokio::select! {
            started = &mut start => return Some(started),
            () = stop.cancelled() => return None,
            () = tokio::time::sleep(RENEW) => {
                if let Some(broker) = broker {
                    let _ = broker.hold_lease(LEASE, node, TTL).await;
                }
            }
        }
    }
}

/// Refusals no other node could get past, as opposed to a network trouble.
fn gives_up(error: &DiscordError) -> bool {
    !matches!(
        error,
        DiscordError::Unreachable { .. } | DiscordError::NoReady(_)
    )
}

async fn release(broker: Option<&broker::Broker>, node: &str) {
    if let Some(broker) = broker
        && let Err(error) = broker.release_lease(LEASE, node).await
    {
        warn!(%error, "could not give the Discord lease up; it expires by itself");
    }
}

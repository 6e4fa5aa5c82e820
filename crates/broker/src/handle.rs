//! The handle a hub holds: publish, read the shared state, report health.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::shared::{Shared, connection_config};
use crate::{ClusterConfig, Event, publisher, reader};

/// Events waiting to be sent to Redis, at most; past this a publish is
/// applied locally, as when Redis is down, rather than queued without bound.
const QUEUE: usize = 65_536;

/// Events read from the log and not yet applied by the hub, at most; the
/// reader waits for the hub rather than buffering more.
const DELIVERIES: usize = 4_096;

/// How long a read of the shared state may take before the caller goes on without it.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Something the cluster could not do; the message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The Redis URL is not one a Redis client accepts.
    #[error(
        "the Redis URL {url} is not valid ({reason}); expected redis://host:port/db, rediss://host:port/db or redis+sentinel://host:26379/service"
    )]
    Url {
        /// The URL, without a password.
        url: String,
        /// What the client said.
        reason: String,
    },
    /// The cluster name cannot be part of a key.
    #[error("the cluster name {0:?} must be non-empty and free of braces")]
    Name(String),
    /// Redis did not answer, or answered with an error.
    #[error("Redis: {0}")]
    Redis(String),
}

/// Whether [`Broker::publish`] took the event.
///
/// An event applied locally is kept (the last 10,000) and sent to the other
/// nodes once Redis is back, marked as this node's, so that they catch up on
/// what happened here meanwhile and this node does not apply it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// It is on its way to the log; it comes back through the deliveries.
    Queued,
    /// Redis is unreachable (or far behind): the caller applies it locally,
    /// and the other nodes do not see it.
    Offline,
}

/// The cluster link's health and totals, for `/metrics` and `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Both connections to Redis work.
    pub connected: bool,
    /// The log has been reached once, so the node follows the cluster.
    pub ready: bool,
    /// Events appended to the log by this node.
    pub published: u64,
    /// Events read from the log (this node's and the others').
    pub received: u64,
    /// Changes applied on this node only because Redis was unreachable.
    pub applied_locally: u64,
    /// Changes applied locally while Redis was away and sent to the other
    /// nodes once it was back.
    pub replayed: u64,
    /// Changes applied locally that were too many to keep for replay.
    pub not_replayed: u64,
    /// Times a lost connection to Redis was made again.
    pub reconnects: u64,
    /// The last error Redis gave, if any since the start.
    pub last_error: Option<String>,
}

/// A node's link to the cluster; cheap to clone. The tasks behind it stop
/// when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClusterConfig,
    shared: Arc<Shared>,
    queue: mpsc::Sender<Event>,
    /// A connection for reads of the shared state, made when first needed.
    reads: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    tasks: [AbortHandle; 2],
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Broker {
    /// Joins the cluster: starts following its log and publishing to it, and
    /// returns the handle with the receiver of every event, in log order.
    ///
    /// Never waits for Redis: until it answers, [`Broker::stats`] says not
    /// ready and [`Broker::publish`] says [`Sent::Offline`]. Must be called
    /// inside a tokio runtime.
    pub fn start(config: ClusterConfig) -> (Self, mpsc::Receiver<Bytes>) {
        let shared = Arc::new(Shared::new());
        let (queue, queued) = mpsc::channel(QUEUE);
        let (deliver, deliveries) = mpsc::channel(DELIVERIES);
        let publisher = tokio::spawn(publisher::run(
            config.clone(),
            Arc::clone(&shared),
            queued,
            deliver.clone(),
        ));
        let reader = tokio::spawn(reader::run(config.clone(), Arc::clone(&shared), deliver));
        let inner = Inner {
            config,
            shared,
            queue,
            reads: tokio::sync::Mutex::new(None),
            tasks: [publisher.abort_handle(), reader.abort_handle()],
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            deliveries,
        )
    }

    /// The cluster this node is in.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// Sends `event` to every node, this one included, through the log.
    /// Never waits. [`Sent::Offline`] means the caller must apply it locally.
    pub fn publish(&self, event: Event) -> Sent {
        let shared = &self.inner.shared;
        let up =
            shared.publisher_up.load(Ordering::Relaxed) && shared.reader_up.load(Ordering::Relaxed);
        let event = if up {
            match self.inner.queue.try_send(event) {
                Ok(()) => return Sent::Queued,
                Err(full_or_closed) => full_or_closed.into_inner(),
            }
        } else {
            event
        };
        shared.applied_here(event);
        Sent::Offline
    }

    /// Every field of the shared map `map`, or an error if Redis does not answer in time.
    pub async fn read_map(&self, map: &str) -> Result<Vec<(String, String)>, BrokerError> {
        let key = self.inner.config.map_key(map);
        self.query(redis::cmd("HGETALL").arg(key)).await
    }

    /// One field of the shared map `map`.
    pub async fn read_field(&self, map: &str, field: &str) -> Result<Option<String>, BrokerError> {
        let key = self.inner.config.map_key(map);
        self.query(redis::cmd("HGET").arg(key).arg(field)).await
    }

    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, BrokerError> {
        let mut slot = self.inner.reads.lock().await;
        let mut con = match slot.take() {
            Some(con) => con,
            None => self
                .inner
                .config
                .connect(&connection_config(Some(READ_TIMEOUT)))
                .await
                .map_err(|e| BrokerError::Redis(e.to_string()))?,
        };
        let answer = cmd
            .query_async(&mut con)
            .await
            .map_err(|e| BrokerError::Redis(e.to_string()))?;
        *slot = Some(con);
        Ok(answer)
    }

    /// Health and totals.
    pub fn stats(&self) -> BrokerStats {
        let shared = &self.inner.shared;
        BrokerStats {
            connected: shared.publisher_up.load(Ordering::Relaxed)
                && shared.reader_up.load(Ordering::Relaxed),
            ready: shared.ready.load(Ordering::Relaxed),
            published: shared.published.load(Ordering::Relaxed),
            received: shared.received.load(Ordering::Relaxed),
            applied_locally: shared.applied_locally.load(Ordering::Relaxed),
            replayed: shared.replayed.load(Ordering::Relaxed),
            not_replayed: shared.not_replayed.load(Ordering::Relaxed),
            reconnects: shared.reconnects.load(Ordering::Relaxed),
            last_error: shared
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

//! The handle a hub holds: publish, read the shared state, report health.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::{ClusterConfig, Event, publisher, reader};

/// Events waiting to be sent to Redis, at most; past this a publish is
/// applied locally, as when Redis is down, rather than queued without bound.
const QUEUE: usize = 65_536;

/// Events read from the log and not yet applied by the hub, at most; the
/// reader waits for the hub rather than buffering more.
const DELIVERIES: usize = 4_096;

/// How long a read of the shared state may take before the caller goes on without it.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis connection's settings: a quick verdict on a dead address, and on a
/// command that does not come back.
pub(crate) fn connection_config(response: Option<Duration>) -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(response)
}

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

/// State the tasks and the handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// This node's name in the log, to know its own replays.
    pub(crate) node: String,
    /// Changes applied here only, kept to be sent once Redis is back.
    kept: Mutex<VecDeque<Event>>,
    pub(crate) replayed: AtomicU64,
    not_replayed: AtomicU64,
    pub(crate) publisher_up: AtomicBool,
    pub(crate) reader_up: AtomicBool,
    pub(crate) ready: AtomicBool,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) applied_locally: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// The error last logged for each connection, so that a Redis that stays
    /// away is logged once per connection, not at every retry.
    logged: Mutex<std::collections::HashMap<&'static str, String>>,
}

/// Changes applied here only that are kept for replay, at most; an outage
/// longer than this loses the oldest for the other nodes (and counts them).
const KEPT: usize = 10_000;

impl Shared {
    fn new() -> Self {
        let node = RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()));
        Self {
            node: format!("{node:016x}"),
            kept: Mutex::default(),
            replayed: AtomicU64::new(0),
            not_replayed: AtomicU64::new(0),
            publisher_up: AtomicBool::new(false),
            reader_up: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            applied_locally: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            last_error: Mutex::default(),
            logged: Mutex::default(),
        }
    }

    /// Counts an event applied here only and keeps it for replay.
    pub(crate) fn applied_here(&self, event: Event) {
        self.applied_locally.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.push_back(event);
        if kept.len() > KEPT {
            kept.pop_front();
            self.not_replayed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The kept events, oldest first, to replay.
    pub(crate) fn take_kept(&self) -> Vec<Event> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect()
    }

    /// Puts events whose replay failed back in front of any kept since.
    pub(crate) fn keep_again(&self, events: Vec<Event>) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        for event in events.into_iter().rev() {
            kept.push_front(event);
        }
        while kept.len() > KEPT {
            kept.pop_front();
            self.not_replayed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records a failure of the connection `what`, logging it only when it is news.
    pub(crate) fn failed(&self, what: &'static str, error: impl std::fmt::Display) {
        let error = error.to_string();
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if logged.get(what) != Some(&error) {
            tracing::warn!(connection = what, %error, "cluster: Redis is unreachable; serving locally and trying again");
            logged.insert(what, error.clone());
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{what}: {error}"));
    }

    /// Marks the connection `what` as working again.
    pub(crate) fn up(&self, flag: &AtomicBool, what: &'static str) {
        let was_logged = self
            .logged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(what)
            .is_some();
        if !flag.swap(true, Ordering::Relaxed) && self.ready.load(Ordering::Relaxed) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
            tracing::info!(connection = what, "cluster: connected to Redis again");
        } else if was_logged {
            tracing::info!(connection = what, "cluster: connected to Redis");
        }
    }
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

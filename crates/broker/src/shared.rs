//! What the publishing and reading tasks and the handle share: the link's
//! health, its totals, and the changes kept for replay after an outage.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::Event;

/// A Redis connection's settings: a quick verdict on a dead address, and on a
/// command that does not come back.
pub(crate) fn connection_config(response: Option<Duration>) -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(response)
}

/// State the tasks and the handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// This node's name in the log, to know its own replays.
    pub(crate) node: String,
    /// Changes applied here only, kept to be sent once Redis is back.
    kept: Mutex<VecDeque<Event>>,
    pub(crate) replayed: AtomicU64,
    pub(crate) not_replayed: AtomicU64,
    pub(crate) publisher_up: AtomicBool,
    pub(crate) reader_up: AtomicBool,
    pub(crate) ready: AtomicBool,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) applied_locally: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
    /// The error last logged for each connection, so that a Redis that stays
    /// away is logged once per connection, not at every retry.
    logged: Mutex<std::collections::HashMap<&'static str, String>>,
}

/// Changes applied here only that are kept for replay, at most; an outage
/// longer than this loses the oldest for the other nodes (and counts them).
const KEPT: usize = 10_000;

impl Shared {
    pub(crate) fn new() -> Self {
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

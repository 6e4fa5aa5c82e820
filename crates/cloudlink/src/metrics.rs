//! What the server counts for operators, rendered at `GET /metrics` in the
//! Prometheus text format under the `cloudlink_` prefix, beside the edge's
//! own counters (connections refused, deadlines, the process).
//!
//! Counters are incremented where things happen; numbers that are state
//! (clients, rooms, the store's size) are read at scrape time, so they are
//! never out of step with the registry.

use std::fmt;
use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::handle::{CloudLink, Shared};

type Labels = Vec<(&'static str, &'static str)>;

/// Why a Scratch `set` or `create` was not applied.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dropped {
    /// Its value is longer than `--max-value-bytes`.
    TooLong,
    /// Its value is not allowed by `--values`.
    NotAllowed,
    /// The client was over `--max-sets-per-second`; a later value replaced it.
    Coalesced,
    /// A variable name over 1,024 characters.
    NameTooLong,
}

impl Dropped {
    /// What was wrong with the value, for a person.
    pub fn sentence(self) -> &'static str {
        match self {
            Dropped::TooLong => "longer than --max-value-bytes allows",
            Dropped::NotAllowed => "not allowed by the --values rule",
            Dropped::Coalesced => "replaced by a later value",
            Dropped::NameTooLong => "named with more than 1,024 characters",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Dropped::TooLong => "too_long",
            Dropped::NotAllowed => "not_allowed",
            Dropped::Coalesced => "over_rate",
            Dropped::NameTooLong => "name_too_long",
        }
    }
}

/// The server's counters; see the module doc.
pub(crate) struct Metrics {
    sets: Counter,
    dropped: Family<Labels, Counter>,
    closed: Family<Labels, Counter>,
    flush_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sets: Counter::default(),
            dropped: Family::default(),
            closed: Family::default(),
            flush_seconds: Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0]),
        }
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A Scratch variable change applied and broadcast.
    pub fn set_accepted(&self) {
        self.sets.inc();
    }

    /// A Scratch variable change not applied.
    pub fn dropped(&self, why: Dropped) {
        self.dropped
            .get_or_create(&vec![("reason", why.label())])
            .inc();
    }

    /// A Scratch client closed by a rule, by its close code.
    pub fn closed(&self, code: u16) {
        let code = match code {
            4000 => "4000",
            4002 => "4002",
            4003 => "4003",
            4004 => "4004",
            4005 => "4005",
            4006 => "4006",
            _ => "other",
        };
        self.closed.get_or_create(&vec![("code", code)]).inc();
    }

    /// How long one flush to the store took.
    pub fn flushed(&self, seconds: f64) {
        self.flush_seconds.observe(seconds);
    }
}

/// The whole `/metrics` page: ours, then the edge's.
pub(crate) fn registry(cloudlink: &CloudLink, edge: &edge::Edge) -> Registry {
    let mut registry = Registry::with_prefix("cloudlink");
    let metrics = &cloudlink.0.metrics;
    registry.register(
        "scratch_sets",
        "Scratch variable changes applied and broadcast",
        metrics.sets.clone(),
    );
    registry.register(
        "scratch_dropped",
        "Scratch variable changes not applied, by reason",
        metrics.dropped.clone(),
    );
    registry.register(
        "scratch_closed",
        "Scratch clients closed by a limit or rule, by close code",
        metrics.closed.clone(),
    );
    registry.register(
        "store_flush_seconds",
        "Time to write one batch of changed variables to the store",
        metrics.flush_seconds.clone(),
    );
    registry.register_collector(Box::new(StateCollector(Arc::downgrade(&cloudlink.0))));
    edge.register_metrics(&mut registry);
    registry
}

/// Reads clients, rooms and the store's size at scrape time. Weak, so the
/// page never keeps a stopped server's state alive.
struct StateCollector(Weak<Shared>);

impl fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let Some(shared) = self.0.upgrade() else {
            return Ok(());
        };
        let cloudlink = CloudLink(shared);
        let (clients, rooms) = {
            let state = cloudlink.registry().lock();
            (state.len(), state.room_total())
        };
        let store_bytes = cloudlink.store().map(|s| s.file_bytes());
        let mut gauges = vec![
            (
                "clients",
                "Clients connected, of either protocol",
                clients as i64,
            ),
            (
                "rooms",
                "Rooms in memory (with members, or emptied and kept for the store)",
                rooms as i64,
            ),
        ];
        if let Some(bytes) = store_bytes {
            gauges.push((
                "store_bytes",
                "Size of the cloud-variable store's file",
                i64::try_from(bytes).unwrap_or(i64::MAX),
            ));
        }
        if let Some(stats) = cloudlink.cluster_stats() {
            let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            gauges.extend([
                (
                    "cluster_connected",
                    "1 while both connections to the cluster's Redis work",
                    i64::from(stats.connected),
                ),
                (
                    "cluster_applied_locally",
                    "Changes applied on this node only because Redis was unreachable (since the start)",
                    count(stats.applied_locally),
                ),
                (
                    "cluster_replayed",
                    "Of those, changes sent to the other nodes once Redis was back (since the start)",
                    count(stats.replayed),
                ),
            ]);
        }
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

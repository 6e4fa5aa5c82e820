//! Counters for operators, rendered at `/metrics` in the Prometheus text format.
//!
//! Values the hub already keeps (connections, watchers, broadcasts, drops) are
//! read from it at scrape time rather than counted twice, so the broadcast hot
//! path gains no work for metrics. Everything else is a `prometheus-client`
//! counter bumped where the event happens. Nothing here is ever on the path a
//! client waits for, and rendering takes no lock the hub holds for long.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text::encode};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::hub::Hub;
use crate::protocol::errors;

type Labels = Vec<(&'static str, String)>;

/// All of the server's counters, and the registry that renders them.
pub(crate) struct Metrics {
    registry: Registry,
    /// Successful joins, by the public id of the Discord server joined.
    joins: Family<Labels, Counter>,
    /// Frames received from clients.
    frames_in: Counter,
    /// Frames written to clients.
    frames_out: Counter,
    /// Logins refused on passworded servers.
    auth_failures: Counter,
    /// `error` frames sent, by kind.
    client_errors: Family<Labels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh set of counters that also reports what `hub` and `edge` keep.
    pub fn new(hub: Hub, edge: &edge::Edge) -> Self {
        let mut registry = Registry::with_prefix("d_back");
        let joins = Family::<Labels, Counter>::default();
        let frames_in = Counter::default();
        let frames_out = Counter::default();
        let auth_failures = Counter::default();
        let client_errors = Family::<Labels, Counter>::default();
        registry.register(
            "joins",
            "Successful joins, by Discord server",
            joins.clone(),
        );
        registry.register(
            "frames_received",
            "WebSocket frames received from clients",
            frames_in.clone(),
        );
        registry.register(
            "frames_sent",
            "WebSocket frames written to clients",
            frames_out.clone(),
        );
        registry.register(
            "auth_failures",
            "Joins refused on passworded servers",
            auth_failures.clone(),
        );
        registry.register(
            "client_errors",
            "Error frames sent to clients, by kind",
            client_errors.clone(),
        );
        edge.register_metrics(&mut registry);
        registry.register_collector(Box::new(HubCollector { hub }));
        Self {
            registry,
            joins,
            frames_in,
            frames_out,
            auth_failures,
            client_errors,
        }
    }

    /// The whole registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    pub fn joined(&self, server_id: &str) {
        self.joins
            .get_or_create(&vec![("server", server_id.to_owned())])
            .inc();
    }

    pub fn frame_received(&self) {
        self.frames_in.inc();
    }

    pub fn frames_sent(&self, count: usize) {
        self.frames_out.inc_by(count as u64);
    }

    /// Counts an `error` frame by the sentence it carries.
    pub fn client_error(&self, message: &str) {
        let kind = match message {
            errors::INVALID_JSON => "invalid_json",
            errors::INVALID_BINARY => "invalid_binary",
            errors::UNKNOWN_TYPE => "unknown_type",
            errors::NO_SUCH_SERVER => "no_such_server",
            errors::NO_SERVERS_YET => "no_servers_yet",
            errors::AUTH_FAILED => "auth_failed",
            errors::AUTH_REQUIRED => "auth_required",
            errors::PROVIDER_FAILED => "provider_failed",
            errors::RATE_LIMITED => "rate_limited",
            _ => "other",
        };
        if matches!(kind, "auth_failed" | "auth_required") {
            self.auth_failures.inc();
        }
        self.client_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }
}

/// Reads the hub's own numbers at scrape time.
#[derive(Debug)]
struct HubCollector {
    hub: Hub,
}

impl Collector for HubCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.hub.stats();
        let gauge = ConstGauge::new(self.hub.connections() as i64);
        gauge.encode(encoder.encode_descriptor(
            "connections",
            "Open WebSocket connections",
            None,
            gauge.metric_type(),
        )?)?;
        let watched = ConstGauge::new(self.hub.watched_servers().len() as i64);
        watched.encode(encoder.encode_descriptor(
            "watched_servers",
            "Discord servers at least one connection watches",
            None,
            watched.metric_type(),
        )?)?;
        let counters = [
            (
                "broadcasts",
                "Broadcasts made (presence, message, client id)",
                stats.broadcasts,
            ),
            (
                "frames_queued",
                "Broadcast frames queued for watchers",
                stats.frames_queued,
            ),
            (
                "frames_dropped",
                "Frames not delivered to clients that fell behind",
                stats.frames_dropped,
            ),
            (
                "clients_resynchronised",
                "Watchers so far behind that a fresh server-join replaced their queue",
                stats.resynchronised,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let slow = [
            ("stalled", stats.stalled_clients_closed),
            (
                "overflowed",
                stats.slow_clients_closed - stats.stalled_clients_closed,
            ),
        ];
        {
            let mut family = encoder.encode_descriptor(
                "slow_clients_closed",
                "Connections closed because they could not keep up, by reason",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (reason, value) in slow {
                let labels = [("reason", reason)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(cluster) = self.hub.cluster() {
            encode_cluster(&cluster.broker().stats(), &mut encoder)?;
        }
        Ok(())
    }
}

/// The cluster link's health and totals, in cluster mode only.
fn encode_cluster(
    stats: &broker::BrokerStats,
    encoder: &mut DescriptorEncoder,
) -> Result<(), fmt::Error> {
    let connected = ConstGauge::new(i64::from(stats.connected));
    connected.encode(encoder.encode_descriptor(
        "cluster_connected",
        "1 while both connections to the cluster's Redis work",
        None,
        connected.metric_type(),
    )?)?;
    let counters = [
        (
            "cluster_events_published",
            "Changes this node appended to the cluster's log",
            stats.published,
        ),
        (
            "cluster_events_received",
            "Changes read from the cluster's log, from every node",
            stats.received,
        ),
        (
            "cluster_applied_locally",
            "Changes applied on this node only because Redis was unreachable",
            stats.applied_locally,
        ),
        (
            "cluster_replayed",
            "Changes made here while Redis was unreachable, sent to the other nodes once it was back",
            stats.replayed,
        ),
        (
            "cluster_not_replayed",
            "Changes made here while Redis was unreachable that were too many to keep for the other nodes",
            stats.not_replayed,
        ),
        (
            "cluster_reconnects",
            "Times a lost connection to Redis was made again",
            stats.reconnects,
        ),
    ];
    for (name, help, value) in counters {
        let counter = ConstCounter::new(value);
        counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
    }
    Ok(())
}

//! What the edge counts for operators: connections turned away and why,
//! connections dropped at a deadline, evictions, and accept errors such as
//! running out of file descriptors.
//!
//! The counters live here and are registered into the protocol's own
//! Prometheus registry (under its prefix, e.g. `d_back_`), so one `/metrics`
//! page shows both.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::gate::Gate;

type Labels = Vec<(&'static str, &'static str)>;

/// The edge's counters; cheap to clone (they are shared).
#[derive(Clone, Default)]
pub struct EdgeMetrics {
    refused: Family<Labels, Counter>,
    deadlines: Family<Labels, Counter>,
    accept_errors: Family<Labels, Counter>,
}

impl fmt::Debug for EdgeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeMetrics").finish_non_exhaustive()
    }
}

impl EdgeMetrics {
    /// Adds every edge counter to `registry`, and a gauge of the connections
    /// `gate` holds open.
    pub(crate) fn register(&self, registry: &mut Registry, gate: Arc<Gate>) {
        registry.register(
            "connections_refused",
            "Connections refused before they were served, by reason",
            self.refused.clone(),
        );
        registry.register(
            "deadline_drops",
            "Connections dropped for missing a deadline, by deadline",
            self.deadlines.clone(),
        );
        registry.register(
            "accept_errors",
            "Errors accepting connections (e.g. out of file descriptors), by kind",
            self.accept_errors.clone(),
        );
        registry.register_collector(Box::new(GateCollector { gate }));
    }

    /// A connection refused, by a short reason (`per_ip`, `origin`...).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&vec![("reason", reason)]).inc();
    }

    /// A connection dropped at a deadline (`tls_handshake`, `request_head`,
    /// `websocket_join`).
    pub fn deadline(&self, which: &'static str) {
        self.deadlines
            .get_or_create(&vec![("deadline", which)])
            .inc();
    }

    pub(crate) fn accept_error(&self, kind: &'static str) {
        self.accept_errors
            .get_or_create(&vec![("kind", kind)])
            .inc();
    }
}

/// Reads the gate's numbers at scrape time.
#[derive(Debug)]
struct GateCollector {
    gate: Arc<Gate>,
}

impl Collector for GateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let gauges = [
            (
                "open_sockets",
                "Connections of every kind open now (HTTP, TLS handshakes, WebSockets)",
                self.gate.open(),
            ),
            (
                "socket_budget",
                "Most connections open at once (the open-files limit less a reserve)",
                self.gate.budget(),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let evictions = ConstCounter::new(self.gate.evictions());
        evictions.encode(encoder.encode_descriptor(
            "evictions",
            "Unearned connections closed to make room when the connection budget was spent",
            None,
            evictions.metric_type(),
        )?)?;
        Ok(())
    }
}

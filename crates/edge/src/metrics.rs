//! What the edge counts for operators: connections turned away and why,
//! connections dropped at a deadline, evictions, and accept errors such as
//! running out of file descriptors.
//!
//! The counters live here and are registered into the protocol's own
//! Prometheus registry (under its prefix, e.g. `d_back_`), so one `/metrics`
//! page shows both. The process itself (resident memory, open file
//! descriptors, CPU time) is read from `/proc/self` at scrape time, on Linux;
//! elsewhere those lines are left out rather than reported as 0.

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

/// The edge's counters; cheap to clone (they are shared). One pointer wide,
/// since every WebSocket's control keeps a clone.
#[derive(Clone, Default)]
pub struct EdgeMetrics(Arc<Families>);

#[derive(Default)]
struct Families {
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
            self.0.refused.clone(),
        );
        registry.register(
            "deadline_drops",
            "Connections dropped for missing a deadline, by deadline",
            self.0.deadlines.clone(),
        );
        registry.register(
            "accept_errors",
            "Errors accepting connections (e.g. out of file descriptors), by kind",
            self.0.accept_errors.clone(),
        );
        registry.register_collector(Box::new(GateCollector { gate }));
        registry.register_collector(Box::new(ProcessCollector));
    }

    /// A connection refused, by a short reason (`per_ip`, `origin`...).
    pub fn refused(&self, reason: &'static str) {
        self.0
            .refused
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// A connection dropped at a deadline (`tls_handshake`, `request_head`,
    /// `websocket_join`).
    pub fn deadline(&self, which: &'static str) {
        self.0
            .deadlines
            .get_or_create(&vec![("deadline", which)])
            .inc();
    }

    pub(crate) fn accept_error(&self, kind: &'static str) {
        self.0
            .accept_errors
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

/// Reads the process's own numbers from `/proc/self` at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        if let Some(bytes) = resident_memory_bytes() {
            let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Memory the process holds in RAM (resident set size), in bytes",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(count) = open_fds() {
            let gauge = ConstGauge::new(i64::try_from(count).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(
                "process_open_fds",
                "File descriptors the process has open (sockets included)",
                None,
                gauge.metric_type(),
            )?)?;
        }
        if let Some(seconds) = cpu_seconds() {
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "CPU time the process has used, user and system, in seconds",
                None,
                counter.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// `VmRSS` of `/proc/self/status`, which the kernel gives in kB.
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// Entries of `/proc/self/fd`, less the one used to list them.
fn open_fds() -> Option<usize> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(entries.saturating_sub(1))
}

/// User plus system time of `/proc/self/stat` (fields 14 and 15, in clock
/// ticks), in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces and parentheses; the fields
    // after its closing parenthesis start at field 3.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks_per_second = rustix::param::clock_ticks_per_second();
    if ticks_per_second == 0 {
        return None;
    }
    Some((user + system) as f64 / ticks_per_second as f64)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_process_reads_itself() {
        assert!(resident_memory_bytes().is_some_and(|b| b > 0));
        // Standard input, output and error at least, whatever else runs.
        assert!(open_fds().is_some_and(|n| n >= 3));
        // Work until the kernel has counted a clock tick of CPU time (bounded).
        let spin = std::time::Instant::now();
        while cpu_seconds() == Some(0.0) && spin.elapsed() < std::time::Duration::from_secs(10) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(cpu_seconds().is_some_and(|s| s > 0.0));
    }
}

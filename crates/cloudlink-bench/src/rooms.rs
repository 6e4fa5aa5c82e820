//! The many-projects scenario: many small Scratch projects at once, as a
//! public cloud host sees them, rather than one big one.
//!
//! `rooms` projects of `per_room` clients each; in every project the first
//! client also sends `set`s at an even share of the total `rate`. Every
//! client reads, and each delivered value's stamp gives its latency. The
//! figures are sets sent per second, the sets the server says it accepted
//! per second, delivered messages per second over all clients, delivery
//! latency, the server's CPU and largest RSS while it ran, and the server's
//! flushes to the durable store in that time (how many, their mean time, the
//! bound they all stayed within, and the store's size), which show whether
//! the store keeps up with that many changing projects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::procstat::{self, CpuMeter};
use crate::report::Figures;
use crate::server::ServerProc;
use crate::server_metrics;
use crate::stamp::{now_ns, stamps};
use crate::stats::Histogram;
use crate::{client, fanout};

/// How long all clients together may take to join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct RoomsLoad {
    pub rooms: usize,
    pub per_room: usize,
    /// Sets per second over all projects.
    pub rate: f64,
    pub concurrency: usize,
    pub warmup: Duration,
    pub secs: Duration,
}

#[derive(Default)]
struct Counters {
    joined: AtomicU64,
    delivered: AtomicU64,
    sent: AtomicU64,
    measuring: AtomicBool,
    latencies: Mutex<Histogram>,
}

/// Runs the load against `server` and computes the figures.
pub async fn run(server: &mut ServerProc, load: &RoomsLoad) -> anyhow::Result<Figures> {
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(load.concurrency.max(1)));
    let stop = Arc::new(AtomicBool::new(false));
    let per_room_period = Duration::from_secs_f64(load.rooms as f64 / load.rate.max(1e-3));
    let mut tasks = Vec::new();
    for room in 0..load.rooms {
        for member in 0..load.per_room {
            let index = room * load.per_room + member;
            let (counters, gate, stop) =
                (Arc::clone(&counters), Arc::clone(&gate), Arc::clone(&stop));
            let addr = server.addr;
            tasks.push(tokio::spawn(async move {
                let permit = gate.acquire().await;
                let Ok(mut ws) = client::connect(addr, client::source_address(index)).await else {
                    return;
                };
                let project = format!("r{room}");
                let handshake = serde_json::json!({"method": "handshake", "project_id": project, "user": format!("u{member}")});
                if ws.send(Message::text(handshake.to_string())).await.is_err() {
                    return;
                }
                drop(permit);
                counters.joined.fetch_add(1, Ordering::Relaxed);
                let (mut sink, mut stream) = ws.split();
                if member == 0 {
                    let (counters, stop, project) =
                        (Arc::clone(&counters), Arc::clone(&stop), project.clone());
                    tokio::spawn(async move {
                        // Catches up when a little late (see `fanout::MAX_LAG`), so a
                        // busy generator does not quietly offer less than the rate.
                        let mut due = Instant::now();
                        let mut seq = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            sleep_until(due).await;
                            let now = Instant::now();
                            due = if now > due + fanout::MAX_LAG.max(per_room_period * 2) {
                                now
                            } else {
                                due
                            } + per_room_period;
                            seq += 1;
                            let set = format!(
                                r#"{{"method":"set","project_id":"{project}","name":"☁ v","value":"{seq}.{}"}}"#,
                                now_ns()
                            );
                            if sink.send(Message::text(set)).await.is_err() {
                                return;
                            }
                            if counters.measuring.load(Ordering::Relaxed) {
                                counters.sent.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    });
                }
                let mut local = Histogram::default();
                while let Some(Ok(message)) = stream.next().await {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Message::Text(text) = message else { continue };
                    if !counters.measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    let now = now_ns();
                    for stamp in stamps(&text) {
                        counters.delivered.fetch_add(1, Ordering::Relaxed);
                        local.record(now.saturating_sub(stamp.sent_ns) / 1000);
                    }
                }
                counters.latencies.lock().await.merge(&local);
            }));
        }
    }
    let clients = (load.rooms * load.per_room) as u64;
    let started = Instant::now();
    while counters.joined.load(Ordering::Relaxed) < clients && started.elapsed() < JOIN_TIMEOUT {
        sleep(Duration::from_millis(50)).await;
    }
    let joined = counters.joined.load(Ordering::Relaxed);
    sleep(load.warmup).await;

    let counted_from = server_metrics::Reading::take(server.addr).await;
    let cpu = CpuMeter::start(server.pid);
    counters.measuring.store(true, Ordering::Relaxed);
    let window = Instant::now();
    let mut rss_max = 0u64;
    while window.elapsed() < load.secs {
        rss_max = rss_max.max(procstat::rss_kib(server.pid));
        sleep(Duration::from_millis(200)).await;
    }
    counters.measuring.store(false, Ordering::Relaxed);
    let measured = window.elapsed().as_secs_f64();
    let (server_cpu, generator_cpu) = cpu.percent();
    let counted_to = server_metrics::Reading::take(server.addr).await;
    let delivered = counters.delivered.load(Ordering::Relaxed);
    let sent = counters.sent.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    server.kill();
    let _ = timeout(
        Duration::from_secs(10),
        futures_util::future::join_all(tasks),
    )
    .await;

    let latencies = counters.latencies.lock().await;
    let mut f = Figures::new();
    f.insert("joined", joined as f64);
    f.insert("sent_per_s", sent as f64 / measured);
    f.insert("delivered_per_s", delivered as f64 / measured);
    f.insert("server_cpu", server_cpu);
    f.insert("generator_cpu", generator_cpu);
    f.insert("server_rss_max_mib", rss_max as f64 / 1024.0);
    if let Some(p50) = latencies.percentile(50.0) {
        f.insert("latency_p50_ms", p50 / 1000.0);
    }
    if let Some(p99) = latencies.percentile(99.0) {
        f.insert("latency_p99_ms", p99 / 1000.0);
    }
    if let (Some(from), Some(to)) = (counted_from, counted_to) {
        server_metrics::add_figures(&mut f, &from, &to, measured);
    }
    Ok(f)
}

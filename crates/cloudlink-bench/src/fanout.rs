//! The fan-out scenarios: many receivers in one room, one sender sending as
//! fast as the server takes it, and what arrives.
//!
//! CL4: every receiver does the CL4 handshake and stays in `default`; the sender
//! sends `gmsg`. Scratch: every receiver does the Scratch handshake into one
//! project; the sender sends `set` to one cloud variable. The same code drives
//! both; only the set-up and the message differ (`client.rs`, `stamp.rs`).
//!
//! "As fast as the server takes it" is bounded by a window of outstanding
//! messages: the sender never gets more than `window` messages ahead of what
//! one receiver has been delivered. Without that bound a server that reads
//! faster than it fans out (the Python server reads each message and schedules
//! its fan-out as a task for later) would queue without limit and measure its
//! memory, not its throughput. The receiver that acknowledges is the first
//! one to join; the window counts by sequence number, so a message the server
//! dropped for that receiver does not leak a slot, and if that receiver stops
//! getting anything (a server may close a client that falls too far behind),
//! the one that got furthest takes over. Keep the window well below the
//! server's per-client queue, or the benchmark measures slow-client handling.
//!
//! With a fixed rate instead, the sender offers that many messages per second
//! (still within the window); run below what both servers can take, this
//! measures delivery latency without the queueing that "as fast as possible"
//! builds up by design (there, latency ≈ window ÷ rate).
//!
//! Measured: messages delivered per second over all receivers during the
//! measured seconds (the sender's own copies are not counted), messages sent
//! per second, the delivered share (of the messages sent during the measured
//! seconds, how many copies reached how many receivers; the sender keeps
//! sending until every receiver has had something sent after them, or for at
//! most [`DRAIN`], so below 100% means the server dropped some), delivery
//! latency percentiles over every message delivered while measuring (stamped
//! by the sender, read by the receiver), server and generator CPU, and server
//! memory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Conn};
use crate::procstat::{self, CpuMeter};
use crate::report::Figures;
use crate::server::ServerProc;
use crate::stamp::{self, Protocol};
use crate::stats::Histogram;

/// How long one client may take to connect and join.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long all receivers together may take to join.
const ALL_JOINED_TIMEOUT: Duration = Duration::from_secs(180);
/// How long until every receiver has had its first message.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long receivers may take to finish once the server is gone.
const WIND_DOWN: Duration = Duration::from_secs(10);
/// How far a sender at a fixed rate may fall behind its schedule and still
/// catch up (see `send`; the many-projects senders use it too).
pub(crate) const MAX_LAG: Duration = Duration::from_millis(10);
/// How long the messages sent while measuring may take to arrive afterwards
/// (the Python server, flat out, is several seconds behind by design of the window).
const DRAIN: Duration = Duration::from_secs(20);

/// One fan-out measurement.
#[derive(Debug, Clone)]
pub struct Load {
    pub protocol: Protocol,
    /// Clients that receive (the sender comes on top).
    pub receivers: usize,
    /// Clients connecting and joining at the same time.
    pub concurrency: usize,
    /// Messages the sender may be ahead of the acknowledging receiver.
    pub window: u64,
    /// Sending before measuring starts, once every receiver gets messages.
    pub warmup: Duration,
    /// How long deliveries are counted.
    pub secs: Duration,
    /// Messages per second the sender offers; `None` = as fast as the window allows.
    pub rate: Option<f64>,
}

/// What all clients of one run share. Per message a receiver only reads a
/// few flags (relaxed loads of values that change a handful of times a run)
/// and writes its own `progress` slot; only the acknowledging receiver writes
/// `acked`, so no counter is fought over on the hot path.
#[derive(Default)]
struct Shared {
    /// Set while deliveries count.
    measuring: AtomicBool,
    joined: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Receivers that have had at least one stamped message.
    ready: AtomicU64,
    /// Index of the receiver whose deliveries move the window (the first to join).
    acker: AtomicUsize,
    /// One past the highest sequence number the acknowledging receiver got.
    acked: AtomicU64,
    /// Wakes the sender when `acked` moves.
    ack: Notify,
    /// Per receiver, one past the highest sequence number it got (`u64::MAX`
    /// if it never joined or was closed): each receiver writes only its own slot.
    progress: Vec<AtomicU64>,
    /// Sequence numbers sent while measuring: `window_from..window_to`
    /// (`u64::MAX` until known), for the delivered share. The sender marks
    /// each end before it sends the message there, so no receiver can see a
    /// message of the window before it knows where the window starts.
    window_from: AtomicU64,
    window_to: AtomicU64,
    /// Tells the sender to stop.
    stop: AtomicBool,
    /// Set just before the server is killed: connections ending after this are expected.
    ending: AtomicBool,
    /// Receivers whose connection ended before that (closed by the server).
    lost: AtomicU64,
}

/// What one receiver brings back.
#[derive(Default)]
struct Outcome {
    /// Stamped messages received while measuring; summed at the end, so that
    /// no shared counter is touched per message.
    delivered: u64,
    /// Stamped messages received, at any time, that were sent while measuring.
    of_window: u64,
    latencies: Histogram,
}

/// Runs `load` against a started server and computes the figures.
pub async fn run(server: &mut ServerProc, load: &Load) -> anyhow::Result<Figures> {
    let shared = Arc::new(Shared {
        acker: AtomicUsize::new(usize::MAX),
        window_from: AtomicU64::new(u64::MAX),
        window_to: AtomicU64::new(u64::MAX),
        progress: (0..load.receivers).map(|_| AtomicU64::new(0)).collect(),
        ..Shared::default()
    });
    let gate = Arc::new(Semaphore::new(load.concurrency.max(1)));
    let started = Instant::now();
    let mut receivers: Vec<JoinHandle<Outcome>> = (0..load.receivers)
        .map(|i| {
            tokio::spawn(receiver(
                i,
                server.addr,
                load.protocol,
                Arc::clone(&shared),
                Arc::clone(&gate),
            ))
        })
        .collect();
    let n = load.receivers as u64;
    while shared.joined.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < n
        && started.elapsed() < ALL_JOINED_TIMEOUT
    {
        sleep(Duration::from_millis(10)).await;
    }
    let join_secs = started.elapsed().as_secs_f64();
    let joined = shared.joined.load(Ordering::Relaxed);

    let sender = Sender::start(server.addr, load, Arc::clone(&shared)).await?;

    let ready_since = Instant::now();
    while shared.ready.load(Ordering::Relaxed) < joined && ready_since.elapsed() < READY_TIMEOUT {
        sleep(Duration::from_millis(10)).await;
    }
    let ready = shared.ready.load(Ordering::Relaxed);
    sleep(load.warmup).await;

    let cpu = CpuMeter::start(server.pid);
    let window_start = Instant::now();
    shared.measuring.store(true, Ordering::Relaxed);
    let mut rss_max = procstat::rss_kib(server.pid);
    let end = window_start + load.secs;
    while Instant::now() < end {
        sleep(
            end.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500)),
        )
        .await;
        rss_max = rss_max.max(procstat::rss_kib(server.pid));
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let window = window_start.elapsed().as_secs_f64();
    // The sender marks the end before its next message (it wakes at least
    // every 100 ms, even when the window of outstanding messages is full).
    let marking = Instant::now();
    while shared.window_to.load(Ordering::SeqCst) == u64::MAX
        && marking.elapsed() < DRAIN
        && !sender.is_finished()
    {
        sleep(Duration::from_millis(1)).await;
    }
    let sent_before = shared.window_from.load(Ordering::SeqCst);
    let sent_after = shared.window_to.load(Ordering::SeqCst);
    let sent = if sent_before == u64::MAX || sent_after == u64::MAX {
        0
    } else {
        sent_after - sent_before
    };
    let (server_cpu, generator_cpu) = cpu.percent();

    // Let what was sent while measuring arrive: keep sending until every
    // receiver got a message sent at or after the end of the measured seconds
    // (so one whose copy was dropped does not hold things up), then stop the
    // sender and kill the server, which ends every receiver's read.
    let draining = Instant::now();
    while !shared
        .progress
        .iter()
        .all(|p| p.load(Ordering::Relaxed) >= sent_after)
        && draining.elapsed() < DRAIN
        && !sender.is_finished()
    {
        sleep(Duration::from_millis(10)).await;
    }
    let drained = draining.elapsed();
    shared.stop.store(true, Ordering::Relaxed);
    shared.ack.notify_one();
    let sender_error = match timeout(WIND_DOWN, sender.done).await {
        Ok(Ok(Err(e))) => Some(format!("{e:#}")),
        _ => None,
    };
    let crashed = server.exited();
    shared.ending.store(true, Ordering::Relaxed);
    server.kill();
    let mut delivered = 0;
    let mut of_window = 0;
    let mut latencies = Histogram::default();
    let wind_down = Instant::now() + WIND_DOWN;
    for task in receivers.iter_mut() {
        let left = wind_down.saturating_duration_since(Instant::now());
        if let Ok(Ok(outcome)) = timeout(left, &mut *task).await {
            delivered += outcome.delivered;
            of_window += outcome.of_window;
            latencies.merge(&outcome.latencies);
        }
    }
    for task in &receivers {
        task.abort();
    }

    let failed = shared.failed.load(Ordering::Relaxed);
    if let Some(error) = shared.first_error.lock().unwrap().take() {
        eprintln!("  note: {failed} of {n} receivers failed to join; first error: {error}");
    }
    if ready < joined {
        eprintln!("  note: only {ready} of {joined} receivers got any message");
    }
    if let Some(error) = sender_error {
        eprintln!("  note: the sender stopped early: {error}");
    }
    if crashed {
        eprintln!("  note: the server exited during the measurement");
    }
    let lost = shared.lost.load(Ordering::Relaxed);
    if lost > 0 {
        eprintln!("  note: the server closed {lost} of {joined} receivers during the run");
    }
    if drained >= DRAIN {
        eprintln!(
            "  note: not every receiver caught up within {DRAIN:?} after the measured seconds"
        );
    }

    let mut f = Figures::new();
    f.insert("joined", joined as f64);
    f.insert("joins_per_s", joined as f64 / join_secs.max(1e-3));
    f.insert("ready", ready as f64);
    f.insert("lost", lost as f64);
    f.insert("delivered_per_s", delivered as f64 / window);
    f.insert("sent_per_s", sent as f64 / window);
    if sent > 0 && joined > 0 {
        f.insert(
            "delivered_share",
            100.0 * of_window as f64 / (sent as f64 * joined as f64),
        );
    }
    if let Some(p50) = latencies.percentile(50.0) {
        f.insert("latency_p50_ms", p50 / 1000.0);
    }
    if let Some(p99) = latencies.percentile(99.0) {
        f.insert("latency_p99_ms", p99 / 1000.0);
    }
    f.insert("server_cpu", server_cpu);
    f.insert("generator_cpu", generator_cpu);
    f.insert("server_rss_max_mib", rss_max as f64 / 1024.0);
    Ok(f)
}

/// One receiver: connect and join (at most `gate`'s permits at once), then read
/// until the connection ends, counting stamped messages while measuring.
async fn receiver(
    i: usize,
    server: SocketAddr,
    protocol: Protocol,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let permit = gate.acquire().await;
    let joining = async {
        let mut ws = client::connect(server, client::source_address(i)).await?;
        client::join(&mut ws, protocol, &format!("u{i}")).await?;
        anyhow::Ok(ws)
    };
    let mut ws: Conn = match timeout(JOIN_TIMEOUT, joining).await {
        Ok(Ok(ws)) => ws,
        failure => {
            let error = match failure {
                Ok(Err(e)) => format!("{e:#}"),
                _ => format!("not joined within {JOIN_TIMEOUT:?}"),
            };
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.first_error.lock().unwrap().get_or_insert(error);
            shared.progress[i].store(u64::MAX, Ordering::Relaxed);
            return outcome;
        }
    };
    drop(permit);
    let _ = shared
        .acker
        .compare_exchange(usize::MAX, i, Ordering::Relaxed, Ordering::Relaxed);
    shared.joined.fetch_add(1, Ordering::Relaxed);
    let mut first = true;
    let progress = &shared.progress[i];
    // No select on a stop signal here: the run ends by killing the server,
    // which ends this read, and a wind-down timeout aborts what is left.
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else {
            if matches!(message, Message::Close(_)) {
                break;
            }
            continue;
        };
        let now = stamp::now_ns();
        let measuring = shared.measuring.load(Ordering::Relaxed);
        for s in stamp::stamps(&text) {
            if first {
                first = false;
                shared.ready.fetch_add(1, Ordering::Relaxed);
            }
            if shared.acker.load(Ordering::Relaxed) == i {
                shared.acked.fetch_max(s.seq + 1, Ordering::Relaxed);
                shared.ack.notify_one();
            }
            if measuring {
                outcome.delivered += 1;
                outcome
                    .latencies
                    .record(now.saturating_sub(s.sent_ns) / 1000);
            }
            if s.seq >= progress.load(Ordering::Relaxed) {
                progress.store(s.seq + 1, Ordering::Relaxed);
            }
            if s.seq >= shared.window_from.load(Ordering::SeqCst)
                && s.seq < shared.window_to.load(Ordering::SeqCst)
            {
                outcome.of_window += 1;
            }
        }
    }
    if !shared.ending.load(Ordering::Relaxed) {
        shared.lost.fetch_add(1, Ordering::Relaxed);
        // Nothing more will come: do not wait for it to catch up.
        progress.store(u64::MAX, Ordering::Relaxed);
    }
    outcome
}

/// Hands acknowledging to the receiver that got furthest, when the current
/// one has gone quiet (closed by the server, or its copies dropped).
fn take_over_acknowledging(shared: &Shared) {
    let furthest = shared
        .progress
        .iter()
        .enumerate()
        .map(|(i, p)| (p.load(Ordering::Relaxed), i))
        .filter(|&(p, _)| p != u64::MAX)
        .max();
    if let Some((progress, i)) = furthest
        && progress > shared.acked.load(Ordering::Relaxed)
    {
        shared.acker.store(i, Ordering::Relaxed);
        shared.acked.fetch_max(progress, Ordering::Relaxed);
    }
}

/// Marks where the measured window starts or ends, just before message
/// `seq` is sent: the first message sent while measuring opens it, the first
/// one after closes it.
fn mark_window(shared: &Shared, seq: u64) {
    let measuring = shared.measuring.load(Ordering::SeqCst);
    let opened = shared.window_from.load(Ordering::SeqCst) != u64::MAX;
    if measuring && !opened {
        shared.window_from.store(seq, Ordering::SeqCst);
    } else if !measuring && opened && shared.window_to.load(Ordering::SeqCst) == u64::MAX {
        shared.window_to.store(seq, Ordering::SeqCst);
    }
}

/// The sender, on a thread of its own with its own runtime, as if it were
/// another machine: among a thousand receivers on the generator's runtime it
/// waited its turn behind them, and its fixed rate sagged with their load.
struct Sender {
    thread: std::thread::JoinHandle<()>,
    /// What [`send`] ended with.
    done: tokio::sync::oneshot::Receiver<anyhow::Result<()>>,
}

impl Sender {
    /// Connects and joins the sender, then lets it send; fails if it cannot join.
    async fn start(server: SocketAddr, load: &Load, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let (joined_tx, joined) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let source = client::source_address(load.receivers);
        let (protocol, window, rate) = (load.protocol, load.window, load.rate);
        let thread = std::thread::Builder::new()
            .name("sender".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = joined_tx.send(Err(e).context("cannot start the sender's runtime"));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let joining = timeout(JOIN_TIMEOUT, async {
                        let mut ws = client::connect(server, source).await?;
                        client::join(&mut ws, protocol, "sender").await?;
                        anyhow::Ok(ws)
                    })
                    .await
                    .context("the sender could not join in time");
                    match joining {
                        Ok(Ok(ws)) => {
                            let _ = joined_tx.send(Ok(()));
                            let _ = done_tx.send(send(ws, protocol, window, rate, shared).await);
                        }
                        Ok(Err(e)) | Err(e) => {
                            let _ = joined_tx.send(Err(e));
                        }
                    }
                });
            })
            .context("cannot start the sender's thread")?;
        joined
            .await
            .context("the sender's thread ended")?
            .context("the sender could not join")?;
        Ok(Self { thread, done })
    }

    fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

/// The sender: sends stamped messages while fewer than `window` are
/// unacknowledged (and, with a `rate`, one per tick), until told to stop;
/// drains its own socket meanwhile (a server may send it its own copies).
async fn send(
    ws: Conn,
    protocol: Protocol,
    window: u64,
    rate: Option<f64>,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    // When the next message is due. The timer wakes at most once a
    // millisecond, so each wake sends every message that is due by then:
    // an interval of one message per tick could not offer more than about
    // 1,000 a second. A sender held up for longer than [`MAX_LAG`] (by the
    // window, or the machine) starts afresh rather than catching up in a
    // burst, so that the offered rate stays even. The bound is in time, not
    // in periods: at 1,250 a second two periods are 1.6 ms, less than the
    // timer's own step plus a busy moment, and the sender then lost about
    // 40% of its rate to its own resets.
    let mut due = tokio::time::Instant::now();
    let mut seq = 0u64;
    let result = async {
        while !shared.stop.load(Ordering::Relaxed) {
            if let Some(period) = period {
                let now = tokio::time::Instant::now();
                if due > now {
                    tokio::time::sleep_until(due.min(now + Duration::from_millis(100))).await;
                    continue;
                }
                due = if now > due + MAX_LAG.max(period * 2) {
                    now
                } else {
                    due
                } + period;
            }
            if seq >= shared.acked.load(Ordering::Relaxed) + window.max(1) {
                // Bounded wait, so that a server that stops answering cannot hang the sender.
                if timeout(Duration::from_millis(100), shared.ack.notified())
                    .await
                    .is_err()
                {
                    take_over_acknowledging(&shared);
                }
                continue;
            }
            mark_window(&shared, seq);
            sink.send(Message::text(stamp::message(protocol, seq)))
                .await
                .context("sending to the server failed")?;
            seq += 1;
        }
        anyhow::Ok(())
    }
    .await;
    drain.abort();
    result
}

//! The idle-memory scenario: how much server memory one identified CL4 client
//! costs while it does nothing.
//!
//! Each client connects, does the CL4 handshake and `setid` (so the server
//! holds its username and lists it in `default`), and then only reads. The
//! server's resident memory is read from `/proc` before the first client, once
//! the server has gone quiet after the first half of the clients, and again
//! after the second half: the difference from the start divided by the
//! clients identified is the whole cost per client, the growth over the
//! second half divided by its clients what one more client costs.
//!
//! Identifying is quadratic by protocol: every `setid` sends `ulist add` to all
//! members of `default` and a full `ulist set` to the newcomer, so 1,000
//! clients cause about half a million messages and 10,000 about fifty million.
//! The clients keep reading so that this traffic drains; "quiet" means the
//! server used under 2% of a core for two half-seconds in a row. What is left
//! in RSS then includes whatever the server's allocator kept from that burst,
//! which is part of the cost a real server pays too.
//!
//! For comparison the same can be run with the handshake only (no `setid`, so
//! no user-list traffic at all): the difference between the two shows how much
//! of the per-client figure is the connection itself and how much is left
//! behind by the identification burst. And with Scratch clients, each doing
//! the Scratch handshake into one project (which has no answer, so a client
//! counts as ready once its handshake is sent).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout};

use crate::client;
use crate::procstat::{self, CpuMeter};
use crate::report::Figures;
use crate::server::ServerProc;
use crate::stamp::Protocol;

/// How long one client may take to connect, handshake and identify.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long all clients together may take.
const ALL_IDENTIFIED_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the server may keep working after the last `setid`.
const QUIET_TIMEOUT: Duration = Duration::from_secs(300);
/// Server CPU below which it counts as quiet, in % of one core.
const QUIET_CPU: f64 = 2.0;
/// How long clients may take to finish once the server is gone.
const WIND_DOWN: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Shared {
    identified: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Connects `clients` clients (at most `concurrency` at once), each doing the
/// CL4 handshake and, if `identify`, `setid`, and computes the figures.
///
/// They come in two halves, with the server's memory read once it is quiet
/// after each: the whole growth per client (`kb_per_client`) includes what
/// the server allocates once for its first clients (its tables' first
/// sizes, the allocator's first pages for each size of record); the growth
/// over the second half per client of it (`kb_per_further_client`) is what
/// one more client costs a server that already has some.
pub async fn run(
    server: &mut ServerProc,
    clients: usize,
    concurrency: usize,
    protocol: Protocol,
    identify: bool,
) -> anyhow::Result<Figures> {
    let rss_before = procstat::rss_kib(server.pid);
    let shared = Arc::new(Shared::default());
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let cpu = CpuMeter::start(server.pid);
    let started = Instant::now();
    let half = clients / 2;
    let mut tasks = Vec::with_capacity(clients);
    let mut settle_secs = 0.0;
    let mut quiet = true;
    let mut rss_half = rss_before;
    let mut identified_half = 0;
    for (from, to) in [(0, half), (half, clients)] {
        tasks.extend((from..to).map(|i| {
            tokio::spawn(idle_client(
                i,
                server.addr,
                protocol,
                identify,
                Arc::clone(&shared),
                Arc::clone(&gate),
            ))
        }));
        let n = to as u64;
        while shared.identified.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < n
            && started.elapsed() < ALL_IDENTIFIED_TIMEOUT
        {
            sleep(Duration::from_millis(10)).await;
        }
        let quiet_since = Instant::now();
        quiet &= wait_until_quiet(server.pid).await;
        settle_secs += quiet_since.elapsed().as_secs_f64();
        if to == half {
            rss_half = procstat::rss_kib(server.pid);
            identified_half = shared.identified.load(Ordering::Relaxed);
        }
    }
    let identify_secs = started.elapsed().as_secs_f64() - settle_secs;
    let (identify_cpu, _) = cpu.percent();
    let rss_after = procstat::rss_kib(server.pid);
    let identified = shared.identified.load(Ordering::Relaxed);
    let crashed = server.exited();
    server.kill();
    for task in &tasks {
        task.abort();
    }
    let _ = timeout(WIND_DOWN, futures_util::future::join_all(tasks)).await;

    let n = clients as u64;
    let failed = shared.failed.load(Ordering::Relaxed);
    if let Some(error) = shared.first_error.lock().unwrap().take() {
        eprintln!("  note: {failed} of {n} clients failed to identify; first error: {error}");
    }
    if !quiet {
        eprintln!("  note: the server was still busy {QUIET_TIMEOUT:?} after the last setid");
    }
    if crashed {
        eprintln!("  note: the server exited during the measurement");
    }

    let mut f = Figures::new();
    f.insert("identified", identified as f64);
    f.insert(
        "identified_per_s",
        identified as f64 / identify_secs.max(1e-3),
    );
    f.insert("identify_cpu", identify_cpu);
    f.insert("settle_s", settle_secs);
    f.insert("rss_before_mib", rss_before as f64 / 1024.0);
    f.insert("rss_half_mib", rss_half as f64 / 1024.0);
    f.insert("rss_after_mib", rss_after as f64 / 1024.0);
    // KiB → KB (1,000 bytes), the unit of the goals.
    if identified > 0 {
        let kb = (rss_after as f64 - rss_before as f64) * 1.024 / identified as f64;
        f.insert("kb_per_client", kb);
    }
    if identified > identified_half {
        let further = (identified - identified_half) as f64;
        let kb = (rss_after as f64 - rss_half as f64) * 1.024 / further;
        f.insert("kb_per_further_client", kb);
    }
    Ok(f)
}

/// Waits until the server has used under [`QUIET_CPU`] for two half-seconds
/// in a row; `false` if it was still busy after [`QUIET_TIMEOUT`].
async fn wait_until_quiet(pid: u32) -> bool {
    let since = Instant::now();
    let mut quiet_in_a_row = 0;
    while quiet_in_a_row < 2 && since.elapsed() < QUIET_TIMEOUT {
        let meter = CpuMeter::start(pid);
        sleep(Duration::from_millis(500)).await;
        let (busy, _) = meter.percent();
        quiet_in_a_row = if busy < QUIET_CPU {
            quiet_in_a_row + 1
        } else {
            0
        };
    }
    quiet_in_a_row >= 2
}

/// One client: connect, handshake and maybe identify (at most `gate`'s permits
/// at once), then read whatever comes until the connection ends.
async fn idle_client(
    i: usize,
    server: SocketAddr,
    protocol: Protocol,
    identify: bool,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) {
    let permit = gate.acquire().await;
    let name = format!("u{i}");
    let identifying = async {
        let mut ws = client::connect(server, client::source_address(i)).await?;
        client::join(&mut ws, protocol, &name).await?;
        if identify {
            client::identify(&mut ws, &name).await?;
        }
        anyhow::Ok(ws)
    };
    let mut ws = match timeout(IDENTIFY_TIMEOUT, identifying).await {
        Ok(Ok(ws)) => ws,
        failure => {
            let error = match failure {
                Ok(Err(e)) => format!("{e:#}"),
                _ => format!("not identified within {IDENTIFY_TIMEOUT:?}"),
            };
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.first_error.lock().unwrap().get_or_insert(error);
            return;
        }
    };
    drop(permit);
    shared.identified.fetch_add(1, Ordering::Relaxed);
    while let Some(Ok(_)) = ws.next().await {}
}

/// The stored-room scenario: `rooms` Scratch clients each open a project of
/// their own, set one variable, wait for its echo and leave. With a durable
/// store the emptied projects stay in memory for the empty-room time, so
/// the server's RSS growth divided by `rooms` is what one idle stored
/// project costs until it is evicted.
pub async fn stored_rooms(
    server: &mut ServerProc,
    rooms: usize,
    concurrency: usize,
) -> anyhow::Result<Figures> {
    let rss_before = procstat::rss_kib(server.pid);
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..rooms)
        .map(|i| {
            let (gate, done, addr) = (Arc::clone(&gate), Arc::clone(&done), server.addr);
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                let visit = async {
                    let mut ws = client::connect(addr, client::source_address(i)).await?;
                    let project = format!("room{i}");
                    let handshake = serde_json::json!({"method": "handshake", "project_id": project, "user": "u"});
                    client::send(&mut ws, handshake.to_string()).await?;
                    let set = serde_json::json!({"method": "set", "project_id": project, "name": "☁ v", "value": "1"});
                    client::send(&mut ws, set.to_string()).await?;
                    // The echo of the set: the project exists and holds it.
                    ws.next().await;
                    let _ = ws.close(None).await;
                    anyhow::Ok(())
                };
                if matches!(timeout(IDENTIFY_TIMEOUT, visit).await, Ok(Ok(()))) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let _ = timeout(
        ALL_IDENTIFIED_TIMEOUT,
        futures_util::future::join_all(tasks),
    )
    .await;
    let visit_secs = started.elapsed().as_secs_f64();
    let quiet_since = Instant::now();
    let mut quiet_in_a_row = 0;
    while quiet_in_a_row < 2 && quiet_since.elapsed() < QUIET_TIMEOUT {
        let meter = CpuMeter::start(server.pid);
        sleep(Duration::from_millis(1500)).await;
        let (busy, _) = meter.percent();
        quiet_in_a_row = if busy < QUIET_CPU {
            quiet_in_a_row + 1
        } else {
            0
        };
    }
    let rss_after = procstat::rss_kib(server.pid);
    server.kill();
    let rooms_made = done.load(Ordering::Relaxed);
    let mut f = Figures::new();
    f.insert("identified", rooms_made as f64);
    f.insert("identified_per_s", rooms_made as f64 / visit_secs.max(1e-3));
    f.insert("rss_before_mib", rss_before as f64 / 1024.0);
    f.insert("rss_after_mib", rss_after as f64 / 1024.0);
    if rooms_made > 0 {
        let kb = (rss_after as f64 - rss_before as f64) * 1.024 / rooms_made as f64;
        f.insert("kb_per_client", kb);
    }
    Ok(f)
}

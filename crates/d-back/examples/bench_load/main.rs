//! The benchmark suite: a load generator that measures d-back, the Python
//! d-back and a bare WebSocket server side by side, on loopback, with bounded
//! counts and durations. Run it through `scripts/bench.sh`, which builds
//! everything, prepares the Python reference and passes the commands here.
//!
//! ```text
//! bench_load suite --ours "target/release/examples/bench_server" \
//!                  --theirs "venv/bin/python bench/python_producer.py"
//! bench_load bare --port 3000 [--rate R]     # the bare reference server alone
//! ```
//!
//! Every scenario starts a fresh server process (its command gets `--port P`
//! and `--rate R` appended), drives it with thousands of clients from this
//! process's multi-threaded runtime, reads the server's CPU time and resident
//! memory from `/proc`, and kills it. Scenarios: join storm (+ memory held per
//! idle joined connection), a large hold, fan-out at full speed and at a fixed
//! offered rate, fan-out with clients that never read, and a cluster of three
//! nodes sharing one world through a `redis-server` this program starts,
//! against one node in the same run (`cluster`). The generator keeps
//! its own cost low (see `client.rs`) and prints its CPU use beside the
//! server's, so a reader can see when it, not the server, was the limit.
//!
//! Timings are never asserted anywhere: they depend on the machine and on what
//! else it runs. This program only measures and prints.

mod bare;
mod client;
mod procstat;

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;

use client::{Client, OP_CLOSE, OP_PING, OP_TEXT, sent_at_nanos};

/// How long one client may take to connect and join before it counts as failed.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a whole scenario's joins may take.
const ALL_JOINED_TIMEOUT: Duration = Duration::from_secs(180);
/// Read buffer per client: a few dozen frames per read, small enough for 19,000 clients.
const CLIENT_BUFFER: usize = 16 * 1024;
/// Loopback source addresses the clients are spread over.
const SOURCE_ADDRESSES: usize = 200;

#[derive(Debug, Parser)]
#[command(about = "d-back load generator and side-by-side benchmark (see scripts/bench.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the scenarios against each server and print a table.
    Suite(Box<SuiteArgs>),
    /// Run the bare reference WebSocket server (the suite starts it itself).
    Bare {
        #[arg(long)]
        port: u16,
        /// Broadcasts per second; absent = as fast as possible; 0 = none.
        #[arg(long)]
        rate: Option<f64>,
    },
}

#[derive(Debug, clap::Args)]
struct SuiteArgs {
    /// Command starting d-back's producer; `--port P [--rate R]` is appended.
    #[arg(long)]
    ours: String,
    /// Command starting the Python d-back's producer (same contract); none = skip it.
    #[arg(long)]
    theirs: Option<String>,
    /// Leave out the bare reference server.
    #[arg(long)]
    no_bare: bool,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "join,fanout,slow,hold-max,cluster"
    )]
    scenarios: Vec<String>,
    /// Clients in the join storm, the hold and the slow-consumer runs.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Clients joining at the same time in every scenario.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Watcher counts for fan-out.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    fanout_clients: Vec<usize>,
    /// Offered broadcasts per second for the fixed-rate fan-out.
    #[arg(long, default_value_t = 100.0)]
    fixed_rate: f64,
    /// Seconds measured per fan-out run (after 1.5 s of warm-up; producers start after 0.5 s).
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds measured per slow-consumer run (and its all-healthy control).
    #[arg(long, default_value_t = 20.0)]
    slow_secs: f64,
    /// Clients that never read in the slow-consumer run.
    #[arg(long, default_value_t = 10)]
    stalled: usize,
    /// Joined idle connections held by d-back in `hold-max`.
    #[arg(long, default_value_t = 19_000)]
    hold_max: usize,
    /// Runs of each measurement; the table shows the median.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Where the servers' stderr goes.
    #[arg(long, default_value = "target/bench-logs")]
    logs: PathBuf,
    /// Browsers in the cluster scenario, spread evenly over its nodes.
    #[arg(long, default_value_t = 1000)]
    cluster_clients: usize,
    /// Nodes in the cluster scenario.
    #[arg(long, default_value_t = 3)]
    cluster_nodes: usize,
    /// The Redis server binary the cluster scenario starts.
    #[arg(long, default_value = "redis-server")]
    redis_server: String,
}

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Ours,
    Theirs,
    Bare,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Ours => "ours",
            Target::Theirs => "d-back",
            Target::Bare => "bare",
        }
    }
}

/// Named figures of one measurement (medians once several runs are merged).
type Figures = BTreeMap<&'static str, f64>;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("bench-load") // tells its threads from the server's in a profile
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match cli.command {
        Cmd::Bare { port, rate } => runtime
            .block_on(bare::serve(port, rate))
            .with_context(|| format!("bare server on port {port} failed")),
        Cmd::Suite(args) => runtime.block_on(suite(*args)),
    }
}

/// One way to load a server.
#[derive(Debug, Clone)]
struct Load {
    clients: usize,
    /// How many of them stop reading after joining.
    stalled: usize,
    /// Server-side broadcasts per second; `None` = flat out; 0 = none.
    rate: Option<f64>,
    /// Pause after the last join before measuring (lets memory and queues settle).
    warmup: f64,
    /// Seconds of delivery measured; 0 = joins and memory only.
    window: f64,
    /// One in this many delivered frames per client has its latency taken.
    sample_every: u64,
}

impl Load {
    /// Broadcasts to `clients` at `rate` (`None`: flat out), measured for
    /// `secs` after 1.5 s of warm-up; flat out, one frame in four is timed.
    fn fanout(clients: usize, rate: Option<f64>, secs: f64) -> Self {
        Self {
            clients,
            stalled: 0,
            rate,
            warmup: 1.5,
            window: secs,
            sample_every: if rate.is_some() { 1 } else { 4 },
        }
    }
}

struct Suite {
    args: SuiteArgs,
    rows: Vec<(String, String, BTreeMap<&'static str, f64>)>,
}

async fn suite(args: SuiteArgs) -> anyhow::Result<()> {
    fs::create_dir_all(&args.logs)
        .with_context(|| format!("cannot create the log directory {}", args.logs.display()))?;
    let mut suite = Suite {
        args,
        rows: Vec::new(),
    };
    let mut targets = vec![Target::Ours];
    if suite.args.theirs.is_some() {
        targets.push(Target::Theirs);
    }
    let protocol_targets = targets.clone();
    if !suite.args.no_bare {
        targets.push(Target::Bare);
    }
    let n = suite.args.clients;
    for scenario in suite.args.scenarios.clone() {
        match scenario.as_str() {
            "join" => {
                let load = Load {
                    clients: n,
                    stalled: 0,
                    rate: Some(0.0),
                    warmup: 2.0,
                    window: 0.0,
                    sample_every: 1,
                };
                let mut per = BTreeMap::new();
                for &t in &protocol_targets {
                    per.insert(t.label(), suite.measure(t, &load).await?);
                }
                let name = format!("join storm, {n} clients");
                suite.row(&name, "joins/s", &per, "joins_per_s");
                suite.row(&name, "join p50 ms", &per, "join_p50_ms");
                suite.row(&name, "join p99 ms", &per, "join_p99_ms");
                suite.row(&name, "server CPU % (joins)", &per, "server_cpu_join");
                suite.row(&name, "generator CPU % (joins)", &per, "gen_cpu_join");
                let name = format!("hold, {n} idle joined");
                suite.row(&name, "server KB per connection", &per, "kb_per_conn");
            }
            "hold-max" => {
                let m = suite.args.hold_max;
                let load = Load {
                    clients: m,
                    stalled: 0,
                    rate: Some(0.0),
                    warmup: 2.0,
                    window: 0.0,
                    sample_every: 1,
                };
                let mut per = BTreeMap::new();
                per.insert("ours", suite.measure(Target::Ours, &load).await?);
                let name = format!("hold, {m} idle joined");
                suite.row(&name, "connections joined", &per, "joined");
                suite.row(&name, "connections failed", &per, "failed");
                suite.row(&name, "server KB per connection", &per, "kb_per_conn");
                suite.row(&name, "server RSS MiB", &per, "rss_start_mib");
                suite.row(&name, "joins/s", &per, "joins_per_s");
            }
            "fanout" => {
                let fixed = suite.args.fixed_rate;
                for clients in suite.args.fanout_clients.clone() {
                    for rate in [None, Some(fixed)] {
                        let load = Load::fanout(clients, rate, suite.args.secs);
                        let mut per = BTreeMap::new();
                        for &t in &targets {
                            per.insert(t.label(), suite.measure(t, &load).await?);
                        }
                        let name = match rate {
                            None => format!("fan-out, {clients} clients, max rate"),
                            Some(r) => format!("fan-out, {clients} clients, {r} broadcasts/s"),
                        };
                        suite.delivery_rows(&name, &per, "server CPU %");
                    }
                }
            }
            "slow" => {
                let secs = suite.args.slow_secs;
                let stalled = suite.args.stalled;
                for &t in &protocol_targets {
                    let healthy = Load {
                        clients: n,
                        stalled: 0,
                        rate: None,
                        warmup: 1.5,
                        window: secs,
                        sample_every: 4,
                    };
                    let slow = Load {
                        stalled,
                        ..healthy.clone()
                    };
                    let all = suite.measure(t, &healthy).await?;
                    let some = suite.measure(t, &slow).await?;
                    let mut per = BTreeMap::new();
                    per.insert("all healthy", all);
                    per.insert("with stalled", some);
                    let name = format!(
                        "slow consumers [{}], {n} clients, {stalled} never read, {secs} s",
                        t.label()
                    );
                    suite.row(&name, "msgs/s per healthy client", &per, "per_client");
                    suite.row(&name, "delivery p99 ms", &per, "lat_p99_ms");
                    suite.row(&name, "server RSS MiB at start", &per, "rss_start_mib");
                    suite.row(&name, "server RSS MiB max", &per, "rss_max_mib");
                    suite.row(&name, "server RSS MiB at end", &per, "rss_end_mib");
                    suite.row(&name, "server CPU %", &per, "server_cpu");
                }
            }
            "cluster" => {
                let clients = suite.args.cluster_clients;
                let nodes = suite.args.cluster_nodes;
                for rate in [Some(suite.args.fixed_rate), None] {
                    let load = Load::fanout(clients, rate, suite.args.secs);
                    let mut per = BTreeMap::new();
                    per.insert("one node", suite.measure_nodes(1, &load).await?);
                    per.insert("cluster", suite.measure_nodes(nodes, &load).await?);
                    let name = match rate {
                        None => format!("cluster, {clients} browsers over {nodes} nodes, max rate"),
                        Some(r) => format!(
                            "cluster, {clients} browsers over {nodes} nodes, {r} broadcasts/s"
                        ),
                    };
                    suite.row(&name, "delivered % of offered", &per, "delivered_pct");
                    suite.row(&name, "redis-server CPU %", &per, "redis_cpu");
                    suite.delivery_rows(&name, &per, "servers CPU % (all nodes)");
                }
            }
            other => bail!(
                "unknown scenario '{other}'; choose from join, hold-max, fanout, slow, cluster"
            ),
        }
    }
    suite.print();
    Ok(())
}

impl Suite {
    /// Measures `load` against `target`, `runs` times, and keeps each figure's median.
    async fn measure(&self, target: Target, load: &Load) -> anyhow::Result<Figures> {
        let mut runs = Vec::new();
        for _ in 0..self.args.runs.max(1) {
            let figures = self.measure_once(target, load).await?;
            progress(&format!("{:<6}", target.label()), load, &figures);
            runs.push(figures);
        }
        let mut merged = Figures::new();
        for key in runs[0].keys() {
            let mut values: Vec<f64> = runs.iter().filter_map(|r| r.get(key).copied()).collect();
            values.sort_by(f64::total_cmp);
            merged.insert(*key, values[values.len() / 2]);
        }
        Ok(merged)
    }

    /// Measures `load` against `nodes` of ours: one alone, or a cluster
    /// through a fresh redis-server, the first node producing.
    async fn measure_nodes(&self, nodes: usize, load: &Load) -> anyhow::Result<Figures> {
        let redis = if nodes > 1 {
            Some(RedisProc::start(&self.args.redis_server).await?)
        } else {
            None
        };
        let mut servers = Vec::new();
        for node in 0..nodes {
            let rate = if node == 0 { load.rate } else { Some(0.0) };
            let extra = match &redis {
                Some(redis) => vec!["--redis-url".to_owned(), redis.url()],
                None => Vec::new(),
            };
            servers.push(ServerProc::start(self, Target::Ours, rate, &extra).await?);
        }
        let redis_cpu0 = redis.as_ref().map(|r| procstat::cpu_seconds(Some(r.pid())));
        let started = Instant::now();
        let mut figures = drive(&mut servers, true, self.args.concurrency, load).await?;
        if let (Some(redis), Some(cpu0)) = (&redis, redis_cpu0) {
            let busy = procstat::cpu_seconds(Some(redis.pid())) - cpu0;
            figures.insert("redis_cpu", 100.0 * busy / started.elapsed().as_secs_f64());
        }
        progress(&format!("{nodes} node(s)"), load, &figures);
        Ok(figures)
    }

    async fn measure_once(&self, target: Target, load: &Load) -> anyhow::Result<Figures> {
        let server = ServerProc::start(self, target, load.rate, &[]).await?;
        drive(
            &mut [server],
            target != Target::Bare,
            self.args.concurrency,
            load,
        )
        .await
    }

    /// The rows every fan-out measurement prints.
    fn delivery_rows(
        &mut self,
        name: &str,
        per: &BTreeMap<&'static str, Figures>,
        server_cpu: &str,
    ) {
        self.row(name, "delivered msgs/s", per, "msgs_per_s");
        self.row(name, "delivery p50 ms", per, "lat_p50_ms");
        self.row(name, "delivery p99 ms", per, "lat_p99_ms");
        self.row(name, server_cpu, per, "server_cpu");
        self.row(name, "generator CPU %", per, "gen_cpu");
        self.row(name, "clients joined", per, "joined");
    }

    fn row(
        &mut self,
        scenario: &str,
        metric: &str,
        per: &BTreeMap<&'static str, Figures>,
        key: &str,
    ) {
        let values = per
            .iter()
            .filter_map(|(target, f)| Some((*target, *f.get(key)?)))
            .collect();
        self.rows
            .push((scenario.to_owned(), metric.to_owned(), values));
    }

    fn print(&self) {
        println!();
        println!("| scenario | figure | ours | d-back | bare | ours/d-back | ours/bare |");
        println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        for (scenario, metric, values) in &self.rows {
            if values.contains_key("cluster") {
                let one = values.get("one node");
                let many = values.get("cluster");
                println!(
                    "| {scenario} | {metric} | cluster {} | one node {} | | cluster/one node {} | |",
                    fmt(many),
                    fmt(one),
                    ratio(many, one)
                );
                continue;
            }
            if values.contains_key("all healthy") {
                let a = values.get("all healthy");
                let s = values.get("with stalled");
                println!(
                    "| {scenario} | {metric} | all healthy {} | with stalled {} | | stalled/healthy {} | |",
                    fmt(a),
                    fmt(s),
                    ratio(s, a)
                );
                continue;
            }
            let ours = values.get("ours");
            let theirs = values.get("d-back");
            let bare = values.get("bare");
            println!(
                "| {scenario} | {metric} | {} | {} | {} | {} | {} |",
                fmt(ours),
                fmt(theirs),
                fmt(bare),
                ratio(ours, theirs),
                ratio(ours, bare)
            );
        }
    }
}

/// One measurement's figures on stderr, as it finishes.
fn progress(what: &str, load: &Load, figures: &Figures) {
    let rate = load.rate.map_or("max".to_owned(), |r| r.to_string());
    let figures: Vec<String> = figures.iter().map(|(k, v)| format!("{k}={v:.2}")).collect();
    eprintln!(
        "  {what} {:>6} clients rate {rate:<6} {}",
        load.clients,
        figures.join(" ")
    );
}

fn fmt(v: Option<&f64>) -> String {
    match v {
        None => "–".to_owned(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn ratio(a: Option<&f64>, b: Option<&f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if *b != 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

/// A server process under test; killed when dropped.
struct ServerProc {
    child: Child,
    pid: u32,
    addr: SocketAddr,
}

impl ServerProc {
    async fn start(
        suite: &Suite,
        target: Target,
        rate: Option<f64>,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut words: Vec<String> = match target {
            Target::Ours => suite
                .args
                .ours
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            Target::Theirs => suite
                .args
                .theirs
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            Target::Bare => vec![
                std::env::current_exe()
                    .context("cannot find this program to start the bare server")?
                    .display()
                    .to_string(),
                "bare".to_owned(),
            ],
        };
        words.extend(["--port".to_owned(), port.to_string()]);
        if let Some(r) = rate {
            words.extend(["--rate".to_owned(), r.to_string()]);
        }
        words.extend(extra.iter().cloned());
        let log_path = suite
            .args
            .logs
            .join(format!("{}-{port}.log", target.label()));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start the {} server: {}",
                    target.label(),
                    words.join(" ")
                )
            })?;
        let pid = child.id();
        let mut server = Self {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(server.addr).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "the {} server exited ({status}) before listening; see {}",
                    target.label(),
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the {} server did not listen on {} within 30 s; see {}",
                    target.label(),
                    server.addr,
                    log_path.display()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
        sleep(Duration::from_millis(300)).await;
        Ok(server)
    }
}

impl ServerProc {
    /// Kills the server (again, harmlessly, if it is gone already).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A redis-server of the cluster scenario's own, on a free loopback port,
/// without persistence; killed when dropped.
struct RedisProc {
    child: Child,
    port: u16,
}

impl RedisProc {
    async fn start(binary: &str) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(binary)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| {
                format!("cannot start {binary}: install Redis (e.g. apt-get install redis-server) or pass --redis-server")
            })?;
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                bail!("{binary} did not listen on port {port} within 10 s");
            }
            sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// What all clients of one run share.
#[derive(Default)]
struct Shared {
    /// Set while frames count toward the figures.
    measuring: AtomicBool,
    joined: AtomicU64,
    failed: AtomicU64,
    /// Microseconds from the start of the run to the latest join.
    last_join_us: AtomicU64,
    first_error: Mutex<Option<String>>,
    stop: CancellationToken,
}

/// What one client brings back.
#[derive(Default)]
struct Outcome {
    join_us: Option<u32>,
    latencies_us: Vec<u32>,
    /// Text frames received while measuring; counted per client and summed at
    /// the end, so that no shared counter is touched on every read.
    delivered: u64,
}

/// Runs `load` against started servers (the nodes of a cluster, or one
/// server) and computes the figures; clients are spread evenly over them, and
/// CPU and memory are their sums.
async fn drive(
    servers: &mut [ServerProc],
    protocol: bool,
    concurrency: usize,
    load: &Load,
) -> anyhow::Result<Figures> {
    let pids: Vec<u32> = servers.iter().map(|s| s.pid).collect();
    let rss = || pids.iter().map(|&pid| procstat::rss_kib(pid)).sum::<u64>();
    let server_cpu = || {
        pids.iter()
            .map(|&pid| procstat::cpu_seconds(Some(pid)))
            .sum::<f64>()
    };
    let rss_idle = rss();
    let shared = Arc::new(Shared::default());
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let started = Instant::now();
    let (srv_cpu0, gen_cpu0) = (server_cpu(), procstat::cpu_seconds(None));
    let stall_every = load.clients.checked_div(load.stalled).unwrap_or(0);
    let mut tasks = Vec::with_capacity(load.clients);
    for i in 0..load.clients {
        let stalled = stall_every > 0 && i % stall_every == stall_every - 1;
        // 127.0.0.2 .. 127.0.0.201: see `Client::open`.
        let source = IpAddr::from([127, 0, 0, 2 + (i % SOURCE_ADDRESSES) as u8]);
        tasks.push(tokio::spawn(one_client(
            (servers[i % servers.len()].addr, source),
            protocol,
            stalled,
            load.sample_every,
            Arc::clone(&shared),
            Arc::clone(&gate),
            started,
        )));
    }
    let n = load.clients as u64;
    while shared.joined.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) < n {
        if started.elapsed() > ALL_JOINED_TIMEOUT {
            break;
        }
        sleep(Duration::from_millis(5)).await;
    }
    let join_secs = shared.last_join_us.load(Ordering::Relaxed) as f64 / 1e6;
    let join_wall = started.elapsed().as_secs_f64();
    let (srv_cpu1, gen_cpu1) = (server_cpu(), procstat::cpu_seconds(None));
    sleep(Duration::from_secs_f64(load.warmup)).await;

    let rss_start = rss();
    let mut rss_max = rss_start;
    let (srv_cpu2, gen_cpu2) = (server_cpu(), procstat::cpu_seconds(None));
    let window_start = Instant::now();
    if load.window > 0.0 {
        shared.measuring.store(true, Ordering::Relaxed);
        let end = window_start + Duration::from_secs_f64(load.window);
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now());
            sleep(left.min(Duration::from_secs(1))).await;
            rss_max = rss_max.max(rss());
        }
        shared.measuring.store(false, Ordering::Relaxed);
    }
    let window = window_start.elapsed().as_secs_f64();
    let (srv_cpu3, gen_cpu3) = (server_cpu(), procstat::cpu_seconds(None));
    let rss_end = rss();

    // Stalled clients wait for `stop`; the others read until the server is
    // gone. Killing it before the clients close also keeps TIME_WAIT from
    // piling up on their ports.
    shared.stop.cancel();
    servers.iter_mut().for_each(ServerProc::kill);
    let mut joins = Vec::new();
    let mut latencies = Vec::new();
    let mut delivered = 0;
    for task in tasks {
        if let Ok(Ok(outcome)) = timeout(Duration::from_secs(10), task).await {
            joins.extend(outcome.join_us);
            latencies.extend(outcome.latencies_us);
            delivered += outcome.delivered;
        }
    }
    let joined = shared.joined.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    if let Some(error) = shared.first_error.lock().unwrap().take() {
        eprintln!("  note: {failed} of {n} clients failed to join; first error: {error}");
    }

    let mut f = Figures::new();
    f.insert("joined", joined as f64);
    f.insert("failed", failed as f64);
    if join_secs > 0.0 {
        f.insert("joins_per_s", joined as f64 / join_secs);
    }
    joins.sort_unstable();
    if !joins.is_empty() {
        f.insert("join_p50_ms", percentile(&joins, 50.0) / 1000.0);
        f.insert("join_p99_ms", percentile(&joins, 99.0) / 1000.0);
    }
    f.insert("server_cpu_join", 100.0 * (srv_cpu1 - srv_cpu0) / join_wall);
    f.insert("gen_cpu_join", 100.0 * (gen_cpu1 - gen_cpu0) / join_wall);
    if joined > 0 {
        f.insert(
            "kb_per_conn",
            (rss_start as f64 - rss_idle as f64) * 1024.0 / 1000.0 / joined as f64,
        );
    }
    f.insert("rss_start_mib", rss_start as f64 / 1024.0);
    if load.window > 0.0 {
        let healthy = joined.saturating_sub(load.stalled as u64).max(1);
        f.insert("msgs_per_s", delivered as f64 / window);
        if let Some(rate) = load.rate.filter(|r| *r > 0.0) {
            let offered = rate * window * healthy as f64;
            f.insert("delivered_pct", 100.0 * delivered as f64 / offered);
        }
        f.insert("per_client", delivered as f64 / window / healthy as f64);
        f.insert("server_cpu", 100.0 * (srv_cpu3 - srv_cpu2) / window);
        f.insert("gen_cpu", 100.0 * (gen_cpu3 - gen_cpu2) / window);
        f.insert("rss_max_mib", rss_max as f64 / 1024.0);
        f.insert("rss_end_mib", rss_end as f64 / 1024.0);
        latencies.sort_unstable();
        if !latencies.is_empty() {
            f.insert("lat_p50_ms", percentile(&latencies, 50.0) / 1000.0);
            f.insert("lat_p99_ms", percentile(&latencies, 99.0) / 1000.0);
        }
    }
    Ok(f)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p / 100.0) as usize).min(sorted.len() - 1);
    f64::from(sorted[i])
}

/// One client: connect and join (at most `gate`'s permits at once), then read
/// and measure, or, if `stalled`, hold the socket without ever reading it.
async fn one_client(
    (addr, source): (SocketAddr, IpAddr),
    protocol: bool,
    stalled: bool,
    sample_every: u64,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    started: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let permit = gate.acquire().await;
    let begun = Instant::now();
    let mut client = match timeout(JOIN_TIMEOUT, join(addr, source, protocol)).await {
        Ok(Ok(client)) => client,
        failure => {
            let error = match failure {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no server-join within {JOIN_TIMEOUT:?}"),
            };
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.first_error.lock().unwrap().get_or_insert(error);
            return outcome;
        }
    };
    outcome.join_us = Some(begun.elapsed().as_micros() as u32);
    drop(permit);
    shared.joined.fetch_add(1, Ordering::Relaxed);
    shared
        .last_join_us
        .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    if stalled {
        shared.stop.cancelled().await;
        return outcome;
    }
    let mut seen = 0u64;
    let mut pings: Vec<Vec<u8>> = Vec::new();
    // No `select!` on `stop` here: polling a cancellation future locks the
    // token's waiter list, shared by every client, on each read. The suite
    // kills the server after `stop`, which ends these reads.
    loop {
        let read = client.fill().await;
        if !matches!(read, Ok(n) if n > 0) || shared.stop.is_cancelled() {
            break;
        }
        let measuring = shared.measuring.load(Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut texts = 0u64;
        let mut closed = false;
        client.drain(|opcode, payload| match opcode {
            OP_TEXT => {
                texts += 1;
                if measuring {
                    seen += 1;
                    if seen.is_multiple_of(sample_every)
                        && let Some(sent) = sent_at_nanos(payload)
                    {
                        let us = now.saturating_sub(sent) / 1000;
                        outcome
                            .latencies_us
                            .push(us.min(u128::from(u32::MAX)) as u32);
                    }
                }
            }
            OP_PING => pings.push(payload.to_vec()),
            OP_CLOSE => closed = true,
            _ => {}
        });
        if measuring {
            outcome.delivered += texts;
        }
        for ping in pings.drain(..) {
            if client.pong(&ping).await.is_err() {
                closed = true;
            }
        }
        if closed {
            break;
        }
    }
    outcome
}

/// Connects; with `protocol`, also reads `server-list`, sends `connect` and waits for `server-join`.
async fn join(addr: SocketAddr, source: IpAddr, protocol: bool) -> std::io::Result<Client> {
    let mut client = Client::open(addr, source, CLIENT_BUFFER).await?;
    if !protocol {
        return Ok(client);
    }
    let list = client.next_text().await?;
    if !contains(&list, b"server-list") {
        return Err(std::io::Error::other("first frame was not server-list"));
    }
    client
        .send_text(br#"{"type":"connect","data":{"server":"bench"}}"#)
        .await?;
    loop {
        let frame = client.next_text().await?;
        if contains(&frame, b"server-join") {
            return Ok(client);
        }
        if contains(&frame, b"\"error\"") {
            let text = String::from_utf8_lossy(&frame).into_owned();
            return Err(std::io::Error::other(format!("join refused: {text}")));
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

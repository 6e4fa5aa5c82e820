//! `cloudlink_bench`: measures our CloudLink server side by side with the
//! Python CloudLink server (0.2.0.1), on loopback, with the same client load
//! for both, and prints one markdown table with ours, Python and the ratio.
//!
//! ```text
//! cloudlink_bench --ours "target/release/cloudlink --message-rate 0" \
//!                 --python "target/cloudlink-bench-venv/bin/python bench/cloudlink_server.py"
//! cloudlink_bench --python "…" --smoke          # 20 clients for a second: does it all work?
//! ```
//!
//! `scripts/bench-cloudlink.sh` builds everything, prepares the Python server
//! and runs this. Every measurement starts a fresh server process (its command
//! gets `--host H --port P` appended), drives it from this process's tokio
//! runtime, reads the server's CPU time and memory from `/proc`, and kills it.
//! Scenarios (`suite.rs`): fan-out of CL4 `gmsg` and of Scratch `set`, as fast
//! as the servers take it and at a fixed rate (`fanout.rs`), and server memory
//! per idle client (`idle.rs`). Either server may be left out, e.g. while one
//! of them is not built yet; its column then shows `–`.
//!
//! Timings are never asserted: they depend on the machine and on what else it
//! runs. Only loopback addresses are accepted, and every phase has a bound.

mod client;
mod fanout;
mod idle;
/// Reading CPU time and resident memory from `/proc`, shared with the d-zone
/// load generator.
#[path = "../../d-back/examples/bench_load/procstat.rs"]
mod proc_reader;
mod procstat;
mod report;
mod rooms;
mod server;
mod server_metrics;
mod stamp;
mod stats;
mod suite;

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;

use suite::Scenario;

#[derive(Debug, Parser)]
#[command(
    about = "CloudLink load generator: ours vs the Python CloudLink server, side by side",
    long_about = "Runs each scenario against each given server with the same client load \
                  and prints a markdown table (ours, Python, ours/Python). \
                  Usually started by scripts/bench-cloudlink.sh."
)]
pub struct Cli {
    /// Command that starts our server, e.g. target/release/cloudlink
    /// (`--host H --port P` is appended). Leave out to measure Python only.
    #[arg(long)]
    pub ours: Option<String>,
    /// Command that starts the Python server, e.g. "venv/bin/python
    /// bench/cloudlink_server.py" (same contract). Leave out to measure ours only.
    #[arg(long)]
    pub python: Option<String>,
    /// What the second column's server is called, when `--python` runs
    /// another server in its place (e.g. `TurboWarp` with
    /// bench/turbowarp_server.sh).
    #[arg(long, default_value = "Python")]
    pub python_name: String,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "gmsg,scratch,scratch-durable,scratch-batched,gmsg-rate,scratch-rate,idle,idle-handshake,idle-scratch,idle-stored-rooms,scratch-rooms"
    )]
    pub scenarios: Vec<Scenario>,
    /// Receiving clients in the fan-out scenarios (the sender comes on top).
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Client counts for the idle-memory scenario, e.g. 1000,10000.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub idle_clients: Vec<usize>,
    /// Projects in the scratch-rooms scenario.
    #[arg(long, default_value_t = 1000)]
    pub rooms: usize,
    /// Clients per project in the scratch-rooms scenario (the first also sends).
    #[arg(long, default_value_t = 10)]
    pub per_room: usize,
    /// Sets per second over all projects in the scratch-rooms scenario.
    #[arg(long, default_value_t = 100_000.0)]
    pub rooms_rate: f64,
    /// Seconds of delivery measured per fan-out run.
    #[arg(long, default_value_t = 5.0)]
    pub secs: f64,
    /// Seconds of sending before measuring, once every receiver gets messages.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Messages the sender may be ahead of delivery (the bound on what a server can queue).
    #[arg(long, default_value_t = 64)]
    pub window: u64,
    /// The window for ours in scratch-batched. Batching, it sends each
    /// receiver one frame per period with each variable's newest value, so
    /// with the usual window the sender could not get more than `--window`
    /// sets ahead per period (4,000 a second at 16 ms): the benchmark's limit,
    /// not the server's. The other server keeps `--window`: it sends every
    /// value, so a larger window would only make it queue (its latency grows
    /// to about the window ÷ its rate) without raising its rate.
    #[arg(long, default_value_t = 1024)]
    pub batched_window: u64,
    /// Messages per second the sender offers in gmsg-rate and scratch-rate
    /// (keep it below what the slower server takes, so latency is not queueing).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Runs of each measurement; the table shows medians. Servers alternate run by run.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Clients connecting and joining at the same time.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// Loopback address the servers listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Where the servers' stderr goes.
    #[arg(long, default_value = "target/cloudlink-bench-logs")]
    pub logs: PathBuf,
    /// Also write the table to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Tiny counts and durations (20 clients, 1 s) and an error unless every client
    /// joined and every message arrived: a check that everything works, whose timings mean nothing.
    #[arg(long)]
    pub smoke: bool,
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.smoke {
        cli.clients = 20;
        cli.idle_clients = vec![20];
        cli.rooms = 4;
        cli.per_room = 3;
        cli.rooms_rate = 40.0;
        cli.secs = 1.0;
        cli.warmup = 0.2;
        cli.runs = 1;
    }
    if !cli.host.is_loopback() {
        bail!(
            "--host {} is not a loopback address; this benchmark only runs on 127.0.0.0/8 or ::1",
            cli.host
        );
    }
    if cli.ours.is_none() && cli.python.is_none() {
        bail!("nothing to measure: give --ours, --python or both");
    }
    if !(cli.secs > 0.0 && cli.secs <= 600.0 && cli.warmup >= 0.0 && cli.warmup <= 60.0) {
        bail!("--secs must be in (0, 600] and --warmup in [0, 60]");
    }
    if !(cli.rate > 0.0 && cli.rate <= 100_000.0) {
        bail!("--rate must be in (0, 100000] messages per second");
    }
    if cli.clients == 0
        || cli.clients > 60_000
        || cli.idle_clients.iter().any(|&n| n == 0 || n > 60_000)
    {
        bail!("--clients and --idle-clients must be between 1 and 60000");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("cloudlink-bench") // tells its threads from the server's in a profile
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let text = runtime.block_on(suite::run(&cli))?;
    print!("{text}");
    if let Some(path) = &cli.out {
        fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

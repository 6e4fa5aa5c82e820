//! `cloudlink_bench`: measures our CloudLink server side by side with the
//! Python CloudLink server (0.2.0.1), on loopback, with the same client load
//! for both, and prints one markdown table with ours, Python and the ratio.
//!
//! ```text
//! cloudlink_bench --ours target/release/cloudlink \
//!                 --python "target/cloudlink-bench-venv/bin/python bench/cloudlink_server.py"
//! cloudlink_bench --python "…" --smoke          # a few clients for a second: does it all work?
//! ```
//!
//! `scripts/bench-cloudlink.sh` builds everything, prepares the Python server
//! and runs this. Every measurement starts a fresh server process (its command
//! gets `--host H --port P` appended), drives it from this process's tokio
//! runtime, reads the server's CPU time and memory from `/proc`, and kills it.
//! Scenarios (see each module): `gmsg` and `scratch` fan-out (`fanout.rs`) and
//! `idle` memory per identified client (`idle.rs`). Either server may be left
//! out, e.g. while one of them is not built yet; its column then shows `–`.
//!
//! Timings are never asserted: they depend on the machine and on what else it
//! runs. Only loopback addresses are accepted, and every phase has a bound.

mod client;
mod fanout;
mod idle;
mod procstat;
mod report;
mod server;
mod stamp;
mod stats;

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use report::{Figures, Pair, Report, Target, merge_runs};
use server::ServerProc;
use stamp::Protocol;

#[derive(Debug, Parser)]
#[command(
    about = "CloudLink load generator: ours vs the Python CloudLink server, side by side",
    long_about = "Runs each scenario against each given server with the same client load \
                  and prints a markdown table (ours, Python, ours/Python). \
                  Usually started by scripts/bench-cloudlink.sh."
)]
struct Cli {
    /// Command that starts our server, e.g. target/release/cloudlink
    /// (`--host H --port P` is appended). Leave out to measure Python only.
    #[arg(long)]
    ours: Option<String>,
    /// Command that starts the Python server, e.g. "venv/bin/python
    /// bench/cloudlink_server.py" (same contract). Leave out to measure ours only.
    #[arg(long)]
    python: Option<String>,
    /// Scenarios to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "gmsg,scratch,idle"
    )]
    scenarios: Vec<Scenario>,
    /// Receiving clients in the fan-out scenarios (the sender comes on top).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Client counts for the idle-memory scenario, e.g. 1000,10000.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    idle_clients: Vec<usize>,
    /// Seconds of delivery measured per fan-out run.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Seconds of sending before measuring, once every receiver gets messages.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Messages the sender may be ahead of delivery (the bound on what a server can queue).
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Runs of each measurement; the table shows medians. Servers alternate run by run.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Clients connecting and joining at the same time.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Loopback address the servers listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Where the servers' stderr goes.
    #[arg(long, default_value = "target/cloudlink-bench-logs")]
    logs: PathBuf,
    /// Also write the table to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Tiny counts and durations (20 clients, 1 s): checks that everything works, measures nothing.
    #[arg(long)]
    smoke: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// CL4 clients in `default`, one sender sending `gmsg`.
    Gmsg,
    /// Scratch clients in one project, one sender sending `set`.
    Scratch,
    /// Server memory per idle identified CL4 client.
    Idle,
}

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.smoke {
        cli.clients = 20;
        cli.idle_clients = vec![20];
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("cloudlink-bench") // tells its threads from the server's in a profile
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let text = runtime.block_on(suite(&cli))?;
    print!("{text}");
    if let Some(path) = &cli.out {
        fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Runs every scenario and returns the report.
async fn suite(cli: &Cli) -> anyhow::Result<String> {
    let targets: Vec<(Target, &str)> = [
        (Target::Ours, cli.ours.as_deref()),
        (Target::Python, cli.python.as_deref()),
    ]
    .into_iter()
    .filter_map(|(t, c)| Some((t, c?)))
    .collect();
    let mut report = Report::default();
    for &scenario in &cli.scenarios {
        match scenario {
            Scenario::Gmsg | Scenario::Scratch => {
                let (protocol, name, what) = if scenario == Scenario::Gmsg {
                    (Protocol::Cl4, "gmsg fan-out", "gmsg")
                } else {
                    (Protocol::Scratch, "Scratch set fan-out", "Scratch set")
                };
                let load = fanout::Load {
                    protocol,
                    receivers: cli.clients,
                    concurrency: cli.concurrency,
                    window: cli.window,
                    warmup: Duration::from_secs_f64(cli.warmup),
                    secs: Duration::from_secs_f64(cli.secs),
                };
                let pair = measure(cli, &targets, what, async |server: &mut ServerProc| {
                    fanout::run(server, &load).await
                })
                .await?;
                let scenario = format!("{name}, {} receivers", cli.clients);
                report.row(&scenario, "delivered msgs/s", &pair, "delivered_per_s");
                report.row(&scenario, "delivery p50 ms", &pair, "latency_p50_ms");
                report.row(&scenario, "delivery p99 ms", &pair, "latency_p99_ms");
                report.row(&scenario, "sent msgs/s", &pair, "sent_per_s");
                report.row(&scenario, "delivered share %", &pair, "delivered_share");
                report.row(&scenario, "server CPU %", &pair, "server_cpu");
                report.row(&scenario, "generator CPU %", &pair, "generator_cpu");
                report.row(
                    &scenario,
                    "server RSS MiB (max)",
                    &pair,
                    "server_rss_max_mib",
                );
                report.row(&scenario, "receivers joined", &pair, "joined");
                report.goal_ratio(
                    &format!("{what} delivered msgs/s"),
                    &pair,
                    "delivered_per_s",
                    50.0,
                );
                report.goal_no_worse(&format!("{what} delivery p99 ms"), &pair, "latency_p99_ms");
            }
            Scenario::Idle => {
                for &clients in &cli.idle_clients {
                    let pair = measure(cli, &targets, "idle", async |server: &mut ServerProc| {
                        idle::run(server, clients, cli.concurrency).await
                    })
                    .await?;
                    let scenario = format!("idle, {clients} identified CL4 clients");
                    report.row(
                        &scenario,
                        "server KB per idle client",
                        &pair,
                        "kb_per_client",
                    );
                    report.row(&scenario, "server RSS MiB before", &pair, "rss_before_mib");
                    report.row(&scenario, "server RSS MiB after", &pair, "rss_after_mib");
                    report.row(&scenario, "identified clients/s", &pair, "identified_per_s");
                    report.row(
                        &scenario,
                        "server CPU % (identifying)",
                        &pair,
                        "identify_cpu",
                    );
                    report.row(&scenario, "seconds until quiet", &pair, "settle_s");
                    report.row(&scenario, "clients identified", &pair, "identified");
                    report.goal_at_most(
                        &format!("KB per idle client ({clients})"),
                        &pair,
                        "kb_per_client",
                        4.0,
                    );
                }
            }
        }
    }
    for (target, command) in [(Target::Ours, &cli.ours), (Target::Python, &cli.python)] {
        if command.is_none() {
            report.note(format!(
                "{} server not measured (no --{} given)",
                target.label(),
                target.label()
            ));
        }
    }
    let mut conditions = vec![
        format!(
            "ours: `{}`; Python: `{}`",
            cli.ours.as_deref().unwrap_or("–"),
            cli.python.as_deref().unwrap_or("–")
        ),
        format!(
            "fan-out: {} receivers + 1 sender, at most {} messages outstanding, {} s warm-up, {} s measured; median of {} run(s); {} clients joining at once",
            cli.clients, cli.window, cli.warmup, cli.secs, cli.runs, cli.concurrency
        ),
    ];
    if cli.smoke {
        conditions.push("smoke mode: tiny counts, the figures mean nothing".to_owned());
    }
    Ok(report.markdown("CloudLink: ours vs Python CloudLink 0.2.0.1", &conditions))
}

/// Measures one scenario against each target, `runs` times, alternating the
/// targets run by run so that a change in the machine's load hits both alike;
/// returns each figure's median per target.
async fn measure(
    cli: &Cli,
    targets: &[(Target, &str)],
    what: &str,
    mut scenario: impl AsyncFnMut(&mut ServerProc) -> anyhow::Result<Figures>,
) -> anyhow::Result<Pair> {
    let mut runs: Vec<(Target, Vec<Figures>)> =
        targets.iter().map(|&(t, _)| (t, Vec::new())).collect();
    for run in 0..cli.runs.max(1) {
        for (i, &(target, command)) in targets.iter().enumerate() {
            let mut server =
                ServerProc::start(command, target.label(), cli.host, &cli.logs).await?;
            let figures = scenario(&mut server)
                .await
                .with_context(|| format!("{what} against the {} server failed", target.label()))?;
            drop(server);
            eprintln!(
                "  {what} run {} {:<6} {}",
                run + 1,
                target.label(),
                figures
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            runs[i].1.push(figures);
        }
    }
    let mut pair = Pair::default();
    for (target, figures) in runs {
        pair.set(target, merge_runs(&figures));
    }
    Ok(pair)
}

//! The suite: which scenarios exist, how each is run against every server
//! (fresh process per run, servers alternating run by run, medians kept), and
//! which rows and goals of the report each one fills.

use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use crate::Cli;
use crate::report::{Figures, Pair, Report, Target, merge_runs};
use crate::server::ServerProc;
use crate::stamp::Protocol;
use crate::{fanout, idle, rooms};

/// What can be measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// CL4 clients in `default`, one sender sending `gmsg` as fast as the window allows.
    Gmsg,
    /// Scratch clients in one project, one sender sending `set` as fast as the window allows.
    Scratch,
    /// As `gmsg`, at a fixed rate (`--rate`): latency without queueing.
    GmsgRate,
    /// As `scratch`, at a fixed rate (`--rate`): latency without queueing.
    ScratchRate,
    /// As `scratch`, with our server batching (`--batch-ms 16`): each
    /// receiver gets at most one frame per 16 ms holding the variable's
    /// latest value, so fewer, fresher messages arrive (the delivered share
    /// is below 100% by design).
    ScratchBatched,
    /// As `scratch`, ours only, with variables kept in a durable store (a
    /// fresh file per run): compared with `scratch` (ours with `--store memory`).
    ScratchDurable,
    /// Server memory per idle identified (handshake + setid) CL4 client.
    Idle,
    /// Server memory per idle CL4 client after the handshake only (no user lists).
    IdleHandshake,
    /// Server memory per idle Scratch client, all in one project.
    IdleScratch,
    /// Ours only, with a durable store: many small projects (`--rooms` of
    /// `--per-room` clients) with `--rooms-rate` sets a second over all of them.
    ScratchRooms,
    /// Ours only, with a durable store: server memory per project that a
    /// client made (one variable) and left, kept in memory for the store.
    IdleStoredRooms,
}

/// Runs every scenario of `cli` and returns the report as markdown.
pub async fn run(cli: &Cli) -> anyhow::Result<String> {
    let targets: Vec<(Target, &str)> = [
        (Target::Ours, cli.ours.as_deref()),
        (Target::Python, cli.python.as_deref()),
    ]
    .into_iter()
    .filter_map(|(t, c)| Some((t, c?)))
    .collect();
    let mut report = Report::comparing_with(&cli.python_name);
    let mut in_memory = None;
    let store_dir = tempfile::tempdir().context("cannot make a directory for the store")?;
    for &scenario in &cli.scenarios {
        match scenario {
            Scenario::Gmsg | Scenario::Scratch | Scenario::GmsgRate | Scenario::ScratchRate => {
                let pair = fan_out(cli, &targets, scenario, &mut report).await?;
                if scenario == Scenario::Scratch {
                    in_memory = pair.ours;
                }
            }
            Scenario::ScratchBatched => {
                let Some(ours) = &cli.ours else {
                    report.note("batched fan-out not measured (no --ours given)".to_owned());
                    continue;
                };
                let batched = format!("{ours} --batch-ms 16");
                let mut pair_targets = vec![(Target::Ours, batched.as_str())];
                pair_targets.extend(targets.iter().filter(|(t, _)| *t == Target::Python));
                fan_out(cli, &pair_targets, scenario, &mut report).await?;
            }
            Scenario::ScratchRooms => {
                let Some(ours) = &cli.ours else {
                    report.note("many-projects load not measured (no --ours given)".to_owned());
                    continue;
                };
                let command = with_store(ours, &store_dir.path().join("many-{run}.redb"));
                let load = rooms::RoomsLoad {
                    rooms: cli.rooms,
                    per_room: cli.per_room,
                    rate: cli.rooms_rate,
                    concurrency: cli.concurrency,
                    warmup: Duration::from_secs_f64(cli.warmup),
                    secs: Duration::from_secs_f64(cli.secs),
                };
                let what = "many projects";
                let pair = measure(cli, &[(Target::Ours, &command)], what, async |_, server| {
                    rooms::run(server, &load).await
                })
                .await?;
                if cli.smoke {
                    let clients = (cli.rooms * cli.per_room) as f64;
                    smoke_check(&pair, what, &[("joined", clients)])?;
                    // The server's own count comes from its /metrics page.
                    smoke_some(&pair, what, &["sets_accepted_per_s", "delivered_per_s"])?;
                }
                let name = format!(
                    "{} projects × {} Scratch clients, {} sets/s offered, durable store",
                    cli.rooms, cli.per_room, cli.rooms_rate
                );
                report.row(&name, "sets sent/s", &pair, "sent_per_s");
                report.row(
                    &name,
                    "sets accepted/s (server's count)",
                    &pair,
                    "sets_accepted_per_s",
                );
                report.row(&name, "delivered msgs/s", &pair, "delivered_per_s");
                report.row(&name, "delivery p50 ms", &pair, "latency_p50_ms");
                report.row(&name, "delivery p99 ms", &pair, "latency_p99_ms");
                report.row(&name, "server CPU %", &pair, "server_cpu");
                report.row(&name, "generator CPU %", &pair, "generator_cpu");
                report.row(&name, "server RSS MiB (max)", &pair, "server_rss_max_mib");
                report.row(&name, "store flushes while measured", &pair, "flushes");
                report.row(&name, "store flush mean ms", &pair, "flush_mean_ms");
                report.row(
                    &name,
                    "every store flush within ms",
                    &pair,
                    "flush_max_within_ms",
                );
                report.row(&name, "store file MiB", &pair, "store_mib");
                report.row(&name, "clients joined", &pair, "joined");
            }
            Scenario::IdleStoredRooms => {
                let Some(ours) = &cli.ours else {
                    report.note("stored rooms not measured (no --ours given)".to_owned());
                    continue;
                };
                let command = with_store(ours, &store_dir.path().join("rooms-{run}.redb"));
                for &rooms in &cli.idle_clients {
                    let what = "idle stored rooms";
                    let pair =
                        measure(cli, &[(Target::Ours, &command)], what, async |_, server| {
                            idle::stored_rooms(server, rooms, cli.concurrency).await
                        })
                        .await?;
                    let name = format!(
                        "idle, {rooms} emptied projects kept for the store (one variable each)"
                    );
                    report.row(
                        &name,
                        "server KB per stored project",
                        &pair,
                        "kb_per_client",
                    );
                    report.row(&name, "projects made/s", &pair, "identified_per_s");
                    report.row(&name, "projects made", &pair, "identified");
                }
            }
            Scenario::ScratchDurable => {
                let Some(ours) = &cli.ours else {
                    report.note("durable-store fan-out not measured (no --ours given)".to_owned());
                    continue;
                };
                // A fresh store per run: values left by an earlier run would
                // reach new receivers as stale stamps.
                let command = with_store(ours, &store_dir.path().join("bench-{run}.redb"));
                let durable =
                    fan_out(cli, &[(Target::Ours, &command)], scenario, &mut report).await?;
                report.goal_durable(&durable, in_memory.as_ref(), "delivered_per_s", 0.9);
            }
            Scenario::Idle | Scenario::IdleHandshake | Scenario::IdleScratch => {
                for &clients in &cli.idle_clients {
                    idle_memory(cli, &targets, scenario, clients, &mut report).await?;
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
            "ours: `{}`; {}: `{}`",
            cli.ours.as_deref().unwrap_or("–"),
            cli.python_name,
            cli.python.as_deref().unwrap_or("–")
        ),
        format!(
            "fan-out: {} receivers + 1 sender, at most {} messages outstanding (ours batched: {}), \
             fixed rate {}/s; {} s warm-up, {} s measured; median of {} run(s); {} clients joining at once",
            cli.clients,
            cli.window,
            cli.batched_window,
            cli.rate,
            cli.warmup,
            cli.secs,
            cli.runs,
            cli.concurrency
        ),
    ];
    if cli.smoke {
        conditions.push("smoke mode: tiny counts, the figures mean nothing".to_owned());
    }
    let title = if cli.python_name == "Python" {
        "CloudLink: ours vs Python CloudLink 0.2.0.1".to_owned()
    } else {
        format!("CloudLink: ours vs {}", cli.python_name)
    };
    Ok(report.markdown(&title, &conditions))
}

async fn fan_out(
    cli: &Cli,
    targets: &[(Target, &str)],
    scenario: Scenario,
    report: &mut Report,
) -> anyhow::Result<Pair> {
    let (protocol, what) = match scenario {
        Scenario::Gmsg | Scenario::GmsgRate => (Protocol::Cl4, "gmsg"),
        Scenario::ScratchDurable => (Protocol::Scratch, "Scratch set (durable store)"),
        Scenario::ScratchBatched => (Protocol::Scratch, "Scratch set (ours batched 16 ms)"),
        _ => (Protocol::Scratch, "Scratch set"),
    };
    let rate = matches!(scenario, Scenario::GmsgRate | Scenario::ScratchRate).then_some(cli.rate);
    let load = fanout::Load {
        protocol,
        receivers: cli.clients,
        concurrency: cli.concurrency,
        window: cli.window,
        warmup: Duration::from_secs_f64(cli.warmup),
        secs: Duration::from_secs_f64(cli.secs),
        rate,
    };
    let pace = match rate {
        None => "max rate".to_owned(),
        Some(r) => format!("{r} msgs/s"),
    };
    let pair = measure(
        cli,
        targets,
        &format!("{what} {pace}"),
        async |target, server| {
            // Only our batching server gets the larger window: the other sends
            // every value, and would only queue more (see `--batched-window`).
            let mut load = load.clone();
            if scenario == Scenario::ScratchBatched && target == Target::Ours {
                load.window = cli.batched_window;
            }
            fanout::run(server, &load).await
        },
    )
    .await?;
    if cli.smoke {
        let everyone = [
            ("joined", cli.clients as f64),
            ("ready", cli.clients as f64),
        ];
        let every_message = [("lost", 0.0), ("delivered_share", 100.0)];
        // Batching keeps only each variable's latest value: not every
        // message arrives, by design.
        let expected: Vec<_> = if scenario == Scenario::ScratchBatched {
            everyone.to_vec()
        } else {
            everyone.into_iter().chain(every_message).collect()
        };
        smoke_check(&pair, &format!("{what} {pace}"), &expected)?;
    }
    let name = format!("{what} fan-out, {} receivers, {pace}", cli.clients);
    report.row(&name, "delivered msgs/s", &pair, "delivered_per_s");
    report.row(&name, "delivery p50 ms", &pair, "latency_p50_ms");
    report.row(&name, "delivery p99 ms", &pair, "latency_p99_ms");
    report.row(&name, "sent msgs/s", &pair, "sent_per_s");
    report.row(&name, "delivered share %", &pair, "delivered_share");
    report.row(&name, "server CPU %", &pair, "server_cpu");
    report.row(&name, "generator CPU %", &pair, "generator_cpu");
    report.row(&name, "server RSS MiB (max)", &pair, "server_rss_max_mib");
    report.row(&name, "receivers joined", &pair, "joined");
    report.row(&name, "receivers joined/s", &pair, "joins_per_s");
    if matches!(
        scenario,
        Scenario::ScratchDurable | Scenario::ScratchBatched
    ) {
        return Ok(pair);
    }
    // The 50× goal is against the Python server, not whatever else runs in its place.
    if rate.is_none() && cli.python_name == "Python" {
        report.goal_ratio(
            &format!("{what} delivered msgs/s"),
            &pair,
            "delivered_per_s",
            50.0,
        );
    }
    report.goal_no_worse(
        &format!("{what} delivery p99 ms at {pace}"),
        &pair,
        "latency_p99_ms",
    );
    Ok(pair)
}

/// Our command with its variables kept in the store at `path` instead of
/// where (or whether) the command keeps them.
fn with_store(command: &str, path: &std::path::Path) -> String {
    let mut words: Vec<&str> = command.split_whitespace().collect();
    if let Some(at) = words.iter().position(|w| *w == "--store") {
        words.drain(at..(at + 2).min(words.len()));
    }
    format!("{} --store {}", words.join(" "), path.display())
}

async fn idle_memory(
    cli: &Cli,
    targets: &[(Target, &str)],
    scenario: Scenario,
    clients: usize,
    report: &mut Report,
) -> anyhow::Result<()> {
    let identify = scenario == Scenario::Idle;
    let (protocol, kind) = match scenario {
        Scenario::Idle => (Protocol::Cl4, "identified CL4"),
        Scenario::IdleScratch => (Protocol::Scratch, "Scratch (one project)"),
        _ => (Protocol::Cl4, "handshake-only CL4"),
    };
    let pair = measure(cli, targets, &format!("idle {kind}"), async |_, server| {
        idle::run(server, clients, cli.concurrency, protocol, identify).await
    })
    .await?;
    if cli.smoke {
        smoke_check(
            &pair,
            &format!("idle {kind}"),
            &[("identified", clients as f64)],
        )?;
    }
    let name = format!("idle, {clients} {kind} clients");
    report.row(&name, "server KB per idle client", &pair, "kb_per_client");
    report.row(
        &name,
        "server KB per further idle client (second half)",
        &pair,
        "kb_per_further_client",
    );
    report.row(&name, "server RSS MiB before", &pair, "rss_before_mib");
    report.row(&name, "server RSS MiB at half", &pair, "rss_half_mib");
    report.row(&name, "server RSS MiB after", &pair, "rss_after_mib");
    report.row(&name, "clients ready/s", &pair, "identified_per_s");
    report.row(&name, "server CPU % (connecting)", &pair, "identify_cpu");
    report.row(&name, "seconds until quiet", &pair, "settle_s");
    report.row(&name, "clients ready", &pair, "identified");
    if identify {
        report.goal_at_most(
            &format!("KB per idle identified client ({clients})"),
            &pair,
            "kb_per_client",
            4.0,
        );
    }
    if scenario == Scenario::IdleScratch {
        report.goal_at_most(
            &format!("KB per idle Scratch client ({clients})"),
            &pair,
            "kb_per_client",
            2.0,
        );
        report.goal_at_most(
            &format!("KB per further idle Scratch client ({clients})"),
            &pair,
            "kb_per_further_client",
            2.0,
        );
    }
    Ok(())
}

/// In smoke mode, fails unless every measured server shows each `expected`
/// figure exactly: every client joined, none was closed, every message
/// arrived. This is what makes `--smoke` a test of the generator and of both
/// servers' protocol handling, while its timings stay unasserted.
fn smoke_check(pair: &Pair, what: &str, expected: &[(&str, f64)]) -> anyhow::Result<()> {
    for (target, figures) in [(Target::Ours, &pair.ours), (Target::Python, &pair.python)] {
        let Some(figures) = figures else { continue };
        for &(key, want) in expected {
            let got = figures.get(key).copied();
            if got.is_none_or(|g| (g - want).abs() > 1e-6) {
                anyhow::bail!(
                    "smoke check failed: {what} against the {} server gave {key} = {got:?}, expected {want} \
                     (its log is in the --logs directory)",
                    target.label()
                );
            }
        }
    }
    Ok(())
}

/// In smoke mode, fails unless every measured server shows each of `keys`
/// above zero: for figures that vary from run to run but must be there.
fn smoke_some(pair: &Pair, what: &str, keys: &[&str]) -> anyhow::Result<()> {
    for (target, figures) in [(Target::Ours, &pair.ours), (Target::Python, &pair.python)] {
        let Some(figures) = figures else { continue };
        for &key in keys {
            let got = figures.get(key).copied();
            if got.is_none_or(|g| g <= 0.0) {
                anyhow::bail!(
                    "smoke check failed: {what} against the {} server gave {key} = {got:?}, expected more than 0 \
                     (its log is in the --logs directory)",
                    target.label()
                );
            }
        }
    }
    Ok(())
}

/// Measures one scenario against each target, `runs` times, alternating the
/// targets run by run so that a change in the machine's load hits both alike;
/// returns each figure's median per target.
async fn measure(
    cli: &Cli,
    targets: &[(Target, &str)],
    what: &str,
    mut scenario: impl AsyncFnMut(Target, &mut ServerProc) -> anyhow::Result<Figures>,
) -> anyhow::Result<Pair> {
    let mut runs: Vec<(Target, Vec<Figures>)> =
        targets.iter().map(|&(t, _)| (t, Vec::new())).collect();
    for run in 0..cli.runs.max(1) {
        for (i, &(target, command)) in targets.iter().enumerate() {
            // `{run}` in a command becomes the run's number (see `with_store`).
            let command = command.replace("{run}", &run.to_string());
            let mut server =
                ServerProc::start(&command, target.label(), cli.host, &cli.logs).await?;
            let figures = scenario(target, &mut server)
                .await
                .with_context(|| format!("{what} against the {} server failed", target.label()))?;
            drop(server);
            eprintln!(
                "  {what}, run {} {:<6} {}",
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

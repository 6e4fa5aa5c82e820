//! The `cloudlink` command: parse the command line, set up logging, serve
//! until SIGINT or SIGTERM, then shut down gracefully.
//!
//! Start-up problems (a port in use, a host that does not resolve, an
//! unusable TLS file, a bad flag value) end the process with one line on
//! stderr and exit code 1.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, LogFormat};

/// jemalloc rather than the system allocator: identifying a room's users
/// sends each newcomer a list of everyone and everyone a line about the
/// newcomer, a burst of short-lived buffers between the long-lived records of
/// each connection. glibc's allocator keeps the holes this leaves (about 3 KB
/// per idle identified client, measured with `cloudlink_bench --scenarios
/// idle`); jemalloc keeps objects of one size together and gives whole pages
/// back.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts: a background thread returns
/// pages unused for 200 ms to the system, so that memory follows the clients
/// that are connected rather than the biggest burst so far; and no
/// per-thread caches, which held about 0.9 KB per idle client at 1,000
/// clients. Without them fan-out measured about a tenth slower in
/// alternating runs (`cloudlink_bench --scenarios gmsg,scratch,idle` with
/// `_RJEM_MALLOC_CONF=tcache:true` and without), within this machine's
/// ±15% run-to-run noise, and still 75-90 times the Python server: memory
/// per idle client is what a host with many quiet clients runs out of first.
/// `_RJEM_MALLOC_CONF=tcache:true` turns them back on.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_SETTINGS: &[u8; 72] =
    b"background_thread:true,dirty_decay_ms:200,muzzy_decay_ms:0,tcache:false\0";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    edge::process::init_logging(cli.log_level.as_deref(), cli.log_format == LogFormat::Json);
    let (cloudlink, server) = match (cli.cloudlink(), cli.server()) {
        (Ok(cloudlink), Ok(server)) => (cloudlink.build(), server),
        (Err(message), _) | (_, Err(message)) => return fail(&message),
    };
    let server = match server.bind(cloudlink).await {
        Ok(server) => server,
        Err(error) => return fail(&error.to_string()),
    };
    let stop = edge::process::stop_signal();
    let mut reload = edge::process::ReloadSignal::new();
    let variables = if cli
        .redis_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty())
    {
        format!(
            "Scratch projects shared with the cluster {}",
            cli.cluster_name
        )
    } else if cli.store == "memory" {
        "cloud variables in memory".to_owned()
    } else {
        format!("cloud variables stored in {}", cli.store)
    };
    // A plain line, or a JSON log line with --log-format json, so that every
    // line on stderr has the format asked for.
    edge::process::announce(&format!(
        "cloudlink {} serving {} (CloudLink 4 and Scratch cloud variables; {variables}); Ctrl-C stops it",
        env!("CARGO_PKG_VERSION"),
        server.url()
    ));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = reload.recv() => reload_files(&cli, &server),
        }
    }
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGHUP: reads the host's rule files and the TLS certificate and key
/// again. A file that does not read or parse is reported and the rules or
/// certificate in force stay.
fn reload_files(cli: &Cli, server: &cloudlink::RunningServer) {
    match cloudlink::HostRules::load(&cli.host_rule_files()) {
        Ok(rules) => {
            let closed = server.cloudlink().replace_host_rules(rules);
            tracing::info!(
                closed,
                "host rules reloaded; clients they refuse were closed"
            );
        }
        Err(error) => {
            tracing::error!(%error, "host rules not reloaded; the old ones stay in force")
        }
    }
    match server.reload_tls() {
        Ok(true) => tracing::info!("TLS certificate reloaded; new connections use it"),
        Ok(false) => {}
        Err(error) => {
            tracing::error!(%error, "TLS certificate not reloaded; the old one stays in use")
        }
    }
}

fn fail(message: &str) -> ExitCode {
    edge::process::fatal(message);
    ExitCode::FAILURE
}

//! The `d_back` command: parse the command line, set up logging, serve until
//! SIGINT or SIGTERM, then shut down gracefully.
//!
//! Start-up problems (a port in use, a host that does not resolve, a missing
//! static directory, a data file that does not parse, Discord refusing the
//! bot) end the process with one line on stderr and exit code 1, never a
//! backtrace. Which data is served is decided in [`sources`].

mod config;
mod sources;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracing_subscriber::EnvFilter;

use config::{Cli, LogFormat};
use sources::Sources;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(shell) = cli.completions {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "d_back", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if cli.man {
        return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&format!("cannot write the manual page: {error}")),
        };
    }
    init_logging(&cli);
    let builder = match cli.builder() {
        Ok(builder) => builder,
        Err(message) => return fail(&message),
    };
    let sources = match Sources::start(&cli).await {
        Ok(sources) => sources,
        Err(message) => return fail(&message),
    };
    let builder = sources.configure(builder, &cli);
    let server = match builder.bind().await {
        Ok(server) => server,
        Err(error) => return fail(&error.to_string()),
    };
    sources.attach(server.hub());
    eprintln!(
        "d-back {} serving {} (WebSocket on the same address); Ctrl-C stops it",
        env!("CARGO_PKG_VERSION"),
        server.url()
    );
    wait_for_stop_signal().await;
    sources.stop().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("d_back: error: {message}");
    ExitCode::FAILURE
}

fn init_logging(cli: &Cli) {
    let filter = match &cli.log_level {
        Some(level) => EnvFilter::try_new(level).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .unwrap_or_else(|| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

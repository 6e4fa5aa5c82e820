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
    let variables = if cli.store == "memory" {
        "cloud variables in memory".to_owned()
    } else {
        format!("cloud variables stored in {}", cli.store)
    };
    eprintln!(
        "cloudlink {} serving {} (CloudLink 4 and Scratch cloud variables; {variables}); Ctrl-C stops it",
        env!("CARGO_PKG_VERSION"),
        server.url()
    );
    stop.await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cloudlink: error: {message}");
    ExitCode::FAILURE
}

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
    edge::process::init_logging(cli.log_level.as_deref(), cli.log_format == LogFormat::Json);
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
    let stop = edge::process::stop_signal();
    eprintln!(
        "d-back {} serving {} (WebSocket on the same address); Ctrl-C stops it",
        env!("CARGO_PKG_VERSION"),
        server.url()
    );
    stop.await;
    sources.stop().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("d_back: error: {message}");
    ExitCode::FAILURE
}

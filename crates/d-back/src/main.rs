//! The `d_back` command: parse the command line, set up logging, serve until
//! SIGINT or SIGTERM, then shut down gracefully.
//!
//! Start-up problems (a port in use, a host that does not resolve, a missing
//! static directory, a data file that does not parse, Discord refusing the
//! bot) end the process with one line on stderr and exit code 1, never a
//! backtrace. Which data is served is decided in [`sources`].

mod config;
mod manual;
mod sources;

use std::process::ExitCode;

use clap::CommandFactory;

use config::{Cli, LogFormat};
use sources::Sources;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = config::parse().without_empty_values();
    if let Some(shell) = cli.completions {
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "d_back", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if cli.man {
        return match manual::render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&format!("cannot write the manual page: {error}")),
        };
    }
    if let Err(mut error) =
        edge::process::try_init_logging(cli.log_level.as_deref(), cli.log_format == LogFormat::Json)
    {
        if error.setting == "--log-level" && cli.log_level_from_environment() {
            error.setting = "D_BACK_LOG_LEVEL".to_owned();
        }
        return fail(&error.to_string());
    }
    let builder = match cli.builder() {
        Ok(builder) => builder,
        Err(message) => return fail(&message),
    };
    let mut sources = match Sources::start(&cli).await {
        Ok(sources) => sources,
        Err(message) => return fail(&message),
    };
    let builder = sources.configure(builder, &cli);
    let server = match builder.bind().await {
        Ok(server) => server,
        Err(error) => return fail(&error.to_string()),
    };
    sources.attach(server.hub());
    // Both signals are listened for before the address is announced, so a
    // signal sent the moment a supervisor sees the banner is never missed.
    let stop = edge::process::stop_signal();
    let refused = sources.refused();
    let mut reload = edge::process::ReloadSignal::new();
    edge::process::announce(&banner(&server.url(), server.local_addr()));
    sources.explain_empty(&cli, &browsable_url(&server.url(), server.local_addr()));
    tokio::pin!(stop, refused);
    loop {
        tokio::select! {
            () = &mut stop => break,
            message = &mut refused => return fail(&message),
            () = reload.recv() => reload_files(&sources, &server),
        }
    }
    sources.stop().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

/// SIGHUP: reads the data file and the TLS certificate and key again. A file
/// that no longer parses is reported and the old one kept in use.
fn reload_files(sources: &Sources, server: &d_back::RunningServer) {
    sources.reload();
    match server.reload_tls() {
        Ok(true) => tracing::info!("TLS certificate reloaded; new connections use it"),
        Ok(false) => {}
        Err(error) => {
            tracing::error!(%error, "TLS certificate not reloaded; the old one stays in use")
        }
    }
}

/// `url`, with `localhost` in place of an every-interface address (`0.0.0.0`
/// or `::`), which no browser or curl can open.
fn browsable_url(url: &str, local: std::net::SocketAddr) -> String {
    if local.ip().is_unspecified() {
        let scheme = url.split("://").next().unwrap_or("http");
        format!("{scheme}://localhost:{}/", local.port())
    } else {
        url.to_owned()
    }
}

/// The start-up line: where the server serves and, when it listens on every
/// interface (`0.0.0.0` or `::`, which no browser can open), an address a
/// browser on this machine can.
fn banner(url: &str, local: std::net::SocketAddr) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut line = format!("d-back {version} serving {url} (WebSocket on the same address)");
    if local.ip().is_unspecified() {
        let here = browsable_url(url, local);
        line.push_str(&format!(
            " on every interface; open {here} in a browser here"
        ));
    }
    line.push_str("; Ctrl-C stops it");
    line
}

/// Reports why the start failed (one line, JSON with JSON logs) and exits with 1.
fn fail(message: &str) -> ExitCode {
    edge::process::fatal(message);
    ExitCode::FAILURE
}

//! What every server command does around its server: set up logging, say
//! where it serves, report a fatal error, and wait for the signal to stop.
//!
//! Logs go to stderr, coloured only when stderr is a terminal. With JSON logs,
//! every line the command writes to stderr is one JSON object, the start-up
//! line and a fatal error included, so a log collector never meets a line it
//! cannot parse: [`announce`] and [`fatal`] write through the log under the
//! target [`PROCESS_TARGET`], which no filter silences. A filter that does not
//! parse ends the start instead of quietly logging nothing.

use std::fmt;
use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// The log target of the lines about the process itself (start, fatal errors);
/// always written, whatever the filter says.
pub const PROCESS_TARGET: &str = "process";

/// The levels a bare filter word may name.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Whether [`init_logging`] chose JSON lines; unset before it ran.
static JSON: OnceLock<bool> = OnceLock::new();

/// A log filter that does not parse, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilterError {
    /// Where the filter was given (`--log-level`, `RUST_LOG`...), for the message.
    pub setting: String,
    /// The filter as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for LogFilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} '{}' is not a log filter: {}",
            self.setting, self.value, self.reason
        )
    }
}

impl std::error::Error for LogFilterError {}

/// Sends log lines to stderr, filtered by `filter` (e.g. `info` or
/// `cloudlink=debug`), else by `RUST_LOG`, else at `info`; as JSON objects
/// when `json` is set. A filter that does not parse ends the process with one
/// line on stderr and exit code 1.
pub fn init_logging(filter: Option<&str>, json: bool) {
    if let Err(error) = try_init_logging(filter, json) {
        eprintln!("{}: error: {error}", program_name());
        std::process::exit(1);
    }
}

/// Like [`init_logging`], but hands back a filter that does not parse (its
/// `setting` says `--log-level` for `filter`, `RUST_LOG` for the environment;
/// a caller that knows better may rename it).
pub fn try_init_logging(filter: Option<&str>, json: bool) -> Result<(), LogFilterError> {
    let from_env = std::env::var("RUST_LOG").ok();
    let (setting, text) = match filter {
        Some(text) => ("--log-level", text.to_owned()),
        None => match from_env {
            Some(text) if !text.trim().is_empty() => ("RUST_LOG", text),
            _ => ("default", "info".to_owned()),
        },
    };
    let filter = parse_filter(&text).map_err(|reason| LogFilterError {
        setting: setting.to_owned(),
        value: text.clone(),
        reason,
    })?;
    let _ = JSON.set(json);
    // Colour codes only help a person at a terminal; in a file or a journal
    // they are noise that breaks searching for `field=value`.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
    Ok(())
}

/// Parses a filter, refusing a bare word that is neither a level nor a module
/// path: `EnvFilter` would take `warning` as the name of a module and
/// silence everything else, which is never what was meant.
fn parse_filter(text: &str) -> Result<EnvFilter, String> {
    let directives: Vec<&str> = text.split(',').map(str::trim).collect();
    if directives.iter().all(|d| d.is_empty()) {
        return Err(format!(
            "it is empty; give a level ({}) or module=level",
            LEVELS.join(", ")
        ));
    }
    for directive in &directives {
        let bare = !directive.is_empty()
            && !directive.contains(['=', '[', ':'])
            && !LEVELS.contains(&directive.to_ascii_lowercase().as_str());
        if bare {
            return Err(format!(
                "'{directive}' is not a level ({}); to set one module's level, write e.g. '{directive}=debug'",
                LEVELS.join(", ")
            ));
        }
    }
    let process = format!("{PROCESS_TARGET}=info");
    EnvFilter::builder()
        .parse(text)
        .map_err(|error| format!("{error}; write a level or module=level, comma-separated"))
        .map(|filter| filter.add_directive(process.parse().expect("a constant directive parses")))
}

/// The command's name as it was started, for error lines.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(std::path::Path::new)
        .and_then(|path| path.file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "server".to_owned())
}

/// Whether log lines are JSON objects.
fn json_logs() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// Says something every operator should see, such as where the server
/// serves: a plain line on stderr, or a JSON log line with JSON logs.
pub fn announce(message: &str) {
    if json_logs() {
        tracing::info!(target: PROCESS_TARGET, "{message}");
    } else {
        eprintln!("{message}");
    }
}

/// Reports why the process cannot go on: `PROGRAM: error: MESSAGE` on stderr,
/// or a JSON log line at level ERROR with JSON logs.
pub fn fatal(message: &str) {
    if json_logs() {
        tracing::error!(target: PROCESS_TARGET, "{message}");
    } else {
        eprintln!("{}: error: {message}", program_name());
    }
}

/// SIGHUP, the usual way to ask a server to read its files again. Listening
/// starts when this is made, and from then on SIGHUP no longer ends the
/// process; make it before saying the server is up.
#[derive(Debug)]
pub struct ReloadSignal {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl ReloadSignal {
    /// Starts listening for SIGHUP (on systems without it, never fires).
    pub fn new() -> Self {
        Self {
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Resolves at the next SIGHUP.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(hangup) = &mut self.hangup {
            hangup.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

impl Default for ReloadSignal {
    fn default() -> Self {
        Self::new()
    }
}

/// A future that resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
///
/// The handlers are installed by this call, not when the future is first
/// polled: call it before telling anyone the server is up, so that a signal
/// sent right after that stops the server gracefully instead of killing it.
pub fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_word_must_be_a_level() {
        for good in [
            "info",
            "WARN",
            "off",
            "cloudlink=debug",
            "info,edge::gate=trace",
            "d_back::hub",
        ] {
            assert!(parse_filter(good).is_ok(), "{good}");
        }
        for bad in [
            "warning",
            "dbug",
            "info,verbose",
            "cloudlink=loud",
            "",
            " , ",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad:?}");
        }
        let why = parse_filter("warning").unwrap_err();
        assert!(why.contains("'warning=debug'"), "{why}");
    }
}

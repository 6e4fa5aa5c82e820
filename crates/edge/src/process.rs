//! What every server command does around its server: set up logging, and
//! wait for the signal to stop.

/// Sends log lines to stderr, filtered by `filter` (e.g. `info` or
/// `cloudlink=debug`), else by `RUST_LOG`, else at `info`; as JSON objects
/// when `json` is set.
pub fn init_logging(filter: Option<&str>, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(level) => EnvFilter::try_new(level).ok(),
        None => EnvFilter::try_from_default_env().ok(),
    }
    .unwrap_or_else(|| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
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

//! Engine logs for the command line: the library stays silent unless asked.

use pyo3::prelude::*;
use tracing_subscriber::EnvFilter;

/// Sends the engine's logs to stderr at `level` (e.g. `info`, `d_back=debug`).
///
/// Meant for the `d_back` command; a bot that embeds the server decides for
/// itself. Calling it again does nothing.
#[pyfunction]
pub fn init_logging(level: &str) -> PyResult<()> {
    let filter = EnvFilter::try_new(level).map_err(|error| {
        pyo3::exceptions::PyValueError::new_err(format!(
            "invalid log level '{level}': {error} (try 'info', 'debug' or 'd_back=debug')"
        ))
    })?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

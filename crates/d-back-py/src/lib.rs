//! The compiled half of the `d_back` Python package, imported as `d_back._engine`.
//!
//! d-back 0.0.18's Python API (`d_back.server.WebSocketServer`) is kept in
//! plain Python under `python/d_back`; everything that touches a socket lives
//! here, in the Rust engine (the `d-back` crate) on a tokio runtime the
//! extension owns. The split, and why:
//!
//! - `engine::Engine` starts and stops one server and forwards broadcasts
//!   straight to its hub. Python never sees a connection: fan-out, framing
//!   and slow clients are the engine's business, on its own threads.
//! - `provider::PythonProvider` is the engine's `DataProvider`. It answers
//!   from the built-in world unless a Python callback is registered, and then
//!   posts the question to a `mailbox::Mailbox`.
//! - The mailbox hands questions to the Python event loop that started the
//!   server, in batches: the loop runs the async callbacks (so they may use
//!   loop-bound objects, as a Red cog does) and answers through a
//!   `mailbox::Reply`. Engine threads never block on Python nor take the
//!   GIL (a task awaits its answer); a callback that raises, hangs or answers
//!   nonsense becomes an error for that one request.
//! - `runtime` is the tokio runtime, created on the first start, so
//!   importing the package starts nothing.

mod convert;
mod engine;
mod logging;
mod mailbox;
mod provider;
mod runtime;

use pyo3::prelude::*;

/// The module `d_back._engine`; see the crate docs for what each class is for.
#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<engine::Engine>()?;
    m.add_class::<mailbox::Mailbox>()?;
    m.add_class::<mailbox::Reply>()?;
    m.add_function(wrap_pyfunction!(logging::init_logging, m)?)?;
    m.add_function(wrap_pyfunction!(convert::mock_world_json, m)?)?;
    m.add("ENGINE_VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

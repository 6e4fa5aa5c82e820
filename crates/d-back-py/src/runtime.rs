//! The tokio runtime the extension owns, shared by every server in the process.
//!
//! It is built on the first `start()` (importing `d_back` starts no thread)
//! and lives until the process ends. It is never shut down from Python:
//! joining its threads while holding the GIL could wait on a thread that waits
//! for the GIL, and at interpreter exit the operating system ends them anyway.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The shared runtime, built on first use.
pub fn get() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            .enable_all()
            .thread_name("d-back-engine")
            .build()
            .expect("d-back could not start its tokio runtime (out of threads or memory?)")
    })
}

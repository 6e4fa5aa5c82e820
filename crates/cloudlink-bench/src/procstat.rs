//! CPU use of the server under test and of the generator itself, over an
//! interval: on a small machine the generator shares the cores with the
//! server, and a reader must be able to see when it, not the server, was the
//! limit. The reading of `/proc` is the d-zone load generator's, shared rather
//! than copied (see `proc_reader` in `main.rs`).

pub use crate::proc_reader::{cpu_seconds, rss_kib};

/// CPU use of the server and of the generator over an interval, in % of one core.
pub struct CpuMeter {
    pid: u32,
    server: f64,
    generator: f64,
    at: std::time::Instant,
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            server: cpu_seconds(Some(pid)),
            generator: cpu_seconds(None),
            at: std::time::Instant::now(),
        }
    }

    /// (server %, generator %) since [`CpuMeter::start`].
    pub fn percent(&self) -> (f64, f64) {
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        (
            100.0 * (cpu_seconds(Some(self.pid)) - self.server) / secs,
            100.0 * (cpu_seconds(None) - self.generator) / secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed().as_millis() < 30 {}
        assert!(cpu_seconds(None) >= 0.0);
        assert_eq!(rss_kib(u32::MAX), 0);
    }
}

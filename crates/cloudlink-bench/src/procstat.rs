//! CPU time and resident memory of a process, read from Linux's `/proc`.
//!
//! Read for the server under test (by pid) and for the generator itself, so
//! that every figure can be printed beside what it cost: on a small machine the
//! generator shares the cores with the server, and a reader must be able to see
//! when it, not the server, was the limit.

use std::fs;

/// Kernel clock ticks per second in `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds used so far by `pid` (`None` = this process); 0 if it is gone.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let Ok(stat) = fs::read_to_string(path) else {
        return 0.0;
    };
    // The fields after the command name, which may itself contain spaces.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / TICKS_PER_SECOND
}

/// Resident set size of `pid` in KiB (0 if it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

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

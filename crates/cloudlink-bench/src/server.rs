//! A server under test: its process, started fresh for every measurement and
//! killed afterwards, so that no run inherits another's memory or rooms.
//!
//! A server is given as a command line; `--host H --port P` is appended, which
//! is the interface of both our `cloudlink` binary and the Python launcher
//! `bench/cloudlink_server.py`. The command must run the server itself (not a
//! wrapper such as `cargo run`), since its pid is where CPU time and memory
//! are read.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::time::sleep;

/// How long a server may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after the port opens, so start-up work does not count towards a measurement.
const SETTLE_AFTER_START: Duration = Duration::from_millis(500);

/// A running server process; killed when dropped.
pub struct ServerProc {
    child: Child,
    /// Where CPU time and memory are read.
    pub pid: u32,
    /// Where clients connect.
    pub addr: SocketAddr,
}

impl ServerProc {
    /// Starts `command` on a free port of `host` and waits until it accepts connections.
    /// Its stderr goes to a file named after `label` in `logs`.
    pub async fn start(
        command: &str,
        label: &str,
        host: IpAddr,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port(host)?;
        let mut words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if words.is_empty() {
            bail!("the command for the {label} server is empty");
        }
        words.extend([
            "--host".to_owned(),
            host.to_string(),
            "--port".to_owned(),
            port.to_string(),
        ]);
        fs::create_dir_all(logs)
            .with_context(|| format!("cannot create the log directory {}", logs.display()))?;
        let log_path = logs.join(format!("{label}-{port}.log"));
        let log = fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the {label} server: {}", words.join(" ")))?;
        let mut server = Self {
            pid: child.id(),
            child,
            addr: SocketAddr::new(host, port),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(server.addr).await.is_ok() {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "the {label} server exited ({status}) before listening; its output is in {}",
                    log_path.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the {label} server did not listen on {} within {START_TIMEOUT:?}; its output is in {}",
                    server.addr,
                    log_path.display()
                );
            }
            sleep(Duration::from_millis(50)).await;
        }
        sleep(SETTLE_AFTER_START).await;
        Ok(server)
    }

    /// Whether the process has exited (e.g. crashed under load).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the server (harmlessly again if it is gone already).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port(host: IpAddr) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((host, 0))
        .with_context(|| format!("cannot find a free port on {host}"))?;
    Ok(listener.local_addr()?.port())
}

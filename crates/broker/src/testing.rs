//! Real Redis processes for tests: a `redis-server` started on a free
//! loopback port in a temporary directory, stopped (and restarted on the same
//! port) on demand, killed when dropped; a replica of one; and a Sentinel
//! watching one. Persistence is off, as a cache-only Redis would run.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) `redis-server` of a test's own.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Arguments of its own (a replica's `--replicaof`).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port; panics with how to install Redis if it is missing.
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// Starts a replica of `primary` on a free port.
    pub fn replica_of(primary: &RedisServer) -> Self {
        let of = ["--replicaof", "127.0.0.1", &primary.port.to_string()];
        Self::start_with(of.map(str::to_owned).to_vec())
    }

    fn start_with(extra: Vec<String>) -> Self {
        let (port, dir) = place("redis");
        let mut server = Self {
            port,
            dir,
            child: None,
            extra,
        };
        server.restart();
        server
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (like a crash: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty; waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}", missing(e)));
        self.child = Some(child);
        wait_listening(self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Sentinel watching one primary under a service name, quick to
/// fail over (half a second of silence); killed when dropped.
#[derive(Debug)]
pub struct RedisSentinel {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl RedisSentinel {
    /// Starts one watching `primary` as `service`, the only Sentinel (quorum 1).
    pub fn watching(primary: &RedisServer, service: &str) -> Self {
        let (port, dir) = place("sentinel");
        let config = dir.join("sentinel.conf");
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {service} 127.0.0.1 {primary} 1\n\
             sentinel down-after-milliseconds {service} 500\n\
             sentinel failover-timeout {service} 2000\n",
            dir = dir.display(),
            primary = primary.port,
        );
        std::fs::write(&config, text).expect("the Sentinel's configuration is written");
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}", missing(e)));
        wait_listening(port);
        Self { port, dir, child }
    }

    /// `redis+sentinel://127.0.0.1:PORT/SERVICE/0`.
    pub fn url(&self, service: &str) -> String {
        format!("redis+sentinel://127.0.0.1:{}/{service}/0", self.port)
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free loopback port and a fresh temporary directory named after it.
fn place(kind: &str) -> (u16, PathBuf) {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let dir = std::env::temp_dir().join(format!("broker-{kind}-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    (port, dir)
}

fn missing(error: std::io::Error) -> String {
    format!(
        "cannot start redis-server ({error}): install it with `apt-get install redis-server` (scripts/test.sh does this)"
    )
}

fn wait_listening(port: u16) {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not listen on {address} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

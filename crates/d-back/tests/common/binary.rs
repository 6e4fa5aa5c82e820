//! Running the `d_back` binary from a test: a clean environment, the address
//! it announces, signals, and its exit code.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::PATIENCE;

/// The binary under test, with no `D_BACK_*`, `RUST_LOG` or `DISCORD_TOKEN` from the caller.
pub fn d_back() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_d_back"));
    command.env_remove("RUST_LOG").env_remove("DISCORD_TOKEN");
    for (key, _) in std::env::vars() {
        if key.starts_with("D_BACK_") {
            command.env_remove(key);
        }
    }
    command
}

/// Runs `d_back` to completion and returns (exit code, stdout, stderr).
pub fn run(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let output = d_back()
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .expect("the binary runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts `d_back` and waits for the line that says where it serves.
pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> (Child, SocketAddr) {
    let mut child = d_back()
        .args(args)
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let addr = announced_address(&mut child);
    (child, addr)
}

/// Reads a started `d_back`'s stderr (which must be piped) until it says
/// where it serves, and keeps draining it so the server never blocks on it.
pub fn announced_address(child: &mut Child) -> SocketAddr {
    let stderr = child.stderr.take().expect("stderr is piped");
    let (found, addr) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.split("serving http://").nth(1) {
                let addr = rest
                    .split('/')
                    .next()
                    .unwrap()
                    .parse::<SocketAddr>()
                    .unwrap();
                let _ = found.send(addr);
                break;
            }
        }
        for _ in lines {}
    });
    addr.recv_timeout(PATIENCE)
        .expect("d_back announces its address")
}

/// Starts `d_back`, waits for the line that says where it serves, and hands
/// back every stderr line (from the start) through a channel.
pub fn spawn_with_log(
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut child = d_back()
        .args(args)
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    loop {
        let Ok(line) = lines.recv_timeout(PATIENCE) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("d_back announces its address; it said {seen:#?}");
        };
        if let Some(addr) = serving_address(&line) {
            let (replay_tx, replay) = std::sync::mpsc::channel();
            for old in seen.into_iter().chain([line]) {
                let _ = replay_tx.send(old);
            }
            std::thread::spawn(move || {
                for line in lines {
                    if replay_tx.send(line).is_err() {
                        break;
                    }
                }
            });
            return (child, addr, replay);
        }
        seen.push(line);
    }
}

/// The address in d_back's "serving http://ADDRESS/" line, if this is it.
fn serving_address(line: &str) -> Option<SocketAddr> {
    let rest = line.split("serving http").nth(1)?;
    let rest = rest.strip_prefix("s://").or(rest.strip_prefix("://"))?;
    rest.split('/').next()?.parse().ok()
}

/// Waits for a line containing `needle` and returns it.
pub fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no log line with {needle:?}; saw {seen:#?}")
}

/// Kills a started `d_back` when dropped, so that a failing test does not
/// leave a server behind (holding the test's stdout open).
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "d_back did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

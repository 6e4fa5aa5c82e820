//! The `cloudlink` binary on a free loopback port, as an operator runs it.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The binary under test, without `CLOUDLINK_*` or `RUST_LOG` from the caller.
pub fn cloudlink() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloudlink"));
    for (key, _) in std::env::vars() {
        if key.starts_with("CLOUDLINK_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    // Tests that do not test the store keep nothing on disk; `--store` overrides this.
    command.env("CLOUDLINK_STORE", "memory");
    command.kill_on_drop(true);
    command
}

/// A running `cloudlink` on a free port, and the `ws://` URL it announced.
pub struct Running {
    pub child: Child,
    pub url: String,
    /// The line that announced it.
    pub banner: String,
    /// Every stderr line after the announcement.
    pub logs: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Starts the binary with `args` on port 0 and waits for its address.
pub async fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Running {
    let mut child = cloudlink()
        .args(["--port", "0"])
        .args(args)
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (url, banner) = tokio::time::timeout(super::WAIT * 4, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(at) = line.find("serving ") {
                let rest = &line[at + "serving ".len()..];
                let url = rest.split_whitespace().next().unwrap().to_owned();
                return (url, line);
            }
        }
        panic!("cloudlink ended before saying where it serves");
    })
    .await
    .expect("cloudlink announced its address in time");
    let (tx, logs) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    Running {
        child,
        url,
        banner,
        logs,
    }
}

/// Runs the binary to its end: its exit code and everything it printed.
pub async fn run(args: &[&str]) -> (i32, String) {
    let output = cloudlink().args(args).output().await.unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code().unwrap_or(-1), text)
}

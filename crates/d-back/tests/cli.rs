//! The `d_back` command as an operator meets it: flags, environment,
//! start-up errors as one clear line, and stopping on SIGINT/SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;
use d_back::CLOSE_GOING_AWAY;

#[test]
fn version_and_help() {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("d_back {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    for needle in [
        "--port",
        "D_BACK_PORT",
        "--host",
        "D_BACK_HOST",
        "--static-dir",
        "D_BACK_STATIC_DIR",
        "RUST_LOG",
    ] {
        assert!(out.contains(needle), "--help mentions {needle}");
    }
}

#[test]
fn start_up_problems_are_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--host", "127.0.0.1", "--port", &port],
            "cannot listen on 127.0.0.1",
        ),
        (
            &["--host", "no-such-host.invalid", "--port", "0"],
            "cannot resolve host 'no-such-host.invalid'",
        ),
        (
            &[
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--static-dir",
                "/no/such/dir",
            ],
            "static directory '/no/such/dir'",
        ),
        (
            &["--host", "127.0.0.1", "--port", "0", "--ping-interval=-1"],
            "--ping-interval must be",
        ),
    ];
    for (args, expected) in cases {
        let (code, _, err) = run(args, &[]);
        assert_eq!(code, 1, "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "one error line for {args:?}: {err}");
        assert!(lines[0].contains(expected), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    let (code, _, err) = run(&["--port", "not-a-port"], &[]);
    assert_eq!(code, 2, "clap rejects a bad value: {err}");
}

#[tokio::test]
async fn environment_variables_configure_it_and_sigterm_stops_it_gracefully() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "from the env dir").unwrap();
    let dir = site.path().to_str().unwrap();
    let (mut child, addr) = spawn(
        &[],
        &[
            ("D_BACK_HOST", "127.0.0.1"),
            ("D_BACK_PORT", "0"),
            ("D_BACK_STATIC_DIR", dir),
        ],
    );
    assert!(addr.ip().is_loopback());
    assert_eq!(http(addr, "GET", "/").await.text(), "from the env dir");
    let (mut client, _) = Client::joined(addr, "dworld").await;

    let asked = Instant::now();
    signal(&child, "TERM");
    assert_eq!(client.expect_close().await, CLOSE_GOING_AWAY);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(code, 0);
    // Only catches a hang: the server's own deadline is 2 s.
    assert!(asked.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn flags_win_over_the_environment_and_sigint_stops_it() {
    let (mut child, addr) = spawn(
        &["--host", "127.0.0.1", "--port", "0"],
        &[
            ("D_BACK_PORT", "1"),
            ("D_BACK_HOST", "no-such-host.invalid"),
        ],
    );
    let (mut client, _) = Client::joined(addr, "repos").await;
    signal(&child, "INT");
    assert_eq!(client.expect_close().await, CLOSE_GOING_AWAY);
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(code, 0);
}

#[test]
fn completions_and_a_manual_page_are_generated_from_the_flags() {
    let (code, out, err) = run(&["--completions", "bash"], &[("D_BACK_PORT", "1")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("_d_back()") && out.contains("--static-dir"));
    let (code, out, _) = run(&["--completions", "zsh"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("#compdef d_back"));
    let (code, out, _) = run(&["--man"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains(".TH d_back 1"));
    assert!(
        out.contains("D_BACK_MAX_CONNECTIONS"),
        "the page lists environment variables"
    );
}

#[tokio::test]
async fn json_logs_have_one_line_per_connection_event_with_the_client_address() {
    let mut child = d_back()
        .args(["--host", "127.0.0.1", "--port", "0", "--log-format", "json"])
        .args(["--trusted-proxy", "127.0.0.1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_json = || -> serde_json::Value {
        loop {
            let line = lines.recv_timeout(PATIENCE).expect("a log line");
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                return value;
            }
        }
    };
    let listening = next_json();
    assert_eq!(listening["fields"]["message"], "d-back listening");
    let addr: SocketAddr = listening["fields"]["local_addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Through a "proxy" (loopback is trusted here), so the logs name the forwarded client.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", "198.51.100.23".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let mut client = Client { ws };
    client.recv().await;
    client.join("dworld").await;
    drop(client);

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = next_json();
        let message = event["fields"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if ["client connected", "client joined", "client disconnected"].contains(&message.as_str())
        {
            let peer = event["fields"]["peer"].as_str().unwrap_or_default();
            assert!(peer.starts_with("198.51.100.23"), "{event}");
            seen.push(message);
        }
    }
    assert_eq!(
        seen,
        ["client connected", "client joined", "client disconnected"]
    );
    signal(&child, "TERM");
    assert_eq!(
        tokio::task::spawn_blocking(move || wait_exit(&mut child))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_refused_origin_is_logged_as_plain_text_and_the_own_page_is_let_in() {
    let (mut child, addr, lines) = spawn_with_log(
        &["--host", "127.0.0.1", "--port", "0"],
        &[("D_BACK_ALLOWED_ORIGINS", "https://nntin.github.io")],
    );
    let handshake = |origin: String| {
        let mut request =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{addr}/"),
            )
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    assert!(
        handshake(format!("http://{addr}")).await.is_ok(),
        "its own page"
    );
    assert!(handshake("https://evil.example".into()).await.is_err());
    let refused = wait_for_line(&lines, "WebSocket refused");
    assert!(
        refused.contains("origin=https://evil.example")
            && !refused.contains("Some(")
            && !refused.contains('\u{1b}'),
        "{refused}"
    );
    signal(&child, "TERM");
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child))
        .await
        .unwrap();
    assert_eq!(code, 0);
}

#[test]
fn a_log_level_that_does_not_parse_ends_the_start() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (
            &["--log-level", "warning"],
            &[],
            "--log-level 'warning' is not a log filter",
        ),
        (
            &["--log-level", "d_back=dbug"],
            &[],
            "--log-level 'd_back=dbug'",
        ),
        (
            &[],
            &[("D_BACK_LOG_LEVEL", "dbug")],
            "D_BACK_LOG_LEVEL 'dbug'",
        ),
        (&[], &[("RUST_LOG", "warning")], "RUST_LOG 'warning'"),
    ];
    for (args, envs, expected) in cases {
        let args = [&["--host", "127.0.0.1", "--port", "0"], args].concat();
        let (code, _, err) = run(&args, envs);
        assert_eq!(code, 1, "{args:?} {envs:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {args:?} {envs:?}: {err}");
        assert!(
            lines[0].starts_with("d_back: error: ") && lines[0].contains(expected),
            "{err}"
        );
    }
    // Levels in any case, module paths and module=level lists are filters.
    for good in ["WARN", "d_back::hub", "info,d_back=debug"] {
        let (child, addr) = spawn(
            &["--host", "127.0.0.1", "--port", "0", "--log-level", good],
            &[],
        );
        let _child = KillOnDrop(child);
        assert!(addr.ip().is_loopback(), "{good}");
    }
}

#[tokio::test]
async fn with_json_logs_every_stderr_line_is_json_with_plain_values() {
    let (child, addr, lines) = spawn_with_log(
        &["--host", "127.0.0.1", "--port", "0", "--log-format", "json"],
        &[("D_BACK_ALLOWED_ORIGINS", "https://nntin.github.io")],
    );
    let mut child = KillOnDrop(child);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{addr}/"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    let mut all = Vec::new();
    while !all
        .last()
        .is_some_and(|l: &String| l.contains("WebSocket refused"))
    {
        all.push(lines.recv_timeout(PATIENCE).expect("the refusal is logged"));
    }
    let refused: serde_json::Value = serde_json::from_str(all.last().unwrap()).unwrap();
    assert_eq!(refused["fields"]["origin"], "https://evil.example");
    assert_eq!(refused["fields"]["client"], "127.0.0.1");
    signal(&child.0, "TERM");
    let code = tokio::task::spawn_blocking(move || wait_exit(&mut child.0))
        .await
        .unwrap();
    assert_eq!(code, 0);
    all.extend(lines.iter());
    // Every line, the start-up line included, is a JSON object.
    for line in &all {
        let _: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(
        all.iter().any(|l| l.contains("serving http://")),
        "the start-up line is there: {all:#?}"
    );

    // A start that fails says why in JSON too.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, err) = run(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--log-format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 1);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err}");
    let error: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(error["level"], "ERROR", "{err}");
    assert!(
        error["fields"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot listen on 127.0.0.1"),
        "{err}"
    );
}

#[tokio::test]
async fn an_empty_token_counts_as_unset() {
    let (child, addr) = spawn(
        &["--host", "127.0.0.1", "--port", "0"],
        &[("DISCORD_TOKEN", ""), ("D_BACK_INGEST_TOKEN", " ")],
    );
    let _child = KillOnDrop(child);
    // The built-in world, not a failed connection to Discord.
    let (_client, join) = Client::joined(addr, "dworld").await;
    assert_eq!(join["type"], "server-join");
    let ingest = http_with(
        addr,
        "POST",
        "/api/ingest/servers/232769614004748288/presence",
        &[("Authorization", "Bearer ")],
        b"{}",
    )
    .await;
    assert_ne!(ingest.status, 200, "the ingest API stays off");
}

#[test]
fn on_every_interface_the_banner_names_an_address_a_browser_can_open() {
    let (child, addr, lines) = spawn_with_log(&["--host", "0.0.0.0", "--port", "0"], &[]);
    let _child = KillOnDrop(child);
    let banner = wait_for_line(&lines, "serving");
    assert!(
        banner.contains(&format!("open http://localhost:{}/", addr.port())),
        "{banner}"
    );
}

#[test]
fn a_zero_that_would_lock_everyone_out_is_refused_with_the_reason() {
    let zeros = [
        (
            "--ping-interval",
            "--ping-interval must be more than 0 seconds",
        ),
        ("--max-frame-bytes", "--max-frame-bytes must be 1 or more"),
        ("--outbox-frames", "--outbox-frames must be 1 or more"),
        ("--message-burst", "--message-burst must be 1 or more"),
        (
            "--max-connections",
            "--max-connections must be 1 or more; leave it out",
        ),
        (
            "--max-connections-per-ip",
            "--max-connections-per-ip must be 1 or more",
        ),
        (
            "--max-tls-handshakes-per-ip",
            "--max-tls-handshakes-per-ip must be 1 or more",
        ),
        (
            "--oauth-timeout",
            "--oauth-timeout must be more than 0 seconds",
        ),
        (
            "--join-timeout",
            "--join-timeout must be more than 0 seconds",
        ),
    ];
    for (flag, expected) in zeros {
        let (code, _, err) = run(&["--host", "127.0.0.1", "--port", "0", flag, "0"], &[]);
        assert_eq!(code, 1, "{flag} 0: {err}");
        assert_eq!(err.lines().count(), 1, "{flag} 0: {err}");
        assert!(err.contains(expected), "{flag} 0: {err}");
    }
    // Where the help says 0 means off, it is accepted.
    for flag in [
        "--message-rate",
        "--mock-presence-every",
        "--mock-message-every",
    ] {
        let (child, addr) = spawn(&["--host", "127.0.0.1", "--port", "0", flag, "0"], &[]);
        let _child = KillOnDrop(child);
        assert!(addr.ip().is_loopback(), "{flag} 0");
    }
    // With the rate limit off, the burst does not matter.
    let (child, _) = spawn(
        &[
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--message-rate",
            "0",
            "--message-burst",
            "0",
        ],
        &[],
    );
    drop(KillOnDrop(child));
}

#[test]
fn a_value_from_the_environment_is_named_by_its_variable() {
    let (code, _, err) = run(&[], &[("D_BACK_PORT", "not-a-port")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("the environment variable D_BACK_PORT") && err.contains("not-a-port"),
        "{err}"
    );
    let (code, _, err) = run(
        &["--host", "127.0.0.1", "--port", "0"],
        &[("D_BACK_OUTBOX_FRAMES", "0")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("D_BACK_OUTBOX_FRAMES (--outbox-frames) must be 1 or more"),
        "{err}"
    );
    // Typed on the command line, the flag is named, as clap does.
    let (code, _, err) = run(&["--port", "x"], &[("D_BACK_PORT", "1")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        !err.contains("D_BACK_PORT") && err.contains("--port"),
        "{err}"
    );
}

#[test]
fn help_groups_the_flags_and_the_manual_page_has_the_usual_sections() {
    let (code, help, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    let mut at = 0;
    for heading in ["Server:", "Logging:", "Limits:", "Data sources:", "TLS:"] {
        let found = help[at..]
            .find(&format!("\n{heading}\n"))
            .unwrap_or_else(|| panic!("--help has the heading {heading}: {help}"));
        at += found;
    }
    for test_only in ["--discord-gateway-url", "--discord-api-url"] {
        assert!(!help.contains(test_only), "{test_only} is hidden: {help}");
    }
    assert!(!help.contains('`'), "no literal backticks: {help}");

    let (code, page, _) = run(&["--man"], &[]);
    assert_eq!(code, 0);
    for section in [
        ".SH OPTIONS",
        ".SH ENVIRONMENT",
        ".SH \"EXIT STATUS\"",
        ".SH EXAMPLES",
    ] {
        assert!(page.contains(section), "the page has {section}");
    }
    assert!(page.contains("\\fI<PORT>\\fR"), "value names: {page}");
    assert!(page.contains("\\fBD_BACK_OUTBOX_FRAMES\\fR"), "{page}");
    assert!(!page.contains('`'), "no literal backticks");
    assert!(
        !page.contains("discord\\-gateway"),
        "test-only flags are hidden"
    );
}

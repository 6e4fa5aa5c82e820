//! The `cloudlink` command: each flag (and its `CLOUDLINK_*` variable) does
//! what `--help` says, bad values stop it with a sentence, and SIGTERM stops
//! it gracefully.

mod common;

use common::binary::{run, spawn};
use common::{Client, Got, ok};
use serde_json::json;
use tokio::process::Command;

#[tokio::test]
async fn help_names_every_flag_and_its_variable() {
    let (code, help) = run(&["--help"]).await;
    assert_eq!(code, 0);
    for flag in [
        "--host",
        "--port",
        "--max-clients",
        "--motd",
        "--real-ip-header",
        "--trusted-proxy",
        "--tls-cert",
        "--tls-key",
        "--disable-command",
        "--allow-ambiguous-usernames",
        "--hide-client-ip",
        "--max-frame-bytes",
        "--max-connections-per-ip",
        "--message-rate",
        "--message-burst",
        "--allowed-origin",
        "--max-rooms-per-client",
        "--max-room-variables",
        "--max-rooms",
        "--max-room-clients",
        "--max-value-bytes",
        "--max-sets-per-second",
        "--history",
        "--batch-ms",
        "--admin-token",
        "--values",
        "--store",
        "--flush-interval-ms",
        "--empty-room-ttl",
        "CLOUDLINK_STORE",
        "--join-timeout",
        "--ping-interval",
        "--log-level",
        "--log-format",
        "CLOUDLINK_MOTD",
    ] {
        assert!(help.contains(flag), "--help does not mention {flag}");
    }
}

#[tokio::test]
async fn bad_values_stop_it_with_a_sentence() {
    let (code, text) = run(&["--real-ip-header", "not a header"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("cloudlink: error: --real-ip-header"),
        "{text}"
    );
    let (code, text) = run(&["--trusted-proxy", "nowhere"]).await;
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("neither an IP address nor a network"),
        "{text}"
    );
    let (code, text) = run(&[
        "--tls-cert",
        "/nonexistent/cert.pem",
        "--tls-key",
        "/nonexistent/key.pem",
        "--port",
        "0",
    ])
    .await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("/nonexistent/cert.pem"), "{text}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, text) = run(&["--port", &port]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("cannot listen"), "{text}");
    let (code, text) = run(&["--flush-interval-ms", "0"]).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("--flush-interval-ms"), "{text}");
    let (code, text) = run(&["--store", "/nonexistent/dir/cloud.redb", "--port", "0"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("/nonexistent/dir/cloud.redb") && text.contains("--store memory"),
        "{text}"
    );
}

#[tokio::test]
async fn motd_max_clients_disabled_commands_and_frame_size() {
    let server = spawn(
        &[
            "--max-clients",
            "2",
            "--disable-command",
            "direct",
            "--max-frame-bytes",
            "2048",
        ],
        &[("CLOUDLINK_MOTD", "Hello MOTD")],
    )
    .await;
    assert!(server.url.starts_with("ws://127.0.0.1:"), "{}", server.url);
    let mut a = Client::connect(&server.url, "A").await;
    a.send(json!({"cmd": "handshake"})).await;
    a.expect(json!({"cmd": "client_ip", "val": "127.0.0.1"}))
        .await;
    a.expect(json!({"cmd": "server_version", "val": "0.2.0"}))
        .await;
    a.expect(json!({"cmd": "motd", "val": "Hello MOTD"})).await;
    a.send(json!({"cmd": "direct", "id": "x", "val": 1})).await;
    loop {
        let got = a.recv().await;
        if got["cmd"] == "statuscode" && got["code_id"] != 100 {
            assert_eq!(got["code"], "E:110 | Command disabled");
            break;
        }
    }
    let mut b = Client::connect(&server.url, "B").await;
    b.send(json!({"cmd": "ping", "listener": "p"})).await;
    b.expect(ok("p")).await;
    let mut c = Client::connect(&server.url, "C").await;
    assert_eq!(c.next().await, Got::Text("Server is full!".into()));
    b.send(json!({"cmd": "gmsg", "val": "x".repeat(3000)}))
        .await;
    assert_eq!(b.expect_close().await.0, Some(1009));
    drop(server);
}

#[tokio::test]
async fn the_real_ip_header_is_believed_only_from_a_trusted_proxy() {
    let header = [("x-real-ip", "203.0.113.9")];
    let trusting = spawn(
        &[
            "--real-ip-header",
            "X-Real-IP",
            "--trusted-proxy",
            "127.0.0.1",
        ],
        &[],
    )
    .await;
    let mut a = Client::connect_with(&trusting.url, "A", &header).await;
    a.send(json!({"cmd": "handshake"})).await;
    a.expect(json!({"cmd": "client_ip", "val": "203.0.113.9"}))
        .await;

    let untrusting = spawn(&["--real-ip-header", "X-Real-IP"], &[]).await;
    let mut b = Client::connect_with(&untrusting.url, "B", &header).await;
    b.send(json!({"cmd": "handshake"})).await;
    b.expect(json!({"cmd": "client_ip", "val": "127.0.0.1"}))
        .await;
}

#[tokio::test]
async fn origins_ambiguous_names_hidden_addresses_and_per_address_limits() {
    let server = spawn(
        &[
            "--allowed-origin",
            "https://turbowarp.org",
            "--allow-ambiguous-usernames",
            "--hide-client-ip",
        ],
        &[],
    )
    .await;
    let refused = tokio_tungstenite::connect_async({
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = server.url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", "https://evil.example".parse().unwrap());
        request
    })
    .await;
    assert!(refused.is_err(), "a page from another origin is refused");
    let origin = [("origin", "https://turbowarp.org")];
    let mut x = Client::connect_with(&server.url, "X", &origin).await;
    x.send(json!({"cmd": "handshake", "listener": "h"})).await;
    x.expect(json!({"cmd": "server_version", "val": "0.2.0"}))
        .await;
    let (mut b1, _) = Client::named(&server.url, "bob").await;
    let (_b2, _) = Client::named(&server.url, "bob").await;
    b1.send(json!({"cmd": "pmsg", "id": "bob", "val": 1, "listener": "p"}))
        .await;
    loop {
        let got = b1.recv().await;
        if got["listener"] == "p" {
            assert_eq!(got, ok("p"), "delivered to both bobs");
            break;
        }
    }

    let limited = spawn(&["--max-connections-per-ip", "2"], &[]).await;
    let _first = Client::connect(&limited.url, "1").await;
    let _second = Client::connect(&limited.url, "2").await;
    let third = tokio_tungstenite::connect_async(limited.url.as_str()).await;
    assert!(third.is_err(), "over the per-address limit");
}

#[tokio::test]
async fn message_rate_and_json_logs() {
    let mut server = spawn(
        &[
            "--message-rate",
            "1",
            "--message-burst",
            "1",
            "--log-format",
            "json",
        ],
        &[],
    )
    .await;
    let mut a = Client::connect(&server.url, "A").await;
    a.send(json!({"cmd": "ping", "listener": "1"})).await;
    a.send(json!({"cmd": "ping", "listener": "2"})).await;
    a.expect(ok("1")).await;
    assert_eq!(a.recv().await["code_id"], 108);
    let line = tokio::time::timeout(common::WAIT, server.logs.recv())
        .await
        .unwrap()
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert!(parsed.get("level").is_some(), "{line}");
    let banner: serde_json::Value =
        serde_json::from_str(&server.banner).expect("the banner is a JSON log line too");
    assert!(banner.to_string().contains("serving ws://"), "{banner}");
}

#[tokio::test]
async fn tls_serves_wss() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = spawn(
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(server.url.starts_with("wss://"), "{}", server.url);
    let addr = server.url["wss://".len()..]
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut client = Client::connect_tls(addr, &cert.cert).await;
    client.send(json!({"cmd": "ping", "listener": "tls"})).await;
    client.expect(ok("tls")).await;
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut server = spawn(&[], &[]).await;
    let mut a = Client::connect(&server.url, "A").await;
    a.send(json!({"cmd": "ping", "listener": "p"})).await;
    a.expect(ok("p")).await;
    let pid = server.child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert_eq!(a.expect_close().await.0, Some(1001));
    let status = tokio::time::timeout(common::WAIT, server.child.wait())
        .await
        .expect("it exits in time")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

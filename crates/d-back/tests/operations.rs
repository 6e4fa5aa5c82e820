//! Running it for real, over real sockets: access limits under a burst,
//! origins, proxies, the message rate, metrics, health checks and TLS.

mod common;

use std::time::Duration;

use common::*;
use d_back::{AccessRules, CLOSE_POLICY, ChatMessage, MockWorld, Server};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

fn quiet_world() -> MockWorld {
    MockWorld::new().with_cadence(Duration::ZERO, Duration::ZERO)
}

/// Attempts a WebSocket handshake with extra headers; `Err(status)` when refused.
async fn try_connect(
    addr: std::net::SocketAddr,
    headers: &[(&'static str, &str)],
) -> Result<Client, u16> {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => {
            let mut client = Client { ws };
            assert_eq!(client.recv().await["type"], "server-list");
            Ok(client)
        }
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(other) => panic!("handshake failed oddly: {other}"),
    }
}

#[tokio::test]
async fn connection_caps_hold_under_a_burst_while_admitted_clients_are_served() {
    let rules = AccessRules {
        max_connections: Some(20),
        ..AccessRules::default()
    };
    let server = start(Server::builder().provider(quiet_world()).access(rules)).await;
    let addr = server.local_addr();
    let (mut watcher, _) = Client::joined(addr, "dworld").await;

    // A burst of 60 handshakes at once: 19 more fit, the rest get 503.
    let burst = (0..60).map(|_| try_connect(addr, &[]));
    let results = futures_util::future::join_all(burst).await;
    let admitted = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<u16> = results
        .iter()
        .filter_map(|r| r.as_ref().err().copied())
        .collect();
    assert_eq!(admitted, 19);
    assert!(refused.iter().all(|s| *s == 503), "{refused:?}");
    assert_eq!(server.hub().connections(), 20);

    // The client admitted first is served as usual throughout.
    server.hub().broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "123456789012345001".into(),
            message: "unbothered".into(),
            channel: "c".into(),
        },
    );
    assert_eq!(watcher.recv().await["data"]["message"], "unbothered");

    // Places come back when clients leave.
    drop(results);
    eventually("the burst's clients are gone", || {
        server.hub().connections() == 1
    })
    .await;
    assert!(try_connect(addr, &[]).await.is_ok());
    let metrics = http(addr, "GET", "/metrics").await.text();
    assert!(
        metrics.contains("d_back_connections_refused_total{reason=\"max_connections\"} 41"),
        "{metrics}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_per_address_cap_uses_the_proxy_header_only_from_trusted_proxies() {
    // Not behind a trusted proxy: the header is ignored, so both count as 127.0.0.1.
    let rules = AccessRules {
        max_connections_per_ip: Some(1),
        ..AccessRules::default()
    };
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .access(rules.clone()),
    )
    .await;
    let addr = server.local_addr();
    let _first = try_connect(addr, &[("x-forwarded-for", "203.0.113.1")])
        .await
        .unwrap();
    let second = try_connect(addr, &[("x-forwarded-for", "203.0.113.2")]).await;
    assert_eq!(
        second.err(),
        Some(429),
        "a client cannot choose its own address"
    );
    server.shutdown().await;

    // Behind a trusted proxy (loopback here): each forwarded address has its own allowance.
    let rules = AccessRules {
        trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
        ..rules
    };
    let server = start(Server::builder().provider(quiet_world()).access(rules)).await;
    let addr = server.local_addr();
    let _a = try_connect(addr, &[("x-forwarded-for", "203.0.113.1")])
        .await
        .unwrap();
    let _b = try_connect(addr, &[("x-forwarded-for", "203.0.113.2")])
        .await
        .unwrap();
    let again = try_connect(addr, &[("x-forwarded-for", "203.0.113.1")]).await;
    assert_eq!(again.err(), Some(429));
    server.shutdown().await;
}

#[tokio::test]
async fn only_allowed_origins_may_open_a_websocket() {
    let rules = AccessRules {
        allowed_origins: vec!["https://nntin.github.io".into()],
        ..AccessRules::default()
    };
    let server = start(Server::builder().provider(quiet_world()).access(rules)).await;
    let addr = server.local_addr();
    assert!(
        try_connect(addr, &[("origin", "https://nntin.github.io")])
            .await
            .is_ok()
    );
    assert_eq!(
        try_connect(addr, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    assert!(
        try_connect(addr, &[]).await.is_ok(),
        "non-browser clients send no Origin"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_servers_own_page_may_connect_whatever_origins_are_allowed() {
    let rules = AccessRules {
        allowed_origins: vec!["https://nntin.github.io".into()],
        ..AccessRules::default()
    };
    let server = start(Server::builder().provider(quiet_world()).access(rules)).await;
    let addr = server.local_addr();
    // The built-in page is served here, and its WebSocket names this server in
    // both `Origin` and `Host`, under whatever name the browser used.
    assert_eq!(http(addr, "GET", "/").await.status, 200);
    let port = addr.port();
    assert!(
        try_connect(addr, &[("origin", &format!("http://{addr}"))])
            .await
            .is_ok()
    );
    let by_name = format!("localhost:{port}");
    assert!(
        try_connect(
            addr,
            &[("origin", &format!("http://{by_name}")), ("host", &by_name)]
        )
        .await
        .is_ok()
    );
    // Another port or another host is someone else's page.
    let other_port = if port == 65535 { port - 1 } else { port + 1 };
    assert_eq!(
        try_connect(
            addr,
            &[("origin", &format!("http://127.0.0.1:{other_port}"))]
        )
        .await
        .err(),
        Some(403)
    );
    assert_eq!(
        try_connect(addr, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_flooding_client_is_told_then_closed_and_others_are_unaffected() {
    let server = start(Server::builder().provider(quiet_world()).message_rate(5, 5)).await;
    let addr = server.local_addr();
    let (mut calm, _) = Client::joined(addr, "repos").await;
    let (mut flood, _) = Client::connect(addr).await;
    let connect = r#"{"type":"connect","data":{"server":"dworld"}}"#;
    // The burst allowance is handled; the next frame gets one rate-limit error.
    for _ in 0..6 {
        flood.send_text(connect).await;
    }
    for _ in 0..5 {
        assert_eq!(flood.recv().await["type"], "server-join");
    }
    assert_eq!(
        error_message(&flood.recv().await),
        "You are sending too fast. Please slow down."
    );
    // Keeping on regardless ends with 1008.
    for _ in 0..200 {
        if flood.ws.send(Message::text(connect)).await.is_err() {
            break;
        }
    }
    assert_eq!(flood.expect_close().await, CLOSE_POLICY);
    calm.join("dworld").await;
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_and_health_checks_tell_the_operator_what_happens() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let addr = server.local_addr();
    assert_eq!(http(addr, "GET", "/healthz").await.status, 200);
    assert_eq!(http(addr, "GET", "/readyz").await.status, 200);
    let (mut client, _) = Client::joined(addr, "dworld").await;
    client.send_text("nonsense").await;
    client.recv().await;
    client
        .send(serde_json::json!({"type": "connect", "data": {"server": "oauth"}}))
        .await;
    client.recv().await;
    server.hub().broadcast_message(
        DWORLD,
        ChatMessage {
            uid: "123456789012345001".into(),
            message: "counted".into(),
            channel: "c".into(),
        },
    );
    client.recv().await;

    let response = http(addr, "GET", "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").unwrap().contains("text"));
    let text = response.text();
    for line in [
        "d_back_connections 1",
        "d_back_joins_total{server=\"dworld\"} 1",
        "d_back_frames_received_total 3",
        "d_back_client_errors_total{kind=\"invalid_json\"} 1",
        "d_back_client_errors_total{kind=\"auth_required\"} 1",
        "d_back_auth_failures_total 1",
        "d_back_broadcasts_total 1",
        "d_back_frames_dropped_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    let sent = text
        .lines()
        .find_map(|l| l.strip_prefix("d_back_frames_sent_total "))
        .unwrap();
    assert!(
        sent.parse::<u64>().unwrap() >= 5,
        "list, join, 2 errors, message"
    );
    let stats: serde_json::Value =
        serde_json::from_slice(&http(addr, "GET", "/api/stats").await.body).unwrap();
    assert_eq!(stats["connections"], 1);
    assert_eq!(stats["servers"][DWORLD]["watchers"], 1);
    server.shutdown().await;
}

#[tokio::test]
async fn tls_serves_https_and_wss_on_the_same_port() {
    let (_dir, cert_path, key_path, cert) = tls_files();
    let server = start(
        Server::builder()
            .provider(quiet_world())
            .tls(&cert_path, &key_path),
    )
    .await;
    assert!(server.url().starts_with("https://"));
    let addr = server.local_addr();

    let connector = tls_connector(&cert.cert);
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();

    // HTTPS.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
    tls.write_all(b"GET /api/version HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    tls.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(env!("CARGO_PKG_VERSION")));

    // WSS: the whole protocol over TLS.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", tls)
        .await
        .unwrap();
    let mut ws = ws;
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("server-list"));
    ws.send(Message::text(
        r#"{"type":"connect","data":{"server":"repos"}}"#,
    ))
    .await
    .unwrap();
    let join = ws.next().await.unwrap().unwrap();
    assert!(join.to_text().unwrap().contains("server-join"));

    // Plain HTTP on the TLS port is not served.
    let plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut plain = plain;
    plain
        .write_all(b"GET /api/version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("version"));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let error = Server::builder()
        .host("127.0.0.1")
        .port(0)
        .tls(&junk, &junk)
        .bind()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("junk.pem"), "{error}");
    let error = Server::builder()
        .host("127.0.0.1")
        .port(0)
        .tls(dir.path().join("missing.pem"), &junk)
        .bind()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("missing.pem"), "{error}");
}

#[tokio::test]
async fn metrics_report_the_process_itself() {
    let server = start(Server::builder().provider(quiet_world())).await;
    let metrics = http(server.local_addr(), "GET", "/metrics").await.text();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(value("d_back_process_resident_memory_bytes") > 0.0);
    assert!(
        value("d_back_process_open_fds") >= 4.0,
        "the listening socket too"
    );
    assert!(value("d_back_process_cpu_seconds_total") >= 0.0);
    assert!(
        metrics.contains("# TYPE d_back_process_cpu_seconds counter"),
        "{metrics}"
    );
    server.shutdown().await;
}

//! A CloudLink server on a free loopback port, and a WebSocket test client
//! that speaks JSON to it. Every wait is bounded, so a missing message fails
//! the test instead of hanging it.

#![allow(dead_code)]

pub mod binary;

use std::time::Duration;

use cloudlink::{Builder, RunningServer, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long any one expected message may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a server with these protocol settings on 127.0.0.1, any free port.
pub async fn start(builder: Builder) -> RunningServer {
    // Logs only when asked for, e.g. RUST_LOG=cloudlink=debug.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Server::builder()
        .host("127.0.0.1")
        .port(0)
        .bind(builder.build())
        .await
        .expect("the test server starts")
}

/// One test connection.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// What this client is called in assertion messages.
    pub label: String,
}

/// What the server sent.
#[derive(Debug, PartialEq)]
pub enum Got {
    Json(Value),
    Text(String),
    Close(Option<u16>, String),
    /// The connection ended without a close frame.
    Ended,
}

impl Client {
    /// Connects to the server at `url`.
    pub async fn connect(url: &str, label: &str) -> Self {
        Self::connect_with(url, label, &[]).await
    }

    /// Connects with extra request headers.
    pub async fn connect_with(url: &str, label: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = url.into_client_request().expect("a valid URL");
        for (name, value) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let (ws, _) = tokio::time::timeout(WAIT, connect_async(request))
            .await
            .expect("connecting in time")
            .expect("the WebSocket handshake succeeds");
        Self {
            ws,
            label: label.to_owned(),
        }
    }

    /// Connects with a tiny socket receive buffer, for a client that will
    /// stop reading: the server's writes then block soon.
    pub async fn connect_small_buffer(url: &str, label: &str) -> Self {
        let address = url
            .trim_start_matches("ws://")
            .trim_end_matches('/')
            .parse()
            .expect("a ws://address/ URL");
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(address).await.expect("connecting");
        let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(tcp))
            .await
            .expect("the WebSocket handshake succeeds");
        Self {
            ws,
            label: label.to_owned(),
        }
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, message: Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Sends a text frame as is.
    pub async fn send_text(&mut self, text: &str) {
        let label = &self.label;
        let sent = self.ws.send(Message::text(text)).await;
        sent.unwrap_or_else(|e| panic!("{label}: sending a frame failed: {e}"));
    }

    /// Sends a raw frame.
    pub async fn send_raw(&mut self, message: Message) {
        let label = &self.label;
        let sent = self.ws.send(message).await;
        sent.unwrap_or_else(|e| panic!("{label}: sending a frame failed: {e}"));
    }

    /// The next thing the server sends (pings answered and skipped).
    pub async fn next(&mut self) -> Got {
        loop {
            let frame = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{}: nothing arrived within {WAIT:?}", self.label));
            return match frame {
                None | Some(Err(_)) => Got::Ended,
                Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                    Ok(value @ Value::Object(_)) => Got::Json(value),
                    _ => Got::Text(text.to_string()),
                },
                Some(Ok(Message::Close(frame))) => match frame {
                    Some(frame) => Got::Close(Some(frame.code.into()), frame.reason.to_string()),
                    None => Got::Close(None, String::new()),
                },
                Some(Ok(_)) => continue,
            };
        }
    }

    /// The next message, which must be JSON.
    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Got::Json(value) => value,
            other => panic!("{}: expected a JSON message, got {other:?}", self.label),
        }
    }

    /// The next message, which must equal `expected` (as JSON values).
    pub async fn expect(&mut self, expected: Value) {
        let got = self.recv().await;
        assert_eq!(got, expected, "{}: unexpected message", self.label);
    }

    /// Proves nothing else is waiting for this client: a ping's answer must
    /// be the very next message (the server answers each client in order).
    pub async fn expect_nothing_more(&mut self) {
        self.send(json!({"cmd": "ping", "listener": "barrier"}))
            .await;
        let got = self.recv().await;
        assert_eq!(
            got,
            ok("barrier"),
            "{}: a message arrived that should not have",
            self.label
        );
    }

    /// The close frame the server ends with, after skipping nothing.
    pub async fn expect_close(&mut self) -> (Option<u16>, String) {
        match self.next().await {
            Got::Close(code, reason) => (code, reason),
            other => panic!("{}: expected a close, got {other:?}", self.label),
        }
    }

    /// A CL4 handshake; returns this client's user object (`client_obj`).
    pub async fn handshake(&mut self) -> Value {
        self.send(json!({"cmd": "handshake", "listener": "hs"}))
            .await;
        let mut user = Value::Null;
        loop {
            let message = self.recv().await;
            if message["cmd"] == "client_obj" {
                user = message["val"].clone();
            }
            if message["cmd"] == "statuscode" && message["listener"] == "hs" {
                assert_eq!(message["code_id"], 100, "{}: handshake failed", self.label);
                return user;
            }
        }
    }

    /// Handshake, then `setid`; returns the named user object. Other
    /// clients' `ulist add` about it are left for them to read.
    pub async fn named(url: &str, name: &str) -> (Self, Value) {
        let mut client = Self::connect(url, name).await;
        client.handshake().await;
        client
            .send(json!({"cmd": "setid", "val": name, "listener": "name"}))
            .await;
        loop {
            let message = client.recv().await;
            if message["cmd"] == "statuscode" && message["listener"] == "name" {
                assert_eq!(message["code_id"], 100, "{name}: setid failed");
                return (client, message["val"].clone());
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// `I:100 | OK` with a listener.
pub fn ok(listener: &str) -> Value {
    json!({"cmd": "statuscode", "code": "I:100 | OK", "code_id": 100, "listener": listener})
}

/// A `ulist` message whose array `val` is compared without regard to order.
pub fn sorted_users(mut message: Value) -> Value {
    if let Some(users) = message["val"].as_array_mut() {
        users.sort_by(|a, b| a["uuid"].as_str().cmp(&b["uuid"].as_str()));
    }
    message
}

impl Client {
    /// Connects over TLS, trusting exactly `cert` (for a server on `localhost`).
    pub async fn connect_tls(addr: std::net::SocketAddr, cert: &rcgen::Certificate) -> Self {
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = TcpStream::connect(addr).await.expect("connecting");
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector
            .connect(name, tcp)
            .await
            .expect("the TLS handshake succeeds");
        let (ws, _) =
            tokio_tungstenite::client_async("wss://localhost/", MaybeTlsStream::Rustls(tls))
                .await
                .expect("the WebSocket handshake succeeds");
        Self {
            ws,
            label: "tls".to_owned(),
        }
    }
}

/// One plain HTTP/1.1 request to `addr` (`Connection: close`): the status and
/// the body as text.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("the response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

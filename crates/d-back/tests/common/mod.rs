//! Helpers shared by the integration tests: a server on port 0, a WebSocket
//! client that speaks JSON, and a raw HTTP/1.1 request for paths a normal
//! client would tidy up before sending.
#![allow(dead_code)]

pub mod binary;

use std::net::SocketAddr;
use std::time::Duration;

use d_back::{RunningServer, ServerBuilder};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// How long a test waits for a frame that should come.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// How long a test waits to be sure a frame does not come.
pub const QUIET: Duration = Duration::from_millis(300);

/// Snowflakes of the built-in world.
pub const DWORLD: &str = "232769614004748288";
pub const DOCS: &str = "482241773318701056";
pub const OAUTH: &str = "123456789012345678";
pub const REPOS: &str = "987654321098765432";

/// Binds `builder` on an ephemeral loopback port.
pub async fn start(builder: ServerBuilder) -> RunningServer {
    builder
        .host("127.0.0.1")
        .port(0)
        .bind()
        .await
        .expect("server binds on port 0")
}

/// A WebSocket client of the d-zone protocol.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to `/` and returns the client with the `server-list` it was sent.
    pub async fn connect(addr: SocketAddr) -> (Client, Value) {
        Self::connect_path(addr, "/").await
    }

    /// Connects to `path` and returns the client with the `server-list` it was sent.
    pub async fn connect_path(addr: SocketAddr, path: &str) -> (Client, Value) {
        let url = format!("ws://{addr}{path}");
        let (ws, _) = tokio::time::timeout(PATIENCE, connect_async(url))
            .await
            .expect("handshake in time")
            .expect("handshake succeeds");
        let mut client = Client { ws };
        let list = client.recv().await;
        assert_eq!(
            list["type"], "server-list",
            "first frame is the server list"
        );
        (client, list)
    }

    /// Connects and joins `server`, returning the `server-join`.
    pub async fn joined(addr: SocketAddr, server: &str) -> (Client, Value) {
        let (mut client, _) = Self::connect(addr).await;
        let join = client.join(server).await;
        (client, join)
    }

    /// Sends `{"type":"connect","data":{"server":server}}` and expects `server-join`.
    pub async fn join(&mut self, server: &str) -> Value {
        self.send(serde_json::json!({"type": "connect", "data": {"server": server}}))
            .await;
        let reply = self.recv().await;
        assert_eq!(reply["type"], "server-join", "joining {server}: {reply}");
        reply
    }

    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send succeeds");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("send succeeds");
    }

    /// The next JSON frame; panics on close or after [`PATIENCE`].
    pub async fn recv(&mut self) -> Value {
        match self.next_json(PATIENCE).await {
            Some(v) => v,
            None => panic!("expected a frame within {PATIENCE:?}"),
        }
    }

    /// The next JSON frame within `wait`, or `None` if none came.
    pub async fn next_json(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).expect("server sends JSON"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame of type `kind`, skipping others (e.g. simulator noise).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_json(left).await {
                Some(v) if v["type"] == kind => return v,
                Some(_) => continue,
                None => panic!("no {kind} frame within {PATIENCE:?}"),
            }
        }
    }

    /// Expects the server to close the connection and returns the close code.
    pub async fn expect_close(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("connection not closed within {PATIENCE:?}"),
                Ok(Some(Ok(Message::Close(Some(frame))))) => return frame.code.into(),
                Ok(Some(Ok(Message::Close(None)))) => return 1005,
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(e))) => panic!("connection failed without a close frame: {e}"),
                Ok(None) => panic!("connection ended without a close frame"),
            }
        }
    }
}

/// The `error` sentence of a frame, asserting it is an error.
pub fn error_message(frame: &Value) -> &str {
    assert_eq!(frame["type"], "error", "expected an error frame: {frame}");
    frame["data"]["message"].as_str().expect("message is text")
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method target` exactly as written (no path normalisation) and reads the reply.
pub async fn http(addr: SocketAddr, method: &str, target: &str) -> HttpResponse {
    http_with(addr, method, target, &[], b"").await
}

/// Like [`http`], with extra headers and a body.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let raw = tokio::time::timeout(PATIENCE, read_response(&mut stream, method == "HEAD"))
        .await
        .expect("response in time");
    parse_response(&raw, method == "HEAD")
}

/// Reads one response: to its Content-Length when it has one (some servers keep
/// the connection open regardless of `Connection: close`), else to the end.
async fn read_response(stream: &mut TcpStream, head: bool) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.expect("read");
        if n == 0 {
            return raw;
        }
        raw.extend_from_slice(&chunk[..n]);
        let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head_text = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let length = head_text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        match length {
            Some(_) if head => return raw,
            Some(length) if raw.len() >= split + 4 + length => return raw,
            _ => {}
        }
    }
}

fn parse_response(raw: &[u8], head: bool) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete header");
    let head_text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked && !head {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// Waits until `check` holds, polling; panics after [`PATIENCE`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A self-signed certificate for `localhost`, written to PEM files in a
/// temporary directory (kept alive by the first element).
pub fn tls_files() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    std::path::PathBuf,
    rcgen::CertifiedKey<rcgen::KeyPair>,
) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (dir, cert_path, key_path, cert)
}

/// A TLS client that trusts exactly `cert`.
pub fn tls_connector(cert: &rcgen::Certificate) -> tokio_rustls::TlsConnector {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

/// A TCP connection to `addr` from the loopback address `source` (e.g.
/// `127.0.0.7`), to act as many different clients from one machine.
pub async fn connect_from(source: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(addr).await
}

/// Waits (at most `limit`) for the server to close `stream`, reading and
/// discarding whatever it sends; returns how long that took, or `None`.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(started + limit, stream.read(&mut sink)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// What a d-zone client shows after `frame`: a `server-join` replaces the
/// roster, a `presence` changes, adds or removes one user, as the client does.
pub fn apply_to_roster(roster: &mut serde_json::Map<String, Value>, frame: &Value) {
    match frame["type"].as_str() {
        Some("server-join") => {
            *roster = frame["data"]["users"]
                .as_object()
                .cloned()
                .unwrap_or_default();
        }
        Some("presence") => {
            let data = &frame["data"];
            let uid = data["uid"].as_str().unwrap_or_default().to_owned();
            if data["delete"] == true {
                roster.remove(&uid);
            } else if let Some(user) = roster.get_mut(&uid) {
                user["status"] = data["status"].clone();
            } else if data["username"].is_string() {
                roster.insert(uid, data.clone());
            }
        }
        _ => {}
    }
}

/// Each user's status, sorted by id, to compare two rosters.
pub fn statuses(roster: &serde_json::Map<String, Value>) -> Vec<(String, Value)> {
    let mut list: Vec<(String, Value)> = roster
        .iter()
        .map(|(uid, user)| (uid.clone(), user["status"].clone()))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    list
}

/// A client's WebSocket frame: `first` is the FIN/RSV/opcode byte, and the
/// payload is masked with `mask` as RFC 6455 requires of clients.
pub fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

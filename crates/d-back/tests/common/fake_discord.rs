//! A local stand-in for Discord, the only fake the tests use (a real Discord
//! cannot be reached from a test): a gateway over WebSocket that the test
//! scripts frame by frame, and the REST endpoints d-back calls
//! (`/api/gateway/bot`, `/api/users/@me`, `/api/applications/@me`,
//! `/api/guilds/{guild}/members/{user}`).
//!
//! The gateway sends `HELLO` on connect and answers heartbeats by itself;
//! everything else the bot sends is handed to the test, which decides what
//! Discord says next.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Token the fake's `/users/@me` answers slowly, to test time-outs.
pub const SLOW_TOKEN: &str = "slow-token";
/// Token the fake's `/users/@me` first answers with a 429 (then as usual).
pub const RATE_LIMITED_TOKEN: &str = "rate-limited-token";

/// How long a test waits for the bot to do something.
const PATIENCE: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct Shared {
    /// OAuth2 access token → user id.
    tokens: Arc<Mutex<HashMap<String, String>>>,
    /// `flags` of `/applications/@me`.
    app_flags: Arc<AtomicU64>,
    /// Calls to `/users/@me`.
    me_calls: Arc<AtomicUsize>,
    /// `heartbeat_interval` sent in HELLO, in milliseconds (0 = the usual 45 s).
    heartbeat_ms: Arc<AtomicU64>,
    /// When set, heartbeats are not acknowledged (a "zombie" connection).
    mute: Arc<std::sync::atomic::AtomicBool>,
    /// New gateway connections, for the test to take.
    connections: Arc<Mutex<Option<mpsc::UnboundedSender<GatewayConn>>>>,
    /// `shards` of `/gateway/bot` (0 = 1).
    shards: Arc<AtomicU64>,
    /// Calls to `/gateway/bot`.
    gateway_bot_calls: Arc<AtomicUsize>,
    /// (guild, user) pairs `/guilds/{guild}/members/{user}` knows.
    guild_members: Arc<Mutex<Vec<(String, String)>>>,
    /// Calls to `/guilds/{guild}/members/{user}`.
    member_lookups: Arc<AtomicUsize>,
    /// `remaining` of `/gateway/bot`'s `session_start_limit` (default 1000).
    sessions_remaining: Arc<Mutex<Option<u64>>>,
    /// Whether `RATE_LIMITED_TOKEN` was already answered with a 429.
    rate_limited_once: Arc<std::sync::atomic::AtomicBool>,
}

/// The running fake.
pub struct FakeDiscord {
    pub addr: SocketAddr,
    shared: Shared,
    connections: mpsc::UnboundedReceiver<GatewayConn>,
}

/// One bot connection to the fake gateway.
pub struct GatewayConn {
    /// The path the bot connected to (`/` or `/resume`), without a trailing slash.
    pub path: String,
    /// The query string (`v=10&encoding=json&compress=...`).
    pub query: String,
    to_bot: mpsc::UnboundedSender<Message>,
    from_bot: mpsc::UnboundedReceiver<Value>,
}

impl FakeDiscord {
    pub async fn start() -> FakeDiscord {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared::default();
        *shared.connections.lock().unwrap() = Some(tx);
        let app = Router::new()
            .route("/api/users/@me", get(users_me))
            .route("/api/applications/@me", get(application))
            .route("/api/gateway/bot", get(gateway_bot))
            .route("/api/guilds/{guild}/members/{user}", get(guild_member))
            .fallback(gateway)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeDiscord {
            addr,
            shared,
            connections: rx,
        }
    }

    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Where READY tells the bot to resume.
    pub fn resume_url(&self) -> String {
        format!("ws://{}/resume", self.addr)
    }

    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// Makes `/users/@me` answer `user_id` for `token`.
    pub fn add_token(&self, token: &str, user_id: &str) {
        self.shared
            .tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), user_id.to_owned());
    }

    pub fn set_app_flags(&self, flags: u64) {
        self.shared.app_flags.store(flags, Ordering::SeqCst);
    }

    /// Sets the heartbeat interval of later HELLOs.
    pub fn set_heartbeat_ms(&self, ms: u64) {
        self.shared.heartbeat_ms.store(ms, Ordering::SeqCst);
    }

    /// Stops (or resumes) acknowledging heartbeats.
    pub fn mute_heartbeats(&self, mute: bool) {
        self.shared.mute.store(mute, Ordering::SeqCst);
    }

    /// Makes `/gateway/bot` ask for this many shards.
    pub fn set_shards(&self, shards: u64) {
        self.shared.shards.store(shards, Ordering::SeqCst);
    }

    /// Makes `/gateway/bot` say how many sessions the bot may still start today.
    pub fn set_sessions_remaining(&self, remaining: u64) {
        *self.shared.sessions_remaining.lock().unwrap() = Some(remaining);
    }

    pub fn gateway_bot_calls(&self) -> usize {
        self.shared.gateway_bot_calls.load(Ordering::SeqCst)
    }

    /// Makes `/guilds/{guild}/members/{user}` find this member.
    pub fn add_guild_member(&self, guild: &str, user: &str) {
        self.shared
            .guild_members
            .lock()
            .unwrap()
            .push((guild.to_owned(), user.to_owned()));
    }

    pub fn member_lookups(&self) -> usize {
        self.shared.member_lookups.load(Ordering::SeqCst)
    }

    pub fn me_calls(&self) -> usize {
        self.shared.me_calls.load(Ordering::SeqCst)
    }

    /// The next connection the bot opens.
    pub async fn next_connection(&mut self) -> GatewayConn {
        self.next_connection_within(PATIENCE)
            .await
            .expect("the bot connects to the gateway in time")
    }

    /// The next connection the bot opens, if one comes within `limit`.
    pub async fn next_connection_within(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<GatewayConn> {
        let next = tokio::time::timeout(limit, self.connections.recv())
            .await
            .ok()?;
        Some(next.expect("the fake is running"))
    }

    /// Accepts a connection, expects IDENTIFY, answers READY; returns the connection and the IDENTIFY.
    pub async fn accept_and_ready(&mut self, session: &str) -> (GatewayConn, Value) {
        self.accept_and_ready_in(session, &[]).await
    }

    /// Like [`accept_and_ready`](Self::accept_and_ready), with READY naming the bot's `guilds`.
    pub async fn accept_and_ready_in(
        &mut self,
        session: &str,
        guilds: &[&str],
    ) -> (GatewayConn, Value) {
        let mut conn = self.next_connection().await;
        let identify = conn.expect_op(2).await;
        conn.dispatch("READY", 1, self.ready(session, guilds));
        (conn, identify)
    }

    /// A READY payload for a new session in `guilds` (each unavailable until its GUILD_CREATE).
    pub fn ready(&self, session: &str, guilds: &[&str]) -> Value {
        let guilds: Vec<Value> = guilds
            .iter()
            .map(|id| json!({"id": id, "unavailable": true}))
            .collect();
        json!({
            "v": 10,
            "session_id": session,
            "resume_gateway_url": self.resume_url(),
            "user": {"id": "900", "username": "d-zone-bot", "bot": true},
            "guilds": guilds,
        })
    }
}

impl GatewayConn {
    /// The next payload the bot sent (heartbeats excluded).
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(PATIENCE, self.from_bot.recv())
            .await
            .expect("the bot sends something in time")
            .expect("the bot is still connected")
    }

    /// The next payload, which must have opcode `op`.
    pub async fn expect_op(&mut self, op: u64) -> Value {
        let payload = self.next().await;
        assert_eq!(payload["op"], op, "expected op {op}, got {payload}");
        payload
    }

    pub fn send(&self, payload: Value) {
        let _ = self.to_bot.send(Message::text(payload.to_string()));
    }

    pub fn dispatch(&self, kind: &str, seq: u64, data: Value) {
        self.send(json!({"op": 0, "t": kind, "s": seq, "d": data}));
    }

    /// Closes the connection with a gateway close code.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.to_bot.send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })));
    }

    /// Waits until the bot has closed or dropped this connection.
    pub async fn wait_closed(&mut self) {
        tokio::time::timeout(PATIENCE, async {
            while self.from_bot.recv().await.is_some() {}
        })
        .await
        .expect("the bot leaves the old connection");
    }
}

async fn gateway(
    State(shared): State<Shared>,
    OriginalUri(uri): OriginalUri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let path = match uri.path().trim_end_matches('/') {
        "" => "/".to_owned(),
        path => path.to_owned(),
    };
    let query = uri.query().unwrap_or_default().to_owned();
    upgrade.on_upgrade(move |socket| pump(socket, shared, path, query))
}

async fn pump(socket: WebSocket, shared: Shared, path: String, query: String) {
    let compress = query.contains("compress=zlib-stream");
    let (to_bot, mut outgoing) = mpsc::unbounded_channel::<Message>();
    let (incoming, from_bot) = mpsc::unbounded_channel::<Value>();
    let interval = match shared.heartbeat_ms.load(Ordering::SeqCst) {
        0 => 45_000,
        ms => ms,
    };
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}});
    let _ = to_bot.send(Message::text(hello.to_string()));
    let conn = GatewayConn {
        path,
        query,
        to_bot: to_bot.clone(),
        from_bot,
    };
    if let Some(connections) = shared.connections.lock().unwrap().as_ref() {
        let _ = connections.send(conn);
    }
    // Like Discord, compress every frame into one zlib stream when the bot asks for it.
    let mut zlib = compress.then(|| flate2::Compress::new(flate2::Compression::fast(), true));
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            out = outgoing.recv() => {
                let Some(mut message) = out else { return };
                if let (Some(zlib), Message::Text(text)) = (&mut zlib, &message) {
                    message = Message::Binary(deflate(zlib, text.as_bytes()).into());
                }
                let closing = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || closing {
                    return;
                }
            }
            inbound = stream.next() => {
                let Some(Ok(message)) = inbound else { return };
                match message {
                    Message::Text(text) => {
                        let payload: Value = serde_json::from_str(text.as_str()).unwrap();
                        if payload["op"] == 1 {
                            if shared.mute.load(Ordering::SeqCst) {
                                continue;
                            }
                            let _ = to_bot.send(Message::text(json!({"op": 11}).to_string()));
                        } else {
                            let _ = incoming.send(payload);
                        }
                    }
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        }
    }
}

/// One frame of a zlib stream: `data`, then a sync flush (ending in `00 00 ff ff`).
fn deflate(zlib: &mut flate2::Compress, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let mut input = data;
    loop {
        let before = zlib.total_in();
        zlib.compress_vec(input, &mut out, flate2::FlushCompress::Sync)
            .expect("zlib compresses");
        input = &input[(zlib.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            return out;
        }
        out.reserve(out.capacity().max(64));
    }
}

async fn users_me(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.me_calls.fetch_add(1, Ordering::SeqCst);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if token == SLOW_TOKEN {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    if token == RATE_LIMITED_TOKEN && !shared.rate_limited_once.swap(true, Ordering::SeqCst) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": 0.2, "global": false})),
        )
            .into_response();
    }
    let known = shared.tokens.lock().unwrap().get(&token).cloned();
    match known {
        Some(id) => axum::Json(json!({"id": id, "username": format!("user{id}")})).into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "401: Unauthorized", "code": 0})),
        )
            .into_response(),
    }
}

async fn application(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let bot = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bot "));
    if !bot {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    axum::Json(json!({"id": "900", "flags": shared.app_flags.load(Ordering::SeqCst)}))
        .into_response()
}

fn is_bot(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bot "))
}

async fn gateway_bot(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.gateway_bot_calls.fetch_add(1, Ordering::SeqCst);
    if !is_bot(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let shards = shared.shards.load(Ordering::SeqCst).max(1);
    let remaining = shared.sessions_remaining.lock().unwrap().unwrap_or(1000);
    axum::Json(json!({
        "url": "wss://gateway.discord.gg",
        "shards": shards,
        "session_start_limit": {"total": 1000, "remaining": remaining, "reset_after": 14_400_000, "max_concurrency": shards},
    }))
    .into_response()
}

async fn guild_member(
    State(shared): State<Shared>,
    Path((guild, user)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    shared.member_lookups.fetch_add(1, Ordering::SeqCst);
    if !is_bot(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let known = shared
        .guild_members
        .lock()
        .unwrap()
        .contains(&(guild, user.clone()));
    if known {
        axum::Json(json!({"user": {"id": user, "username": format!("user{user}")}, "roles": []}))
            .into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Unknown Member", "code": 10007})),
        )
            .into_response()
    }
}

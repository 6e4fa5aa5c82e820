//! One WebSocket connection's life, from `server-list` to close.
//!
//! A session is two tasks. The reader (this module's [`run`]) decodes the
//! client's frames, answers `connect` by asking the provider and registering
//! with the hub, and watches for shutdown and silence. The writer drains the
//! connection's [`Outbox`] and writes each batch in one flush, sends pings, and
//! gives up on a socket that stays blocked. Everything the client receives,
//! replies included, goes through the outbox, so ordering is the hub's order.
//!
//! A session never lets a client's mistake end the connection: bad frames get
//! an `error` frame and the session goes on. Only a frame over the size limit
//! (1009), a client that keeps sending far over its rate (1008), a client that
//! cannot keep up (1013), silence, or shutdown (1001) end it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use edge::rate::{RateGuard, Verdict};
use edge::{Connection, Control, StopReason};
use subtle::ConstantTimeEq;
use tokio::io::AsyncRead;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::hub::{Hub, call_provider, merge_presence_frames};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::protocol::{ConnectRequest, ErrorData, Incoming, Outgoing, ServerInfo, errors};
use edge::outbox::{CloseRequest, Frame, Outbox, Urgency};
use edge::writer::{CLOSE_GRACE, WriteObserver, WriterSettings};
use edge::ws::{self, ReadError};

/// Close code for a frame over the size limit (RFC 6455 "Message Too Big").
pub const CLOSE_TOO_BIG: u16 = ws::CLOSE_TOO_BIG;
/// Close code sent to every client when the server shuts down ("Going Away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for a client that keeps sending far over its rate ("Policy Violation").
pub const CLOSE_POLICY: u16 = 1008;

/// Close code for a connection evicted to make room ("Try Again Later").
const CLOSE_TRY_LATER: u16 = 1013;

/// Serves one upgraded WebSocket until either side ends it.
pub(crate) async fn run(
    connection: Connection,
    hub: Hub,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
) {
    // The d-zone protocol reads no header after the upgrade; splitting drops them.
    let (read, write, control) = connection.split();
    let peer = control.client;
    let guard = hub.open_connection();
    let id = guard.id;
    info!(%peer, connection = id, "client connected");
    let mut reader = ws::Reader::new(read, limits.max_frame_bytes).with_deflate(control.deflate);
    let outbox = Arc::new(
        Outbox::new(limits.outbox_frames)
            .with_merge(merge_presence_frames)
            .with_deflate(control.deflate),
    );
    let mut writer = tokio::spawn(edge::writer::run(
        write,
        Arc::clone(&outbox),
        WriterSettings {
            ping_interval: limits.ping_interval,
            stall_timeout: limits.stall_timeout,
            batch: None,
        },
        Counting {
            metrics: Arc::clone(&metrics),
            hub: hub.clone(),
        },
    ));
    let mut session = Session {
        hub,
        metrics,
        id,
        peer,
        outbox: Arc::clone(&outbox),
        watching: None,
        rate: limits.message_rate.map(RateGuard::new),
        control: &control,
    };
    // Boxed, like frame handling below: provider calls make large futures, and
    // keeping their space inline would cost every idle connection that much.
    Box::pin(session.send_server_list()).await;

    let mut writer_finished = false;
    let close: Option<(u16, &'static str)> = tokio::select! {
        stop = control.stopped() => Some(match stop {
            StopReason::Shutdown => (CLOSE_GOING_AWAY, "server is shutting down"),
            StopReason::Evicted => (CLOSE_TRY_LATER, "server is full; try again later"),
            StopReason::JoinDeadline => {
                info!(%peer, "client joined no server in time; closing with 1008");
                (CLOSE_POLICY, "no connect request in time")
            }
        }),
        // The writer ended by itself (the socket failed or stalled); a
        // JoinHandle must not be awaited twice, so it is marked finished.
        _ = &mut writer => {
            writer_finished = true;
            None
        }
        close = session.read_until_end(&mut reader, &limits) => close,
    };
    session.stop_watching();
    outbox.close(CloseRequest {
        code: close.map(|(code, _)| code),
        reason: close.map_or("", |(_, reason)| reason).into(),
    });
    let writer_task = writer.abort_handle();
    if !writer_finished && timeout(CLOSE_GRACE * 2, writer).await.is_err() {
        debug!(
            connection = id,
            "writer did not finish in time; stopping it"
        );
        writer_task.abort();
    }
    info!(%peer, connection = id, close_code = close.map(|(code, _)| code), "client disconnected");
}

/// The reader's state for one connection.
struct Session<'c> {
    hub: Hub,
    /// Counters for operators.
    metrics: Arc<Metrics>,
    /// Key of this connection in the hub's watcher maps.
    id: u64,
    /// For logs.
    peer: SocketAddr,
    /// Where every frame for this client goes.
    outbox: Arc<Outbox>,
    /// Snowflake of the Discord server this connection currently watches.
    watching: Option<String>,
    /// The client's frame allowance, when limited.
    rate: Option<RateGuard>,
    /// Where the connection tells the edge it has earned its place.
    control: &'c Control,
}

impl Session<'_> {
    /// Reads frames until the client leaves; returns the close code to send, if any.
    async fn read_until_end<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut ws::Reader<R>,
        limits: &Limits,
    ) -> Option<(u16, &'static str)> {
        // A live client answers our pings, so silence for two ping periods means it is gone.
        let silence = limits.ping_interval * 2 + Duration::from_secs(1);
        loop {
            let message = match timeout(silence, reader.next()).await {
                Err(_) => {
                    info!(peer = %self.peer, "client silent for {silence:?}; dropping it");
                    return None;
                }
                Ok(Err(ReadError::Io(error))) => {
                    debug!(peer = %self.peer, %error, "connection ended");
                    return None;
                }
                Ok(Err(error)) => {
                    let close = error.close();
                    info!(
                        peer = %self.peer,
                        limit = limits.max_frame_bytes,
                        "client broke the WebSocket rules ({error:?}); closing with {:?}",
                        close.map(|(code, _)| code)
                    );
                    return close;
                }
                Ok(Ok(message)) => message,
            };
            if matches!(message, ws::Incoming::Text(_) | ws::Incoming::Binary(_)) {
                self.metrics.frame_received();
                match self.rate.as_mut().map_or(Verdict::Handle, RateGuard::check) {
                    Verdict::Handle => {}
                    Verdict::Refuse { tell } => {
                        if tell {
                            self.send_error(errors::RATE_LIMITED);
                        }
                        continue;
                    }
                    Verdict::Close => {
                        info!(peer = %self.peer, "client kept sending over its rate; closing with 1008");
                        return Some((CLOSE_POLICY, "sending too fast"));
                    }
                }
            }
            match message {
                ws::Incoming::Text(text) => Box::pin(self.handle(&text)).await,
                ws::Incoming::Binary(bytes) => match std::str::from_utf8(&bytes) {
                    Ok(text) => Box::pin(self.handle(text)).await,
                    Err(_) => self.send_error(errors::INVALID_BINARY),
                },
                ws::Incoming::Ping(payload) => {
                    self.outbox.push(Frame {
                        urgency: Urgency::Essential,
                        wire: ws::pong_frame(&payload),
                    });
                }
                // The client's close is answered by echoing its code (RFC 6455 5.5.1).
                ws::Incoming::Close(code) => return Some((code.unwrap_or(ws::CLOSE_NORMAL), "")),
                ws::Incoming::Pong => {}
            }
        }
    }

    async fn handle(&mut self, text: &str) {
        debug!(peer = %self.peer, bytes = text.len(), "frame received");
        match Incoming::decode(text) {
            Ok(Incoming::Connect(request)) => self.connect(request).await,
            Err(error) => self.send_error(error.message()),
        }
    }

    async fn send_server_list(&self) {
        match call_provider(self.hub.provider().servers()).await {
            Ok(servers) => self.push(
                Outgoing::ServerList { data: &servers }.encode(),
                Urgency::Essential,
            ),
            Err(error) => {
                warn!(%error, "could not list servers for a new client");
                self.send_error(errors::PROVIDER_FAILED);
            }
        }
    }

    async fn connect(&mut self, request: ConnectRequest) {
        let servers = match call_provider(self.hub.provider().servers()).await {
            Ok(servers) => servers,
            Err(error) => {
                warn!(%error, "could not list servers for a connect request");
                return self.send_error(errors::PROVIDER_FAILED);
            }
        };
        if servers.is_empty() {
            debug!(peer = %self.peer, "connect while no server is listed");
            return self.send_error(errors::NO_SERVERS_YET);
        }
        let wanted = request.server.as_str();
        let Some((snowflake, info)) = servers
            .iter()
            .find(|(_, info)| info.id == wanted || (wanted == "default" && info.default))
        else {
            debug!(peer = %self.peer, server = wanted, "connect to an unknown server");
            return self.send_error(errors::NO_SUCH_SERVER);
        };
        if info.passworded
            && let Err(refusal) = self.authorize(snowflake, info, &request).await
        {
            info!(peer = %self.peer, server = %info.id, "join refused: {refusal}");
            return self.send_error(refusal);
        }
        if self.watching.as_deref() != Some(snowflake.as_str()) {
            self.stop_watching();
        }
        match self
            .hub
            .join(self.id, &self.outbox, snowflake, info, wanted)
            .await
        {
            Ok(()) => {
                info!(peer = %self.peer, server = %info.id, "client joined");
                self.control.earned();
                self.metrics.joined(&info.id);
                self.watching = Some(snowflake.clone());
            }
            Err(error) => {
                warn!(%error, server = %info.id, "could not load a server's users");
                self.send_error(errors::PROVIDER_FAILED);
            }
        }
    }

    /// Admits a client to a passworded server, or says which sentence to show.
    async fn authorize(
        &self,
        snowflake: &str,
        info: &ServerInfo,
        request: &ConnectRequest,
    ) -> Result<(), &'static str> {
        if let (Some(given), Some(expected)) = (&request.password, &info.password)
            && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
        {
            return Ok(());
        }
        let (Some(token), Some(user)) = (&request.discord_token, &request.discord_user) else {
            return Err(errors::AUTH_REQUIRED);
        };
        let check = self
            .hub
            .provider()
            .validate_discord_user(snowflake, token, user);
        match call_provider(check).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(errors::AUTH_FAILED),
            Err(error) => {
                warn!(%error, "OAuth2 validation failed; refusing the login");
                Err(errors::AUTH_FAILED)
            }
        }
    }

    fn stop_watching(&mut self) {
        if let Some(server) = self.watching.take() {
            self.hub.leave(self.id, &server);
        }
    }

    fn send_error(&self, message: &str) {
        self.metrics.client_error(message);
        self.push(
            Outgoing::Error {
                data: ErrorData { message },
            }
            .encode(),
            Urgency::Essential,
        );
    }

    fn push(&self, text: String, urgency: Urgency) {
        self.outbox.push(Frame {
            urgency,
            wire: ws::text_frame(&text),
        });
    }
}

/// What the d-zone server counts about a connection's writer.
struct Counting {
    metrics: Arc<Metrics>,
    hub: Hub,
}

impl WriteObserver for Counting {
    fn sent(&mut self, frames: usize) {
        self.metrics.frames_sent(frames);
    }

    fn stalled(&mut self) {
        self.hub.count_stalled_client();
    }
}

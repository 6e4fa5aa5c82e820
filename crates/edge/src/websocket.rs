//! Turning an HTTP request into a WebSocket connection for a protocol: the
//! access rules, the opening handshake (RFC 6455 section 4.2), and the
//! [`Connection`] a protocol's session is handed.
//!
//! The handshake is answered here rather than by axum's `WebSocketUpgrade`
//! because sessions speak the wire format themselves (see [`crate::ws`] for
//! why); tungstenite still computes the accept key.
//!
//! A protocol calls [`WebSockets::accept`] from its router for a request that
//! [`wants_websocket`]; everything before the session starts is decided here,
//! and a refused client costs one small HTTP response.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::FutureExt;
use futures_util::future::Either;
use hyper_util::rt::TokioIo;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};
use tungstenite::handshake::derive_accept_key;

use crate::admission::{Admission, Refusal, Ticket};
use crate::gate::{Leave, Place};
use crate::metrics::EdgeMetrics;

/// The upgraded byte stream of a WebSocket.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
/// The half a session reads client frames from.
pub type WsRead = ReadHalf<Upgraded>;
/// The half a session's writer sends frames to.
pub type WsWrite = WriteHalf<Upgraded>;

/// Who is on the other end of an HTTP request; put into every request's
/// extensions by the server.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The TCP peer (a reverse proxy, when there is one).
    pub addr: SocketAddr,
    /// The connection's place at the gate.
    pub(crate) place: Arc<Place>,
}

/// Whether a request asks to become a WebSocket.
pub fn wants_websocket(request: &Request) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Why a session should end although its client is still there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The server is shutting down (close with 1001).
    Shutdown,
    /// The connection budget was spent and this connection had not earned its
    /// place (close with 1013, "try again later").
    Evicted,
    /// The client did not do what its protocol asks of a real client in time
    /// (close with 1008).
    JoinDeadline,
}

/// One accepted WebSocket, handed to the protocol's session; its parts move
/// apart (`let Connection { read, write, control } = connection;`) so the
/// reader and the writer can run in different tasks.
#[derive(Debug)]
pub struct Connection {
    /// The upgraded socket: client frames arrive here, server frames go here.
    pub io: Upgraded,
    /// The opening request's headers (User-Agent, Cookie, Origin...); kept
    /// apart from the control so that a session that does not keep them
    /// does not carry their room for its whole life.
    pub headers: HeaderMap,
    /// Who the client is, and what ends the session from outside.
    pub control: Control,
}

impl Connection {
    /// The socket's reading and writing halves, for a session that reads and
    /// writes from two tasks, and the control.
    pub fn split(self) -> (WsRead, WsWrite, Control) {
        // The headers are dropped here: a two-task session does not keep them.
        let (read, write) = tokio::io::split(self.io);
        (read, write, self.control)
    }
}

/// Who a WebSocket's client is and what may end its session from outside.
#[derive(Debug)]
pub struct Control {
    /// The client's address (behind a trusted proxy, the one it forwarded;
    /// then the port is 0, since the proxy does not say it).
    pub client: SocketAddr,
    /// Whether permessage-deflate was agreed: the session's reader must accept
    /// compressed messages and its outbox send compressed frames.
    pub deflate: bool,
    stop: Stop,
}

/// What ends a session from outside, and the join deadline.
#[derive(Debug)]
struct Stop {
    /// Also how the gate asks the session to leave (shutdown, eviction).
    place: Arc<Place>,
    /// Held for the connection's life: its place in the WebSocket counts.
    _ticket: Ticket,
    join_by: Instant,
    /// Where a missed join deadline is counted.
    metrics: EdgeMetrics,
}

impl Control {
    /// Resolves when the session should end: shutdown, eviction, or a join
    /// deadline missed (the deadline no longer applies once
    /// [`earned`](Self::earned) was called).
    pub async fn stopped(&self) -> StopReason {
        let deadline = async {
            tokio::time::sleep_until(self.stop.join_by).await;
            if self.stop.place.is_earned() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            reason = std::future::poll_fn(|cx| self.poll_left(cx)) => reason,
            _ = deadline => {
                self.missed_join_deadline();
                StopReason::JoinDeadline
            }
        }
    }

    /// The client did what a real one does (joined, identified): the join
    /// deadline is lifted and the connection is never evicted.
    pub fn earned(&self) {
        self.stop.place.earn();
    }

    /// A handle that does [`earned`](Self::earned), for a message handler
    /// that outlives a borrow of the control.
    pub fn earn_handle(&self) -> Earn {
        Earn(Arc::clone(&self.stop.place))
    }

    /// Ready on shutdown or eviction (not the join deadline: see
    /// [`join_deadline`](Self::join_deadline)), for a session that polls
    /// by hand; it wakes the task that polled it last.
    pub fn poll_left(&self, cx: &mut Context<'_>) -> Poll<StopReason> {
        self.stop.place.poll_leave(cx).map(|leave| match leave {
            Leave::ShutDown => StopReason::Shutdown,
            Leave::Evicted => StopReason::Evicted,
        })
    }

    /// When the join deadline ends the session, unless the client has
    /// [`earned`](Self::earned) its place by then.
    pub fn join_deadline(&self) -> Option<Instant> {
        (!self.stop.place.is_earned()).then_some(self.stop.join_by)
    }

    /// Counts a session ended by its join deadline.
    pub fn missed_join_deadline(&self) {
        self.stop.metrics.deadline("websocket_join");
    }
}

/// Marks a connection's client as real; see [`Control::earn_handle`].
#[derive(Debug, Clone)]
pub struct Earn(Arc<Place>);

impl Earn {
    /// As [`Control::earned`].
    pub fn earn(&self) {
        self.0.earn();
    }
}

/// The WebSocket door of a server: cheap to clone into router state.
#[derive(Debug, Clone)]
pub struct WebSockets {
    pub(crate) admission: Arc<Admission>,
    pub(crate) metrics: EdgeMetrics,
    pub(crate) shutdown: CancellationToken,
    pub(crate) sessions: TaskTracker,
    pub(crate) join_deadline: Duration,
    /// Whether permessage-deflate is agreed to when offered.
    pub(crate) permessage_deflate: bool,
}

impl WebSockets {
    /// Whether the server has begun shutting down (for a readiness check).
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// The client address a request comes from, as [`Control::client`] would say it.
    pub fn client_address(&self, request: &Request) -> Option<SocketAddr> {
        let peer = request.extensions().get::<Peer>()?;
        let address = self.admission.client_address(peer.addr, request.headers());
        Some(SocketAddr::new(
            address,
            if address == peer.addr.ip() {
                peer.addr.port()
            } else {
                0
            },
        ))
    }

    /// Applies the access rules and the handshake rules to `request`; if they
    /// pass, answers 101 and runs `session` on the upgraded connection (tracked,
    /// so shutdown waits for it), otherwise answers why not.
    pub fn accept<F, Fut>(&self, mut request: Request, session: F) -> Response
    where
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(peer) = request.extensions_mut().remove::<Peer>() else {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "this connection did not come through the server's listener\n",
            )
                .into_response();
        };
        let headers = request.headers();
        let address = self.admission.client_address(peer.addr, headers);
        let admitted = if self.admission.origin_allowed(headers) {
            self.admission.admit(address)
        } else {
            Err(Refusal::Origin)
        };
        let ticket = match admitted {
            Ok(ticket) => ticket,
            Err(refusal) => {
                self.metrics.refused(refusal.reason());
                let origin = headers
                    .get(header::ORIGIN)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()));
                let origin = origin.as_deref().unwrap_or("none");
                info!(client = %address, %origin, reason = refusal.reason(), "WebSocket refused");
                return refusal.response().into_response();
            }
        };
        if let Some(refusal) = check_handshake(&request) {
            return refusal;
        }
        let accept = derive_accept_key(
            request
                .headers()
                .get(header::SEC_WEBSOCKET_KEY)
                .map_or(&b""[..], |key| key.as_bytes()),
        );
        let Some(on_upgrade) = request
            .extensions_mut()
            .remove::<hyper::upgrade::OnUpgrade>()
        else {
            return bad_request("this connection cannot be upgraded\n");
        };
        // Logs name the client, not the proxy it came through.
        let client = SocketAddr::new(
            address,
            if address == peer.addr.ip() {
                peer.addr.port()
            } else {
                0
            },
        );
        let stop = Stop {
            place: peer.place,
            _ticket: ticket,
            join_by: Instant::now() + self.join_deadline,
            metrics: self.metrics.clone(),
        };
        let deflate = self.permessage_deflate
            && request
                .headers()
                .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(crate::deflate::accepts_offer);
        // Copied rather than kept: the parsed values point into the
        // connection's whole read buffer, which would otherwise stay
        // allocated for as long as the WebSocket lives.
        let headers: HeaderMap = request
            .headers()
            .iter()
            .map(|(name, value)| {
                let copy = HeaderValue::from_bytes(value.as_bytes())
                    .unwrap_or(HeaderValue::from_static(""));
                (name.clone(), copy)
            })
            .collect();
        let metrics = self.metrics.clone();
        // A combinator rather than an async block: an async block would keep
        // everything it captured (the headers, the control) for the whole
        // session, beside the session's own copy; `then` lets go of the first
        // stage once the second starts.
        let upgraded_then_session = on_upgrade.then(move |upgraded| match upgraded {
            Ok(upgraded) => Either::Left(session(Connection {
                io: TokioIo::new(upgraded),
                headers,
                control: Control {
                    client,
                    deflate,
                    stop,
                },
            })),
            Err(error) => {
                metrics.refused("upgrade_failed");
                debug!(%error, %client, "WebSocket upgrade failed");
                Either::Right(std::future::ready(()))
            }
        });
        self.sessions.spawn(upgraded_then_session);
        let mut response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept);
        if deflate {
            response = response.header(header::SEC_WEBSOCKET_EXTENSIONS, crate::deflate::ANSWER);
        }
        response
            .body(Body::empty())
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

fn bad_request(why: &'static str) -> Response {
    (StatusCode::BAD_REQUEST, why).into_response()
}

/// The opening handshake's rules (RFC 6455 section 4.2.1); `Some` is the
/// answer to a request that breaks them.
fn check_handshake(request: &Request) -> Option<Response> {
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if request.method() != axum::http::Method::GET {
        return Some(bad_request("a WebSocket upgrade must be a GET request\n"));
    }
    if request.version() < axum::http::Version::HTTP_11 {
        return Some(bad_request("a WebSocket upgrade needs HTTP/1.1\n"));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Some(bad_request(
            "a WebSocket upgrade needs `Connection: upgrade`\n",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Some(
            (
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "only WebSocket version 13 is spoken here\n",
            )
                .into_response(),
        );
    }
    let key_is_16_bytes = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|key| BASE64.decode(key.as_bytes()).ok())
        .is_some_and(|nonce| nonce.len() == 16);
    if !key_is_16_bytes {
        return Some(bad_request(
            "a WebSocket upgrade needs a Sec-WebSocket-Key of 16 bytes in base64\n",
        ));
    }
    None
}

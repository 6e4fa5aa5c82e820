//! Everything on the port that is not a WebSocket conversation: the router,
//! the upgrade onto a [`session`](crate::session), `/api/version`, and the
//! hand-off to the provider's own paths and to static files.
//!
//! WebSocket upgrades are accepted on any path, because the d-zone client
//! connects to `<page path>/ws` and a reverse proxy may add a prefix.

mod admission;
pub(crate) mod ingest;
mod static_site;

pub use admission::AccessRules;
pub(crate) use admission::Admission;
pub(crate) use static_site::StaticSite;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use tungstenite::handshake::derive_accept_key;

use crate::hub::{Hub, call_provider};
use crate::listener::PeerAddr;
use crate::metrics::Metrics;
use crate::server::Limits;
use crate::session;

/// What every request handler may need.
#[derive(Clone)]
pub(crate) struct AppState {
    /// Shared state of the watched Discord servers.
    pub hub: Hub,
    /// Per-connection limits.
    pub limits: Arc<Limits>,
    /// Where non-API paths are served from.
    pub site: Arc<StaticSite>,
    /// Cancelled when the server shuts down; sessions close with 1001.
    pub shutdown: CancellationToken,
    /// Tracks sessions so shutdown can wait for them.
    pub sessions: TaskTracker,
    /// Connection caps, origins and proxies.
    pub admission: Arc<Admission>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// The whole HTTP surface of the server.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/version", get(version))
        .route("/api/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(any_path)
        .with_state(state)
}

/// `GET /api/version`: which build is answering.
async fn version() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// `GET /api/stats`: connection counts for the built-in page.
async fn stats(State(state): State<AppState>) -> impl IntoResponse {
    let hub = &state.hub;
    let servers: serde_json::Map<String, serde_json::Value> = hub
        .watched_servers()
        .into_iter()
        .map(|server| {
            let watchers = hub.watchers(&server);
            (server, serde_json::json!({ "watchers": watchers }))
        })
        .collect();
    axum::Json(serde_json::json!({
        "connections": hub.connections(),
        "servers": servers,
    }))
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// `GET /healthz`: the process is up and answering.
async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: new clients are welcome (not shutting down).
async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

/// Every other path: a WebSocket upgrade, a provider's own response, or a static file.
async fn any_path(
    State(state): State<AppState>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    request: Request,
) -> Response {
    if wants_websocket(&request) {
        return admit_websocket(request, state, peer);
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "only GET and HEAD are served here\n",
        )
            .into_response();
    }
    let path = request.uri().path().to_owned();
    let provider = Arc::clone(state.hub.provider());
    match call_provider(async { Ok(provider.static_response(&path).await) }).await {
        Ok(Some(custom)) => return custom_response(custom),
        Ok(None) => {}
        Err(error) => {
            warn!(%error, path, "the provider failed to answer a static request");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the data provider failed\n",
            )
                .into_response();
        }
    }
    state.site.respond(request).await
}

fn wants_websocket(request: &Request) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Applies the access rules, then upgrades.
fn admit_websocket(request: Request, state: AppState, peer: SocketAddr) -> Response {
    let headers = request.headers();
    let address = state.admission.client_address(peer, headers);
    let admitted = if state.admission.origin_allowed(headers) {
        state.admission.admit(address)
    } else {
        Err(admission::Refusal::Origin)
    };
    match admitted {
        Ok(ticket) => {
            // Logs name the client, not the proxy it came through.
            let client =
                SocketAddr::new(address, if address == peer.ip() { peer.port() } else { 0 });
            accept_websocket(request, state, client, ticket)
        }
        Err(refusal) => {
            state.metrics.refused(refusal.reason());
            let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
            info!(client = %address, ?origin, reason = refusal.reason(), "WebSocket refused");
            refusal.response().into_response()
        }
    }
}

/// Answers the opening handshake (RFC 6455 section 4.2) and starts the session.
///
/// Done by hand rather than with axum's `WebSocketUpgrade` because the session
/// speaks the wire format itself (see [`edge::ws`] for why); tungstenite still
/// computes the accept key.
fn accept_websocket(
    mut request: Request,
    state: AppState,
    peer: SocketAddr,
    ticket: admission::Ticket,
) -> Response {
    let headers = request.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let refuse = |why: &'static str| (StatusCode::BAD_REQUEST, why).into_response();
    if request.method() != Method::GET {
        return refuse("a WebSocket upgrade must be a GET request\n");
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return refuse("a WebSocket upgrade needs `Connection: upgrade`\n");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            "only WebSocket version 13 is spoken here\n",
        )
            .into_response();
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return refuse("a WebSocket upgrade needs a Sec-WebSocket-Key header\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "this connection cannot be upgraded\n",
        )
            .into_response();
    };
    let AppState {
        hub,
        limits,
        shutdown,
        sessions,
        metrics,
        ..
    } = state;
    tokio::spawn(sessions.track_future(async move {
        // The place is held for the connection's whole life.
        let _ticket = ticket;
        match on_upgrade.await {
            Ok(upgraded) => {
                let halves = tokio::io::split(TokioIo::new(upgraded));
                session::run(halves, hub, limits, metrics, shutdown, peer).await;
            }
            Err(error) => debug!(%error, %peer, "WebSocket upgrade failed"),
        }
    }));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn custom_response(custom: crate::provider::StaticResponse) -> Response {
    let status = StatusCode::from_u16(custom.status).unwrap_or(StatusCode::OK);
    let content_type = HeaderValue::from_str(&custom.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(custom.body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

//! Everything on the port that is not a WebSocket conversation: the router,
//! the upgrade onto a [`session`](crate::session), `/api/version`,
//! `/api/login/{id}`, and the hand-off to the provider's own paths and to
//! static files.
//!
//! WebSocket upgrades are accepted on any path, because the d-zone client
//! connects to `<page path>/ws` and a reverse proxy may add a prefix.

pub(crate) mod ingest;
mod static_site;

pub(crate) use static_site::StaticSite;
pub(crate) use static_site::stays_inside as static_path_stays_inside;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::warn;

use crate::hub::{Hub, call_provider};
use crate::limits::Limits;
use crate::metrics::Metrics;
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
    /// The door for WebSocket upgrades: caps, origins, proxies, shutdown.
    pub websockets: edge::WebSockets,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// The whole HTTP surface of the server.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/version", get(version))
        .route("/api/stats", get(stats))
        .route("/api/login/{id}", get(login))
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

/// `GET /api/login/{id}`: how a browser logs into the server with public id
/// `id` — whether it needs a login, and the OAuth2 application id to log in
/// with (`null` when none is configured).
///
/// The page needs this *before* it may join: `server-join` carries the client
/// id too, but a passworded server sends no `server-join` until the browser
/// has logged in, and a server may have its own application id. The id is no
/// secret — Discord shows it in every login URL.
async fn login(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let provider = Arc::clone(state.hub.provider());
    let servers = match call_provider(provider.servers()).await {
        Ok(servers) => servers,
        Err(error) => {
            warn!(%error, "could not list servers for a login question");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the data provider failed\n",
            )
                .into_response();
        }
    };
    let Some((snowflake, info)) = servers.iter().find(|(_, info)| info.id == id) else {
        return (StatusCode::NOT_FOUND, "no server has that id\n").into_response();
    };
    match call_provider(provider.client_id(snowflake)).await {
        Ok(client_id) => axum::Json(serde_json::json!({
            "server": info.id,
            "passworded": info.passworded,
            "clientId": client_id,
        }))
        .into_response(),
        Err(error) => {
            warn!(%error, server = %info.id, "could not look up a server's OAuth2 client id");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the data provider failed\n",
            )
                .into_response()
        }
    }
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

/// `GET /healthz`: the process is up and answering; in cluster mode a second
/// line tells whether Redis is reached (the node serves either way).
async fn healthz(State(state): State<AppState>) -> String {
    match state.hub.cluster().map(|c| c.broker().stats()) {
        None => "ok\n".to_owned(),
        Some(stats) if stats.connected => "ok\ncluster: connected\n".to_owned(),
        Some(stats) => format!(
            "ok\ncluster: Redis unreachable, serving this node's world ({})\n",
            stats.last_error.as_deref().unwrap_or("connecting")
        ),
    }
}

/// `GET /readyz`: new clients are welcome: not shutting down, and in cluster
/// mode the cluster was reached once and a store has read its state, so a new
/// node does not show a world that has not caught up. A node that loses Redis later stays ready: its
/// browsers keep a live world, and sending new ones elsewhere would not help
/// when every node has lost Redis.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.websockets.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match state.hub.cluster() {
        Some(cluster) if !cluster.ready() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "catching up with the cluster (is its Redis reachable?)\n",
        )
            .into_response(),
        _ => "ready\n".into_response(),
    }
}

/// Every other path: a WebSocket upgrade, a provider's own response, or a static file.
async fn any_path(State(state): State<AppState>, request: Request) -> Response {
    if edge::wants_websocket(&request) {
        let AppState {
            hub,
            limits,
            metrics,
            websockets,
            ..
        } = state;
        return websockets.accept(request, move |connection| {
            session::run(connection, hub, limits, metrics)
        });
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

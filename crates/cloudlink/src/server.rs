//! Binding the port and running CloudLink sessions on it, through the edge.
//!
//! [`Server::builder`] collects where to listen (host, port, TLS) and the
//! transport's rules ([`AccessRules`]: caps, origins, trusted proxies and
//! their real-IP header; [`Deadlines`]), and [`ServerBuilder::bind`] opens the
//! port with [`edge::Edge`]. Every path takes a WebSocket, as in CloudLink
//! 0.2.0; without an upgrade, `GET /metrics` serves the Prometheus page and
//! any other request gets `426 Upgrade Required` with a sentence saying what
//! this port is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use edge::{Connection, Edge, Serving, Settings, TlsFiles, WebSockets};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use edge::{AccessRules, Deadlines, StartError};

use crate::client::ClientInfo;
use crate::handle::CloudLink;
use crate::session;

/// Entry point for serving: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts configuring where and how to listen; defaults are
    /// `127.0.0.1:3000`, plain WebSocket, anyone may connect.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Where and how to listen.
///
/// ```
/// use cloudlink::{CloudLink, Server};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), cloudlink::StartError> {
/// let server = Server::builder()
///     .host("127.0.0.1")
///     .port(0) // any free port
///     .bind(CloudLink::builder().build())
///     .await?;
/// println!("CloudLink on {}", server.url());
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    host: String,
    port: u16,
    tls: Option<TlsFiles>,
    access: AccessRules,
    deadlines: Deadlines,
    admin_token: Option<String>,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 3000,
            tls: None,
            access: AccessRules::default(),
            deadlines: Deadlines::default(),
            admin_token: None,
        }
    }
}

impl ServerBuilder {
    /// Host name or address to listen on (default `127.0.0.1`; `0.0.0.0` for every interface).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Port to listen on (default 3000; 0 picks a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serves `wss://` with this certificate chain and key (PEM files).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsFiles::new(cert, key));
        self
    }

    /// Who may connect: caps, allowed origins, trusted proxies and the header
    /// they name the client in (default: anyone, and no proxy is believed).
    pub fn access(mut self, rules: AccessRules) -> Self {
        self.access = rules;
        self
    }

    /// How long each stage of a connection may take.
    pub fn deadlines(mut self, deadlines: Deadlines) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// Serves the admin API under `/api/` (see [`crate::admin`]) to callers
    /// presenting this bearer token; paths under `/api/` then no longer take
    /// WebSockets. An empty token leaves the API off.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// Opens the port and serves `cloudlink` on it.
    pub async fn bind(self, cloudlink: CloudLink) -> Result<RunningServer, StartError> {
        let edge = Edge::bind(Settings {
            host: self.host,
            port: self.port,
            tls: self.tls,
            access: self.access,
            deadlines: self.deadlines,
            // CloudLink sessions do not read compressed messages yet.
            permessage_deflate: false,
        })
        .await?;
        let metrics = Arc::new(crate::metrics::registry(&cloudlink, &edge));
        let every_path = Router::new().fallback(any_path).with_state(AppState {
            cloudlink: cloudlink.clone(),
            websockets: edge.websockets(),
            metrics,
        });
        let app = match &self.admin_token {
            Some(token) => crate::admin::router(cloudlink.clone(), token).merge(every_path),
            None => every_path,
        };
        let serving = edge.serve(app);
        info!(
            local_addr = %serving.local_addr(),
            tls = serving.is_tls(),
            "CloudLink listening"
        );
        let flushing = cloudlink.is_durable().then(|| {
            tokio::spawn(flush_every_interval(
                cloudlink.clone(),
                serving.shutdown_token(),
            ))
        });
        Ok(RunningServer {
            serving,
            cloudlink,
            flushing,
        })
    }
}

/// Writes changed cloud variables to the store every flush interval until
/// shutdown starts; a failed write is logged and retried at the next one
/// (nothing staged is dropped).
async fn flush_every_interval(cloudlink: CloudLink, stop: CancellationToken) {
    let every = cloudlink.settings().flush_interval;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = cloudlink.flush().await {
            warn!(%error, "could not write cloud variables; retrying at the next flush");
        }
    }
}

#[derive(Clone)]
struct AppState {
    cloudlink: CloudLink,
    websockets: WebSockets,
    metrics: Arc<prometheus_client::registry::Registry>,
}

/// Every path: a WebSocket becomes a CloudLink session. Without an upgrade,
/// `GET /metrics` is the operators' page and every other request is told
/// what this port is.
async fn any_path(State(state): State<AppState>, request: Request) -> Response {
    if !edge::wants_websocket(&request) {
        if request.uri().path() == "/metrics" && request.method() == axum::http::Method::GET {
            let mut page = String::new();
            return match prometheus_client::encoding::text::encode(&mut page, &state.metrics) {
                Ok(()) => (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    page,
                )
                    .into_response(),
                Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            };
        }
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "This is a CloudLink server: connect to it with a WebSocket client (ws:// or wss://).\n",
        )
            .into_response();
    }
    let AppState {
        cloudlink,
        websockets,
        ..
    } = state;
    websockets.accept(request, move |mut connection: Connection| {
        let client = ClientInfo {
            address: connection.control.client.ip(),
            headers: kept_headers(&connection.headers),
        };
        // What is kept is copied above; the full request head should not
        // stay with an idle connection.
        connection.headers = Default::default();
        session::run(connection, cloudlink, client)
    })
}

/// The request headers a session keeps for its life (for the Scratch login
/// token check and for extensions): all but those only the handshake needs,
/// since every idle connection would otherwise hold them.
///
/// They are copied into a map of exactly their size, names and values in
/// fresh allocations: the request's own values share the buffer the request
/// was read into, which a clone would keep alive for the connection's life,
/// and a map grown one insert at a time reserves room for several more.
fn kept_headers(headers: &HeaderMap) -> HeaderMap {
    const HANDSHAKE_ONLY: [HeaderName; 9] = [
        header::HOST,
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::ACCEPT_ENCODING,
        header::ACCEPT_LANGUAGE,
        header::CACHE_CONTROL,
    ];
    let kept: Vec<_> = headers
        .iter()
        .filter(|(name, _)| !HANDSHAKE_ONLY.contains(name))
        .collect();
    let mut map = HeaderMap::with_capacity(kept.len());
    for (name, value) in kept {
        // Both were valid in the request, so both copies are too.
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    serving: Serving,
    cloudlink: CloudLink,
    flushing: Option<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.serving.local_addr()
    }

    /// Whether it serves `wss://`.
    pub fn is_tls(&self) -> bool {
        self.serving.is_tls()
    }

    /// The address clients connect to, e.g. `ws://127.0.0.1:3000/`.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "wss" } else { "ws" };
        format!("{scheme}://{}/", self.local_addr())
    }

    /// Reads the TLS certificate and key files again, e.g. after a renewal:
    /// new handshakes get the new pair, open connections are untouched.
    /// `Ok(false)` without TLS; on an error the old pair stays in use.
    pub fn reload_tls(&self) -> Result<bool, StartError> {
        self.serving.reload_tls()
    }

    /// The server's state, for the extension helpers.
    pub fn cloudlink(&self) -> &CloudLink {
        &self.cloudlink
    }

    /// A token cancelled when shutdown starts.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.serving.shutdown_token()
    }

    /// Stops accepting, closes every WebSocket with 1001 and waits briefly
    /// for them, then writes every changed cloud variable to the store.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.serving.shutdown().await;
        if let Some(flushing) = self.flushing {
            // Cancelled by the shutdown above; a flush it had begun finishes first.
            let _ = flushing.await;
            match self
                .cloudlink
                .flush_evicting(std::time::Duration::ZERO)
                .await
            {
                Ok(records) => info!(records, "cloud variables written to the store"),
                Err(error) => {
                    tracing::error!(%error, "could not write cloud variables on shutdown; changes since the last flush are lost");
                }
            }
        }
    }
}

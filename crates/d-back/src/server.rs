//! Building, binding, running and stopping the server.
//!
//! [`Server::builder`] collects the settings, [`ServerBuilder::bind`] checks
//! them and opens the port (so a bad setting fails before anything is served),
//! and the returned [`RunningServer`] serves until [`RunningServer::shutdown`]:
//! stop accepting, close every WebSocket with 1001, and wait (at most one and
//! a half seconds) for the connections to finish. The port itself, its limits
//! and deadlines are the protocol-neutral [`edge`]'s. A process may bind, stop and bind
//! again as often as it likes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge::rate::MessageRate;
use edge::{AccessRules, Deadlines, Edge, Serving, Settings, TlsFiles};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::http::{self, AppState, StaticSite};
use crate::hub::Hub;
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::provider::{DataProvider, MockWorld, Store};
use broker::ClusterConfig;

/// Why the server could not start; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The port could not be opened: a host that does not resolve, an address
    /// in use, or TLS files that are missing or unusable.
    #[error(transparent)]
    Listen(#[from] edge::StartError),
    /// The static directory is missing or not a directory.
    #[error("static directory '{}' {reason}", path.display())]
    StaticDir {
        /// The directory as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Entry point of the library: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Starts configuring a server; the defaults match the `d_back` command.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }
}

/// Settings for a server, checked by [`ServerBuilder::bind`].
///
/// ```
/// use d_back::{MockWorld, Server};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), d_back::StartError> {
/// let server = Server::builder()
///     .host("127.0.0.1")
///     .port(0) // any free port
///     .provider(MockWorld::new())
///     .max_frame_bytes(16 * 1024)
///     .bind()
///     .await?;
/// println!("serving on {}", server.local_addr());
/// server.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct ServerBuilder {
    host: String,
    port: u16,
    static_dir: Option<PathBuf>,
    provider: Arc<dyn DataProvider>,
    limits: Limits,
    access: AccessRules,
    deadlines: Deadlines,
    /// Whether permessage-deflate is agreed to when a browser offers it.
    permessage_deflate: bool,
    tls: Option<TlsFiles>,
    /// The ingest API's store and bearer token, when it is on.
    ingest: Option<(Store, String)>,
    /// The cluster to join, in cluster mode.
    cluster: Option<ClusterConfig>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("static_dir", &self.static_dir)
            .field("limits", &self.limits)
            .field("access", &self.access)
            .field("deadlines", &self.deadlines)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 3000,
            static_dir: None,
            provider: Arc::new(MockWorld::new()),
            limits: Limits::default(),
            access: AccessRules::default(),
            deadlines: Deadlines::default(),
            permessage_deflate: true,
            tls: None,
            ingest: None,
            cluster: None,
        }
    }
}

impl ServerBuilder {
    /// Host name or address to listen on (default `localhost`; `0.0.0.0` for every interface).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Port to listen on (default 3000; 0 picks a free one, see [`RunningServer::local_addr`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serves static files from this directory instead of the built-in page.
    pub fn static_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.static_dir = Some(dir.into());
        self
    }

    /// Where servers, users and login checks come from (default: the built-in world).
    pub fn provider(mut self, provider: impl DataProvider) -> Self {
        self.provider = Arc::new(provider);
        self
    }

    /// Like [`provider`](Self::provider), for a provider you also keep a handle to.
    pub fn shared_provider(mut self, provider: Arc<dyn DataProvider>) -> Self {
        self.provider = provider;
        self
    }

    /// Largest frame a client may send (default 64 KiB); larger ones close the connection with 1009.
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_frame_bytes = bytes.max(1024);
        self
    }

    /// How far one slow client may fall behind (default 256): the chat lines
    /// each watched server keeps for it (older ones it simply misses), and the
    /// other frames queued for it, where a newer presence for a user replaces
    /// the older one; when that is not enough the client is closed with 1013.
    pub fn outbox_frames(mut self, frames: usize) -> Self {
        self.limits.outbox_frames = frames.max(1);
        self
    }

    /// How often idle connections are pinged (default 20 s); one silent for two periods is dropped.
    pub fn ping_interval(mut self, every: Duration) -> Self {
        self.limits.ping_interval = every.max(Duration::from_millis(10));
        self
    }

    /// How long a write to a client may stay blocked before it is dropped (default 10 s).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.limits.stall_timeout = timeout.max(Duration::from_millis(10));
        self.deadlines.write_stall = self.limits.stall_timeout;
        self
    }

    /// Whether to compress frames with permessage-deflate for browsers that
    /// offer it (default yes; every browser does). Each broadcast is
    /// compressed once and the same bytes go to every such browser.
    pub fn permessage_deflate(mut self, on: bool) -> Self {
        self.permessage_deflate = on;
        self
    }

    /// How long each stage of a connection may take (TLS handshake, request
    /// head and idle keep-alive, whole request, WebSocket until it joins a
    /// server): see [`Deadlines`] for the defaults. The write-stall limit is
    /// also what [`stall_timeout`](Self::stall_timeout) sets.
    ///
    /// ```
    /// use std::time::Duration;
    /// use d_back::{Deadlines, Server};
    /// let builder = Server::builder().deadlines(Deadlines {
    ///     websocket_join: Duration::from_secs(5),
    ///     ..Deadlines::default()
    /// });
    /// # drop(builder);
    /// ```
    pub fn deadlines(mut self, deadlines: Deadlines) -> Self {
        self.limits.stall_timeout = deadlines.write_stall;
        self.deadlines = deadlines;
        self
    }

    /// Frames per second one client may send, with a burst allowance (default 10/s, burst 20).
    ///
    /// Frames beyond it are not handled and get an `error` frame; a client that
    /// keeps on regardless is closed with 1008. `per_second` 0 removes the limit.
    pub fn message_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.limits.message_rate = MessageRate::new(per_second, burst);
        self
    }

    /// Who may connect: caps, allowed origins, trusted proxies (default: anyone).
    pub fn access(mut self, rules: AccessRules) -> Self {
        self.access = rules;
        self
    }

    /// Serves `https://` and `wss://` with this certificate chain and key (PEM files).
    pub fn tls(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsFiles::new(cert, key));
        self
    }

    /// Serves the ingest API (`/api/ingest/…`, see the README) writing into
    /// `store`, for callers that present `token` as a bearer token.
    ///
    /// The store is attached to the hub at bind, so its changes reach browsers;
    /// it is usually also the [`provider`](Self::provider).
    ///
    /// ```
    /// use d_back::{Server, provider::Store};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), d_back::StartError> {
    /// let store = Store::new();
    /// let server = Server::builder()
    ///     .host("127.0.0.1")
    ///     .port(0)
    ///     .provider(store.clone())
    ///     .ingest_api("a long random secret", store)
    ///     .bind()
    ///     .await?;
    /// server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn ingest_api(mut self, token: impl Into<String>, store: Store) -> Self {
        self.ingest = Some((store, token.into()));
        self
    }

    /// Makes this server a node of a cluster: its changes reach the watchers
    /// on every node through Redis, and theirs reach its own (see
    /// `docs/cluster.md`). Binding does not wait for Redis; `/readyz` does.
    ///
    /// ```no_run
    /// use d_back::{ClusterConfig, Server};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cluster = ClusterConfig::new("redis://127.0.0.1:6379/0", "d-back")?;
    /// let server = Server::builder().port(0).cluster(cluster).bind().await?;
    /// # server.shutdown().await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cluster(mut self, config: ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Checks the settings, opens the port and starts serving.
    pub async fn bind(self) -> Result<RunningServer, StartError> {
        let site = match &self.static_dir {
            Some(dir) => StaticSite::directory(dir)?,
            None => StaticSite::BuiltIn,
        };
        let edge = Edge::bind(Settings {
            host: self.host,
            port: self.port,
            tls: self.tls,
            access: self.access,
            deadlines: self.deadlines,
            permessage_deflate: self.permessage_deflate,
        })
        .await?;
        let hub = Hub::new(self.provider, self.limits.outbox_frames);
        if let Some(config) = self.cluster {
            info!(cluster = config.name(), "joining the cluster");
            hub.join_cluster(config);
        }
        let state = AppState {
            hub: hub.clone(),
            limits: Arc::new(self.limits),
            site: Arc::new(site),
            websockets: edge.websockets(),
            metrics: Arc::new(Metrics::new(hub.clone(), &edge)),
        };
        let mut app = http::router(state);
        if let Some((store, token)) = &self.ingest {
            store.attach(hub.clone());
            app = app.merge(http::ingest::router(store.clone(), token));
        }
        let (budget, per_address) = edge.connection_limits();
        let serving = edge.serve(app);
        info!(
            local_addr = %serving.local_addr(),
            tls = serving.is_tls(),
            connection_budget = budget,
            connections_per_address = per_address,
            "d-back listening"
        );
        Ok(RunningServer { hub, serving })
    }
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    hub: Hub,
    serving: Serving,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.serving.local_addr()
    }

    /// Whether it serves `https://` and `wss://`.
    pub fn is_tls(&self) -> bool {
        self.serving.is_tls()
    }

    /// Reads the TLS certificate and key files again, e.g. after a renewal:
    /// new handshakes get the new pair, open connections are untouched.
    /// `Ok(false)` without TLS; on an error the old pair stays in use.
    pub fn reload_tls(&self) -> Result<bool, StartError> {
        Ok(self.serving.reload_tls()?)
    }

    /// The page address, e.g. `http://127.0.0.1:3000/`.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}/", self.local_addr())
    }

    /// Handle for broadcasting and for counts; cheap to clone and `Send`.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// A token that is cancelled when shutdown starts, for tasks that should stop with the server.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.serving.shutdown_token()
    }

    /// Stops accepting, closes every WebSocket with 1001 and waits (at most
    /// [`edge::SHUTDOWN_GRACE`]) for them to go.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.serving.shutdown().await;
        self.hub.clear();
    }
}

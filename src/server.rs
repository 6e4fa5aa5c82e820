//! Building, binding, running and stopping the server.
//!
//! [`Server::builder`] collects the settings, [`ServerBuilder::bind`] checks
//! them and opens the port (so a bad setting fails before anything is served),
//! and the returned [`RunningServer`] serves until [`RunningServer::shutdown`]:
//! stop accepting, close every WebSocket with 1001, and wait (at most two
//! seconds) for the connections to finish. A process may bind, stop and bind
//! again as often as it likes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::http::{self, AppState, StaticSite};
use crate::hub::Hub;
use crate::provider::{DataProvider, MockWorld};

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Per-connection limits that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Largest frame (and message) a client may send; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Frames that may wait for a slow client before it is degraded, then closed.
    pub outbox_frames: usize,
    /// How often idle connections are pinged; silence for two periods drops them.
    pub ping_interval: Duration,
    /// How long a write may stay blocked before the client is considered gone.
    pub stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            outbox_frames: 256,
            ping_interval: Duration::from_secs(20),
            stall_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the server could not start; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The host name did not resolve to any address.
    #[error("cannot resolve host '{host}': {reason}")]
    Resolve {
        /// The host as given.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
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
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("static_dir", &self.static_dir)
            .field("limits", &self.limits)
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

    /// Frames that may queue for one slow client (default 256) before chat lines
    /// are dropped, presences collapse, and finally the client is closed with 1013.
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
        self
    }

    /// Checks the settings, opens the port and starts serving.
    pub async fn bind(self) -> Result<RunningServer, StartError> {
        let site = match &self.static_dir {
            Some(dir) => StaticSite::directory(dir)?,
            None => StaticSite::BuiltIn,
        };
        let addr = resolve(&self.host, self.port).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;

        let hub = Hub::new(self.provider);
        let shutdown = CancellationToken::new();
        let sessions = TaskTracker::new();
        let state = AppState {
            hub: hub.clone(),
            limits: Arc::new(self.limits),
            site: Arc::new(site),
            shutdown: shutdown.clone(),
            sessions: sessions.clone(),
        };
        let app = http::router(state).into_make_service_with_connect_info::<SocketAddr>();
        let stop = shutdown.clone();
        let serving = tokio::spawn(async move {
            // Frames are small and written whole; Nagle would hold the second of
            // two quick writes (server-list after the upgrade) for the client's ACK.
            let listener = listener.tap_io(|tcp| {
                if let Err(error) = tcp.set_nodelay(true) {
                    debug!(%error, "could not set TCP_NODELAY on a connection");
                }
            });
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                warn!(%error, "the listener stopped");
            }
        });
        info!(%local_addr, "d-back listening");
        Ok(RunningServer {
            local_addr,
            hub,
            shutdown,
            sessions,
            serving,
        })
    }
}

/// Resolves `host`, preferring IPv4 (what "localhost" means to most tools).
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, StartError> {
    let resolve_error = |reason: String| StartError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| resolve_error(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| resolve_error("no addresses found".to_owned()))
}

/// A server that is accepting connections.
#[derive(Debug)]
pub struct RunningServer {
    local_addr: SocketAddr,
    hub: Hub,
    shutdown: CancellationToken,
    sessions: TaskTracker,
    serving: JoinHandle<()>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handle for broadcasting and for counts; cheap to clone and `Send`.
    pub fn hub(&self) -> Hub {
        self.hub.clone()
    }

    /// A token that is cancelled when shutdown starts, for tasks that should stop with the server.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, closes every WebSocket with 1001 and waits (at most 2 s) for them to go.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.shutdown.cancel();
        self.sessions.close();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        if tokio::time::timeout_at(deadline, self.sessions.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close in time; dropping them");
        }
        let serving = self.serving.abort_handle();
        if tokio::time::timeout_at(deadline, self.serving)
            .await
            .is_err()
        {
            warn!("some HTTP requests did not finish in time; dropping them");
            serving.abort();
        }
        self.hub.clear();
    }
}

//! Binding the port, accepting connections, and serving each one until it
//! ends, misses a deadline, is evicted, or the server shuts down.
//!
//! Every accepted connection first passes the [`Gate`] (connection budget and
//! per-address share). Then it must keep moving: a TLS handshake has
//! [`Deadlines::tls_handshake`] to finish; a request's head must arrive within
//! [`Deadlines::request_head`] (which also bounds how long an idle keep-alive
//! connection is kept, since waiting for the next head is the same wait); a
//! whole request, body included, has [`Deadlines::request`]; a write may stay
//! blocked for at most [`Deadlines::write_stall`]; and a WebSocket has
//! [`Deadlines::websocket_join`] to do what its protocol asks of a real client
//! (see [`Control::earned`](crate::Control::earned)). TLS handshakes run
//! in each connection's own task, with no shared queue, so stalled handshakes
//! from some addresses never delay another address's.
//!
//! The accept loop is ours rather than `axum::serve` because axum's has none of
//! these limits; hyper serves each connection's HTTP and hands over upgrades.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::admission::{AccessRules, Admission};
use crate::gate::{Gate, Place, Turned};
use crate::io::Stream;
use crate::metrics::EdgeMetrics;
use crate::tls::{self, TlsFiles};
use crate::websocket::{Peer, WebSockets};

/// How long shutdown waits for connections to say goodbye; with the rest of
/// shutdown this keeps the promise that a server stops within two seconds.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);

/// Default TLS handshakes in flight per client address.
const TLS_HANDSHAKES_PER_ADDRESS: usize = 16;

/// How long each stage of a connection may take before it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// A TLS handshake, from accept to finished (default 5 s: a real client
    /// needs two round trips).
    pub tls_handshake: Duration,
    /// A request's head, from the first byte awaited to the blank line; also
    /// how long an idle keep-alive HTTP connection is kept (default 10 s).
    pub request_head: Duration,
    /// A whole HTTP request, body and answer included (default 30 s).
    pub request: Duration,
    /// A WebSocket, from its upgrade until its protocol counts it as a real
    /// client (default 20 s; d-zone clients send `connect` at once).
    pub websocket_join: Duration,
    /// A write that the client does not read (default 10 s).
    pub write_stall: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(5),
            request_head: Duration::from_secs(10),
            request: Duration::from_secs(30),
            websocket_join: Duration::from_secs(20),
            write_stall: Duration::from_secs(10),
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
    /// A TLS certificate or key file is missing or unusable.
    #[error("TLS file '{}' {reason}", path.display())]
    Tls {
        /// The file as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// What to listen on and how to treat connections.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Host name or address (`localhost`, `0.0.0.0`...).
    pub host: String,
    /// Port; 0 picks a free one.
    pub port: u16,
    /// Certificate and key, to serve `https://` and `wss://`.
    pub tls: Option<TlsFiles>,
    /// Caps, origins and proxies.
    pub access: AccessRules,
    /// Time limits for each stage of a connection.
    pub deadlines: Deadlines,
    /// Whether to agree to permessage-deflate when a client offers it (see
    /// [`crate::deflate`]); every browser does.
    pub permessage_deflate: bool,
}

/// A bound port, not yet serving: the protocol builds its router with
/// [`websockets`](Self::websockets) and registers [`metrics`](Self::register_metrics),
/// then calls [`serve`](Self::serve).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), edge::StartError> {
/// use axum::{Router, routing::get};
///
/// let edge = edge::Edge::bind(edge::Settings {
///     host: "127.0.0.1".into(),
///     port: 0,
///     tls: None,
///     access: edge::AccessRules::default(),
///     deadlines: edge::Deadlines::default(),
///     permessage_deflate: true,
/// })
/// .await?;
/// let websockets = edge.websockets();
/// let router = Router::new()
///     .route("/healthz", get(|| async { "ok\n" }))
///     .fallback(move |request: axum::extract::Request| async move {
///         websockets.accept(request, |connection| async move {
///             // Speak your protocol over connection.read / connection.write.
///             drop(connection);
///         })
///     });
/// let serving = edge.serve(router);
/// println!("listening on {}", serving.local_addr());
/// serving.shutdown().await;
/// # Ok(())
/// # }
/// ```
pub struct Edge {
    /// The listening socket; the accept loop takes it, so that it closes the
    /// moment accepting stops (connections in flight hold the rest of the edge).
    tcp: Option<TcpListener>,
    tls: Option<TlsAcceptor>,
    /// What the TLS acceptor hands to new handshakes; read again on reload.
    certificate: Option<Arc<tls::Certificate>>,
    local_addr: SocketAddr,
    gate: Arc<Gate>,
    websockets: WebSockets,
    deadlines: Deadlines,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("deadlines", &self.deadlines)
            .finish_non_exhaustive()
    }
}

impl Edge {
    /// Checks the settings, resolves the host and binds the port.
    pub async fn bind(settings: Settings) -> Result<Self, StartError> {
        let (tls, certificate) = match settings.tls.as_ref().map(tls::load).transpose()? {
            Some((config, certificate)) => (Some(config), Some(certificate)),
            None => (None, None),
        };
        let addr = resolve(&settings.host, settings.port).await?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local_addr = tcp
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let budget = Gate::budget_for(Gate::fd_limit());
        let mut access = settings.access;
        let per_address = *access
            .max_connections_per_ip
            .get_or_insert((budget / 4).max(1));
        let shutdown = CancellationToken::new();
        let gate = Arc::new(Gate::new(
            budget,
            per_address,
            access
                .max_tls_handshakes_per_ip
                .unwrap_or(TLS_HANDSHAKES_PER_ADDRESS),
            access.trusted_proxies.clone(),
        ));
        // Whoever cancels the shutdown token (this server, or an embedder
        // through `shutdown_token`), every connection is asked to leave.
        let gate_of_shutdown = Arc::downgrade(&gate);
        let shutting_down = shutdown.clone();
        tokio::spawn(async move {
            shutting_down.cancelled().await;
            if let Some(gate) = gate_of_shutdown.upgrade() {
                gate.shut_down();
            }
        });
        let websockets = WebSockets {
            admission: Arc::new(Admission::new(access)),
            metrics: EdgeMetrics::default(),
            shutdown,
            sessions: TaskTracker::new(),
            join_deadline: settings.deadlines.websocket_join,
            permessage_deflate: settings.permessage_deflate,
        };
        Ok(Self {
            tcp: Some(tcp),
            tls: tls.map(TlsAcceptor::from),
            certificate,
            local_addr,
            gate,
            websockets,
            deadlines: settings.deadlines,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The door for WebSocket upgrades, to call from the router.
    pub fn websockets(&self) -> WebSockets {
        self.websockets.clone()
    }

    /// The edge's counters.
    pub fn metrics(&self) -> EdgeMetrics {
        self.websockets.metrics.clone()
    }

    /// Adds the edge's counters to a protocol's registry.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.websockets
            .metrics
            .register(registry, Arc::clone(&self.gate));
    }

    /// Most connections open at once, and from one address.
    pub fn connection_limits(&self) -> (usize, usize) {
        (self.gate.budget(), self.gate.per_address())
    }

    /// Starts accepting connections and serving `router` on them.
    pub fn serve(self, router: Router) -> Serving {
        let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            self.deadlines.request,
        ));
        let shutdown = self.websockets.shutdown.clone();
        let sessions = self.websockets.sessions.clone();
        let is_tls = self.tls.is_some();
        let certificate = self.certificate.clone();
        let local_addr = self.local_addr;
        let accepting = tokio::spawn(accept_loop(self, router));
        Serving {
            local_addr,
            is_tls,
            certificate,
            shutdown,
            sessions,
            accepting,
        }
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
pub struct Serving {
    local_addr: SocketAddr,
    is_tls: bool,
    certificate: Option<Arc<tls::Certificate>>,
    shutdown: CancellationToken,
    sessions: TaskTracker,
    accepting: JoinHandle<()>,
}

impl Serving {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether it serves `https://` and `wss://`.
    pub fn is_tls(&self) -> bool {
        self.is_tls
    }

    /// Reads the TLS certificate and key files again (after a renewal): new
    /// handshakes get the new pair, open connections keep theirs. Without
    /// TLS, nothing to do (`Ok(false)`); a file that is wrong keeps the old
    /// pair and says why.
    pub fn reload_tls(&self) -> Result<bool, StartError> {
        match &self.certificate {
            Some(certificate) => certificate.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// A token cancelled when shutdown starts.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting, asks every connection to close (WebSockets with
    /// 1001), and waits at most [`SHUTDOWN_GRACE`] for them.
    ///
    /// The port is closed when this returns: it waits for the accept loop to
    /// drop the listening socket, so a caller that restarts or probes the
    /// port right after never finds it still accepting.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        self.sessions.close();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        if tokio::time::timeout_at(deadline, &mut self.accepting)
            .await
            .is_err()
        {
            self.accepting.abort();
        }
        if tokio::time::timeout_at(deadline, self.sessions.wait())
            .await
            .is_err()
        {
            warn!("some connections did not close in time; dropping them");
        }
    }
}

/// How often "out of file descriptors" and the like are logged at most.
const ACCEPT_WARNING_EVERY: Duration = Duration::from_secs(10);

async fn accept_loop(mut edge: Edge, router: Router) {
    let Some(tcp) = edge.tcp.take() else {
        return;
    };
    let edge = Arc::new(edge);
    let shutdown = edge.websockets.shutdown.clone();
    let mut last_warning: Option<Instant> = None;
    let mut unwarned_errors = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                let kind = accept_error_kind(&error);
                edge.websockets.metrics.accept_error(kind);
                if kind == "out_of_descriptors" {
                    edge.gate.evict_one();
                }
                unwarned_errors += 1;
                if last_warning.is_none_or(|at| at.elapsed() >= ACCEPT_WARNING_EVERY) {
                    warn!(
                        %error,
                        errors = unwarned_errors,
                        budget = edge.gate.budget(),
                        open = edge.gate.open(),
                        "cannot accept connections; raise the open-files limit (ulimit -n) if this goes on"
                    );
                    last_warning = Some(Instant::now());
                    unwarned_errors = 0;
                }
                // Give the evicted connections a moment to let go.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let place = match edge.gate.enter(peer.ip()) {
            Ok(place) => place,
            Err(turned) => {
                turn_away(&edge, stream, peer.ip(), turned).await;
                continue;
            }
        };
        // Frames are small and written whole; Nagle would hold the second of
        // two quick writes (server-list after the upgrade) for an ACK.
        let _ = stream.set_nodelay(true);
        let edge = Arc::clone(&edge);
        let router = router.clone();
        edge.websockets.sessions.clone().spawn(async move {
            serve_connection(&edge, router, stream, peer, place).await;
        });
    }
}

fn accept_error_kind(error: &std::io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() => "out_of_descriptors",
        Some(code) if code == rustix::io::Errno::NFILE.raw_os_error() => "out_of_descriptors",
        Some(code)
            if code == rustix::io::Errno::NOBUFS.raw_os_error()
                || code == rustix::io::Errno::NOMEM.raw_os_error() =>
        {
            "out_of_memory"
        }
        _ => "other",
    }
}

/// Refuses a connection the gate turned away, as cheaply as possible: a plain
/// connection gets a fixed HTTP answer if the socket takes it at once; a TLS
/// one is simply closed, since nothing can be said before a handshake.
async fn turn_away(edge: &Edge, stream: TcpStream, address: IpAddr, turned: Turned) {
    edge.websockets.metrics.refused(turned.reason());
    debug!(client = %address, reason = turned.reason(), "connection turned away");
    if edge.tls.is_some() {
        return;
    }
    let answer: &[u8] = match turned {
        Turned::Full => {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 48\r\nConnection: close\r\n\r\nthe server is at its connection limit; try later\n"
        }
        Turned::TooManyFromAddress | Turned::TooManyHandshakes => {
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 39\r\nConnection: close\r\n\r\ntoo many connections from your address\n"
        }
    };
    let mut stream = stream;
    let _ = stream.try_write(answer);
    let _ = tokio::time::timeout(Duration::from_millis(50), stream.shutdown()).await;
}

/// Serves one accepted connection until it ends.
async fn serve_connection(
    edge: &Edge,
    router: Router,
    stream: TcpStream,
    peer: SocketAddr,
    place: Arc<Place>,
) {
    let shutdown = &edge.websockets.shutdown;
    let metrics = &edge.websockets.metrics;
    let socket = match &edge.tls {
        None => Either::Left(stream),
        Some(acceptor) => {
            let Ok(_handshaking) = place.start_handshake() else {
                metrics.refused(Turned::TooManyHandshakes.reason());
                debug!(%peer, "too many TLS handshakes from this address");
                return;
            };
            let handshake =
                tokio::time::timeout(edge.deadlines.tls_handshake, acceptor.accept(stream));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                done = handshake => match done {
                    Ok(Ok(tls)) => Either::Right(Box::new(tls)),
                    Ok(Err(error)) => {
                        debug!(%peer, %error, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        metrics.deadline("tls_handshake");
                        debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                // Also on shutdown, which the branch above takes first.
                _ = place.left() => return,
            }
        }
    };
    let io = TokioIo::new(Stream::new(socket, edge.deadlines.write_stall));
    let info = Peer {
        addr: peer,
        place: Arc::clone(&place),
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(info.clone());
        router.clone().oneshot(request)
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(edge.deadlines.request_head)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    // Biased: the place's signal also fires on shutdown, which must be
    // taken as a shutdown (a graceful end), not as an eviction.
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
        served = connection.as_mut() => {
            if let Err(error) = served {
                if error.is_timeout() {
                    metrics.deadline("request_head");
                }
                debug!(%peer, %error, "HTTP connection ended");
            }
        }
        _ = place.left() => {
            debug!(%peer, "HTTP connection evicted to make room");
        }
    }
}

//! The listening socket, plain or TLS, as one thing axum can serve.
//!
//! With TLS, handshakes run in their own tasks (each with a time limit, and at
//! most [`MAX_PENDING_HANDSHAKES`] at once) and finished streams are handed to
//! axum in order of completion, so a client that stalls its handshake never
//! holds up anyone else's. Certificates are read once at start; a file that is
//! missing or holds no usable key stops the start with a sentence naming it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_util::either::Either;
use tracing::debug;

use crate::server::StartError;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; further connections wait in the kernel's backlog.
const MAX_PENDING_HANDSHAKES: usize = 512;

/// Where the certificate chain and private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Reads the PEM files into a server configuration.
pub(crate) fn load_tls(files: &TlsFiles) -> Result<Arc<ServerConfig>, StartError> {
    let problem = |path: &Path, reason: String| StartError::Tls {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| problem(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(problem(&files.cert, "holds no PEM certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| problem(&files.key, format!("holds no usable private key: {e}")))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| problem(&files.key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A bound port that yields plain or TLS connections.
pub(crate) enum Listener {
    /// Plain HTTP and `ws://`.
    Plain(TcpListener),
    /// HTTPS and `wss://`: streams whose handshake has finished.
    Tls {
        ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
        /// Stops the accepting task when the listener is dropped.
        _acceptor: tokio_util::sync::DropGuard,
    },
}

impl Listener {
    /// Wraps `tcp` in TLS when a configuration is given.
    pub fn new(tcp: TcpListener, tls: Option<Arc<ServerConfig>>) -> std::io::Result<Self> {
        let Some(config) = tls else {
            return Ok(Listener::Plain(tcp));
        };
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(accept_tls(tcp, TlsAcceptor::from(config), tx, stop.clone()));
        Ok(Listener::Tls {
            ready,
            local,
            _acceptor: stop.drop_guard(),
        })
    }
}

async fn accept_tls(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    stop: tokio_util::sync::CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors and the like: wait a little, as axum does.
                debug!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = ready.send((tls, peer)).await;
                }
                Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for Listener {
    // Boxed: a TLS session is over a kilobyte, and an unboxed `Either` would make
    // every plain connection carry that much too.
    type Io = Either<TcpStream, Box<TlsStream<TcpStream>>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            Listener::Plain(tcp) => loop {
                match TcpListener::accept(tcp).await {
                    Ok((stream, peer)) => {
                        // Frames are small and written whole; Nagle would hold the second
                        // of two quick writes (server-list after the upgrade) for an ACK.
                        let _ = stream.set_nodelay(true);
                        return (Either::Left(stream), peer);
                    }
                    Err(error) => {
                        debug!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
            Listener::Tls { ready, .. } => match ready.recv().await {
                Some((stream, peer)) => (Either::Right(Box::new(stream)), peer),
                // The accepting task only ends when we are dropped.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match self {
            Listener::Plain(tcp) => tcp.local_addr(),
            Listener::Tls { local, .. } => Ok(*local),
        }
    }
}

/// The TCP peer of a request, as handlers see it through `ConnectInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, Listener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, Listener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

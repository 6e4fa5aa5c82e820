//! TLS certificates: reading the PEM files an operator names into a server
//! configuration, and reading them again when the operator asks (SIGHUP after
//! a renewal).
//!
//! A file that is missing or holds no usable key stops the start with a
//! sentence naming it. The configuration does not hold the certificate
//! itself: it asks a [`Certificate`] resolver on every handshake, which hands
//! out the pair read last, so a reload changes what new handshakes get without
//! touching connections already open; a reload that fails keeps the old pair.
//! Handshakes themselves run in each connection's own task (see
//! [`crate::server`]), each under the handshake deadline, so a client that
//! stalls its handshake holds up nobody.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::StartError;

/// Where the certificate chain and private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The certificate chain at `cert` and the key at `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }
}

/// The certificate and key new handshakes get, and the files to read them
/// from again.
#[derive(Debug)]
pub(crate) struct Certificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Reads the files again; on success new handshakes use the new pair, on
    /// failure the old one stays and the error says which file is wrong.
    pub(crate) fn reload(&self) -> Result<(), StartError> {
        let pair = read_pair(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
        Ok(())
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

/// Reads the PEM files into a server configuration, and the resolver that
/// can read them again.
pub(crate) fn load(files: &TlsFiles) -> Result<(Arc<ServerConfig>, Arc<Certificate>), StartError> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let certificate = Arc::new(Certificate {
        files: files.clone(),
        current: RwLock::new(Arc::new(read_pair(files, &provider)?)),
        provider: Arc::clone(&provider),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| problem(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), certificate))
}

fn problem(path: &Path, reason: String) -> StartError {
    StartError::Tls {
        path: path.to_owned(),
        reason,
    }
}

/// Reads and checks one certificate chain and its key.
fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, StartError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| problem(&files.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| problem(&files.cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(problem(&files.cert, "holds no PEM certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| problem(&files.key, format!("holds no usable private key: {e}")))?;
    CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| problem(&files.key, format!("does not match the certificate: {e}")))
}

//! HTTPS for the serving loop: with `--tls-cert` and `--tls-key` (PEM) every accepted connection
//! is a TLS one before it is HTTP, and with `--tls-client-ca` the client must also present a
//! certificate signed by that CA (mutual TLS) or the handshake is refused. rustls with the ring
//! provider, TLS 1.2 and 1.3, ALPN `http/1.1`.
//!
//! The handshake runs in the connection's own task, after the connection took its slot under
//! `--max-connections` and before hyper sees a byte, bounded by `--tls-handshake-timeout`: a
//! client that connects and says nothing (or trickles its hello) holds its slot that long at
//! most, and one slow handshake never delays the accept loop. The idle watchdog counts from the
//! accept, so the first request head must still arrive within `--http-idle-timeout` of it; body
//! bounds and the drain on shutdown apply to TLS connections as to plain ones. Nothing is ever
//! served in clear on a TLS port: a plain HTTP request is a failed handshake.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::conn::{self, AppService, ConnService};
use crate::{REFUSAL_LOG_EVERY, Stats};

/// The TLS flags of a daemon's server, flattened next to its [`crate::HttpArgs`].
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate (PEM; the server's first, then its chain)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require a client certificate signed by a CA in this file (PEM): mutual TLS; a client
    /// without one, or with another CA's, is refused at the handshake
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// A TLS handshake not done within this is dropped, freeing its connection slot (Go
    /// duration)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::parse_timeout)]
    pub tls_handshake_timeout: Duration,
}

impl TlsArgs {
    /// The TLS settings these flags give: `None` without `--tls-cert` (plain HTTP). An
    /// unreadable or unusable file is an error naming the flag and the file.
    pub fn load(&self) -> Result<Option<Tls>, TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        Tls::from_files(
            cert,
            key,
            self.tls_client_ca.as_deref(),
            self.tls_handshake_timeout,
        )
        .map(Some)
    }
}

/// Why the TLS settings cannot be used; each names the flag and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{flag} {}: {reason}", path.display())]
    Pem {
        flag: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("--tls-key {} does not go with --tls-cert {}: {reason}", key.display(), cert.display())]
    KeyPair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("--tls-client-ca {}: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
}

/// A server's TLS: the acceptor (certificate, key, client verification) and the handshake
/// bound. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    handshake_timeout: Duration,
    client_certs: bool,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("client_certs", &self.client_certs)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS with the certificate chain in `cert` and its key in `key`; with `client_ca`,
    /// clients must present a certificate that CA signed.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        handshake_timeout: Duration,
    ) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = read_certs("--tls-cert", cert)?;
        let private_key = read_key("--tls-key", key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::KeyPair {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                reason: e.to_string(),
            })?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in read_certs("--tls-client-ca", path)? {
                    roots.add(ca).map_err(|e| TlsError::ClientCa {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder
                .with_single_cert(chain, private_key)
                .map_err(|e| TlsError::KeyPair {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                    reason: e.to_string(),
                })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            handshake_timeout,
            client_certs: client_ca.is_some(),
        })
    }

    /// Whether clients must present a certificate (mutual TLS).
    pub fn requires_client_certs(&self) -> bool {
        self.client_certs
    }
}

/// Every certificate in a PEM file, in order; none is an error.
fn read_certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(flag, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            flag,
            path: path.to_path_buf(),
            reason: "no PEM certificate (BEGIN CERTIFICATE) in it".into(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file.
fn read_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            flag,
            path: path.to_path_buf(),
            reason: "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it".into(),
        },
        e => pem_error(flag, path, e),
    })
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(flag: &'static str, path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        flag,
        path: path.to_path_buf(),
        reason: format!("not PEM: {e}"),
    }
}

/// Failed handshakes, logged at most once per [`REFUSAL_LOG_EVERY`] with their count (each one
/// at debug): a scanner or a rogue client must not flood the log.
pub(crate) struct HandshakeLog {
    start: Instant,
    since_last: AtomicU64,
    /// Milliseconds since `start` of the last line; `NEVER` before the first.
    last_ms: AtomicU64,
}

const NEVER: u64 = u64::MAX;

impl HandshakeLog {
    pub(crate) fn new() -> HandshakeLog {
        HandshakeLog {
            start: Instant::now(),
            since_last: AtomicU64::new(0),
            last_ms: AtomicU64::new(NEVER),
        }
    }

    fn failed(&self, peer: SocketAddr, error: &dyn fmt::Display) {
        self.since_last.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == NEVER || now.saturating_sub(last) >= REFUSAL_LOG_EVERY.as_millis() as u64;
        // One task wins the line; the others count toward the next.
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let failed = self.since_last.swap(0, Ordering::Relaxed);
            tracing::warn!(%peer, %error, failed, "TLS handshake refused (count since the last such line)");
        } else {
            tracing::debug!(%peer, %error, "TLS handshake refused");
        }
    }
}

/// Serves one accepted connection over TLS: the handshake under its timeout, then HTTP as on a
/// plain connection. The slot is held throughout and freed when this returns.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<S: AppService>(
    tls: Tls,
    builder: Arc<hyper::server::conn::http1::Builder>,
    stream: TcpStream,
    peer: SocketAddr,
    service: ConnService<S>,
    slot: OwnedSemaphorePermit,
    graceful: CancellationToken,
    hard: CancellationToken,
    stats: Arc<Stats>,
    log: Arc<HandshakeLog>,
) {
    let handshake = tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(stream));
    let outcome = tokio::select! {
        outcome = handshake => outcome,
        // Nothing was asked yet: a stop closes it at once.
        () = graceful.cancelled() => return,
    };
    let stream = match outcome {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
            log.failed(peer, &e);
            return;
        }
        Err(_) => {
            stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
            log.failed(
                peer,
                &format_args!("no handshake within {:?}", tls.handshake_timeout),
            );
            return;
        }
    };
    conn::run(builder, stream, service, slot, graceful, hard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path, cert: &str, key: &str, ca: Option<&str>) -> TlsArgs {
        TlsArgs {
            tls_cert: Some(dir.join(cert)),
            tls_key: Some(dir.join(key)),
            tls_client_ca: ca.map(|c| dir.join(c)),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn no_cert_is_plain_http() {
        assert!(TlsArgs::default().load().unwrap().is_none());
    }

    #[test]
    fn bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("cairn-http-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        std::fs::write(
            dir.join("junk.pem"),
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = args(&dir, "missing.pem", "key.pem", None)
            .load()
            .unwrap_err();
        assert!(
            err.to_string().starts_with("--tls-cert ") && err.to_string().contains("missing.pem"),
            "{err}"
        );
        let err = args(&dir, "empty.pem", "key.pem", None).load().unwrap_err();
        assert!(
            err.to_string().contains("empty.pem") && err.to_string().contains("no PEM certificate"),
            "{err}"
        );
        let err = args(&dir, "junk.pem", "key.pem", None).load().unwrap_err();
        assert!(
            err.to_string().contains("junk.pem") && err.to_string().contains("not PEM"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

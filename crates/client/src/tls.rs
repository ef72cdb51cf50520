//! A client's TLS, with Consul's settings: the CA that signs the server's certificate
//! (`CONSUL_CACERT`; the system's CAs without it), a client certificate and key for servers that
//! require one (`CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`: mutual TLS), and the name the server's
//! certificate must carry when it is not the address's host (`CONSUL_TLS_SERVER_NAME`, for a
//! server reached by IP). Where the values come from (flags, environment) is the binaries' business
//! (`cairn_cli::CatalogArgs`); this turns them into a rustls configuration with the ring provider,
//! the one every reqwest client of the workspace is built with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::ClientError;

/// TLS settings of a client. `Default`: the system's CAs, no client certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificate(s) the server's certificate must chain to, instead of the
    /// system's.
    pub ca_cert: Option<PathBuf>,
    /// PEM file of the certificate presented to servers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// PEM file of `client_cert`'s private key.
    pub client_key: Option<PathBuf>,
    /// The name the server's certificate must be valid for, instead of the URL's host.
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// The rustls configuration of a client. `https`: whether the client will speak TLS at all;
    /// without it and without a CA file the system's CAs are not read (a plain-HTTP client
    /// works on a host that has none). Files are read now: a missing or unusable one is an
    /// error naming it.
    pub fn client_config(&self, https: bool) -> Result<rustls::ClientConfig, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_cert {
            Some(path) => {
                for cert in read_certs("CA certificate", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| tls_error("CA certificate", path, e))?;
                }
            }
            None if https => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(ClientError::Tls {
                        reason: "no CA certificate found on this system; name one with \
                                 CONSUL_CACERT (--ca-cert)"
                            .into(),
                    });
                }
            }
            None => {}
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls {
                reason: e.to_string(),
            })?;
        let name = match &self.server_name {
            None => None,
            Some(name) => Some(ServerName::try_from(name.trim().to_string()).map_err(|e| {
                ClientError::Tls {
                    reason: format!("TLS server name {name:?}: {e}"),
                }
            })?),
        };
        let builder = match name {
            // No CA at all (a plain-HTTP client, which verifies nothing): no name to check.
            Some(name) if !roots.is_empty() => {
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .map_err(|e| ClientError::Tls {
                    reason: e.to_string(),
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ExpectName { inner, name }))
            }
            _ => builder.with_root_certificates(roots),
        };
        let mut config = match (&self.client_cert, &self.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = read_certs("client certificate", cert)?;
                let private_key = read_key(key)?;
                builder
                    .with_client_auth_cert(chain, private_key)
                    .map_err(|e| ClientError::Tls {
                        reason: format!(
                            "client key {} does not go with client certificate {}: {e}",
                            key.display(),
                            cert.display()
                        ),
                    })?
            }
            (Some(_), None) => {
                return Err(ClientError::Tls {
                    reason: "a client certificate needs its key (CONSUL_CLIENT_KEY, --client-key)"
                        .into(),
                });
            }
            (None, Some(_)) => {
                return Err(ClientError::Tls {
                    reason: "a client key needs its certificate (CONSUL_CLIENT_CERT, \
                             --client-cert)"
                        .into(),
                });
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Checks the server's certificate against a configured name instead of the URL's host.
#[derive(Debug)]
struct ExpectName {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ExpectName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn tls_error(what: &str, path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Tls {
        reason: format!("{what} {}: {e}", path.display()),
    }
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bytes = std::fs::read(path).map_err(|e| tls_error(what, path, e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(what, path, format_args!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_error(
            what,
            path,
            "no PEM certificate (BEGIN CERTIFICATE) in it",
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    let what = "client key";
    let bytes = std::fs::read(path).map_err(|e| tls_error(what, path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => tls_error(
            what,
            path,
            "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
        ),
        e => tls_error(what, path, format_args!("not PEM: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_needs_no_ca() {
        let config = TlsOptions::default().client_config(false).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn files_are_named_in_errors() {
        let missing = TlsOptions {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = missing.client_config(true).unwrap_err().to_string();
        assert!(err.contains("CA certificate /nonexistent/ca.pem"), "{err}");
        let half = TlsOptions {
            client_cert: Some("/nonexistent/c.pem".into()),
            ..Default::default()
        };
        let err = half.client_config(false).unwrap_err().to_string();
        assert!(err.contains("needs its key"), "{err}");
    }

    #[test]
    fn server_names_are_checked() {
        let bad = TlsOptions {
            server_name: Some("not a name".into()),
            ..Default::default()
        };
        let err = bad.client_config(false).unwrap_err().to_string();
        assert!(err.contains("TLS server name"), "{err}");
    }
}

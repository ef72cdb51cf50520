//! Shared state for running many checks: pooled HTTP clients, built on first use, so a batch of
//! 10,000 HTTP checks reuses connections, and a plain-HTTP check never loads TLS (the system
//! root store is read only when an https URL is checked).
//!
//! The transport is hyper with rustls (ring) directly rather than reqwest, so the TLS choice of
//! the check engine never leaks into other crates' reqwest through feature unification.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Client for plain http:// URLs.
pub(crate) type PlainClient = Client<HttpConnector, Full<Bytes>>;
/// Client for https:// (and http://) URLs.
pub(crate) type TlsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Clients and settings shared by checks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Context {
    inner: Arc<Clients>,
}

#[derive(Default)]
struct Clients {
    plain: OnceLock<PlainClient>,
    verified: OnceLock<Result<TlsClient, String>>,
    insecure: OnceLock<Result<TlsClient, String>>,
}

/// Accepts any server certificate (`--insecure`, Consul's `TLSSkipVerify`).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http
}

fn builder() -> hyper_util::client::legacy::Builder {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_max_idle_per_host(1024);
    b
}

fn tls_client(insecure: bool) -> Result<TlsClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if insecure {
        config
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        use hyper_rustls::ConfigBuilderExt as _;
        config
            .with_native_roots()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector());
    Ok(builder().build(https))
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    pub(crate) fn plain(&self) -> PlainClient {
        self.inner
            .plain
            .get_or_init(|| builder().build(connector()))
            .clone()
    }

    pub(crate) fn tls(&self, insecure: bool) -> Result<TlsClient, String> {
        let slot = if insecure {
            &self.inner.insecure
        } else {
            &self.inner.verified
        };
        slot.get_or_init(|| tls_client(insecure)).clone()
    }
}

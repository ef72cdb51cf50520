//! Shared state for running many checks: pooled HTTP clients (one per TLS/redirect policy, built
//! on first use) so a batch of 10,000 HTTP checks reuses connections instead of opening one per
//! check, and nothing TLS-related is loaded when no check needs it.

use std::sync::{Arc, OnceLock};

/// Clients and settings shared by checks. Cheap to clone.
#[derive(Clone, Default)]
pub struct Context {
    clients: Arc<[OnceLock<Result<reqwest::Client, String>>; 4]>,
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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

impl Context {
    pub fn new() -> Context {
        Context::default()
    }

    /// The pooled client for a policy, or why it could not be built (a broken TLS setup).
    pub(crate) fn http_client(
        &self,
        insecure: bool,
        follow_redirects: bool,
    ) -> Result<reqwest::Client, String> {
        let slot = usize::from(insecure) * 2 + usize::from(follow_redirects);
        self.clients[slot]
            .get_or_init(|| build_client(insecure, follow_redirects))
            .clone()
    }
}

fn build_client(insecure: bool, follow_redirects: bool) -> Result<reqwest::Client, String> {
    let provider = provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("cairn-healthcheck/", env!("CARGO_PKG_VERSION")))
        .redirect(if follow_redirects {
            reqwest::redirect::Policy::limited(10)
        } else {
            reqwest::redirect::Policy::none()
        })
        .pool_max_idle_per_host(512)
        .no_proxy();
    if insecure {
        let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
                    .with_no_client_auth()
            });
        builder = builder.tls_backend_preconfigured(tls.map_err(|e| format!("TLS setup: {e}"))?);
    }
    builder
        .build()
        .map_err(|e| format!("HTTP client setup: {e}"))
}

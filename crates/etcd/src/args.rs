//! The `--etcd*` flags every replicated daemon takes (catalogd and offerd), and the client they
//! describe.

use std::path::PathBuf;
use std::time::Duration;

use crate::{EtcdClient, EtcdError, TlsOptions};

/// Where a daemon keeps its state when it runs as one of several replicas.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated: keep the state on that etcd cluster so that several
    /// replicas share it, instead of the embedded store [env: CAIRN_ETCD]
    #[arg(
        long = "etcd",
        env = "CAIRN_ETCD",
        value_name = "URL[,URL...]",
        value_delimiter = ','
    )]
    pub endpoints: Vec<url::Url>,
    /// Key prefix of this daemon's replicas in etcd (its data, leader and member keys)
    #[arg(long = "etcd-prefix", value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// CA certificate (PEM) that etcd's server certificate must chain to (https URLs)
    #[arg(long = "etcd-ca", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to etcd
    #[arg(long = "etcd-cert", value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert
    #[arg(long = "etcd-key", value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// TTL of the replica's etcd lease: how long a dead leader keeps its role (Go duration)
    #[arg(long = "etcd-lease-ttl", value_name = "DURATION", default_value = "5s",
          value_parser = parse_ttl)]
    pub lease_ttl: Duration,
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = cairn_wire::parse_go_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err("the lease TTL is at least 1s (etcd counts leases in seconds)".into());
    }
    Ok(d)
}

impl EtcdArgs {
    /// Whether the daemon runs on etcd.
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// The prefix, `default` unless given; always ends with `/`.
    pub fn prefix_or(&self, default: &str) -> String {
        let mut p = self.prefix.clone().unwrap_or_else(|| default.to_string());
        if !p.ends_with('/') {
            p.push('/');
        }
        p
    }

    /// The client for these flags (`None` without `--etcd`).
    pub fn client(&self, request_timeout: Duration) -> Result<Option<EtcdClient>, EtcdError> {
        if !self.enabled() {
            return Ok(None);
        }
        let tls = (self.ca.is_some() || self.cert.is_some()).then(|| TlsOptions {
            ca_cert: self.ca.clone(),
            client_cert: self.cert.clone(),
            client_key: self.key.clone(),
            ..Default::default()
        });
        EtcdClient::new(self.endpoints.clone(), tls, request_timeout).map(Some)
    }
}

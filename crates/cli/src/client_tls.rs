//! Where a client's TLS settings come from: flags first, then the environment, with Consul's
//! names for the catalog (`CONSUL_CACERT`, `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`,
//! `CONSUL_TLS_SERVER_NAME`, `CONSUL_HTTP_SSL`) and cairn's for offerd (`--offerd-ca-cert`, env
//! `CAIRN_OFFERD_CACERT`, ...). An offerd connection without settings of its own uses the
//! catalog's CA, and its client certificate and key: one CA and one certificate per host is the
//! usual layout, and then setting Consul's variables is enough for every client.

use std::path::PathBuf;

use cairn_client::TlsOptions;
use clap::Args;

use crate::CatalogArgs;

/// The catalog's TLS settings: each flag, else its Consul environment variable.
pub(crate) fn catalog_tls(args: &CatalogArgs, env: impl Fn(&str) -> Option<String>) -> TlsOptions {
    let path =
        |flag: &Option<PathBuf>, name: &str| flag.clone().or_else(|| env(name).map(PathBuf::from));
    TlsOptions {
        ca_cert: path(&args.ca_cert, "CONSUL_CACERT"),
        client_cert: path(&args.client_cert, "CONSUL_CLIENT_CERT"),
        client_key: path(&args.client_key, "CONSUL_CLIENT_KEY"),
        server_name: args
            .tls_server_name
            .clone()
            .or_else(|| env("CONSUL_TLS_SERVER_NAME")),
    }
}

/// `addr` with a scheme: its own, else `https://` when `ssl` (`CONSUL_HTTP_SSL`) parses as
/// true the way Go's `strconv.ParseBool` does, else `http://`.
pub(crate) fn scheme_by_ssl(addr: &str, ssl: Option<&str>) -> String {
    let https = matches!(
        ssl.map(str::trim),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True")
    );
    let trimmed = addr.trim();
    if https && !trimmed.contains("://") {
        format!("https://{}", trimmed.trim_end_matches('/'))
    } else {
        crate::with_scheme(trimmed)
    }
}

/// TLS settings of a connection to offerd (taskrun's agent protocol, the `offerd` client
/// commands). What is not set here is the catalog's: the CA, and the client certificate with its
/// key (the pair is taken whole from one side). The server name is never borrowed.
#[derive(Args, Debug, Clone, Default)]
pub struct OfferdTlsArgs {
    /// CA certificate(s), PEM, that offerd's certificate must chain to [env:
    /// CAIRN_OFFERD_CACERT] [default: the catalog's, --ca-cert / CONSUL_CACERT, else the
    /// system's]
    #[arg(long, global = true, value_name = "FILE")]
    pub offerd_ca_cert: Option<PathBuf>,
    /// Client certificate, PEM, for an offerd that requires one (mutual TLS) [env:
    /// CAIRN_OFFERD_CLIENT_CERT] [default: the catalog's, --client-cert / CONSUL_CLIENT_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub offerd_client_cert: Option<PathBuf>,
    /// The private key of --offerd-client-cert, PEM [env: CAIRN_OFFERD_CLIENT_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    pub offerd_client_key: Option<PathBuf>,
    /// The name offerd's certificate must be valid for, when it is not the address's host
    /// [env: CAIRN_OFFERD_TLS_SERVER_NAME]
    #[arg(long, global = true, value_name = "NAME")]
    pub offerd_tls_server_name: Option<String>,
}

impl OfferdTlsArgs {
    /// The settings after flags and environment, completed from `catalog` (the catalog's
    /// settings, [`CatalogArgs::tls`]).
    pub fn tls(&self, catalog: &TlsOptions) -> TlsOptions {
        self.resolve(catalog, crate::env_nonempty)
    }

    fn resolve(&self, catalog: &TlsOptions, env: impl Fn(&str) -> Option<String>) -> TlsOptions {
        let path = |flag: &Option<PathBuf>, name: &str| {
            flag.clone().or_else(|| env(name).map(PathBuf::from))
        };
        let cert = path(&self.offerd_client_cert, "CAIRN_OFFERD_CLIENT_CERT");
        let key = path(&self.offerd_client_key, "CAIRN_OFFERD_CLIENT_KEY");
        let (client_cert, client_key) = if cert.is_none() && key.is_none() {
            (catalog.client_cert.clone(), catalog.client_key.clone())
        } else {
            (cert, key)
        };
        TlsOptions {
            ca_cert: path(&self.offerd_ca_cert, "CAIRN_OFFERD_CACERT")
                .or_else(|| catalog.ca_cert.clone()),
            client_cert,
            client_key,
            server_name: self
                .offerd_tls_server_name
                .clone()
                .or_else(|| env("CAIRN_OFFERD_TLS_SERVER_NAME")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn flags_win_over_consuls_variables() {
        let vars = env(&[
            ("CONSUL_CACERT", "/env/ca.pem"),
            ("CONSUL_CLIENT_CERT", "/env/c.pem"),
            ("CONSUL_CLIENT_KEY", "/env/k.pem"),
            ("CONSUL_TLS_SERVER_NAME", "consul.example"),
        ]);
        let from_env = catalog_tls(&CatalogArgs::default(), &vars);
        assert_eq!(
            from_env,
            TlsOptions {
                ca_cert: Some("/env/ca.pem".into()),
                client_cert: Some("/env/c.pem".into()),
                client_key: Some("/env/k.pem".into()),
                server_name: Some("consul.example".into()),
            }
        );
        let flags = CatalogArgs {
            ca_cert: Some("/flag/ca.pem".into()),
            tls_server_name: Some("flag.example".into()),
            ..Default::default()
        };
        let mixed = catalog_tls(&flags, &vars);
        assert_eq!(mixed.ca_cert, Some("/flag/ca.pem".into()));
        assert_eq!(mixed.client_cert, Some("/env/c.pem".into()));
        assert_eq!(mixed.server_name.as_deref(), Some("flag.example"));
        assert_eq!(
            catalog_tls(&CatalogArgs::default(), env(&[])),
            TlsOptions::default()
        );
    }

    #[test]
    fn consul_http_ssl_picks_https_for_bare_addresses() {
        assert_eq!(scheme_by_ssl("c:8501", Some("true")), "https://c:8501");
        assert_eq!(scheme_by_ssl("c:8501/", Some("1")), "https://c:8501");
        assert_eq!(scheme_by_ssl("c:8500", Some("false")), "http://c:8500");
        assert_eq!(scheme_by_ssl("c:8500", Some("yes")), "http://c:8500");
        assert_eq!(scheme_by_ssl("c:8500", None), "http://c:8500");
        assert_eq!(
            scheme_by_ssl("http://c:8500", Some("true")),
            "http://c:8500"
        );
        assert_eq!(scheme_by_ssl("https://c:8501", None), "https://c:8501");
    }

    #[test]
    fn offerd_settings_fall_back_to_the_catalogs() {
        let catalog = TlsOptions {
            ca_cert: Some("/ca.pem".into()),
            client_cert: Some("/c.pem".into()),
            client_key: Some("/k.pem".into()),
            server_name: Some("consul.example".into()),
        };
        let none = OfferdTlsArgs::default().resolve(&catalog, env(&[]));
        assert_eq!(
            none,
            TlsOptions {
                server_name: None,
                ..catalog.clone()
            }
        );
        let own = OfferdTlsArgs::default().resolve(
            &catalog,
            env(&[
                ("CAIRN_OFFERD_CACERT", "/o/ca.pem"),
                ("CAIRN_OFFERD_CLIENT_CERT", "/o/c.pem"),
                ("CAIRN_OFFERD_TLS_SERVER_NAME", "offerd.example"),
            ]),
        );
        assert_eq!(
            own,
            TlsOptions {
                ca_cert: Some("/o/ca.pem".into()),
                // The pair is never mixed: a certificate of its own without a key is an error
                // when the client is built, not the catalog's key.
                client_cert: Some("/o/c.pem".into()),
                client_key: None,
                server_name: Some("offerd.example".into()),
            }
        );
    }
}

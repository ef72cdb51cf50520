//! Command-line plumbing shared by every cairn binary, so they all behave alike: the same peer
//! address flags and environment variables, the same logging (`--log-format`, `RUST_LOG`,
//! `NO_COLOR`, logs on stderr), the same clean stop on SIGTERM/SIGINT, and the same
//! `completions <shell>` and `man` subcommands ([`docs`]).

pub mod announce;
pub mod client_tls;
pub mod docs;
pub mod locks;
pub mod logtap;
pub mod runtime;

pub use client_tls::OfferdTlsArgs;
pub use docs::DocsCommand;
pub use locks::{EXIT_LOCK_POISONED, LockOrExit, RwLockOrExit, exit_crash, exit_lock_poisoned};
pub use logtap::{LogRecord, LogTap};
pub use runtime::{Flavor, block_on, run_main};

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Default catalog address, Consul's.
pub const DEFAULT_CATALOG: &str = "http://127.0.0.1:8500";
/// The same without its scheme, which `CONSUL_HTTP_SSL` chooses.
const DEFAULT_CATALOG_ADDR: &str = "127.0.0.1:8500";

/// How to reach catalogd: `--catalog` (env `CAIRN_CATALOG`, then `CONSUL_HTTP_ADDR`; one
/// address or several replicas, comma-separated, failed over in order: [`cairn_client::Endpoints`]),
/// `--token` (env `CAIRN_TOKEN`, then `CONSUL_HTTP_TOKEN`) and Consul's TLS settings
/// (`--ca-cert`, `--client-cert`, `--client-key`, `--tls-server-name`, env `CONSUL_CACERT`,
/// `CONSUL_CLIENT_CERT`, `CONSUL_CLIENT_KEY`, `CONSUL_TLS_SERVER_NAME`; `CONSUL_HTTP_SSL=true`
/// makes an address without a scheme https).
#[derive(Args, Debug, Clone, Default)]
pub struct CatalogArgs {
    /// catalogd (or Consul) HTTP address; several replicas as URL,URL,...: a request that
    /// cannot reach one goes to the next, and stays there [env: CAIRN_CATALOG, CONSUL_HTTP_ADDR]
    /// [default: http://127.0.0.1:8500, https:// with CONSUL_HTTP_SSL=true]
    #[arg(long, global = true, value_name = "URL[,URL...]")]
    pub catalog: Option<String>,
    /// ACL token sent as X-Consul-Token [env: CAIRN_TOKEN, CONSUL_HTTP_TOKEN]
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// CA certificate(s), PEM, that catalogd's certificate must chain to, instead of the
    /// system's [env: CONSUL_CACERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate, PEM, for a catalogd that requires one (mutual TLS) [env:
    /// CONSUL_CLIENT_CERT]
    #[arg(long, global = true, value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// The private key of --client-cert, PEM [env: CONSUL_CLIENT_KEY]
    #[arg(long, global = true, value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// The name catalogd's certificate must be valid for, when it is not the address's host
    /// [env: CONSUL_TLS_SERVER_NAME]
    #[arg(long, global = true, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl CatalogArgs {
    /// The catalog URL (or comma-separated URLs) after flags, environment and default, each
    /// with a scheme.
    pub fn url(&self) -> String {
        let raw = self
            .catalog
            .clone()
            .or_else(|| env_nonempty("CAIRN_CATALOG"))
            .or_else(|| env_nonempty("CONSUL_HTTP_ADDR"))
            .unwrap_or_else(|| DEFAULT_CATALOG_ADDR.to_string());
        with_catalog_scheme(&raw)
    }

    /// The TLS settings after flags and environment.
    pub fn tls(&self) -> cairn_client::TlsOptions {
        client_tls::catalog_tls(self, env_nonempty)
    }

    /// The replicas at [`CatalogArgs::url`]; an empty, invalid or repeated entry is an error
    /// naming it.
    pub fn endpoints(&self) -> Result<cairn_client::Endpoints, cairn_client::ClientError> {
        cairn_client::Endpoints::parse(&self.url())
    }

    /// A client of the catalog at [`CatalogArgs::url`] with the token and TLS settings.
    pub fn client(&self) -> Result<cairn_client::CatalogClient, cairn_client::ClientError> {
        cairn_client::CatalogClient::with_endpoints(self.endpoints()?, self.token(), &self.tls())
    }

    /// A client of the catalog at `url` (from a config file, say; one URL or several,
    /// comma-separated) with the token and TLS settings.
    pub fn client_for(
        &self,
        url: &str,
    ) -> Result<cairn_client::CatalogClient, cairn_client::ClientError> {
        cairn_client::CatalogClient::with_tls(url, self.token(), &self.tls())
    }

    pub fn token(&self) -> Option<String> {
        self.token
            .clone()
            .or_else(|| env_nonempty("CAIRN_TOKEN"))
            .or_else(|| env_nonempty("CONSUL_HTTP_TOKEN"))
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A catalog address with its scheme: `https://` for one without when `CONSUL_HTTP_SSL` is true
/// (Go's `strconv.ParseBool`: 1, t, true, ...), as Consul's clients do; else [`with_scheme`].
/// A comma-separated list gets it entry by entry (an empty entry stays empty, for
/// [`cairn_client::Endpoints::parse`] to refuse by position).
pub fn with_catalog_scheme(addr: &str) -> String {
    let ssl = env_nonempty("CONSUL_HTTP_SSL");
    each_entry(addr, |a| client_tls::scheme_by_ssl(a, ssl.as_deref()))
}

/// `f` applied to every non-empty entry of a comma-separated list.
fn each_entry(list: &str, f: impl Fn(&str) -> String) -> String {
    list.split(',')
        .map(|entry| {
            if entry.trim().is_empty() {
                String::new()
            } else {
                f(entry)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `127.0.0.1:8500` → `http://127.0.0.1:8500` (Consul's env var often has no scheme).
pub fn with_scheme(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// Log line format.
#[derive(ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Logging flags.
#[derive(Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Log line format on stderr (level from RUST_LOG, default info)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Sends logs to stderr, filtered by `RUST_LOG` (default `info`), colour only on a terminal and
/// never with `NO_COLOR` set.
pub fn init_logging(args: &LogArgs) {
    init_logging_with(args, "info");
}

/// Like [`init_logging`], with another default filter when `RUST_LOG` is unset (e.g. to quiet a
/// chatty dependency: `"info,hickory_server=warn"`).
pub fn init_logging_with(args: &LogArgs, default_filter: &str) {
    init_logging_tapped(args, default_filter, None);
}

/// Like [`init_logging_with`], also feeding `tap` with every event that passes the filter.
pub fn init_logging_tapped(args: &LogArgs, default_filter: &str, tap: Option<&LogTap>) {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let (json, text) = match args.log_format {
        LogFormat::Json => (
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            ),
            None,
        ),
        LogFormat::Text => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(color)
                    .with_writer(std::io::stderr),
            ),
        ),
    };
    // A second initialisation (tests calling twice) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(text)
        .with(tap.map(LogTap::layer))
        .try_init();
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            // Without signal handlers the process still stops on the default action.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        // Without a Ctrl-C handler nothing will ever stop us but the process's end: stop now.
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Creates `dir` (and missing parents) readable by its owner only, and narrows an existing
/// `dir` to 0700: it holds state other local users must not read (task definitions with their
/// environment, logs, stores). Parents created on the way get 0700 too; existing ones are left
/// as they are.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    // A directory just created is 0700 already (a umask only narrows): the common case, a
    // task's sandbox on each of its saves, costs a stat, not a metadata write.
    if std::fs::metadata(dir)?.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// This machine's host name (uname's nodename), the default node name of every daemon; `None`
/// when it is empty or not UTF-8.
pub fn hostname() -> Option<String> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_str().ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Replaces `path` with `bytes` atomically: a temp file with a unique name in the same
/// directory, fsync, optional mode, rename, fsync of the directory. A reader sees the old file
/// or the new one, never a partial one, and the new one survives a crash once this returns.
/// Two writers of one path (two tasks of one process included) never share a temp file: the
/// last rename wins whole.
pub fn replace_file(
    path: &std::path::Path,
    bytes: &[u8],
    mode: Option<u32>,
) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    // Dropped unpersisted (any error below), the temp file is removed.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// New directories and parents are 0700; an existing directory is narrowed to 0700.
    #[test]
    fn private_dirs_are_their_owners_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let nested = root.path().join("a/b");
        create_private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&open).unwrap();
        assert_eq!(mode(&open), 0o700);
    }

    /// Two threads replacing one file at once: every write lands whole, none fails, no temp
    /// file is left behind (with one temp name per process they truncated each other's).
    #[test]
    fn concurrent_replacements_never_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        let payloads: Vec<Vec<u8>> = vec![vec![b'a'; 256 * 1024], vec![b'b'; 300 * 1024]];
        std::thread::scope(|s| {
            for p in &payloads {
                let (path, all) = (&path, &payloads);
                s.spawn(move || {
                    for _ in 0..50 {
                        replace_file(path, p, Some(0o640)).expect("replace");
                        let now = std::fs::read(path).expect("read");
                        assert!(
                            now == all[0] || now == all[1],
                            "a mixed file of {} bytes",
                            now.len()
                        );
                    }
                });
            }
        });
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["haproxy.cfg"]);
    }

    #[test]
    fn the_host_name_is_the_kernels() {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(hostname().as_deref(), Some(kernel.trim()));
    }

    #[test]
    fn bare_addresses_get_http() {
        assert_eq!(with_scheme("127.0.0.1:8500"), "http://127.0.0.1:8500");
        assert_eq!(with_scheme("https://c:8501/"), "https://c:8501");
    }

    /// Each entry of a list gets its scheme on its own; an empty entry stays, to be refused.
    #[test]
    fn lists_get_schemes_entry_by_entry() {
        let ssl = |a: &str| client_tls::scheme_by_ssl(a, Some("true"));
        let plain = |a: &str| client_tls::scheme_by_ssl(a, None);
        let cases = [
            ("a:1", "http://a:1", "https://a:1"),
            (
                "a:1, http://b:2/,c:3",
                "http://a:1,http://b:2,http://c:3",
                "https://a:1,http://b:2,https://c:3",
            ),
            (
                "a:1,,c:3",
                "http://a:1,,http://c:3",
                "https://a:1,,https://c:3",
            ),
        ];
        for (list, want_plain, want_ssl) in cases {
            assert_eq!(each_entry(list, plain), want_plain, "{list}");
            assert_eq!(each_entry(list, ssl), want_ssl, "{list}");
        }
        let args = CatalogArgs {
            catalog: Some("http://127.0.0.1:1,http://127.0.0.1:2".into()),
            ..Default::default()
        };
        let client = args.client().expect("two replicas");
        assert_eq!(client.endpoints().len(), 2);
        let dup = CatalogArgs {
            catalog: Some("http://127.0.0.1:1,http://127.0.0.1:1/".into()),
            ..Default::default()
        };
        let err = dup.client().expect_err("listed twice");
        assert!(err.to_string().contains("listed twice"), "{err}");
    }
}

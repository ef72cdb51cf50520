//! The `lbconf` command line.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_cli::{CatalogArgs, LogArgs};
use clap::{Parser, Subcommand};

/// HAProxy routing from the catalog.
#[derive(Parser, Debug)]
#[command(name = "lbconf", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print a complete haproxy.cfg for the current catalog
    Render(RenderArgs),
    /// Keep a running HAProxy in step with the catalog
    Watch(WatchArgs),
    #[command(flatten)]
    Docs(cairn_cli::DocsCommand),
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// The haproxy.cfg to maintain
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// HAProxy's runtime API socket: instance changes go through it without a reload
    #[arg(long)]
    pub haproxy_socket: Option<std::path::PathBuf>,
    /// Command that makes HAProxy load the new config (e.g. `kill -USR2 $(cat haproxy.pid)`)
    #[arg(long)]
    pub reload_cmd: Option<String>,
    /// HAProxy binary used to validate configs (`haproxy -c`)
    #[arg(long, default_value = "haproxy")]
    pub haproxy: String,
    /// Longest `haproxy -c` or the reload command may run before its process group is killed
    /// (Go duration: 30s, 1m)
    #[arg(long, default_value = "30s", value_parser = parse_timeout)]
    pub command_timeout: std::time::Duration,
    /// Least time between two reloads; changes in between are applied together by the next one
    /// (instance changes through the runtime socket are not held back)
    #[arg(long, default_value = "2s", value_parser = cairn_wire::parse_go_duration)]
    pub reload_interval: std::time::Duration,
    /// Serve Prometheus metrics on GET http://ADDR/metrics (requests per service read from
    /// HAProxy's runtime API, for autoscaling); off when not given
    #[arg(
        long,
        env = "LBCONF_METRICS_LISTEN",
        value_name = "ADDR",
        requires = "haproxy_socket"
    )]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where the validated copies of --tls-certs' certificates and the crt-list HAProxy reads
    /// are kept (default: lbconf-certs beside --out); a broken new version never replaces a copy
    #[arg(long, value_name = "DIR")]
    pub tls_state: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub layout: Layout,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match cairn_wire::parse_go_duration(s) {
        Ok(d) if d.is_zero() => Err("must be more than 0".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// How the config is laid out (shared by render and watch).
#[derive(clap::Args, Debug, Clone)]
pub struct Layout {
    /// Address the frontends bind to
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port of the shared HTTP frontend
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Free server slots per backend, for instance changes without a reload
    #[arg(long, default_value_t = 8)]
    pub spare_slots: usize,
    /// Your Tera template for the global/defaults sections (rendered with section="global",
    /// stats_socket, bind, http_port) and extra backend lines (section="backend", backend,
    /// service, mode, meta)
    #[arg(long)]
    pub template: Option<std::path::PathBuf>,
    /// Terminate HTTPS with the certificates in DIR (one PEM per name: certificate chain and
    /// key; wildcards allowed), chosen by SNI, HTTP/2 and HTTP/1.1 by ALPN; services opt in
    /// with lb_tls (or lb_redirect_https). `watch` follows DIR: certificates added, renewed or
    /// removed are applied through the runtime API without a reload, a broken one is refused
    /// and the old one keeps serving
    #[arg(long, value_name = "DIR")]
    pub tls_certs: Option<std::path::PathBuf>,
    /// Route only apps of these marathon-lb groups (their HAPROXY_GROUP label; `*`: every
    /// group), as marathon-lb's --group; repeat or comma-separate
    #[arg(long, value_name = "GROUP")]
    pub group: Vec<String>,
    /// Port of the HTTPS frontend (with --tls-certs)
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
    /// Serve HAProxy's own Prometheus exporter (GET /metrics) and its stats page (/stats) on
    /// ADDR (host:port)
    #[arg(long, value_name = "ADDR")]
    pub haproxy_metrics: Option<std::net::SocketAddr>,
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub layout: Layout,
    /// Add a runtime API socket at this path
    #[arg(long)]
    pub haproxy_socket: Option<String>,
}

/// A path placed on a config line: no spaces or quotes (HAProxy would split or misread it).
fn config_path(flag: &str, path: &std::path::Path) -> anyhow::Result<String> {
    let text = path.display().to_string();
    if !safe(&text) || text.is_empty() {
        anyhow::bail!("{flag} {text:?}: the path must not contain spaces or quotes");
    }
    Ok(text)
}

fn settings(
    layout: &Layout,
    stats_socket: Option<String>,
    certs: Option<crate::render::Certs>,
) -> anyhow::Result<crate::render::Settings> {
    let template = match &layout.template {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--template {}", path.display()))?;
            let mut t = tera::Tera::default();
            t.add_raw_template(crate::render::TEMPLATE, &text)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--template {}: {e}: {}",
                        path.display(),
                        std::error::Error::source(&e)
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    )
                })?;
            Some(std::sync::Arc::new(t))
        }
    };
    Ok(crate::render::Settings {
        bind: layout.bind,
        http_port: layout.http_port,
        spare_slots: layout.spare_slots,
        stats_socket,
        template,
        tls: certs.map(|certs| crate::render::TlsSettings {
            https_port: layout.https_port,
            certs,
        }),
        exporter: layout.haproxy_metrics,
    })
}

pub fn run(cli: Cli) -> ExitCode {
    if let Command::Docs(docs) = &cli.command {
        return docs.run(<Cli as clap::CommandFactory>::command());
    }
    cairn_cli::init_logging(&cli.log);
    let flavor = match cli.command {
        // One read and a print: a single thread starts fastest.
        Command::Render(_) => cairn_cli::Flavor::CurrentThread,
        _ => cairn_cli::Flavor::MultiThread(None),
    };
    cairn_cli::run_main("lbconf", flavor, dispatch(cli))
}

/// A `--haproxy-socket` path safe to place on a config line.
fn safe(p: &str) -> bool {
    !p.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'')
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let client = cli.catalog.client().context("--catalog")?;
    match cli.command {
        Command::Render(args) => {
            if let Some(sock) = &args.haproxy_socket
                && !safe(sock)
            {
                anyhow::bail!(
                    "--haproxy-socket {sock:?}: the path must not contain spaces or quotes"
                );
            }
            let (catalog, _) = client
                .whole_catalog(&Default::default())
                .await
                .context("reading the catalog")?;
            let groups = crate::model::Groups::new(&args.layout.group);
            let (routes, rejected) =
                crate::model::routes_of_groups(&catalog, args.layout.http_port, &groups);
            for r in rejected {
                tracing::warn!(service = ?r.service, reason = %r.reason, "not routed as asked");
            }
            let certs = match &args.layout.tls_certs {
                None => None,
                Some(dir) => Some(crate::render::Certs::Directory(config_path(
                    "--tls-certs",
                    dir,
                )?)),
            };
            let text = crate::render::config(
                &routes,
                &settings(&args.layout, args.haproxy_socket, certs)?,
            )
            .map_err(|e| anyhow::anyhow!(e))?;
            print!("{text}");
        }
        Command::Watch(args) => {
            let socket = args
                .haproxy_socket
                .as_ref()
                .map(|p| p.display().to_string());
            if let Some(sock) = &socket
                && !safe(sock)
            {
                anyhow::bail!(
                    "--haproxy-socket {sock:?}: the path must not contain spaces or quotes"
                );
            }
            let stop = tokio_util::sync::CancellationToken::new();
            let mut metrics = None;
            let mut server = None;
            let mut announced = None;
            if let (Some(addr), Some(sock)) = (args.metrics_listen, &args.haproxy_socket) {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--metrics-listen {addr}"))?;
                let bound = listener.local_addr().unwrap_or(addr);
                let m = std::sync::Arc::new(crate::metrics::Metrics::new(sock.clone()));
                tracing::info!(addr = %bound, "serving /metrics");
                // In the catalog as cairn-lbconf, so Prometheus' discovery through catalogd
                // finds it (a token that may not register it only costs a warning).
                announced =
                    cairn_cli::announce::Announcement::for_addr("cairn-lbconf", &bound.to_string())
                        .map(|who| {
                            tokio::spawn(cairn_cli::announce::announce(
                                client.clone(),
                                who,
                                stop.clone(),
                            ))
                        });
                server = Some(tokio::spawn(crate::metrics::serve(
                    listener,
                    m.clone(),
                    stop.clone(),
                )));
                metrics = Some(m);
            }
            let followed = match &args.layout.tls_certs {
                None => None,
                Some(dir) => {
                    let state = args.tls_state.clone().unwrap_or_else(|| {
                        args.out
                            .parent()
                            .unwrap_or(std::path::Path::new("."))
                            .join("lbconf-certs")
                    });
                    let (store, refused) = crate::certs::CertStore::open(dir, &state)
                        .with_context(|| format!("--tls-certs {}", dir.display()))?;
                    for r in refused {
                        tracing::warn!(file = %r.file, reason = %r.reason, "certificate refused");
                    }
                    tracing::info!(certificates = store.len(), dir = %dir.display(), "serving HTTPS");
                    Some(crate::watch::FollowedCerts {
                        dir: dir.clone(),
                        store,
                    })
                }
            };
            let certs = match &followed {
                None => None,
                Some(f) => Some(crate::render::Certs::List(config_path(
                    "--tls-state",
                    f.store.crt_list(),
                )?)),
            };
            let options = crate::watch::Options {
                out: args.out,
                socket: args.haproxy_socket,
                reload_cmd: args.reload_cmd,
                haproxy: args.haproxy,
                command_timeout: args.command_timeout,
                reload_interval: args.reload_interval,
                settings: settings(&args.layout, socket, certs)?,
                metrics,
                groups: crate::model::Groups::new(&args.layout.group),
            };
            crate::watch::run(client, options, followed, cairn_cli::shutdown_signal()).await;
            stop.cancel();
            if let Some(task) = announced {
                // Ends after its bounded deregistration; a panic in it was logged already.
                let _ = task.await;
            }
            if let Some(server) = server
                && let Err(e) = server.await
            {
                tracing::error!(error = %e, "the metrics server ended abnormally");
            }
        }
        // Answered in `run`, before logging and the runtime start.
        Command::Docs(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

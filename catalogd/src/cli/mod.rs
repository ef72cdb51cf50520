//! The `catalogd` command line: `serve` runs the daemon; the other subcommands are clients of a
//! running catalogd (or Consul) for scripts and Ansible: human text by default, `--json` for
//! machines, exit 1 when what was asked for does not exist.

mod client_cmds;
mod event_cmd;
mod lock;
mod maint_cmd;
mod snapshot_cmd;
mod watch_cmd;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cairn_cli::{CatalogArgs, LogArgs};
use clap::{Parser, Subcommand};

pub use client_cmds::NotFound;
pub use lock::{ChildExit, protocol as lock_protocol};

/// cairn's service catalog: health, KV and sessions behind a Consul-compatible HTTP API.
#[derive(Parser, Debug)]
#[command(name = "catalogd", version, about)]
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
    /// Run the catalog server
    Serve(Box<ServeArgs>),
    /// Read and write the KV store
    #[command(subcommand)]
    Kv(client_cmds::KvCommand),
    /// List service names and their tags
    Services(client_cmds::JsonFlag),
    /// List the instances of a service with their health
    Service(client_cmds::ServiceArgs),
    /// List nodes
    Nodes(client_cmds::JsonFlag),
    /// Register services, checks or nodes from a JSON file (or - for stdin)
    Register(client_cmds::RegisterArgs),
    /// Deregister a service, a check or a whole node
    Deregister(client_cmds::DeregisterArgs),
    /// Print one JSON line each time something changes (for pipes)
    Watch(watch_cmd::WatchArgs),
    /// Run a command holding a lock (or a semaphore slot) at a KV prefix, as `consul lock`
    Lock(lock::LockArgs),
    /// Fire and list user events, as `consul event`
    #[command(subcommand)]
    Event(event_cmd::EventCommand),
    /// Put the node or a service in or out of maintenance, or list what is, as `consul maint`
    Maint(maint_cmd::MaintArgs),
    /// Save, restore or inspect snapshots of the whole catalog
    #[command(subcommand)]
    Snapshot(snapshot_cmd::SnapshotCommand),
    #[command(flatten)]
    Docs(cairn_cli::DocsCommand),
}

/// Flags of `catalogd serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// HTTP listen address
    #[arg(long, default_value = "127.0.0.1:8500")]
    pub http_addr: SocketAddr,
    /// Directory of the durable store
    #[arg(long, default_value = "catalogd.data", conflicts_with = "in_memory")]
    pub data_dir: PathBuf,
    /// Keep everything in memory only (lost on exit): for throwaway runs
    #[arg(long)]
    pub in_memory: bool,
    /// Name of the node catalogd is the agent of [default: this host's name]
    #[arg(long)]
    pub node: Option<String>,
    /// Datacenter name
    #[arg(long, default_value = cairn_wire::DEFAULT_DATACENTER)]
    pub datacenter: String,
    /// Address catalogd's own node is registered with [default: the HTTP address, or 127.0.0.1]
    #[arg(long)]
    pub advertise: Option<IpAddr>,
    /// Shortest session TTL accepted
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub session_ttl_min: Duration,
    /// Accept and run script checks (`Args`) registered on catalogd's node: they run commands
    /// as catalogd's user, so they are off unless the operator turns them on
    #[arg(long)]
    pub enable_script_checks: bool,
    /// Writes waiting for the writer at once; past it a write is answered 503 with
    /// `Retry-After: 1` and changes nothing
    #[arg(long, value_name = "N", default_value_t = 16_384, value_parser = parse_pending)]
    pub max_pending_writes: usize,
    /// Connection and request bounds (the body cap is the snapshot restore's; KV values and
    /// transactions keep Consul's 512 KiB, other bodies 2 MiB)
    #[command(flatten)]
    pub http: cairn_http::HttpArgs<20_000, { 256 * 1024 * 1024 }>,
    /// HTTPS (and client certificates) instead of plain HTTP
    #[command(flatten)]
    pub tls: cairn_http::TlsArgs,
    /// Consul's ACL system: every request is checked against its token's policies
    /// [config file: acl.enabled]
    #[arg(long)]
    pub acl_enabled: bool,
    /// What a request no rule speaks for gets: allow (Consul's default) or deny
    /// [config file: acl.default_policy]
    #[arg(long, value_name = "allow|deny")]
    pub acl_default_policy: Option<cairn_acl::DefaultPolicy>,
    /// A management token created at start if missing (ends bootstrapping)
    /// [config file: acl.tokens.initial_management]
    #[arg(
        long,
        env = "CATALOGD_ACL_INITIAL_MANAGEMENT_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub acl_initial_management_token: Option<String>,
    /// Serve /metrics without a token when ACLs are on (otherwise it needs operator:read), for
    /// a Prometheus that holds none
    #[arg(long)]
    pub unauthenticated_metrics: bool,
    /// A Consul agent configuration file (JSON): its `acl` block is read (enabled,
    /// default_policy, tokens.initial_management); flags given here win over it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run as one of several replicas sharing their state on etcd (the data directory is then
    /// not used)
    #[command(flatten)]
    pub etcd: cairn_etcd::EtcdArgs,
    /// This replica's address as clients reach it (HOST:PORT): its name in
    /// /v1/status/leader and /v1/status/peers [default: the bound HTTP address]
    #[arg(long, value_name = "HOST:PORT", requires = "endpoints")]
    pub advertise_addr: Option<String>,
}

fn parse_pending(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{s:?} is not a count: {e}")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    cairn_wire::parse_go_duration(s).map_err(|e| e.to_string())
}

fn hostname() -> String {
    cairn_cli::hostname().unwrap_or_else(|| "catalogd".to_string())
}

impl ServeArgs {
    /// The ACL settings: the config file's, overridden by flags.
    fn acl(&self) -> anyhow::Result<crate::acl::AclConfig> {
        let mut acl = match &self.config {
            Some(path) => crate::acl::from_consul_config(path)?,
            None => crate::acl::AclConfig::default(),
        };
        if self.acl_enabled {
            acl.enabled = true;
        }
        if let Some(policy) = self.acl_default_policy {
            acl.default_policy = policy;
        }
        if let Some(token) = self
            .acl_initial_management_token
            .clone()
            .filter(|t| !t.is_empty())
        {
            acl.initial_management = Some(token);
        }
        Ok(acl)
    }

    pub fn config(&self, log_tap: cairn_cli::LogTap) -> anyhow::Result<crate::Config> {
        let ip = self.http_addr.ip();
        let advertise = self.advertise.unwrap_or(if ip.is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            ip
        });
        Ok(crate::Config {
            acl: self.acl()?,
            unauthenticated_metrics: self.unauthenticated_metrics,
            http_addr: self.http_addr,
            data_dir: (!self.in_memory && !self.etcd.enabled()).then(|| self.data_dir.clone()),
            node: self.node.clone().unwrap_or_else(hostname),
            datacenter: self.datacenter.clone(),
            advertise,
            min_session_ttl: self.session_ttl_min,
            enable_script_checks: self.enable_script_checks,
            max_pending_writes: self.max_pending_writes,
            http: self.http.limits(crate::serve::DRAIN),
            log_tap,
            // A follower holds no client certificate for a leader serving HTTPS: it commits
            // writes itself then.
            forward_writes: self.tls.tls_cert.is_none(),
            https: self.tls.tls_cert.is_some(),
            etcd: self.etcd.enabled().then(|| crate::ha::EtcdConfig {
                args: self.etcd.clone(),
                // Filled in with the bound address once listening, unless given.
                name: self.advertise_addr.clone().unwrap_or_default(),
            }),
        })
    }
}

/// Runs the parsed command line; the exit code follows cairn's convention (0 ok, 1 failure or
/// not found; clap itself exits 2 on usage errors).
pub fn run(cli: Cli) -> ExitCode {
    if let Command::Docs(docs) = &cli.command {
        return docs.run(<Cli as clap::CommandFactory>::command());
    }
    // The server's log is also streamed by /v1/agent/monitor.
    let tap = cairn_cli::LogTap::default();
    let tapped = matches!(cli.command, Command::Serve(_)).then_some(&tap);
    cairn_cli::init_logging_tapped(&cli.log, "info", tapped);
    cairn_cli::run_main(
        "catalogd",
        cairn_cli::Flavor::MultiThread(None),
        exit_code(dispatch(cli, tap)),
    )
}

/// The exit code of a finished command: `catalogd lock` passes its command's code through
/// without a message; a lookup that found nothing says so without "error".
async fn exit_code(
    outcome: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<ExitCode> {
    match outcome.await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match (e.downcast_ref::<ChildExit>(), e.downcast_ref::<NotFound>()) {
            (Some(child), _) => Ok(ExitCode::from(child.0)),
            (None, Some(_)) => {
                eprintln!("catalogd: {e}");
                Ok(ExitCode::FAILURE)
            }
            (None, None) => Err(e),
        },
    }
}

async fn dispatch(cli: Cli, tap: cairn_cli::LogTap) -> anyhow::Result<()> {
    let client = || cli.catalog.client().context("catalog address");
    match cli.command {
        Command::Serve(args) => {
            let tls = args.tls.load()?;
            crate::serve(args.config(tap)?, tls, cairn_cli::shutdown_signal()).await
        }
        Command::Kv(cmd) => client_cmds::kv(&client()?, cmd).await,
        Command::Services(f) => client_cmds::services(&client()?, f.json).await,
        Command::Service(args) => client_cmds::service(&client()?, args).await,
        Command::Nodes(f) => client_cmds::nodes(&client()?, f.json).await,
        Command::Register(args) => client_cmds::register(&client()?, args).await,
        Command::Deregister(args) => client_cmds::deregister(&client()?, args).await,
        Command::Watch(args) => watch_cmd::watch(client()?, args).await,
        Command::Lock(args) => lock::lock(client()?, args).await,
        Command::Event(cmd) => event_cmd::event(&client()?, cmd).await,
        Command::Maint(args) => maint_cmd::maint(&client()?, args).await,
        Command::Snapshot(cmd) => snapshot_cmd::run(&client()?, cmd).await,
        // Answered in `run`, before logging and the runtime start.
        Command::Docs(_) => Ok(()),
    }
}

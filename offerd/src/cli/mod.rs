//! The `offerd` command line: `serve` runs the daemon; `apply`, `apps`, `tasks`, `scale`, `kill`,
//! `agents`, `logs` and `jobs` are clients of a running offerd (or Marathon, for the `/v2` ones)
//! for scripts and Ansible: human text by default, `--json` for machines, exit 1 on failure or
//! when what was asked for does not exist. The clients authenticate with `--token` (env
//! `CAIRN_OFFERD_TOKEN`) or HTTP Basic credentials (`--credentials USER:PASSWORD`, env
//! `CAIRN_OFFERD_CREDENTIALS`, or the `--offerd` URL's `user:password@`).

mod apply;
mod autoscale_args;
mod client;
mod commands;
mod jobs;
mod logs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cairn_cli::{CatalogArgs, LogArgs};
use clap::{Parser, Subcommand};

pub use client::{ClientAuth, OfferdClient};

/// cairn's scheduler: places apps' tasks on taskrun agents; a Marathon-compatible API.
#[derive(Parser, Debug)]
#[command(name = "offerd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// offerd's address (for the client commands); several as URL,URL,...: a request that
    /// cannot reach one goes to the next. `http://user:password@host:port` sends those as HTTP
    /// Basic credentials
    #[arg(
        long,
        global = true,
        env = "CAIRN_OFFERD",
        hide_env_values = true,
        default_value = "http://127.0.0.1:5050",
        value_name = "URL[,URL...]"
    )]
    pub offerd: String,
    /// TLS of the client commands' connection to offerd (https:// in --offerd)
    #[command(flatten)]
    pub offerd_tls: cairn_cli::OfferdTlsArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the scheduler
    Serve(Box<ServeArgs>),
    /// Make the cluster's apps match app JSON files (a file or a directory of them)
    Apply(apply::ApplyArgs),
    /// List apps with their instance counts
    Apps(commands::JsonFlag),
    /// List tasks (of one app, or all)
    Tasks(commands::TasksArgs),
    /// Set an app's number of instances
    Scale(commands::ScaleArgs),
    /// Kill a task (it is replaced unless --scale)
    Kill(commands::KillArgs),
    /// List agents with their resources; `agents remove NODE` forgets a lost one
    Agents(commands::AgentsArgs),
    /// Take an agent out for maintenance: no new tasks, its tasks replaced elsewhere
    Drain(commands::DrainArgs),
    /// Put a drained agent back into service
    Undrain(commands::DrainArgs),
    /// Print the output of an app's tasks (or a job run's: --job), across agents, each line
    /// prefixed with its task ([task id] line); --follow keeps following, new tasks too
    Logs(logs::LogsArgs),
    /// Metronome's jobs: list, show, run (--wait: exit 0 on success, 1 on failure), stop,
    /// history, delete
    Jobs(jobs::JobsArgs),
    #[command(flatten)]
    Docs(cairn_cli::DocsCommand),
}

/// Flags of `offerd serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// HTTP listen address
    #[arg(long, default_value = "127.0.0.1:5050")]
    pub http_addr: SocketAddr,
    /// Directory of the durable state
    #[arg(long, default_value = "offerd.data")]
    pub data_dir: PathBuf,
    /// An agent silent this long is lost and its tasks are replaced elsewhere
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub agent_timeout: Duration,
    /// A lost agent silent this long is forgotten (removed from /v1/agents and the store)
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub lost_agent_retention: Duration,
    /// Finished runs each job keeps in its history, successful and failed each (Metronome's
    /// --history_count)
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub job_history: u16,
    /// Run without reading task health from the catalog (running counts as healthy)
    #[arg(long)]
    pub no_catalog: bool,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Connection and request bounds
    #[command(flatten)]
    pub http: cairn_http::HttpArgs<4096, { 1024 * 1024 }>,
    /// HTTPS (and client certificates: the agents') instead of plain HTTP
    #[command(flatten)]
    pub tls: cairn_http::TlsArgs,
    /// A host directory Docker apps may mount volumes from, with everything under it
    /// (repeatable); without it no app may mount a host path
    #[arg(long = "allow-host-volumes", value_name = "PREFIX", value_parser = absolute_path)]
    pub allow_host_volumes: Vec<PathBuf>,
    /// Let apps run privileged Docker containers and add capabilities (cap-add)
    #[arg(long)]
    pub allow_privileged: bool,
    #[command(flatten)]
    pub agent_token: cairn_http::AgentTokenArgs,
    /// Principals (tokens or user/password, with roles admin, deployer or viewer) and
    /// node-bound agent tokens, in TOML; with it anonymous access is off. Re-read on SIGHUP
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Failed authentications a client address may make per --auth-failure-window; past it
    /// the address is answered 429 until the window ends (0: no limit)
    #[arg(long, value_name = "N", default_value_t = cairn_http::ratelimit::AUTH_FAILURES_ALLOWED)]
    pub auth_failure_limit: u32,
    /// The window of --auth-failure-limit, from an address's first failure (Go duration)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub auth_failure_window: Duration,
    /// Run as one of several replicas sharing their state on etcd: the elected leader
    /// schedules, the others forward requests to it (the data directory is then not used)
    #[command(flatten)]
    pub etcd: cairn_etcd::EtcdArgs,
    /// This replica's address as the other replicas and clients reach it (HOST:PORT): its
    /// name in the election and in /v2/leader [default: the bound HTTP address]
    #[arg(long, value_name = "HOST:PORT", requires = "endpoints")]
    pub advertise_addr: Option<String>,
    #[command(flatten)]
    pub autoscale: autoscale_args::AutoscaleArgs,
}

fn absolute_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if !p.is_absolute() {
        return Err("must be an absolute path".into());
    }
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err("must not contain '..'".into());
    }
    Ok(p)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = cairn_wire::parse_go_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(300) {
        return Err("must be at least 300ms".into());
    }
    Ok(d)
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    if let Command::Docs(docs) = &cli.command {
        return docs.run(<Cli as clap::CommandFactory>::command());
    }
    cairn_cli::init_logging(&cli.log);
    cairn_cli::run_main(
        "offerd",
        cairn_cli::Flavor::MultiThread(None),
        dispatch(cli),
    )
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Without settings of its own, the connection to offerd takes Consul's (CONSUL_CACERT, ...).
    let offerd_tls = cli.offerd_tls.tls(&CatalogArgs::default().tls());
    let client = |auth: &ClientAuth| OfferdClient::with_tls(&cli.offerd, auth, &offerd_tls);
    match cli.command {
        Command::Serve(args) => {
            let catalog = if args.no_catalog {
                None
            } else {
                Some(args.catalog.client().context("--catalog")?)
            };
            let cfg = crate::serve::ServeConfig {
                http_addr: args.http_addr,
                data_dir: args.data_dir,
                agent_timeout: args.agent_timeout,
                lost_agent_retention: args.lost_agent_retention,
                job_history: usize::from(args.job_history),
                catalog,
                http: args.http.limits(crate::serve::DRAIN),
                host_policy: cairn_marathon::HostPolicy {
                    host_volumes: args.allow_host_volumes,
                    privileged: args.allow_privileged,
                },
                agent_token: args.agent_token.secret(),
                auth_file: args.auth_file,
                auth_failures: (args.auth_failure_limit, args.auth_failure_window),
                tls: args.tls.load()?,
                replication: args.etcd.enabled().then(|| crate::ha::HaConfig {
                    etcd: args.etcd.clone(),
                    advertise: args.advertise_addr.clone(),
                    peer_tls: offerd_tls.clone(),
                }),
                autoscale: args
                    .autoscale
                    .config(args.agent_token.agent_token.clone(), args.catalog.tls()),
            };
            crate::serve::serve(cfg, cairn_cli::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply(args) => apply::apply(&client(&args.auth)?, args).await,
        Command::Apps(f) => commands::apps(&client(&f.auth)?, f.json).await,
        Command::Tasks(args) => commands::tasks(&client(&args.auth)?, args).await,
        Command::Scale(args) => commands::scale(&client(&args.auth)?, args).await,
        Command::Kill(args) => commands::kill(&client(&args.auth)?, args).await,
        Command::Agents(args) => commands::agents(&client(&args.auth)?, args).await,
        Command::Drain(args) => commands::drain(&client(&args.auth)?, args, true).await,
        Command::Undrain(args) => commands::drain(&client(&args.auth)?, args, false).await,
        Command::Logs(args) => logs::logs(client(&args.auth)?, args).await,
        Command::Jobs(args) => jobs::jobs(&client(&args.auth)?, args).await,
        // Answered in `run`, before logging and the runtime start.
        Command::Docs(_) => Ok(ExitCode::SUCCESS),
    }
}

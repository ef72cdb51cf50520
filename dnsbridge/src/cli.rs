//! The `dnsbridge` command line.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use cairn_cli::{CatalogArgs, LogArgs};
use clap::{Parser, Subcommand};

/// Service discovery over DNS from the catalog (Consul's DNS names).
#[derive(Parser, Debug)]
#[command(name = "dnsbridge", version, about)]
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
    /// Answer DNS queries (udp+tcp) from the catalog
    Serve(ServeArgs),
    #[command(flatten)]
    Docs(cairn_cli::DocsCommand),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// DNS listen address (UDP and TCP)
    #[arg(long, default_value = "127.0.0.1:8600")]
    pub dns_addr: SocketAddr,
    /// Domain answered
    #[arg(long, default_value = "consul.")]
    pub domain: String,
    /// Datacenter name accepted in names
    #[arg(long, default_value = cairn_wire::DEFAULT_DATACENTER)]
    pub datacenter: String,
    /// TTL of answers (e.g. 0s, 30s)
    #[arg(long, default_value = "0s")]
    pub ttl: String,
    /// Answer only instances whose checks all pass (warning ones are left out too)
    #[arg(long)]
    pub only_passing: bool,
    /// Forward other names to this server (repeatable, tried in order); else REFUSED
    #[arg(long)]
    pub recursor: Vec<SocketAddr>,
    /// Most questions forwarded to recursors at once; past it, SERVFAIL at once
    #[arg(long, default_value_t = crate::resolve::DEFAULT_MAX_FORWARDS, value_parser = at_least_one)]
    pub max_forwards: usize,
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(cli: Cli) -> ExitCode {
    let args = match cli.command {
        Command::Serve(args) => args,
        Command::Docs(docs) => return docs.run(<Cli as clap::CommandFactory>::command()),
    };
    // hickory-server logs every query at info: far too much for a busy resolver.
    cairn_cli::init_logging_with(&cli.log, "info,hickory_server=warn");
    cairn_cli::run_main(
        "dnsbridge",
        cairn_cli::Flavor::MultiThread(None),
        serve(cli.catalog, args),
    )
}

async fn serve(catalog: CatalogArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ttl = cairn_wire::parse_go_duration(&args.ttl).context("--ttl")?;
    let ttl = u32::try_from(ttl.as_secs()).context("--ttl is too long")?;
    let client = catalog.client().context("--catalog")?;
    let config = crate::serve::Config {
        dns_addr: args.dns_addr,
        domain: args.domain,
        datacenter: args.datacenter,
        ttl,
        only_passing: args.only_passing,
        recursors: args.recursor,
        max_forwards: args.max_forwards,
    };
    crate::serve::serve(config, client, cairn_cli::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

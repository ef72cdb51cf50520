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
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Address the frontends bind to
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Port of the shared HTTP frontend
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Free server slots per backend, for instance changes without a reload
    #[arg(long, default_value_t = 8)]
    pub spare_slots: usize,
    /// Add a runtime API socket at this path
    #[arg(long)]
    pub haproxy_socket: Option<String>,
}

pub fn run(cli: Cli) -> ExitCode {
    cairn_cli::init_logging(&cli.log);
    let result = (|| -> anyhow::Result<()> {
        let Command::Render(args) = cli.command;
        if let Some(sock) = &args.haproxy_socket
            && sock.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        {
            anyhow::bail!("--haproxy-socket {sock:?}: the path must not contain spaces or quotes");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let client = cairn_client::CatalogClient::new(&cli.catalog.url(), cli.catalog.token())
            .context("--catalog")?;
        let (catalog, _) = rt
            .block_on(client.whole_catalog(&Default::default()))
            .context("reading the catalog")?;
        let (routes, rejected) = crate::model::routes(&catalog);
        for r in rejected {
            tracing::warn!(service = ?r.service, reason = %r.reason, "not routed as asked");
        }
        let settings = crate::render::Settings {
            bind: args.bind,
            http_port: args.http_port,
            spare_slots: args.spare_slots,
            stats_socket: args.haproxy_socket,
        };
        print!("{}", crate::render::config(&routes, &settings));
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lbconf: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

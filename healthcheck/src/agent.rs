//! `healthcheck agent`: runs [`cairn_checks::agent`] for `--node` against a catalog over HTTP.

use std::process::ExitCode;

use anyhow::Context as _;
use cairn_checks::agent::{AgentConfig, CatalogChecks, CatalogSink, ScriptChecks, run};

use cairn_cli::{CatalogArgs, LogArgs};
use clap::Args;

use crate::duration_arg::seconds_or_duration;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// The node whose registered checks this agent runs
    #[arg(long)]
    pub node: String,
    /// Run script checks (ScriptArgs); off by default, as in Consul
    #[arg(long)]
    pub enable_script_checks: bool,
    /// Push an output-only change (same status) at most this often
    #[arg(long, default_value = "5m")]
    pub output_update_interval: String,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `healthcheck agent` entry point.
pub fn main(args: &AgentArgs) -> ExitCode {
    cairn_cli::init_logging(&args.log);
    let outcome = (|| -> anyhow::Result<()> {
        let output_update_interval =
            cairn_wire::parse_go_duration(&seconds_or_duration(&args.output_update_interval))
                .context("--output-update-interval")?;
        let client = args.catalog.client().context("--catalog")?;
        let cfg = AgentConfig {
            node: args.node.clone(),
            script_checks: ScriptChecks::from_flag(args.enable_script_checks),
            output_update_interval,
        };
        tracing::info!(node = %cfg.node, catalog = %args.catalog.url(), "healthcheck agent starting");
        cairn_cli::block_on(cairn_cli::Flavor::MultiThread(None), async {
            let sink = CatalogSink(client.clone());
            let source = CatalogChecks::new(client, &cfg.node);
            run(source, sink, cfg, cairn_cli::shutdown_signal()).await
        })
        .context("starting the runtime")
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("HEALTHCHECK UNKNOWN - {e:#}");
            ExitCode::from(3)
        }
    }
}

//! `catalogd maint`: node and service maintenance mode, as `consul maint` (same messages; the
//! listing shows what is in maintenance and is empty when nothing is).

use std::io::Write as _;

use anyhow::Context as _;
use cairn_client::CatalogClient;
use clap::{ArgGroup, Args};

use super::client_cmds::print_json;

/// Consul's reserved check IDs.
const NODE_MAINTENANCE: &str = "_node_maintenance";
const SERVICE_MAINTENANCE_PREFIX: &str = "_service_maintenance:";

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("mode").args(["enable", "disable"])))]
pub struct MaintArgs {
    /// Put the node (or --service) in maintenance: a critical check excludes it from queries
    #[arg(long)]
    pub enable: bool,
    /// Take the node (or --service) out of maintenance
    #[arg(long)]
    pub disable: bool,
    /// A service ID of catalogd's node, instead of the whole node
    #[arg(long, value_name = "ID", requires = "mode")]
    pub service: Option<String>,
    /// Why (the notes of the maintenance check)
    #[arg(long, requires = "enable", conflicts_with = "disable")]
    pub reason: Option<String>,
    /// Listing: print the maintenance checks as JSON
    #[arg(long, conflicts_with = "mode")]
    pub json: bool,
}

pub async fn maint(client: &CatalogClient, args: MaintArgs) -> anyhow::Result<()> {
    let reason = args.reason.as_deref().unwrap_or_default();
    match (args.enable, args.disable, args.service.as_deref()) {
        (false, false, _) => list(client, args.json).await,
        (enable, _, None) => {
            let verb = if enable { "enabl" } else { "disabl" };
            client
                .agent_node_maintenance(enable, reason)
                .await
                .with_context(|| format!("Error {verb}ing node maintenance"))?;
            println!("Node maintenance is now {verb}ed");
            Ok(())
        }
        (enable, _, Some(id)) => {
            let verb = if enable { "enabl" } else { "disabl" };
            client
                .agent_service_maintenance(id, enable, reason)
                .await
                .with_context(|| format!("Error {verb}ing service maintenance"))?;
            println!("Service maintenance is now {verb}ed for {id:?}");
            Ok(())
        }
    }
}

async fn list(client: &CatalogClient, json: bool) -> anyhow::Result<()> {
    let checks = client
        .agent_checks()
        .await
        .context("Error getting checks")?;
    let in_maintenance: Vec<_> = checks
        .into_values()
        .filter(|c| {
            c.check_id == NODE_MAINTENANCE || c.check_id.starts_with(SERVICE_MAINTENANCE_PREFIX)
        })
        .collect();
    if json {
        return print_json(&in_maintenance);
    }
    let mut out = std::io::stdout().lock();
    for c in &in_maintenance {
        if c.check_id == NODE_MAINTENANCE {
            writeln!(out, "Node:\n  Name:   {}\n  Reason: {}\n", c.node, c.notes)?;
        } else {
            writeln!(
                out,
                "Service:\n  ID:     {}\n  Reason: {}\n",
                c.service_id, c.notes
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<MaintArgs, clap::Error> {
        let cli = crate::cli::Cli::try_parse_from(
            ["catalogd", "maint"].iter().chain(args.iter()).copied(),
        )?;
        match cli.command {
            crate::cli::Command::Maint(a) => Ok(a),
            other => panic!("not maint: {other:?}"),
        }
    }

    #[test]
    fn flag_combinations_as_consul_maint_allows_them() {
        for ok in [
            &[][..],
            &["--json"],
            &["--enable"],
            &["--enable", "--reason", "disk swap"],
            &["--enable", "--service", "web-1"],
            &["--disable"],
            &["--disable", "--service", "web-1"],
        ] {
            assert!(parse(ok).is_ok(), "{ok:?} refused");
        }
        for bad in [
            &["--enable", "--disable"][..],
            &["--reason", "x"],
            &["--disable", "--reason", "x"],
            &["--service", "web-1"],
            &["--enable", "--json"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}

//! `catalogd watch <what>`: follows a blocking query and prints one JSON line per change, so a
//! shell pipeline can react to the catalog (`catalogd watch service web | while read ...`).

use std::io::Write as _;

use cairn_client::{CatalogClient, QueryOptions, Watch};
use clap::{Args, Subcommand};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct WatchArgs {
    #[command(subcommand)]
    pub what: WatchTarget,
    /// Print the first answer and exit
    #[arg(long, global = true)]
    pub once: bool,
}

#[derive(Subcommand, Debug)]
pub enum WatchTarget {
    /// One KV key (null while absent)
    Key { key: String },
    /// Every KV entry under a prefix
    Keyprefix { prefix: String },
    /// Healthy and unhealthy instances of a service
    Service {
        name: String,
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long)]
        passing: bool,
    },
    /// Service names and tags
    Services,
    /// Nodes
    Nodes,
    /// The whole catalog (cairn extension)
    Catalog,
}

async fn follow<T: Serialize + Send + 'static>(mut w: Watch<T>, once: bool) -> anyhow::Result<()> {
    loop {
        let value = w.next().await?;
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, &value)?;
        writeln!(out)?;
        out.flush()?;
        if once {
            return Ok(());
        }
    }
}

pub async fn watch(client: CatalogClient, args: WatchArgs) -> anyhow::Result<()> {
    let once = args.once;
    let run = async move {
        match args.what {
            WatchTarget::Key { key } => follow(Watch::kv(client, key), once).await,
            WatchTarget::Keyprefix { prefix } => follow(Watch::kv_tree(client, prefix), once).await,
            WatchTarget::Service { name, tag, passing } => {
                let opts = QueryOptions {
                    tag,
                    passing,
                    ..Default::default()
                };
                follow(Watch::health_service(client, name, opts), once).await
            }
            WatchTarget::Services => {
                follow(
                    Watch::catalog_services(client, QueryOptions::default()),
                    once,
                )
                .await
            }
            WatchTarget::Nodes => {
                follow(Watch::catalog_nodes(client, QueryOptions::default()), once).await
            }
            WatchTarget::Catalog => follow(Watch::whole_catalog(client), once).await,
        }
    };
    tokio::select! {
        r = run => r,
        _ = cairn_cli::shutdown_signal() => Ok(()),
    }
}

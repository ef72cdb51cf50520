//! Client subcommands: KV get/put/delete/ls, services, service, nodes, register, deregister.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use cairn_client::{CatalogClient, KvPutOptions, QueryOptions};
use cairn_wire::{AgentServiceRegistration, CatalogDeregistration, CatalogRegistration};
use clap::{Args, Subcommand};
use serde::Serialize;

/// "Not found" answers: exit 1 with a one-line message, no "error:" prefix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

#[derive(Args, Debug)]
pub struct JsonFlag {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Print a key's value (exit 1 when missing)
    Get {
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a key; the value is the argument, or stdin when it is - or absent
    Put {
        key: String,
        value: Option<String>,
        /// Opaque flags stored with the value
        #[arg(long)]
        flags: Option<u64>,
        /// Write only if the key's ModifyIndex is this (0 = only if absent); exit 1 otherwise
        #[arg(long)]
        cas: Option<u64>,
    },
    /// Delete a key (or everything under a prefix)
    Delete {
        key: String,
        #[arg(long)]
        recurse: bool,
        /// Delete only if the key's ModifyIndex is this; exit 1 otherwise
        #[arg(long)]
        cas: Option<u64>,
    },
    /// List keys under a prefix (exit 1 when none)
    Ls {
        #[arg(default_value = "")]
        prefix: String,
        /// Fold keys below this separator into one entry
        #[arg(long)]
        separator: Option<String>,
        /// Print the entries with their values as JSON
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct ServiceArgs {
    pub name: String,
    /// Only instances with this tag (repeatable)
    #[arg(long)]
    pub tag: Vec<String>,
    /// Only instances whose checks all pass
    #[arg(long)]
    pub passing: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// JSON file: a catalog registration (with Node) or an agent service definition (with
    /// Name), or a list of them; - reads stdin
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
}

#[derive(Args, Debug)]
pub struct DeregisterArgs {
    /// Node to deregister from; without it, the service or check is removed from catalogd's own node
    #[arg(long)]
    pub node: Option<String>,
    /// Service ID to deregister
    #[arg(long)]
    pub service: Option<String>,
    /// Check ID to deregister
    #[arg(long)]
    pub check: Option<String>,
}

/// All of stdin (`what` names it in the error).
pub(super) fn read_stdin(what: &str) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what} from stdin"))?;
    Ok(buf)
}

pub(super) fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

pub async fn kv(client: &CatalogClient, cmd: KvCommand) -> anyhow::Result<()> {
    let opts = QueryOptions::default();
    match cmd {
        KvCommand::Get { key, json } => {
            let (pair, _) = client.kv_get(&key, &opts).await?;
            let Some(pair) = pair else {
                bail!(NotFound(format!("key {key:?} not found")))
            };
            if json {
                print_json(&pair)?;
            } else {
                let mut out = std::io::stdout().lock();
                out.write_all(&pair.value_bytes())?;
                out.write_all(b"\n")?;
            }
        }
        KvCommand::Put {
            key,
            value,
            flags,
            cas,
        } => {
            let bytes = match value.as_deref() {
                None | Some("-") => read_stdin("the value")?,
                Some(v) => v.as_bytes().to_vec(),
            };
            let put = KvPutOptions {
                flags,
                cas,
                ..Default::default()
            };
            if !client.kv_put(&key, &bytes, &put).await? {
                bail!(
                    "key {key:?} not written: its ModifyIndex is not {}",
                    cas.unwrap_or(0)
                );
            }
            eprintln!("Success! Data written to: {key}");
        }
        KvCommand::Delete { key, recurse, cas } => {
            if !client.kv_delete(&key, recurse, cas).await? {
                bail!(
                    "key {key:?} not deleted: its ModifyIndex is not {}",
                    cas.unwrap_or(0)
                );
            }
            eprintln!("Success! Deleted key: {key}");
        }
        KvCommand::Ls {
            prefix,
            separator,
            json,
        } => {
            if json {
                let (pairs, _) = client.kv_list(&prefix, &opts).await?;
                if pairs.is_empty() {
                    bail!(NotFound(format!("no keys under {prefix:?}")));
                }
                print_json(&pairs)?;
            } else {
                let (keys, _) = client.kv_keys(&prefix, separator.as_deref(), &opts).await?;
                if keys.is_empty() {
                    bail!(NotFound(format!("no keys under {prefix:?}")));
                }
                let mut out = std::io::stdout().lock();
                for k in keys {
                    writeln!(out, "{k}")?;
                }
            }
        }
    }
    Ok(())
}

pub async fn services(client: &CatalogClient, json: bool) -> anyhow::Result<()> {
    let (services, _) = client.catalog_services(&QueryOptions::default()).await?;
    if json {
        return print_json(&services);
    }
    let mut out = std::io::stdout().lock();
    for (name, tags) in services {
        if tags.is_empty() {
            writeln!(out, "{name}")?;
        } else {
            writeln!(out, "{name}\t{}", tags.join(","))?;
        }
    }
    Ok(())
}

pub async fn service(client: &CatalogClient, args: ServiceArgs) -> anyhow::Result<()> {
    let opts = QueryOptions {
        tag: args.tag.clone(),
        passing: args.passing,
        ..Default::default()
    };
    let (entries, _) = client.health_service(&args.name, &opts).await?;
    if entries.is_empty() {
        bail!(NotFound(format!(
            "service {:?} has no matching instances",
            args.name
        )));
    }
    if args.json {
        return print_json(&entries);
    }
    let mut out = std::io::stdout().lock();
    for e in entries {
        writeln!(
            out,
            "{}\t{}\t{}:{}\t{}\t{}",
            e.service.id,
            e.node.node,
            e.address(),
            e.service.port,
            e.status(),
            e.service.tags.join(",")
        )?;
    }
    Ok(())
}

pub async fn nodes(client: &CatalogClient, json: bool) -> anyhow::Result<()> {
    let (nodes, _) = client.catalog_nodes(&QueryOptions::default()).await?;
    if json {
        return print_json(&nodes);
    }
    let mut out = std::io::stdout().lock();
    for n in nodes {
        writeln!(out, "{}\t{}", n.node, n.address)?;
    }
    Ok(())
}

pub async fn register(client: &CatalogClient, args: RegisterArgs) -> anyhow::Result<()> {
    let text = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let mut value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", args.file.display()))?;
    cairn_wire::canonicalize_keys(&mut value);
    let items = match value {
        serde_json::Value::Array(items) => items,
        one => vec![one],
    };
    for (i, item) in items.into_iter().enumerate() {
        let what = format!("{} item {i}", args.file.display());
        if item.get("Node").is_some() {
            let reg: CatalogRegistration =
                serde_json::from_value(item).with_context(|| what.clone())?;
            client
                .catalog_register(&reg)
                .await
                .with_context(|| what.clone())?;
            eprintln!("Registered node {}", reg.node);
        } else {
            let reg: AgentServiceRegistration =
                serde_json::from_value(item).with_context(|| what.clone())?;
            client
                .agent_service_register(&reg)
                .await
                .with_context(|| what.clone())?;
            eprintln!(
                "Registered service {}",
                if reg.id.is_empty() {
                    &reg.name
                } else {
                    &reg.id
                }
            );
        }
    }
    Ok(())
}

pub async fn deregister(client: &CatalogClient, args: DeregisterArgs) -> anyhow::Result<()> {
    match (args.node, args.service, args.check) {
        (Some(node), service, check) => {
            let d = CatalogDeregistration {
                node,
                service_id: service.unwrap_or_default(),
                check_id: check.unwrap_or_default(),
                ..Default::default()
            };
            client.catalog_deregister(&d).await?;
        }
        (None, Some(service), None) => client.agent_service_deregister(&service).await?,
        (None, None, Some(check)) => client.agent_check_deregister(&check).await?,
        _ => bail!(
            "give --service or --check (and --node to deregister from another node, or --node alone for the whole node)"
        ),
    }
    eprintln!("Deregistered");
    Ok(())
}

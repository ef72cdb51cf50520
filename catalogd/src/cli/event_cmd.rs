//! `catalogd event fire|list`: Consul's user events from the command line, as `consul event`
//! fires them and `consul watch -type=event` follows them.

use std::io::Write as _;

use anyhow::Context as _;
use cairn_client::{Backoff, CatalogClient, EventFilters, QueryOptions};
use cairn_wire::{UserEvent, event_id_to_index};
use clap::{Args, Subcommand};

use super::client_cmds::{print_json, read_stdin};

#[derive(Subcommand, Debug)]
pub enum EventCommand {
    /// Fire an event; prints its ID
    Fire(FireArgs),
    /// List the events the agent kept (the last 256), oldest first
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct FireArgs {
    /// Event name
    pub name: String,
    /// Payload (up to ~100 bytes with the name); - reads it from stdin
    pub payload: Option<String>,
    /// Only agents whose node name matches this regular expression keep the event
    #[arg(long, value_name = "RE")]
    pub node: Option<String>,
    /// Only agents with a service matching this regular expression keep the event
    #[arg(long, value_name = "RE")]
    pub service: Option<String>,
    /// With --service: only services with a tag matching this regular expression
    #[arg(long, value_name = "RE", requires = "service")]
    pub tag: Option<String>,
    /// Print the fired event as JSON instead of its ID
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only events of this name
    #[arg(long)]
    pub name: Option<String>,
    /// JSON: the list; with --wait one event per line
    #[arg(long)]
    pub json: bool,
    /// Keep running and print each new event as it arrives
    #[arg(long)]
    pub wait: bool,
}

pub async fn event(client: &CatalogClient, cmd: EventCommand) -> anyhow::Result<()> {
    match cmd {
        EventCommand::Fire(args) => fire(client, args).await,
        EventCommand::List(args) => {
            let run = list(client, args);
            tokio::select! {
                r = run => r,
                _ = cairn_cli::shutdown_signal() => Ok(()),
            }
        }
    }
}

async fn fire(client: &CatalogClient, args: FireArgs) -> anyhow::Result<()> {
    let payload = match args.payload.as_deref() {
        Some("-") => read_stdin("the payload")?,
        Some(p) => p.as_bytes().to_vec(),
        None => Vec::new(),
    };
    let filters = EventFilters {
        node: args.node.unwrap_or_default(),
        service: args.service.unwrap_or_default(),
        tag: args.tag.unwrap_or_default(),
    };
    let event = client
        .event_fire(&args.name, &payload, &filters)
        .await
        .with_context(|| format!("firing event {:?}", args.name))?;
    if args.json {
        return print_json(&event);
    }
    // `consul event`'s line.
    println!("Event ID: {}", event.id);
    Ok(())
}

/// One event per line: ID, name, Lamport time, payload (as text when it is printable UTF-8,
/// else `base64:` and its encoding, so a line never breaks).
fn event_line(e: &UserEvent) -> String {
    let bytes = e.payload_bytes();
    let payload = match std::str::from_utf8(&bytes) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_string(),
        _ => format!("base64:{}", e.payload.as_deref().unwrap_or_default()),
    };
    format!("{}\t{}\t{}\t{}", e.id, e.name, e.ltime, payload)
}

fn print_events(events: &[UserEvent], json_lines: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for e in events {
        if json_lines {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", event_line(e))?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The events after the one the previous answer ended with (whose ID gives `last_index`), as
/// Consul's event watch prunes them; all of them when that one is no longer in the list.
fn new_events(events: &[UserEvent], last_index: u64) -> &[UserEvent] {
    match events
        .iter()
        .rposition(|e| event_id_to_index(&e.id) == Some(last_index))
    {
        Some(i) => &events[i + 1..],
        None => events,
    }
}

async fn list(client: &CatalogClient, args: ListArgs) -> anyhow::Result<()> {
    let name = args.name.as_deref().filter(|n| !n.is_empty());
    let (events, meta) = client.event_list(name, &QueryOptions::default()).await?;
    if !args.wait {
        if args.json {
            return print_json(&events);
        }
        return print_events(&events, false);
    }
    print_events(&events, args.json)?;
    let mut index = meta.index;
    let backoff = Backoff::default();
    let mut failures = 0;
    loop {
        // The event index is not monotonic: the server answers as soon as it differs.
        let opts = QueryOptions {
            index,
            ..Default::default()
        };
        match client.event_list(name, &opts).await {
            Ok((events, meta)) => {
                failures = 0;
                if meta.index != index {
                    print_events(new_events(&events, index), args.json)?;
                    index = meta.index;
                }
            }
            Err(e) if e.is_transient() => {
                failures += 1;
                tracing::warn!(error = %e, "listing events failed; retrying");
                tokio::time::sleep(backoff.delay(failures)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: &str, payload: Option<&str>) -> UserEvent {
        UserEvent {
            id: id.into(),
            name: "deploy".into(),
            payload: payload.map(|p| cairn_wire::b64_encode(p.as_bytes())),
            ltime: 4,
            ..Default::default()
        }
    }

    #[test]
    fn lines_never_break() {
        let id = "00000000-0000-0000-0000-000000000001";
        assert_eq!(
            event_line(&ev(id, Some("v1.2"))),
            format!("{id}\tdeploy\t4\tv1.2")
        );
        assert_eq!(event_line(&ev(id, None)), format!("{id}\tdeploy\t4\t"));
        assert_eq!(
            event_line(&ev(id, Some("a\nb"))),
            format!("{id}\tdeploy\t4\tbase64:YQpi")
        );
    }

    #[test]
    fn only_events_after_the_last_seen_are_new() {
        let a = ev("00000000-0000-0000-0000-00000000000a", None);
        let b = ev("00000000-0000-0000-0000-00000000000b", None);
        let c = ev("00000000-0000-0000-0000-00000000000c", None);
        let all = vec![a.clone(), b.clone(), c.clone()];
        assert_eq!(new_events(&all, 0xa), &all[1..]);
        assert_eq!(new_events(&all, 0xc), &[] as &[UserEvent]);
        assert_eq!(new_events(&all, 1), &all[..], "last seen no longer kept");
    }
}

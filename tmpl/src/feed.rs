//! Catalog dependencies (`service()`, `services()`, `nodes()`, `node(name)`) served from one
//! whole-catalog delta watch (`/v1/cairn/catalog?delta`) instead of one blocking query each.
//! A template over every service of a fleet then holds one watch, not one per service; its
//! first render needs one read, not a thousand; and a change costs catalogd a small delta for
//! tmpl instead of the changed service's whole health answer.
//!
//! The values are the ones [`Dep::fetch`] reads from the per-dependency endpoints (same JSON,
//! same order). `/v1/cairn/catalog` is catalogd's own: against a server without it (Consul
//! answers 404) the feed ends with [`Unsupported`] and the engine watches each dependency.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_client::{CatalogClient, ClientError, Watch, WatchConfig};
use cairn_wire::{CatalogMirror, CheckStatus, Touched};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::deps::{Dep, instances_json, node_json, node_services_json, services_json};

/// Whether the feed serves `dep` (`node()` without a name asks the agent which node it is on,
/// which the catalog does not say).
pub fn serves(dep: &Dep) -> bool {
    match dep {
        Dep::Service { .. } | Dep::Services | Dep::Nodes => true,
        Dep::Node(name) => !name.is_empty(),
        Dep::Key(_) | Dep::Ls(_) | Dep::Tree(_) => false,
    }
}

/// The server has no whole-catalog endpoint: watch each dependency instead.
#[derive(Debug)]
pub struct Unsupported;

/// The catalog as the feed holds it: the mirror, and each service's tags in the order
/// `/v1/catalog/services` lists them (kept per touched service, so `services()` does not walk
/// every instance on every change).
#[derive(Default)]
struct Held {
    mirror: CatalogMirror,
    tags: BTreeMap<String, Vec<String>>,
}

impl Held {
    fn apply(&mut self, delta: cairn_wire::CatalogDelta) -> Touched {
        let touched = self.mirror.apply(delta);
        let names: Vec<String> = if touched.all {
            self.tags.clear();
            let all: BTreeSet<&str> = self
                .mirror
                .instances()
                .map(|e| e.service.service.as_str())
                .collect();
            all.into_iter().map(str::to_string).collect()
        } else {
            touched.services.iter().cloned().collect()
        };
        for name in names {
            let mut tags: Vec<String> = Vec::new();
            let mut any = false;
            for e in self.mirror.instances_of(&name) {
                any = true;
                for t in &e.service.tags {
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
            }
            if any {
                self.tags.insert(name, tags);
            } else {
                self.tags.remove(&name);
            }
        }
        touched
    }

    /// The dependency's value now (None: it does not exist, as a node that is not there).
    fn value(&self, dep: &Dep) -> Option<Value> {
        match dep {
            Dep::Service { name, tag, passing } => Some(instances_json(
                self.mirror
                    .instances_of(name)
                    .filter(|e| tag.as_ref().is_none_or(|t| e.service.tags.contains(t)))
                    .filter(|e| {
                        !passing || e.checks.iter().all(|c| c.status == CheckStatus::Passing)
                    }),
            )),
            Dep::Services => Some(services_json(self.tags.clone())),
            Dep::Nodes => Some(Value::Array(
                self.mirror.nodes().map(|n| node_json(&n.node)).collect(),
            )),
            Dep::Node(name) => self.mirror.node(name).map(|n| {
                let mut services: Vec<&cairn_wire::NodeService> =
                    self.mirror.instances_on(name).map(|e| &e.service).collect();
                services.sort_by(|a, b| a.id.cmp(&b.id));
                node_services_json(&n.node, services.into_iter())
            }),
            Dep::Key(_) | Dep::Ls(_) | Dep::Tree(_) => None,
        }
    }
}

/// Whether a change may have changed `dep`'s value.
fn affects(touched: &Touched, dep: &Dep) -> bool {
    if touched.all {
        return true;
    }
    match dep {
        Dep::Service { name, .. } => touched.services.contains(name),
        Dep::Services => !touched.services.is_empty(),
        Dep::Nodes => !touched.nodes.is_empty(),
        // A node's value holds its instances: any change to a node or an instance may be it.
        Dep::Node(_) => !touched.nodes.is_empty() || !touched.services.is_empty(),
        Dep::Key(_) | Dep::Ls(_) | Dep::Tree(_) => false,
    }
}

/// Follows the catalog and sends `(dep, value)` for every wanted dependency when it is first
/// wanted and whenever a change may have changed it (the engine drops values equal to what it
/// holds). Reads nothing until a catalog dependency is wanted (a template of keys alone costs no
/// catalog read). Ends only when the server has no whole-catalog endpoint, or nobody listens.
pub async fn run(
    client: CatalogClient,
    mut wanted: watch::Receiver<BTreeSet<Dep>>,
    tx: mpsc::UnboundedSender<(Dep, Option<Value>)>,
) -> Option<Unsupported> {
    while wanted.borrow_and_update().is_empty() {
        wanted.changed().await.ok()?;
    }
    // The catalog is read in a task of its own: a change of the wanted set must not cancel a
    // read in flight (a parked blocking read dropped and sent again costs catalogd a request
    // and the feed a round trip). The JoinSet stops the reader when the feed ends or is aborted.
    let (deltas_tx, mut deltas) = mpsc::channel(1);
    let mut reader = tokio::task::JoinSet::new();
    reader.spawn(read_deltas(client, deltas_tx));
    let mut held: Option<Held> = None;
    let mut sent: BTreeSet<Dep> = BTreeSet::new();
    loop {
        let touched = tokio::select! {
            next = deltas.recv() => match next? {
                Ok(delta) => Some(held.get_or_insert_with(Held::default).apply(delta)),
                Err(ClientError::Status { status: 404, .. }) if held.is_none() => {
                    return Some(Unsupported);
                }
                // Logged by the watch once per failure streak; its next read backs off, and
                // the templates keep what they rendered.
                Err(e) => {
                    tracing::debug!(error = %e, "catalog read failed; keeping the last values");
                    continue;
                }
            },
            changed = wanted.changed() => {
                changed.ok()?;
                None
            }
        };
        let Some(h) = &held else { continue };
        let deps = wanted.borrow_and_update().clone();
        sent.retain(|d| deps.contains(d));
        for dep in deps {
            let fresh = !sent.contains(&dep);
            if fresh || touched.as_ref().is_some_and(|t| affects(t, &dep)) {
                if tx.send((dep.clone(), h.value(&dep))).is_err() {
                    return None;
                }
                sent.insert(dep);
            }
        }
    }
}

/// Reads the catalog's deltas in turn and hands each result on; ends when nobody takes them.
async fn read_deltas(
    client: CatalogClient,
    out: mpsc::Sender<Result<cairn_wire::CatalogDelta, ClientError>>,
) {
    let config = WatchConfig {
        backoff_max: Duration::from_secs(5),
        ..WatchConfig::default()
    };
    let mut catalog = Watch::catalog_deltas(client).with_config(config);
    loop {
        let next = catalog.next().await;
        if out.send(next).await.is_err() {
            return;
        }
    }
}

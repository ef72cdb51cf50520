//! How the state maps onto the store: one key per node, service, check, KV entry, tombstone,
//! session, document (`d/<table>/<key>`) and per-name index, plus one metadata key. A batch persists exactly its dirty keys;
//! startup rebuilds the whole state, indexes included, from a scan.

use cairn_store::{Batch, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::state::{Changes, Doc, KvEntry, NodeKey, Session, State, Table, TableIndexes};

const META: &[u8] = b"m";

/// A persisted document: its value and indexes.
#[derive(Serialize, Deserialize)]
struct StoredDoc {
    v: serde_json::Value,
    c: u64,
    m: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct Meta {
    index: u64,
    tables: TableIndexes,
}

fn pair_key(prefix: &str, k: &NodeKey) -> Vec<u8> {
    format!("{prefix}{}\0{}", k.0, k.1).into_bytes()
}

fn split_pair(rest: &str) -> Option<NodeKey> {
    let (a, b) = rest.split_once('\0')?;
    Some((a.to_string(), b.to_string()))
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

/// The store operations that make the store match `state` for everything in `changes`.
pub fn batch_for(state: &State, changes: &Changes) -> Batch {
    let mut b = Batch::default();
    for name in &changes.nodes {
        let key = format!("n/{name}");
        match state.nodes.get(name) {
            Some(n) => b.put(key, json(n)),
            None => b.delete(key),
        }
    }
    for k in &changes.services {
        match state.services.get(k) {
            Some(s) => b.put(pair_key("s/", k), json(s)),
            None => b.delete(pair_key("s/", k)),
        }
    }
    for k in &changes.checks {
        match state.checks.get(k) {
            Some(c) => b.put(pair_key("c/", k), json(c)),
            None => b.delete(pair_key("c/", k)),
        }
    }
    for key in &changes.kv {
        match state.kv.get(key) {
            Some(e) => b.put(format!("k/{key}"), e.encode()),
            None => b.delete(format!("k/{key}")),
        }
    }
    for key in &changes.tombstones {
        match state.tombstones.get(key) {
            Some(i) => b.put(format!("t/{key}"), i.to_le_bytes().to_vec()),
            None => b.delete(format!("t/{key}")),
        }
    }
    for id in &changes.sessions {
        match state.sessions.get(id) {
            Some(s) => b.put(format!("x/{id}"), json(s)),
            None => b.delete(format!("x/{id}")),
        }
    }
    for (table, key) in &changes.docs {
        let k = format!("d/{}/{key}", table.name());
        match state.docs.get(&(*table, key.clone())) {
            Some(d) => b.put(
                k,
                json(&StoredDoc {
                    v: (*d.value).clone(),
                    c: d.create_index,
                    m: d.modify_index,
                }),
            ),
            None => b.delete(k),
        }
    }
    for name in &changes.service_idx {
        if let Some(i) = state.service_index.get(name) {
            b.put(format!("i/s/{name}"), i.to_le_bytes().to_vec());
        }
    }
    for name in &changes.node_idx {
        if let Some(i) = state.node_index.get(name) {
            b.put(format!("i/n/{name}"), i.to_le_bytes().to_vec());
        }
    }
    b.put(
        META,
        json(&Meta {
            index: state.index,
            tables: state.tables,
        }),
    );
    b
}

fn corrupt(key: &[u8], reason: &'static str) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    }
}

fn u64_of(key: &[u8], raw: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = raw
        .try_into()
        .map_err(|_| corrupt(key, "index is not 8 bytes"))?;
    Ok(u64::from_le_bytes(bytes))
}

fn from_json<T: for<'de> Deserialize<'de>>(key: &[u8], raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|_| corrupt(key, "undecodable JSON"))
}

/// Rebuilds the state from everything in the store.
pub fn load(store: &dyn Store) -> Result<State, StoreError> {
    let mut st = State::default();
    for (raw_key, entry) in store.scan_prefix(b"")? {
        let raw = entry.value.as_slice();
        if raw_key == META {
            let meta: Meta = from_json(&raw_key, raw)?;
            st.index = meta.index;
            st.tables = meta.tables;
            continue;
        }
        let key =
            std::str::from_utf8(&raw_key).map_err(|_| corrupt(&raw_key, "key is not UTF-8"))?;
        let (kind, rest) = key
            .split_once('/')
            .ok_or_else(|| corrupt(&raw_key, "unknown key"))?;
        match kind {
            "n" => {
                st.nodes.insert(rest.to_string(), from_json(&raw_key, raw)?);
            }
            "s" => {
                let k = split_pair(rest).ok_or_else(|| corrupt(&raw_key, "bad service key"))?;
                let svc: cairn_wire::NodeService = from_json(&raw_key, raw)?;
                st.by_service
                    .entry(svc.service.clone())
                    .or_default()
                    .insert(k.clone());
                st.services.insert(k, svc);
            }
            "c" => {
                let k = split_pair(rest).ok_or_else(|| corrupt(&raw_key, "bad check key"))?;
                st.checks.insert(k, from_json(&raw_key, raw)?);
            }
            "k" => {
                let e = KvEntry::decode(raw).ok_or_else(|| corrupt(&raw_key, "bad KV entry"))?;
                st.kv.insert(rest.to_string(), e);
            }
            "t" => {
                st.tombstones
                    .insert(rest.to_string(), u64_of(&raw_key, raw)?);
            }
            "x" => {
                let s: Session = from_json(&raw_key, raw)?;
                st.sessions.insert(rest.to_string(), s);
            }
            "d" => {
                let (table, name) = rest
                    .split_once('/')
                    .and_then(|(t, n)| Some((Table::from_name(t)?, n)))
                    .ok_or_else(|| corrupt(&raw_key, "bad document key"))?;
                let d: StoredDoc = from_json(&raw_key, raw)?;
                st.docs.insert(
                    (table, name.to_string()),
                    Doc {
                        value: std::sync::Arc::new(d.v),
                        create_index: d.c,
                        modify_index: d.m,
                    },
                );
            }
            "i" => {
                let (which, name) = rest
                    .split_once('/')
                    .ok_or_else(|| corrupt(&raw_key, "bad index key"))?;
                let v = u64_of(&raw_key, raw)?;
                match which {
                    "s" => st.service_index.insert(name.to_string(), v),
                    "n" => st.node_index.insert(name.to_string(), v),
                    _ => return Err(corrupt(&raw_key, "bad index key")),
                };
            }
            _ => return Err(corrupt(&raw_key, "unknown key kind")),
        }
    }
    Ok(st)
}

/// Every key of `state`, as one batch of puts (snapshots, restores).
pub fn full_batch(state: &State) -> Batch {
    let changes = Changes {
        nodes: state.nodes.keys().cloned().collect(),
        services: state.services.keys().cloned().collect(),
        checks: state.checks.keys().cloned().collect(),
        kv: state.kv.keys().cloned().collect(),
        tombstones: state.tombstones.keys().cloned().collect(),
        sessions: state.sessions.keys().cloned().collect(),
        docs: state.docs.keys().cloned().collect(),
        service_idx: state.service_index.keys().cloned().collect(),
        node_idx: state.node_index.keys().cloned().collect(),
        ..Default::default()
    };
    batch_for(state, &changes)
}

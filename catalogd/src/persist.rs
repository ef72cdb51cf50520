//! How the state maps onto the store: one key per node, service, check, KV entry, tombstone,
//! session, document (`d/<table>/<key>`) and per-name index, plus one metadata key. A batch persists exactly its dirty keys;
//! startup rebuilds the whole state, indexes included, from a scan. Replicas sharing a store
//! apply each other's batches entry by entry ([`apply_changeset`]), and tell each other about TTL
//! timers through heartbeat keys (`h/c/<node>\0<check>`, `h/x/<session>`) only they write.

use std::time::Duration;

use cairn_store::{Batch, Entry, Revision, Store, StoreError};
use serde::{Deserialize, Serialize};

use crate::state::{
    Changes, Doc, DocKey, KvEntry, NodeKey, Session, State, Table, TableIndexes, TtlChange,
};

/// The metadata key: the global index and the table indexes. Every batch writes it, so its
/// revision is the last batch's, which replicas sharing a store compare against.
pub const META: &[u8] = b"m";

/// Where each session is kept (`x/<id>`).
pub const SESSION_PREFIX: &[u8] = b"x/";

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
    Ok(load_at(store)?.state)
}

/// A state rebuilt from the store, with the revisions a follower of the store's feed continues
/// from.
pub struct Loaded {
    pub state: State,
    /// The store's revision the scan saw.
    pub revision: Revision,
    /// The revision that last wrote the metadata key (every batch of the catalog writes it), 0
    /// in an empty store: what a replica's next batch must find there.
    pub meta_revision: Revision,
}

/// Rebuilds the state from one consistent read of the store.
pub fn load_at(store: &dyn Store) -> Result<Loaded, StoreError> {
    let (revision, entries) = store.snapshot()?;
    let mut state = State::default();
    let mut meta_revision = 0;
    for (key, entry) in entries {
        if key == META {
            meta_revision = entry.mod_revision;
        }
        insert_entry(&mut state, &key, &entry.value, &mut Changes::default())?;
    }
    Ok(Loaded {
        state,
        revision,
        meta_revision,
    })
}

/// Applies a batch another replica committed (as a shared store's feed delivers it) to `st`,
/// recording what it touched in `ch` as the writer records its own commands: the topics to
/// wake, and, from the TTL heartbeat keys, the timers to arm or disarm.
pub fn apply_changeset(
    st: &mut State,
    entries: &[(Vec<u8>, Option<Entry>)],
    ch: &mut Changes,
) -> Result<(), StoreError> {
    for (key, entry) in entries {
        match entry {
            Some(e) => insert_entry(st, key, &e.value, ch)?,
            None => remove_entry(st, key, ch)?,
        }
    }
    Ok(())
}

/// A key of the store split into its kind and the rest (`None` for the metadata key).
fn split_key(raw_key: &[u8]) -> Result<Option<(&str, &str)>, StoreError> {
    if raw_key == META {
        return Ok(None);
    }
    let key = std::str::from_utf8(raw_key).map_err(|_| corrupt(raw_key, "key is not UTF-8"))?;
    key.split_once('/')
        .map(Some)
        .ok_or_else(|| corrupt(raw_key, "unknown key"))
}

fn doc_key(raw_key: &[u8], rest: &str) -> Result<DocKey, StoreError> {
    rest.split_once('/')
        .and_then(|(t, n)| Some((Table::from_name(t)?, n.to_string())))
        .ok_or_else(|| corrupt(raw_key, "bad document key"))
}

/// The TTL a heartbeat key holds (milliseconds, little-endian).
fn heartbeat_ttl(raw_key: &[u8], raw: &[u8]) -> Result<Duration, StoreError> {
    Ok(Duration::from_millis(u64_of(raw_key, raw)?))
}

/// Stores one entry's record in `st`.
fn insert_entry(
    st: &mut State,
    raw_key: &[u8],
    raw: &[u8],
    ch: &mut Changes,
) -> Result<(), StoreError> {
    let Some((kind, rest)) = split_key(raw_key)? else {
        let meta: Meta = from_json(raw_key, raw)?;
        st.index = meta.index;
        st.tables = meta.tables;
        return Ok(());
    };
    match kind {
        "n" => {
            st.nodes.insert(rest.to_string(), from_json(raw_key, raw)?);
            ch.nodes.insert(rest.to_string());
        }
        "s" => {
            let k = split_pair(rest).ok_or_else(|| corrupt(raw_key, "bad service key"))?;
            let svc: cairn_wire::NodeService = from_json(raw_key, raw)?;
            if let Some(old) = st.services.get(&k) {
                let old_name = old.service.clone();
                unindex_service(st, &old_name, &k);
            }
            st.by_service
                .entry(svc.service.clone())
                .or_default()
                .insert(k.clone());
            st.services.insert(k.clone(), svc);
            ch.services.insert(k);
        }
        "c" => {
            let k = split_pair(rest).ok_or_else(|| corrupt(raw_key, "bad check key"))?;
            st.checks.insert(k.clone(), from_json(raw_key, raw)?);
            ch.checks.insert(k);
        }
        "k" => {
            let e = KvEntry::decode(raw).ok_or_else(|| corrupt(raw_key, "bad KV entry"))?;
            st.kv.insert(rest.to_string(), e);
            ch.kv.insert(rest.to_string());
        }
        "t" => {
            st.tombstones
                .insert(rest.to_string(), u64_of(raw_key, raw)?);
            ch.tombstones.insert(rest.to_string());
        }
        "x" => {
            let s: Session = from_json(raw_key, raw)?;
            st.sessions.insert(rest.to_string(), s);
            ch.sessions.insert(rest.to_string());
        }
        "d" => {
            let key = doc_key(raw_key, rest)?;
            let d: StoredDoc = from_json(raw_key, raw)?;
            st.docs.insert(
                key.clone(),
                Doc {
                    value: std::sync::Arc::new(d.v),
                    create_index: d.c,
                    modify_index: d.m,
                },
            );
            ch.docs.insert(key);
        }
        "i" => {
            let (which, name) = rest
                .split_once('/')
                .ok_or_else(|| corrupt(raw_key, "bad index key"))?;
            let v = u64_of(raw_key, raw)?;
            match which {
                "s" => {
                    st.service_index.insert(name.to_string(), v);
                    ch.service_idx.insert(name.to_string());
                }
                "n" => {
                    st.node_index.insert(name.to_string(), v);
                    ch.node_idx.insert(name.to_string());
                }
                _ => return Err(corrupt(raw_key, "bad index key")),
            }
        }
        "h" => {
            let ttl = heartbeat_ttl(raw_key, raw)?;
            ch.ttl.push(match heartbeat_owner(raw_key, rest)? {
                Heartbeat::Check(k) => TtlChange::ArmCheck(k, ttl),
                Heartbeat::Session(id) => TtlChange::ArmSession(id, ttl),
            });
        }
        _ => return Err(corrupt(raw_key, "unknown key kind")),
    }
    Ok(())
}

/// Removes one deleted entry's record from `st`.
fn remove_entry(st: &mut State, raw_key: &[u8], ch: &mut Changes) -> Result<(), StoreError> {
    let Some((kind, rest)) = split_key(raw_key)? else {
        // Only a restore deletes the metadata key, and it writes it again in the same batch.
        return Ok(());
    };
    match kind {
        "n" => {
            st.nodes.remove(rest);
            ch.nodes.insert(rest.to_string());
        }
        "s" => {
            let k = split_pair(rest).ok_or_else(|| corrupt(raw_key, "bad service key"))?;
            if let Some(old) = st.services.remove(&k) {
                unindex_service(st, &old.service, &k);
            }
            ch.services.insert(k);
        }
        "c" => {
            let k = split_pair(rest).ok_or_else(|| corrupt(raw_key, "bad check key"))?;
            st.checks.remove(&k);
            ch.checks.insert(k);
        }
        "k" => {
            st.kv.remove(rest);
            ch.kv.insert(rest.to_string());
        }
        "t" => {
            st.tombstones.remove(rest);
            ch.tombstones.insert(rest.to_string());
        }
        "x" => {
            st.sessions.remove(rest);
            ch.sessions.insert(rest.to_string());
        }
        "d" => {
            let key = doc_key(raw_key, rest)?;
            st.docs.remove(&key);
            ch.docs.insert(key);
        }
        "i" => match rest.split_once('/') {
            Some(("s", name)) => {
                st.service_index.remove(name);
                ch.service_idx.insert(name.to_string());
            }
            Some(("n", name)) => {
                st.node_index.remove(name);
                ch.node_idx.insert(name.to_string());
            }
            _ => return Err(corrupt(raw_key, "bad index key")),
        },
        "h" => ch.ttl.push(match heartbeat_owner(raw_key, rest)? {
            Heartbeat::Check(k) => TtlChange::DisarmCheck(k),
            Heartbeat::Session(id) => TtlChange::DisarmSession(id),
        }),
        _ => return Err(corrupt(raw_key, "unknown key kind")),
    }
    Ok(())
}

/// Drops a service instance from its name's index.
fn unindex_service(st: &mut State, name: &str, k: &NodeKey) {
    let now_empty = match st.by_service.get_mut(name) {
        Some(set) => {
            set.remove(k);
            set.is_empty()
        }
        None => false,
    };
    if now_empty {
        st.by_service.remove(name);
    }
}

/// Whose TTL a heartbeat key (`h/c/<node>\0<check>`, `h/x/<session>`) carries.
enum Heartbeat {
    Check(NodeKey),
    Session(String),
}

fn heartbeat_owner(raw_key: &[u8], rest: &str) -> Result<Heartbeat, StoreError> {
    match rest.split_once('/') {
        Some(("c", pair)) => split_pair(pair)
            .map(Heartbeat::Check)
            .ok_or_else(|| corrupt(raw_key, "bad heartbeat key")),
        Some(("x", id)) => Ok(Heartbeat::Session(id.to_string())),
        _ => Err(corrupt(raw_key, "bad heartbeat key")),
    }
}

/// For a store replicas share: the heartbeat keys that tell the other replicas about the TTL
/// timers a batch armed or disarmed (a TTL update or a session renewal may change no record,
/// yet every replica must restart that deadline, since any may be the one enforcing it). The
/// last change per owner wins: a transaction names each key once.
pub fn heartbeat_ops(ttl: &[TtlChange], batch: &mut Batch) {
    let mut last: std::collections::BTreeMap<Vec<u8>, Option<Duration>> = Default::default();
    for change in ttl {
        let (key, arm) = match change {
            TtlChange::ArmCheck(k, ttl) => (pair_key("h/c/", k), Some(*ttl)),
            TtlChange::DisarmCheck(k) => (pair_key("h/c/", k), None),
            TtlChange::ArmSession(id, ttl) => (format!("h/x/{id}").into_bytes(), Some(*ttl)),
            TtlChange::DisarmSession(id) => (format!("h/x/{id}").into_bytes(), None),
        };
        last.insert(key, arm);
    }
    for (key, arm) in last {
        match arm {
            Some(ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
                batch.put(key, ms.to_le_bytes().to_vec());
            }
            None => batch.delete(key),
        }
    }
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

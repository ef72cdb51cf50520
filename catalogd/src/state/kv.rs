//! KV writes with Consul's semantics: flags, check-and-set, lock acquire/release, recursive and
//! guarded deletes, and tombstones so that prefix readers see deletions.

use std::sync::Arc;
use std::time::Instant;

use cairn_wire::{KvPair, MAX_KV_VALUE, b64_encode};
use serde::{Deserialize, Serialize};

use super::{ApplyError, Changes, State, invalid, prefix_range};
use crate::state::LockDelays;

/// A KV entry; the value is shared so snapshots clone cheaply.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct KvEntry {
    pub value: Arc<[u8]>,
    pub flags: u64,
    pub lock_index: u64,
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Metadata part of a persisted entry (the value follows it raw).
#[derive(Serialize, Deserialize)]
struct KvMeta {
    f: u64,
    l: u64,
    s: String,
    c: u64,
    m: u64,
}

impl KvEntry {
    /// Wire form; `with_value` false leaves `Value` null (txn write results).
    pub fn to_pair(&self, key: &str, with_value: bool) -> KvPair {
        KvPair {
            lock_index: self.lock_index,
            key: key.to_string(),
            flags: self.flags,
            value: (with_value && !self.value.is_empty()).then(|| b64_encode(&self.value)),
            session: self.session.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }

    /// Persisted form: 4-byte metadata length, JSON metadata, raw value.
    pub fn encode(&self) -> Vec<u8> {
        let meta = KvMeta {
            f: self.flags,
            l: self.lock_index,
            s: self.session.clone(),
            c: self.create_index,
            m: self.modify_index,
        };
        let meta = serde_json::to_vec(&meta).unwrap_or_default();
        let mut out = Vec::with_capacity(4 + meta.len() + self.value.len());
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.value);
        out
    }

    pub fn decode(raw: &[u8]) -> Option<KvEntry> {
        let (len, rest) = raw.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let meta: KvMeta = serde_json::from_slice(rest.get(..len)?).ok()?;
        Some(KvEntry {
            value: Arc::from(rest.get(len..)?),
            flags: meta.f,
            lock_index: meta.l,
            session: meta.s,
            create_index: meta.c,
            modify_index: meta.m,
        })
    }
}

/// A KV PUT with its query parameters.
#[derive(Debug, Clone, Default)]
pub struct KvPut {
    pub key: String,
    pub value: Vec<u8>,
    pub flags: Option<u64>,
    pub cas: Option<u64>,
    pub acquire: Option<String>,
    pub release: Option<String>,
}

/// Checks a key is one Consul would store.
pub fn validate_key(key: &str) -> Result<(), ApplyError> {
    if key.is_empty() {
        return invalid("missing key name");
    }
    if key.starts_with('/') {
        return invalid(format!("invalid key {key:?}: must not begin with '/'"));
    }
    if key.len() > 8192 {
        return invalid(format!(
            "invalid key: {} bytes is longer than 8192",
            key.len()
        ));
    }
    Ok(())
}

impl State {
    /// `PUT /v1/kv/:key`. Ok(false) when a cas, acquire or release condition does not hold.
    pub fn kv_put(
        &mut self,
        put: KvPut,
        delays: &LockDelays,
        now: Instant,
        ch: &mut Changes,
    ) -> Result<bool, ApplyError> {
        validate_key(&put.key)?;
        if put.value.len() > MAX_KV_VALUE {
            return Err(ApplyError::TooLarge(format!(
                "value for key {:?} is {} bytes, larger than the {} byte limit",
                put.key,
                put.value.len(),
                MAX_KV_VALUE
            )));
        }
        if put.acquire.is_some() && put.release.is_some() {
            return invalid("Conflicting flags: acquire and release");
        }
        let old = self.kv.get(&put.key).cloned();
        if let Some(cas) = put.cas {
            let current = old.as_ref().map_or(0, |e| e.modify_index);
            if current != cas {
                return Ok(false);
            }
        }
        let mut entry = old.clone().unwrap_or_default();
        if let Some(sid) = &put.acquire {
            if sid.is_empty() {
                return Err(ApplyError::Rpc("raft apply failed: missing session".into()));
            }
            if !self.sessions.contains_key(sid) {
                return Err(ApplyError::Rpc(format!(
                    "raft apply failed: invalid session {sid:?}"
                )));
            }
            if !entry.session.is_empty() && &entry.session != sid {
                return Ok(false);
            }
            if entry.session.is_empty() {
                if delays.blocks(&put.key, now) {
                    return Ok(false);
                }
                entry.lock_index += 1;
                entry.session = sid.clone();
            }
        }
        // Consul looks no session up on release: one that does not hold the lock (unknown or
        // not) simply does not match.
        if let Some(sid) = &put.release {
            if sid.is_empty() {
                return Err(ApplyError::Rpc("raft apply failed: missing session".into()));
            }
            if old.is_none() || &entry.session != sid {
                return Ok(false);
            }
            entry.session.clear();
        }
        let idx = self.next_index();
        entry.value = Arc::from(put.value);
        entry.flags = put.flags.unwrap_or(0);
        entry.modify_index = idx;
        if old.is_none() {
            entry.create_index = idx;
        }
        self.store_kv(put.key, entry, idx, ch);
        Ok(true)
    }

    pub(crate) fn store_kv(&mut self, key: String, entry: KvEntry, idx: u64, ch: &mut Changes) {
        if self.tombstones.remove(&key).is_some() {
            ch.tombstones.insert(key.clone());
        }
        self.kv.insert(key.clone(), entry);
        self.tables.kv = idx;
        ch.kv.insert(key);
    }

    /// Deletes one key, leaving a tombstone; false when absent.
    pub(crate) fn drop_kv(&mut self, key: &str, idx: u64, ch: &mut Changes) -> bool {
        if self.kv.remove(key).is_none() {
            return false;
        }
        self.tombstones.insert(key.to_string(), idx);
        self.tables.kv = idx;
        ch.kv.insert(key.to_string());
        ch.tombstones.insert(key.to_string());
        true
    }

    /// `DELETE /v1/kv/:key` (`recurse`, `cas`). Ok(false) when the cas does not hold.
    pub fn kv_delete(
        &mut self,
        key: &str,
        recurse: bool,
        cas: Option<u64>,
        ch: &mut Changes,
    ) -> Result<bool, ApplyError> {
        if !recurse {
            validate_key(key)?;
        }
        if let Some(cas) = cas {
            if recurse {
                return invalid("Conflicting flags: cas and recurse");
            }
            // cas=0 holds only for an absent key (nothing to delete); an existing key's
            // ModifyIndex is never 0.
            let current = self.kv.get(key).map_or(0, |e| e.modify_index);
            if current != cas {
                return Ok(false);
            }
        }
        let doomed: Vec<String> = if recurse {
            prefix_range(&self.kv, key)
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            self.kv
                .contains_key(key)
                .then(|| key.to_string())
                .into_iter()
                .collect()
        };
        if doomed.is_empty() {
            return Ok(true);
        }
        let idx = self.next_index();
        for k in doomed {
            self.drop_kv(&k, idx, ch);
        }
        Ok(true)
    }

    /// Forgets the oldest tombstones beyond `keep`, raising the reap floor so prefix indexes
    /// never move backwards.
    pub fn reap_tombstones(&mut self, keep: usize, ch: &mut Changes) {
        if self.tombstones.len() <= keep {
            return;
        }
        let mut by_age: Vec<(u64, String)> = self
            .tombstones
            .iter()
            .map(|(k, i)| (*i, k.clone()))
            .collect();
        by_age.sort_unstable();
        let excess = by_age.len() - keep;
        for (idx, key) in by_age.into_iter().take(excess) {
            self.tombstones.remove(&key);
            self.tables.kv_reap_floor = self.tables.kv_reap_floor.max(idx);
            ch.tombstones.insert(key);
        }
    }
}

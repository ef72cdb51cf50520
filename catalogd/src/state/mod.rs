//! The catalog's working state: every node, service, check, KV entry and session, held in
//! persistent (structurally shared) maps so that a clone is O(1).
//!
//! The writer clones the current state, applies a command to the clone and swaps it in only after
//! the change is on disk; readers load whichever snapshot is current and never take a lock. Each
//! successful command advances `index` by one (Consul's Raft index) and stamps what it touched.

mod acl;
mod agent;
mod catalog;
mod changes;
mod docs;
mod kv;
mod reads;
mod session;
#[cfg(test)]
mod tests;
mod txn;

pub use txn::READ_VERBS;

use std::sync::Arc;

use cairn_wire::{HealthCheck, Node, NodeService, SessionEntry};
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

pub use acl::*;
pub use agent::runs_script;
pub use changes::{Changes, TtlChange};
pub use docs::{AUTOPILOT_KEY, CLUSTER_KEY, Doc, DocKey, Table, config_key};
pub use kv::{KvEntry, KvPut, validate_key};
pub use reads::{Selection, prefix_range};
pub use session::LockDelays;

/// Key of a service instance or check: (node name, id).
pub type NodeKey = (String, String);

/// Per-table indexes: the last index at which each table changed (Consul's `index` table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableIndexes {
    pub nodes: u64,
    pub services: u64,
    pub checks: u64,
    pub kv: u64,
    pub sessions: u64,
    /// Highest index of a reaped KV tombstone; prefix indexes never fall below it.
    pub kv_reap_floor: u64,
    /// Last change of each document table (absent in stores written before they existed).
    #[serde(default)]
    pub docs: DocIndexes,
}

/// Last change of each document table: plain fields, so the indexes stay `Copy` (the writer
/// copies them with the state on every command).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocIndexes {
    pub coordinates: u64,
    pub config_entries: u64,
    pub prepared_queries: u64,
    pub system: u64,
    /// Every ACL table (tokens, policies, roles, auth methods, binding rules).
    pub acl: u64,
}

impl DocIndexes {
    pub fn get(&self, table: Table) -> u64 {
        match table {
            Table::Coordinates => self.coordinates,
            Table::ConfigEntries => self.config_entries,
            Table::PreparedQueries => self.prepared_queries,
            Table::System => self.system,
            Table::AclTokens
            | Table::AclSecrets
            | Table::AclPolicies
            | Table::AclRoles
            | Table::AclAuthMethods
            | Table::AclBindingRules => self.acl,
        }
    }

    pub fn set(&mut self, table: Table, idx: u64) {
        let slot = match table {
            Table::Coordinates => &mut self.coordinates,
            Table::ConfigEntries => &mut self.config_entries,
            Table::PreparedQueries => &mut self.prepared_queries,
            Table::System => &mut self.system,
            Table::AclTokens
            | Table::AclSecrets
            | Table::AclPolicies
            | Table::AclRoles
            | Table::AclAuthMethods
            | Table::AclBindingRules => &mut self.acl,
        };
        *slot = idx;
    }
}

/// The whole catalog at one index.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub index: u64,
    pub tables: TableIndexes,
    pub nodes: OrdMap<String, Node>,
    pub services: OrdMap<NodeKey, NodeService>,
    pub checks: OrdMap<NodeKey, HealthCheck>,
    /// Service name → its instances, for lookups by name.
    pub by_service: OrdMap<String, OrdSet<NodeKey>>,
    /// Last index at which anything a reader of this service sees changed (instances, their
    /// checks, their nodes and node checks).
    pub service_index: OrdMap<String, u64>,
    /// Last index at which a node, its services or its checks changed.
    pub node_index: OrdMap<String, u64>,
    pub kv: OrdMap<String, KvEntry>,
    /// Deleted keys → index of the deletion, so prefix reads see deletes as changes.
    pub tombstones: OrdMap<String, u64>,
    pub sessions: OrdMap<String, Session>,
    /// Coordinates, config entries, prepared queries, server settings.
    pub docs: OrdMap<DocKey, Doc>,
    /// While set, every write stamps this index (a transaction is one write).
    pinned_index: Option<u64>,
}

/// A session with what the server needs beyond its wire form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub entry: SessionEntry,
    /// TTL in milliseconds; 0 = none.
    pub ttl_ms: u64,
}

/// Why a command was refused. The state is unchanged when one is returned.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ApplyError {
    #[error("{0}")]
    Invalid(String),
    /// Refused the way Consul's RPC layer refuses: HTTP 500 with the message as the body.
    #[error("{0}")]
    Rpc(String),
    #[error("{0}")]
    NotFound(String),
    /// Refused for lack of a right that no token could have at this point (a second ACL
    /// bootstrap): HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("transaction failed")]
    Txn(Vec<cairn_wire::TxnError>),
}

/// Shorthand for an [`ApplyError::Invalid`].
pub(crate) fn invalid<T>(msg: impl Into<String>) -> Result<T, ApplyError> {
    Err(ApplyError::Invalid(msg.into()))
}

impl State {
    /// Starts a new write: the index it will stamp.
    pub(crate) fn next_index(&mut self) -> u64 {
        match self.pinned_index {
            Some(idx) => self.index = idx,
            None => self.index += 1,
        }
        self.index
    }

    /// Runs `f` so that every write it makes shares one index, as one Raft entry would.
    pub(crate) fn as_one_write<T>(&mut self, f: impl FnOnce(&mut State) -> T) -> T {
        self.pinned_index = Some(self.index + 1);
        let out = f(self);
        self.pinned_index = None;
        out
    }

    /// Records that a service name's readers must see index `idx`.
    fn touch_service(&mut self, name: &str, idx: u64, ch: &mut Changes) {
        self.service_index.insert(name.to_string(), idx);
        ch.service_idx.insert(name.to_string());
    }

    /// Records that a node's readers (and every service on it) must see index `idx`.
    fn touch_node(&mut self, node: &str, idx: u64, ch: &mut Changes, with_services: bool) {
        self.node_index.insert(node.to_string(), idx);
        ch.node_idx.insert(node.to_string());
        if with_services {
            let names: Vec<String> = self
                .node_services(node)
                .map(|(_, s)| s.service.clone())
                .collect();
            for name in names {
                self.touch_service(&name, idx, ch);
            }
        }
    }
}

/// Shared handle to the current snapshot.
pub type Snapshot = Arc<State>;

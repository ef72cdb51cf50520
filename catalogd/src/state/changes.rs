//! What one batch of commands touched: the keys to persist, the watch topics to wake, and the TTL
//! timers to reset once the batch is durable.

use std::collections::HashSet;
use std::time::Duration;

use super::{DocKey, NodeKey};

/// A TTL timer change, applied by the writer after a successful commit.
#[derive(Debug, Clone, PartialEq)]
pub enum TtlChange {
    /// (Re)arm the check's TTL.
    ArmCheck(NodeKey, Duration),
    /// The check is gone or no longer has a TTL.
    DisarmCheck(NodeKey),
    ArmSession(String, Duration),
    DisarmSession(String),
}

/// Dirty sets of one batch. Persisting reads the final state for each dirty key: present means
/// put, absent means delete.
#[derive(Debug, Default)]
pub struct Changes {
    pub nodes: HashSet<String>,
    pub services: HashSet<NodeKey>,
    pub checks: HashSet<NodeKey>,
    pub kv: HashSet<String>,
    pub tombstones: HashSet<String>,
    pub sessions: HashSet<String>,
    pub docs: HashSet<DocKey>,
    pub service_idx: HashSet<String>,
    pub node_idx: HashSet<String>,
    pub ttl: Vec<TtlChange>,
    /// Keys whose lock was released by an ending session: lock-delay starts for them.
    pub lock_delays: Vec<(String, Duration)>,
    /// The whole state was replaced (snapshot restore): persist everything, re-arm every TTL,
    /// wake every watcher.
    pub replaced: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
            && self.services.is_empty()
            && self.checks.is_empty()
            && self.kv.is_empty()
            && self.tombstones.is_empty()
            && self.sessions.is_empty()
            && self.docs.is_empty()
            && self.service_idx.is_empty()
            && self.node_idx.is_empty()
            && !self.replaced
    }

    /// Folds a later command's changes into this batch's.
    pub fn merge(&mut self, other: Changes) {
        self.nodes.extend(other.nodes);
        self.services.extend(other.services);
        self.checks.extend(other.checks);
        self.kv.extend(other.kv);
        self.tombstones.extend(other.tombstones);
        self.sessions.extend(other.sessions);
        self.docs.extend(other.docs);
        self.service_idx.extend(other.service_idx);
        self.node_idx.extend(other.node_idx);
        self.ttl.extend(other.ttl);
        self.lock_delays.extend(other.lock_delays);
        self.replaced |= other.replaced;
    }
}

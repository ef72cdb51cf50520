//! The durable store behind catalogd (and later offerd): ordered byte keys, atomic batches guarded
//! by compares, one global revision, and a watch on that revision.
//!
//! The interface is deliberately the intersection of what an embedded B-tree (redb, [`RedbStore`])
//! and etcd's v3 API offer (`Txn` with `Compare` on `mod_revision`, `Range` by prefix, the cluster
//! revision, `Watch`), so that high availability can later come from an etcd-backed implementation
//! instead of home-made replication. Callers keep their working state in memory and use the store
//! for durability: a [`Store::commit`] that returns has reached the disk.

mod mem;
mod redb_store;

pub use mem::MemStore;
pub use redb_store::RedbStore;

/// Global revision: bumped by one on every applied batch, never reused.
pub type Revision = u64;

/// A stored value and the revision of the batch that last wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub mod_revision: Revision,
}

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
    DeletePrefix { prefix: Vec<u8> },
}

/// A precondition of a batch: the key's `mod_revision` equals `revision` (0 = the key is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub revision: Revision,
}

/// An atomic batch: every compare holds and then every op applies, or nothing happens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete { key: key.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.compares.is_empty()
    }
}

/// What a commit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied and durable at this revision.
    Applied(Revision),
    /// The compare at this position failed; nothing was written.
    CompareFailed(usize),
}

/// Store failures: I/O or corruption, never a compare failing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store at {path}: {source}")]
    Open {
        path: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("store: {0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    #[error("store: corrupt entry for key {key:?}: {reason}")]
    Corrupt { key: String, reason: &'static str },
    /// The store file cannot be used as it is: empty where data was expected, or a page that
    /// does not decode. Nothing was changed; the operator restores it or moves it away.
    #[error("store file {path} is damaged: {detail}")]
    Damaged { path: String, detail: String },
    /// A panic while the named lock was held may have left the store half-changed; it is not
    /// used any more (a library reports this rather than stopping the process).
    #[error("store: the {0} lock was poisoned by a panic; not used any more")]
    Poisoned(&'static str),
}

/// One batch as a shared store's feed delivers it: every key it changed, with the entry now
/// there (`None`: deleted), in the order the batch changed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changeset {
    pub revision: Revision,
    pub entries: Vec<(Vec<u8>, Option<Entry>)>,
}

/// Every batch committed after a revision, by any process, in revision order. A feed that ends
/// (its sender dropped) lost its place: the follower rebuilds its state from
/// [`Store::snapshot`] and subscribes again.
pub type Feed = tokio::sync::mpsc::Receiver<Changeset>;

/// Batches a feed holds for a follower that is busy; a follower further behind loses the feed
/// and resynchronises from a scan.
pub const FEED_CAPACITY: usize = 4096;

/// Every entry of a store, in key order.
pub type Entries = Vec<(Vec<u8>, Entry)>;

/// Ordered, durable key/value storage with atomic compare-guarded batches.
pub trait Store: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, StoreError>;
    /// Applies `batch` atomically and durably (on disk when this returns).
    fn commit(&self, batch: Batch) -> Result<Outcome, StoreError>;
    /// The revision of the last applied batch (0 for an empty store).
    fn revision(&self) -> Revision;
    /// Follows the revision: a receiver that sees every later applied batch's revision.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<Revision>;

    /// Every entry and the revision they are all as of (one consistent read).
    fn snapshot(&self) -> Result<(Revision, Entries), StoreError> {
        // Only this process writes a store without a feed, so nothing moves in between.
        let revision = self.revision();
        Ok((revision, self.scan_prefix(b"")?))
    }

    /// For a store other processes write too (several catalogd replicas on etcd): the batches
    /// committed after `after`, this process's own included. `None` for a store only this
    /// process writes, where a follower has nothing to learn.
    fn feed(&self, _after: Revision) -> Option<Feed> {
        None
    }
}

#[cfg(test)]
mod contract_tests;
#[cfg(test)]
mod damage_tests;

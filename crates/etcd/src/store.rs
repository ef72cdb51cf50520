//! [`EtcdStore`]: cairn's [`Store`] on an etcd cluster, under one key prefix, so that several
//! replicas of a daemon share one replicated store (`../shared/DESIGN.md`, "High
//! availability").
//!
//! The mapping is direct, since the store interface was shaped after etcd's: a [`Batch`] is one
//! etcd transaction (its compares on `mod_revision`, 0 for an absent key, as etcd compares an
//! absent key's fields with zero), the store's revision is etcd's, and [`Store::feed`] is an
//! etcd watch on the prefix, one [`Changeset`] per revision. A commit returns once etcd has
//! committed the transaction (a quorum has it on disk).
//!
//! Two etcd rules shape the transactions: a key may be written once per transaction, and a
//! put may not fall inside a range deleted by the same transaction. So a
//! [`Op::DeletePrefix`](cairn_store::Op::DeletePrefix) becomes one delete per key found under
//! the prefix and not written again by the batch (only a snapshot restore uses it; the daemons
//! guard every batch with a compare, so no key appears in between unnoticed). And etcd caps a
//! transaction's operations (`--max-txn-ops`, 128 by default) and a request's size
//! (`--max-request-bytes`, 1.5 MiB): a batch past either is refused with an error naming the
//! flag to raise.
//!
//! The interface is synchronous (the daemons' writers are threads of their own); each call runs
//! the async client on the runtime given at construction, blocking the calling thread: inside a
//! multi-threaded runtime through `block_in_place`, elsewhere by waiting on the runtime.

use std::time::Duration;

use cairn_store::{
    Batch, Changeset, Entries, Entry, FEED_CAPACITY, Feed, Op as StoreOp, Outcome, Revision, Store,
    StoreError,
};
use tokio::sync::watch;

use crate::{
    Compare, EtcdClient, EtcdError, EventKind, KeyValue, Op, OpResponse, RangeRequest, Txn,
    WatchRequest, prefix_end,
};

/// Keys read per request by a scan (each page at the scan's first revision).
const PAGE: i64 = 5_000;

/// A [`Store`] on etcd, every key under `prefix`.
pub struct EtcdStore {
    client: EtcdClient,
    prefix: Vec<u8>,
    runtime: tokio::runtime::Handle,
    revision_tx: watch::Sender<Revision>,
}

fn backend(e: EtcdError) -> StoreError {
    let text = e.to_string();
    let hint = if text.contains("too many operations in txn request") {
        " (raise etcd's --max-txn-ops: cairn's batches hold many operations)"
    } else if text.contains("request is too large") {
        " (raise etcd's --max-request-bytes)"
    } else {
        ""
    };
    StoreError::Backend(format!("{text}{hint}").into())
}

fn revision_of(r: i64) -> Revision {
    u64::try_from(r).unwrap_or(0)
}

/// Moves the store's revision forward to `revision` (never back: commits and the feed race).
fn advance(tx: &watch::Sender<Revision>, revision: i64) {
    let r = revision_of(revision);
    tx.send_if_modified(|cur| {
        let newer = r > *cur;
        if newer {
            *cur = r;
        }
        newer
    });
}

fn etcd_revision(r: Revision) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// A store under `prefix` (for example `/cairn/catalogd/data/`), reading the current
    /// revision once; must be called within a tokio runtime, which later calls use.
    pub async fn open(client: EtcdClient, prefix: impl Into<Vec<u8>>) -> Result<Self, StoreError> {
        let prefix = prefix.into();
        let probe = client
            .range(&RangeRequest {
                count_only: true,
                ..RangeRequest::prefix(prefix.clone())
            })
            .await
            .map_err(backend)?;
        Ok(EtcdStore {
            client,
            prefix,
            runtime: tokio::runtime::Handle::current(),
            revision_tx: watch::channel(revision_of(probe.revision)).0,
        })
    }

    /// The client this store talks through (elections and membership use it too).
    pub fn client(&self) -> &EtcdClient {
        &self.client
    }

    fn full_key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(key);
        k
    }

    fn entry_of(&self, kv: KeyValue) -> Option<(Vec<u8>, Entry)> {
        let key = kv.key.strip_prefix(self.prefix.as_slice())?.to_vec();
        Some((
            key,
            Entry {
                value: kv.value,
                mod_revision: revision_of(kv.mod_revision),
            },
        ))
    }

    /// Runs `fut` to completion from synchronous code.
    fn block<T>(&self, fut: impl std::future::Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(fut))
            }
            // A current-thread runtime cannot block; a thread outside any runtime waits on ours.
            _ => self.runtime.block_on(fut),
        }
    }

    fn saw(&self, revision: i64) {
        advance(&self.revision_tx, revision);
    }

    /// Every entry under `prefix` (relative to the store's), in pages at one revision.
    async fn scan_at(&self, prefix: &[u8]) -> Result<(Revision, Entries), StoreError> {
        let full = self.full_key(prefix);
        let end = prefix_end(&full);
        let mut out = Vec::new();
        let mut from = full;
        let mut revision = 0;
        loop {
            let page = self
                .client
                .range(&RangeRequest {
                    key: from.clone(),
                    range_end: end.clone(),
                    revision,
                    limit: PAGE,
                    ..Default::default()
                })
                .await
                .map_err(backend)?;
            if revision == 0 {
                revision = page.revision;
            }
            let more = page.more;
            let last = page.kvs.last().map(|kv| kv.key.clone());
            out.extend(page.kvs.into_iter().filter_map(|kv| self.entry_of(kv)));
            match (more, last) {
                (true, Some(mut last)) => {
                    // The next key after `last`.
                    last.push(0);
                    from = last;
                }
                _ => break,
            }
        }
        self.saw(revision);
        Ok((revision_of(revision), out))
    }

    /// The batch as an etcd transaction; a delete-prefix becomes deletes of what is there.
    async fn txn_of(&self, batch: &Batch) -> Result<Txn, StoreError> {
        let written: std::collections::HashSet<&[u8]> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                StoreOp::Put { key, .. } | StoreOp::Delete { key } => Some(key.as_slice()),
                StoreOp::DeletePrefix { .. } => None,
            })
            .collect();
        let mut success = Vec::with_capacity(batch.ops.len());
        let mut deleted: std::collections::HashSet<Vec<u8>> = Default::default();
        for op in &batch.ops {
            match op {
                StoreOp::Put { key, value } => {
                    success.push(Op::put(self.full_key(key), value.clone()));
                }
                StoreOp::Delete { key } => {
                    if deleted.insert(key.clone()) {
                        success.push(Op::delete(self.full_key(key)));
                    }
                }
                StoreOp::DeletePrefix { prefix } => {
                    let (_, present) = self.scan_keys(prefix).await?;
                    for key in present {
                        if !written.contains(key.as_slice()) && deleted.insert(key.clone()) {
                            success.push(Op::delete(self.full_key(&key)));
                        }
                    }
                }
            }
        }
        // Reading each compared key when the compares fail tells which one did.
        let failure = batch
            .compares
            .iter()
            .map(|c| Op::get(self.full_key(&c.key)))
            .collect();
        Ok(Txn {
            compare: batch
                .compares
                .iter()
                .map(|c| Compare::mod_revision_is(self.full_key(&c.key), etcd_revision(c.revision)))
                .collect(),
            success,
            failure,
        })
    }

    /// The keys under `prefix` (relative), without values.
    async fn scan_keys(&self, prefix: &[u8]) -> Result<(Revision, Vec<Vec<u8>>), StoreError> {
        let full = self.full_key(prefix);
        let range = self
            .client
            .range(&RangeRequest {
                keys_only: true,
                ..RangeRequest::prefix(full)
            })
            .await
            .map_err(backend)?;
        let keys = range
            .kvs
            .into_iter()
            .filter_map(|kv| {
                kv.key
                    .strip_prefix(self.prefix.as_slice())
                    .map(<[u8]>::to_vec)
            })
            .collect();
        Ok((revision_of(range.revision), keys))
    }

    async fn commit_async(&self, batch: Batch) -> Result<Outcome, StoreError> {
        let txn = self.txn_of(&batch).await?;
        let resp = self.client.txn(&txn).await.map_err(backend)?;
        self.saw(resp.revision);
        if resp.succeeded {
            return Ok(Outcome::Applied(revision_of(resp.revision)));
        }
        let failed = batch
            .compares
            .iter()
            .zip(&resp.responses)
            .position(|(cmp, r)| {
                let now = match r {
                    OpResponse::Range(range) => range.kvs.first().map_or(0, |kv| kv.mod_revision),
                    _ => 0,
                };
                revision_of(now) != cmp.revision
            })
            .unwrap_or(0);
        Ok(Outcome::CompareFailed(failed))
    }

    /// Follows the prefix from `after + 1`, one changeset per revision, until the watch fails
    /// for good (compacted, or no endpoint) or the receiver is dropped.
    async fn follow(
        client: EtcdClient,
        prefix: Vec<u8>,
        after: Revision,
        tx: tokio::sync::mpsc::Sender<Changeset>,
        revision_tx: watch::Sender<Revision>,
    ) {
        let start = etcd_revision(after).saturating_add(1);
        let mut watch = match client
            .watch(WatchRequest::prefix(prefix.clone(), start))
            .await
        {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "the etcd watch could not start; resynchronising");
                return;
            }
        };
        while let Some(next) = watch.next().await {
            let resp = match next {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "the etcd watch ended; resynchronising");
                    return;
                }
            };
            for (revision, events) in resp.by_revision() {
                let entries = events
                    .iter()
                    .filter_map(|ev| {
                        let key = ev.kv.key.strip_prefix(prefix.as_slice())?.to_vec();
                        Some(match ev.kind {
                            EventKind::Put => (
                                key,
                                Some(Entry {
                                    value: ev.kv.value.clone(),
                                    mod_revision: revision_of(ev.kv.mod_revision),
                                }),
                            ),
                            EventKind::Delete => (key, None),
                        })
                    })
                    .collect();
                let changeset = Changeset {
                    revision: revision_of(revision),
                    entries,
                };
                if tx.send(changeset).await.is_err() {
                    return; // the follower is gone
                }
                advance(&revision_tx, revision);
            }
        }
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let kv = self
            .block(self.client.get(self.full_key(key)))
            .map_err(backend)?;
        Ok(kv.and_then(|kv| self.entry_of(kv)).map(|(_, e)| e))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        Ok(self.block(self.scan_at(prefix))?.1)
    }

    fn commit(&self, batch: Batch) -> Result<Outcome, StoreError> {
        self.block(self.commit_async(batch))
    }

    fn revision(&self) -> Revision {
        *self.revision_tx.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision_tx.subscribe()
    }

    fn snapshot(&self) -> Result<(Revision, Entries), StoreError> {
        self.block(self.scan_at(b""))
    }

    fn feed(&self, after: Revision) -> Option<Feed> {
        let (tx, rx) = tokio::sync::mpsc::channel(FEED_CAPACITY);
        self.runtime.spawn(Self::follow(
            self.client.clone(),
            self.prefix.clone(),
            after,
            tx,
            self.revision_tx.clone(),
        ));
        Some(rx)
    }
}

/// How long [`EtcdStore`] calls may take at most is the client's request timeout; this is the
/// default the daemons give it.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

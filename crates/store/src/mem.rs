//! An in-memory [`Store`](crate::Store), for tests and for throwaway runs; same semantics, no disk.
//! [`MemStore::shared`] makes one that several followers share, with a feed per follower, so the
//! replica logic of a daemon can be tested in one process without etcd.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use crate::{
    Batch, Changeset, Entry, FEED_CAPACITY, Feed, Op, Outcome, Revision, Store, StoreError,
};

/// The entries by key and the revision of the last applied batch.
type Contents = (BTreeMap<Vec<u8>, Entry>, Revision);

/// A store held in a `BTreeMap`.
pub struct MemStore {
    inner: Mutex<Contents>,
    revision_tx: watch::Sender<Revision>,
    /// `Some` for a shared store: the followers' feeds, each sent every committed batch.
    followers: Option<Mutex<Vec<tokio::sync::mpsc::Sender<Changeset>>>>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            inner: Mutex::new((BTreeMap::new(), 0)),
            revision_tx: watch::channel(0).0,
            followers: None,
        }
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store several followers share, as replicas share etcd: [`Store::feed`] answers.
    pub fn shared() -> Self {
        MemStore {
            followers: Some(Mutex::new(Vec::new())),
            ..Self::default()
        }
    }

    /// Sends a committed batch to every follower; a follower whose feed is full loses it (its
    /// feed ends, and it resynchronises), so one slow follower never blocks a commit.
    fn broadcast(&self, changeset: Changeset) {
        let Some(followers) = &self.followers else {
            return;
        };
        let Ok(mut followers) = followers.lock() else {
            return; // a panic while sending: the feeds end when the store is dropped
        };
        followers.retain(|tx| tx.try_send(changeset.clone()).is_ok());
    }

    /// The map and revision. A library does not stop the process, so a lock poisoned by a
    /// panic in another caller (which may have left a batch half-applied) is an error for every
    /// later call instead of data used as if whole.
    fn lock(&self) -> Result<MutexGuard<'_, Contents>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Poisoned("memory store"))
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let guard = self.lock()?;
        Ok(guard.0.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        let guard = self.lock()?;
        Ok(guard
            .0
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<Outcome, StoreError> {
        let mut guard = self.lock()?;
        let (map, revision) = &mut *guard;
        for (i, cmp) in batch.compares.iter().enumerate() {
            let current = map.get(&cmp.key).map_or(0, |e| e.mod_revision);
            if current != cmp.revision {
                return Ok(Outcome::CompareFailed(i));
            }
        }
        if self.followers.is_some() && batch.ops.is_empty() {
            // As etcd: a transaction of compares alone writes nothing and keeps the revision.
            return Ok(Outcome::Applied(*revision));
        }
        *revision += 1;
        let rev = *revision;
        let mut changed = Vec::new();
        let shared = self.followers.is_some();
        for op in batch.ops {
            match op {
                Op::Put { key, value } => {
                    let entry = Entry {
                        value,
                        mod_revision: rev,
                    };
                    if shared {
                        changed.push((key.clone(), Some(entry.clone())));
                    }
                    map.insert(key, entry);
                }
                Op::Delete { key } => {
                    if map.remove(&key).is_some() && shared {
                        changed.push((key, None));
                    }
                }
                Op::DeletePrefix { prefix } => {
                    if shared {
                        changed.extend(
                            map.range(prefix.clone()..)
                                .take_while(|(k, _)| k.starts_with(&prefix))
                                .map(|(k, _)| (k.clone(), None)),
                        );
                    }
                    map.retain(|k, _| !k.starts_with(&prefix));
                }
            }
        }
        self.revision_tx.send_replace(rev);
        if shared {
            self.broadcast(Changeset {
                revision: rev,
                entries: changed,
            });
        }
        Ok(Outcome::Applied(rev))
    }

    fn revision(&self) -> Revision {
        *self.revision_tx.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision_tx.subscribe()
    }

    fn snapshot(&self) -> Result<(Revision, crate::Entries), StoreError> {
        let guard = self.lock()?;
        Ok((
            guard.1,
            guard
                .0
                .iter()
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
        ))
    }

    fn feed(&self, after: Revision) -> Option<Feed> {
        let followers = self.followers.as_ref()?;
        let (tx, rx) = tokio::sync::mpsc::channel(FEED_CAPACITY);
        // Under the contents' lock no batch commits in between: the feed starts right after
        // the current revision, or (asked for an older one it cannot replay) not at all.
        let guard = self.lock().ok()?;
        if guard.1 == after {
            followers.lock().ok()?.push(tx);
        }
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_store_refuses_every_call_instead_of_using_half_changed_data() {
        let store = std::sync::Arc::new(MemStore::new());
        let batch = || Batch {
            compares: vec![],
            ops: vec![Op::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }],
        };
        store.commit(batch()).unwrap();
        let held = store.clone();
        let panicked = std::thread::spawn(move || {
            let _guard = held.inner.lock();
            panic!("a panic while the map is held");
        })
        .join();
        assert!(panicked.is_err());
        let poisoned = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Poisoned(_)));
        assert!(poisoned(store.get(b"k").map(|_| ())));
        assert!(poisoned(store.scan_prefix(b"").map(|_| ())));
        assert!(poisoned(store.commit(batch()).map(|_| ())));
        assert_eq!(store.revision(), 1, "nothing committed after the panic");
    }
}

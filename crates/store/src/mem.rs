//! An in-memory [`Store`](crate::Store), for tests and for throwaway runs; same semantics, no disk.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

use crate::{Batch, Entry, Op, Outcome, Revision, Store, StoreError};

/// The entries by key and the revision of the last applied batch.
type Contents = (BTreeMap<Vec<u8>, Entry>, Revision);

/// A store held in a `BTreeMap`.
pub struct MemStore {
    inner: Mutex<Contents>,
    revision_tx: watch::Sender<Revision>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            inner: Mutex::new((BTreeMap::new(), 0)),
            revision_tx: watch::channel(0).0,
        }
    }
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
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
        *revision += 1;
        let rev = *revision;
        for op in batch.ops {
            match op {
                Op::Put { key, value } => {
                    map.insert(
                        key,
                        Entry {
                            value,
                            mod_revision: rev,
                        },
                    );
                }
                Op::Delete { key } => {
                    map.remove(&key);
                }
                Op::DeletePrefix { prefix } => map.retain(|k, _| !k.starts_with(&prefix)),
            }
        }
        self.revision_tx.send_replace(rev);
        Ok(Outcome::Applied(rev))
    }

    fn revision(&self) -> Revision {
        *self.revision_tx.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision_tx.subscribe()
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

//! An in-memory [`Store`](crate::Store), for tests and for throwaway runs; same semantics, no disk.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::{Batch, Entry, Op, Outcome, Revision, Store, StoreError};

/// A store held in a `BTreeMap`.
pub struct MemStore {
    inner: Mutex<(BTreeMap<Vec<u8>, Entry>, Revision)>,
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
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(guard.0.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        Ok(guard
            .0
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect())
    }

    fn commit(&self, batch: Batch) -> Result<Outcome, StoreError> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
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

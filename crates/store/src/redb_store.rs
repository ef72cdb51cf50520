//! The embedded default [`Store`](crate::Store): one redb file, one table of entries and one of
//! metadata (the global revision). Each batch is one redb write transaction committed with
//! `Durability::Immediate`, so it is on disk when `commit` returns; callers batch concurrent
//! writes into one commit to share the fsync.

use std::path::Path;
use std::sync::Mutex;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use crate::{Batch, Entry, Op, Outcome, Revision, Store, StoreError};

/// Key → 8-byte little-endian mod revision followed by the value.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Store metadata, today only `revision`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn decode(key: &[u8], raw: &[u8]) -> Result<Entry, StoreError> {
    let (rev, value) = raw
        .split_first_chunk::<8>()
        .ok_or_else(|| StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: "shorter than its revision header",
        })?;
    Ok(Entry {
        value: value.to_vec(),
        mod_revision: u64::from_le_bytes(*rev),
    })
}

/// A redb-backed store in one file.
pub struct RedbStore {
    db: Database,
    /// Serializes commits so compares and the revision bump are atomic with the write.
    commit_lock: Mutex<()>,
    revision_tx: watch::Sender<Revision>,
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`, creating its parent directory.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| open_err(Box::new(e)))?;
        }
        let db = Database::create(path).map_err(|e| open_err(Box::new(e)))?;
        // Make sure both tables exist so reads never see "table does not exist".
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(ENTRIES).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        let revision = {
            let read = db.begin_read().map_err(backend)?;
            let meta = read.open_table(META).map_err(backend)?;
            meta.get("revision")
                .map_err(backend)?
                .map_or(0, |v| v.value())
        };
        Ok(RedbStore {
            db,
            commit_lock: Mutex::new(()),
            revision_tx: watch::channel(revision).0,
        })
    }
}

impl Store for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        let read = self.db.begin_read().map_err(backend)?;
        let table = read.open_table(ENTRIES).map_err(backend)?;
        let found = table.get(key).map_err(backend)?;
        found.map(|raw| decode(key, raw.value())).transpose()
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        let read = self.db.begin_read().map_err(backend)?;
        let table = read.open_table(ENTRIES).map_err(backend)?;
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(prefix..).map_err(backend)? {
            let (k, v) = item.map_err(backend)?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key.to_vec(), decode(key, v.value())?));
        }
        Ok(out)
    }

    fn commit(&self, batch: Batch) -> Result<Outcome, StoreError> {
        let _serial = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut txn = self.db.begin_write().map_err(backend)?;
        txn.set_durability(Durability::Immediate).map_err(backend)?;
        let rev = self.revision() + 1;
        {
            let mut table = txn.open_table(ENTRIES).map_err(backend)?;
            for (i, cmp) in batch.compares.iter().enumerate() {
                let current = match table.get(cmp.key.as_slice()).map_err(backend)? {
                    Some(raw) => decode(&cmp.key, raw.value())?.mod_revision,
                    None => 0,
                };
                if current != cmp.revision {
                    // Dropping the transaction aborts it.
                    return Ok(Outcome::CompareFailed(i));
                }
            }
            let mut buf = Vec::new();
            for op in &batch.ops {
                match op {
                    Op::Put { key, value } => {
                        buf.clear();
                        buf.extend_from_slice(&rev.to_le_bytes());
                        buf.extend_from_slice(value);
                        table
                            .insert(key.as_slice(), buf.as_slice())
                            .map_err(backend)?;
                    }
                    Op::Delete { key } => {
                        table.remove(key.as_slice()).map_err(backend)?;
                    }
                    Op::DeletePrefix { prefix } => {
                        let doomed: Vec<Vec<u8>> = table
                            .range::<&[u8]>(prefix.as_slice()..)
                            .map_err(backend)?
                            .map_while(|item| {
                                let (k, _) = item.ok()?;
                                let k = k.value();
                                k.starts_with(prefix).then(|| k.to_vec())
                            })
                            .collect();
                        for k in doomed {
                            table.remove(k.as_slice()).map_err(backend)?;
                        }
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(backend)?;
            meta.insert("revision", rev).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
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

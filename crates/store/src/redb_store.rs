//! The embedded default [`Store`](crate::Store): one redb file, one table of entries and one of
//! metadata (the global revision). Each batch is one redb write transaction committed with
//! `Durability::Immediate`, so it is on disk when `commit` returns; callers batch concurrent
//! writes into one commit to share the fsync.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use crate::{Batch, Entry, Op, Outcome, Revision, Store, StoreError};

/// Key → 8-byte little-endian mod revision followed by the value.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");
/// Store metadata, today only `revision`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(Box::new(e.into()))
}

/// Whether redb wants the database closed and opened again before it is used further: after an
/// I/O error (a full disk, say) every later write fails with `PreviousIo` until then.
fn needs_reopen(e: &StoreError) -> bool {
    match e {
        StoreError::Backend(inner) => matches!(
            inner.downcast_ref::<redb::Error>(),
            Some(redb::Error::Io(_) | redb::Error::PreviousIo)
        ),
        StoreError::Damaged { .. } => true,
        _ => false,
    }
}

/// The text of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a page did not decode".to_string())
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
///
/// Two kinds of damage are errors, not panics or silence: a store file of zero bytes (a
/// truncated copy or a failed restore; a new store is created under a temporary name and renamed
/// into place, so a crash never leaves one) is refused at open, and a page redb cannot decode
/// (redb panics on some) becomes [`StoreError::Damaged`] naming the file. After an I/O error the
/// database is closed and opened again by the next operation, so writes resume once the disk
/// has room again instead of failing until a restart.
pub struct RedbStore {
    path: PathBuf,
    /// `None` once an I/O error closed it, until the next operation opens it again.
    ///
    /// Poisoning of this lock and of `commit_lock` is ignored on purpose (`into_inner`), unlike
    /// the daemons' policy (`cairn_cli::LockOrExit`): a library does not stop the process, and
    /// neither lock guards data a panic could leave half-changed. This one holds an
    /// `Option<Database>` that is only ever replaced whole, and a panic inside redb is caught by
    /// `guarded` (the database is then closed and opened afresh); redb's own transactions keep
    /// the file consistent.
    db: RwLock<Option<Database>>,
    /// Serializes commits so compares and the revision bump are atomic with the write; it
    /// guards no data (`()`), only their order (see `db` on poisoning).
    commit_lock: Mutex<()>,
    revision_tx: watch::Sender<Revision>,
}

impl RedbStore {
    /// Opens the store file at `path`, or creates it (and its parent directory) when there is
    /// none.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.display().to_string(),
            source: e,
        };
        if let Some(dir) = path.parent() {
            // A new data directory is its owner's only; an operator's existing one is left as
            // it is (the store file itself is 0600 either way).
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| open_err(Box::new(e)))?;
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(StoreError::Damaged {
                    path: path.display().to_string(),
                    detail: "the file is empty (0 bytes), so its data is gone; restore it from \
                             a backup, or remove it to start with an empty store"
                        .to_string(),
                });
            }
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                // A store written by an older version, readable by other local users.
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| open_err(Box::new(e)))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_new(path).map_err(open_err)?;
            }
            Err(e) => return Err(open_err(Box::new(e))),
        }
        let db = open_database(path)?;
        let revision = guarded(path, || {
            let read = db.begin_read().map_err(backend)?;
            let meta = read.open_table(META).map_err(backend)?;
            Ok(meta
                .get("revision")
                .map_err(backend)?
                .map_or(0, |v| v.value()))
        })?;
        Ok(RedbStore {
            path: path.to_path_buf(),
            db: RwLock::new(Some(db)),
            commit_lock: Mutex::new(()),
            revision_tx: watch::channel(revision).0,
        })
    }

    /// Runs `f` on the open database (opening it again first if an I/O error closed it); a
    /// panic inside redb or an I/O error closes it so that the next call starts afresh.
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = {
            // A poisoned lock is used as it is: see `RedbStore::db`.
            let mut guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                drop(guard);
                let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(open_database(&self.path)?);
                }
                drop(slot);
                guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            }
            match guard.as_ref() {
                Some(db) => guarded(&self.path, || f(db)),
                // Closed again by another caller in between: report, the next call reopens.
                None => Err(StoreError::Backend(Box::new(redb::Error::PreviousIo))),
            }
        };
        if let Err(e) = &result
            && needs_reopen(e)
        {
            // Dropping the Database closes the file; the next operation opens it again.
            *self.db.write().unwrap_or_else(|p| p.into_inner()) = None;
        }
        result
    }
}

/// One batch as one write transaction, durable when it returns: compares first (a failing one
/// aborts the transaction), then the ops, then the revision.
fn write_batch(db: &Database, batch: &Batch, rev: Revision) -> Result<Outcome, StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
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
                    // Collected first (the range borrows the table); a key that cannot be read
                    // fails the whole batch rather than leaving part of the prefix behind.
                    let mut doomed: Vec<Vec<u8>> = Vec::new();
                    for item in table.range::<&[u8]>(prefix.as_slice()..).map_err(backend)? {
                        let (k, _) = item.map_err(backend)?;
                        let k = k.value();
                        if !k.starts_with(prefix) {
                            break;
                        }
                        doomed.push(k.to_vec());
                    }
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
    Ok(Outcome::Applied(rev))
}

/// Creates an empty store under a temporary name beside `path` and renames it into place, so
/// that `path` is either absent or a whole store.
fn create_new(path: &Path) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".new");
    let temp = PathBuf::from(temp);
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Box::new(e)),
    }
    // Created 0600 here, so redb opens a file only its owner can read.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    {
        let db = Database::create(&temp)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(ENTRIES)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
    }
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// redb's page cache. Its default (1 GiB) would in time hold the whole file, but the daemons
/// keep their state in memory and read the store only when they start: the cache only has to
/// carry a write's B-tree path, and the kernel's page cache covers the rest. At 100,000
/// catalog instances the default made up a quarter of catalogd's memory.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Opens an existing store file and makes sure both tables exist, so reads never see "table
/// does not exist".
fn open_database(path: &Path) -> Result<Database, StoreError> {
    guarded(path, || {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                source: Box::new(e),
            })?;
        let txn = db.begin_write().map_err(backend)?;
        {
            txn.open_table(ENTRIES).map_err(backend)?;
            txn.open_table(META).map_err(backend)?;
        }
        txn.commit().map_err(backend)?;
        Ok(db)
    })
}

/// Runs `f`, turning a panic inside redb (it panics on some pages that do not decode) into
/// [`StoreError::Damaged`] naming the file.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(StoreError::Damaged {
            path: path.display().to_string(),
            detail: format!(
                "redb could not read it ({}); restore it from a backup",
                panic_text(&*payload)
            ),
        })
    })
}

impl Store for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(backend)?;
            let table = read.open_table(ENTRIES).map_err(backend)?;
            let found = table.get(key).map_err(backend)?;
            found.map(|raw| decode(key, raw.value())).transpose()
        })
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.with_db(|db| {
            let read = db.begin_read().map_err(backend)?;
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
        })
    }

    fn commit(&self, batch: Batch) -> Result<Outcome, StoreError> {
        // A poisoned lock is used as it is: it orders commits and guards no data.
        let _serial = self.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let rev = self.revision() + 1;
        let outcome = self.with_db(|db| write_batch(db, &batch, rev))?;
        if let Outcome::Applied(rev) = outcome {
            self.revision_tx.send_replace(rev);
        }
        Ok(outcome)
    }

    fn revision(&self) -> Revision {
        *self.revision_tx.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision_tx.subscribe()
    }
}

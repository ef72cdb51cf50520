//! A damaged store file is an error naming the file, never a panic or a silent empty start.

use std::path::Path;

use crate::{Batch, RedbStore, Store, StoreError};

const KEYS: usize = 2000;

fn value(i: usize) -> Vec<u8> {
    format!("{i:05}-").repeat(50).into_bytes()
}

fn fill(path: &Path) {
    let store = RedbStore::open(path).expect("open");
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(50) {
        let mut b = Batch::default();
        for &i in chunk {
            b.put(format!("k/{i:05}"), value(i));
        }
        store.commit(b).expect("commit");
    }
}

#[test]
fn a_zero_length_file_is_refused_not_started_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(&path, b"").unwrap();
    let err = RedbStore::open(&path).err().expect("refused");
    assert!(matches!(err, StoreError::Damaged { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("empty (0 bytes)"), "{text}");
    // Nothing was written over it.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn a_new_store_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    drop(RedbStore::open(&path).unwrap());
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["store.redb".to_string()]);
    // And it opens again as an empty store.
    assert_eq!(RedbStore::open(&path).unwrap().revision(), 0);
}

/// Overwrites each page of a filled store in turn: no open or full read panics, and damage redb
/// cannot decode is reported as `Damaged` with the file's name (redb panicked on some of these
/// pages before). redb keeps no checksums on leaf pages, so damage inside a value can go unseen:
/// what is asserted is that every read that succeeds still returns every key.
#[test]
fn corrupted_pages_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let pristine_path = dir.path().join("pristine.redb");
    fill(&pristine_path);
    let pristine = std::fs::read(&pristine_path).unwrap();
    let path = dir.path().join("store.redb");
    let mut damaged_reports = 0;
    for page in 0..pristine.len() / 4096 {
        let mut bytes = pristine.clone();
        let start = page * 4096 + 1024;
        bytes[start..start + 512].fill(0xAB);
        std::fs::write(&path, &bytes).unwrap();
        let read =
            std::panic::catch_unwind(|| RedbStore::open(&path).and_then(|s| s.scan_prefix(b"k/")));
        let read = read.unwrap_or_else(|_| panic!("page {page}: the store panicked"));
        match read {
            Ok(entries) => {
                assert_eq!(entries.len(), KEYS, "page {page}: entries lost silently");
            }
            Err(e @ StoreError::Damaged { .. }) => {
                assert!(e.to_string().contains("store.redb"), "{e}");
                damaged_reports += 1;
            }
            Err(_) => {}
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert!(damaged_reports > 0, "no page was reported as damaged");
}

/// The store file is its owner's only: created 0600, and one an older version left readable by
/// others is narrowed when opened; its data stays.
#[test]
fn the_store_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/store.redb");
    {
        let store = RedbStore::open(&path).expect("create");
        let mut b = Batch::default();
        b.put("k", b"v".to_vec());
        store.commit(b).expect("commit");
    }
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(
        store.get(b"k").expect("read").map(|e| e.value),
        Some(b"v".to_vec())
    );
}

//! The behaviour every [`Store`](crate::Store) implementation must share, run against each.

use crate::{Batch, Compare, MemStore, Op, Outcome, RedbStore, Store};

fn exercise(store: &dyn Store) {
    assert_eq!(store.revision(), 0);
    let mut b = Batch::default();
    b.put("a/1", "one");
    b.put("a/2", "two");
    b.put("b/1", "bee");
    assert_eq!(store.commit(b).unwrap(), Outcome::Applied(1));
    assert_eq!(store.get(b"a/1").unwrap().unwrap().value, b"one");
    assert_eq!(store.get(b"a/1").unwrap().unwrap().mod_revision, 1);
    let keys: Vec<_> = store
        .scan_prefix(b"a/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"a/1".to_vec(), b"a/2".to_vec()]);

    // A failing compare writes nothing and keeps the revision.
    let failing = Batch {
        compares: vec![Compare {
            key: b"a/1".to_vec(),
            revision: 7,
        }],
        ops: vec![Op::Delete {
            key: b"a/2".to_vec(),
        }],
    };
    assert_eq!(store.commit(failing).unwrap(), Outcome::CompareFailed(0));
    assert!(store.get(b"a/2").unwrap().is_some());
    assert_eq!(store.revision(), 1);

    // Revision 0 means "absent".
    let create = Batch {
        compares: vec![Compare {
            key: b"c".to_vec(),
            revision: 0,
        }],
        ops: vec![Op::Put {
            key: b"c".to_vec(),
            value: b"see".to_vec(),
        }],
    };
    assert_eq!(store.commit(create.clone()).unwrap(), Outcome::Applied(2));
    assert_eq!(store.commit(create).unwrap(), Outcome::CompareFailed(0));

    let mut rx = store.subscribe();
    let del = Batch {
        compares: vec![],
        ops: vec![Op::DeletePrefix {
            prefix: b"a/".to_vec(),
        }],
    };
    assert_eq!(store.commit(del).unwrap(), Outcome::Applied(3));
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 3);
    assert!(store.scan_prefix(b"a/").unwrap().is_empty());
    assert_eq!(store.scan_prefix(b"").unwrap().len(), 2);
}

#[test]
fn mem_store_contract() {
    exercise(&MemStore::new());
}

#[test]
fn redb_store_contract_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/store.redb");
    {
        let store = RedbStore::open(&path).unwrap();
        exercise(&store);
    }
    let reopened = RedbStore::open(&path).unwrap();
    assert_eq!(reopened.revision(), 3);
    assert_eq!(reopened.get(b"c").unwrap().unwrap().mod_revision, 2);
    assert_eq!(reopened.get(b"b/1").unwrap().unwrap().value, b"bee");
}

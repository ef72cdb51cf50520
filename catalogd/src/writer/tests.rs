//! The writer's failure paths, driven through stores that fail or panic on commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use cairn_store::{Batch, Entry, MemStore, Outcome, Revision, Store, StoreError};

use super::*;

/// A MemStore whose commits fail while `failing` is set, and panic while `panicking` is.
#[derive(Default)]
struct FaultyStore {
    inner: MemStore,
    failing: AtomicBool,
    panicking: AtomicBool,
}

impl Store for FaultyStore {
    fn get(&self, key: &[u8]) -> Result<Option<Entry>, StoreError> {
        self.inner.get(key)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Entry)>, StoreError> {
        self.inner.scan_prefix(prefix)
    }
    fn commit(&self, batch: Batch) -> Result<Outcome, StoreError> {
        assert!(
            !self.panicking.load(Ordering::SeqCst),
            "store fault injected"
        );
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend("No space left on device".into()));
        }
        self.inner.commit(batch)
    }
    fn revision(&self) -> Revision {
        self.inner.revision()
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<Revision> {
        self.inner.subscribe()
    }
}

fn parts(store: Arc<FaultyStore>) -> (WriterParts, Arc<ArcSwap<State>>, Arc<StoreHealth>) {
    let current = Arc::new(ArcSwap::from_pointee(State::default()));
    let health = Arc::new(StoreHealth::default());
    let parts = WriterParts {
        store,
        current: current.clone(),
        registry: Arc::new(Registry::default()),
        timers: Arc::new(Timers::default()),
        metrics: Arc::new(Metrics::default()),
        store_health: health.clone(),
        config: WriterConfig {
            node: "n1".into(),
            datacenter: "dc1".into(),
            min_session_ttl: Duration::from_secs(10),
            enable_script_checks: false,
        },
        replica: None,
        catalog_log: Arc::new(crate::whole_catalog::ChangeLog::new(1)),
    };
    (parts, current, health)
}

fn put(key: &str) -> Command {
    Command::KvPut(KvPut {
        key: key.into(),
        value: b"v".to_vec(),
        flags: None,
        cas: None,
        acquire: None,
        release: None,
    })
}

#[tokio::test]
async fn a_failing_store_refuses_writes_and_reports_until_it_takes_them_again() {
    let store = Arc::new(FaultyStore::default());
    let (parts, current, health) = parts(store.clone());
    let (writer, _thread) = spawn_with(16, parts, || panic!("the writer must not crash"));

    writer.submit(put("a")).await.expect("first write");
    assert!(health.is_writable());

    store.failing.store(true, Ordering::SeqCst);
    let refused = writer.submit(put("b")).await.expect_err("refused");
    assert!(matches!(refused, WriteError::Store(_)), "{refused}");
    assert!(refused.to_string().contains("No space left"), "{refused}");
    assert!(!health.is_writable());
    assert!(
        current.load().kv.get("b").is_none(),
        "a refused write left a trace"
    );

    // Space is back: the next write goes through without a restart and clears the fault.
    store.failing.store(false, Ordering::SeqCst);
    writer.submit(put("b")).await.expect("write after recovery");
    assert!(health.is_writable());
    assert!(current.load().kv.get("b").is_some());
}

#[tokio::test]
async fn a_panic_on_the_writer_thread_runs_the_crash_policy() {
    let store = Arc::new(FaultyStore::default());
    store.panicking.store(true, Ordering::SeqCst);
    let (parts, _current, _health) = parts(store);
    let crashed = Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    let (writer, thread) = spawn_with(16, parts, move || flag.store(true, Ordering::SeqCst));
    let answer = writer.submit(put("a")).await;
    assert!(matches!(answer, Err(WriteError::Closed)), "{answer:?}");
    tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join")
        .expect("the thread ends after the policy ran");
    assert!(
        crashed.load(Ordering::SeqCst),
        "the crash policy did not run"
    );
}

//! Whether the store takes writes. The writer records each commit's outcome; while commits fail
//! (a full disk, say) catalogd reports no leader, as a Consul server without quorum does, so
//! readiness probes and clients see that writes cannot succeed. A probe commits an empty batch
//! once a second while faulted, so the fault clears when the disk has room again even if no
//! client writes.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use cairn_store::{Batch, Store};

/// How often a faulted store is tried again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The store's last commit outcome: `None` while it takes writes, the error while it does not.
#[derive(Default)]
pub struct StoreHealth {
    fault: ArcSwapOption<String>,
}

impl StoreHealth {
    /// A commit failed with `why`.
    pub fn failed(&self, why: &str) {
        if self.fault.load().is_none() {
            tracing::error!(error = %why, "the store stopped taking writes; reporting no leader until it does again");
        }
        self.fault.store(Some(Arc::new(why.to_string())));
    }

    /// A commit succeeded.
    pub fn succeeded(&self) {
        if self.fault.swap(None).is_some() {
            tracing::info!("the store takes writes again");
        }
    }

    /// Why the store does not take writes, if it does not.
    pub fn fault(&self) -> Option<Arc<String>> {
        self.fault.load_full()
    }

    pub fn is_writable(&self) -> bool {
        self.fault.load().is_none()
    }
}

/// Tries an empty commit once a second while the store is faulted (runs until aborted).
pub async fn probe(store: Arc<dyn Store>, health: Arc<StoreHealth>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        if health.is_writable() {
            continue;
        }
        let store = store.clone();
        match tokio::task::spawn_blocking(move || store.commit(Batch::default())).await {
            Ok(Ok(_)) => health.succeeded(),
            Ok(Err(e)) => health.failed(&e.to_string()),
            Err(e) => health.failed(&format!("store probe failed: {e}")),
        }
    }
}

//! The housekeeper: rotates live tasks' logs and removes old terminal sandboxes, on timers,
//! until the agent stops.

use std::sync::Arc;
use std::time::Duration;

use cairn_marathon::now_millis;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::sandbox;

/// How often live tasks' logs are checked for rotation.
const ROTATE_EVERY: Duration = Duration::from_secs(2);
/// How often old terminal sandboxes are collected.
const GC_EVERY: Duration = Duration::from_secs(60);

/// Rotates logs and collects old sandboxes until `stop`.
pub(super) async fn run(shared: Arc<Shared>, rotate_bytes: u64, stop: CancellationToken) {
    let mut rotate = tokio::time::interval(ROTATE_EVERY);
    let mut gc = tokio::time::interval(GC_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = rotate.tick() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.rotate_logs(rotate_bytes)).await;
            }
            _ = gc.tick() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.collect_garbage()).await;
            }
        }
    }
}

impl Shared {
    /// Rotates the logs of live tasks.
    fn rotate_logs(&self, max: u64) {
        let live: Vec<String> = self
            .records()
            .into_iter()
            .filter(|r| !r.state.is_terminal())
            .map(|r| r.spec.id)
            .collect();
        for id in live {
            let sb = self.sandbox(&id);
            for f in [sandbox::STDOUT_FILE, sandbox::STDERR_FILE] {
                match crate::logs::rotate_if_needed(&sb.join(f), max, crate::logs::KEEP) {
                    Ok(true) => tracing::debug!(task = %id, file = f, "log rotated"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(task = %id, file = f, error = %e, "cannot rotate log"),
                }
            }
        }
    }

    /// Removes old terminal sandboxes (see [`sandbox::gc_victims`]).
    fn collect_garbage(&self) {
        let finished: Vec<(String, u64)> = self
            .records()
            .into_iter()
            .filter(|r| r.state.is_terminal())
            .map(|r| (r.spec.id.clone(), r.finished_at.unwrap_or(r.updated_at)))
            .collect();
        for id in sandbox::gc_victims(&finished, now_millis()) {
            let sb = self.sandbox(&id);
            match std::fs::remove_dir_all(&sb) {
                Ok(()) => tracing::info!(task = %id, "removed an old terminal sandbox"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "cannot remove an old sandbox");
                    continue;
                }
            }
            self.forget(&id);
        }
    }
}

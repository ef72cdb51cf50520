//! The housekeeper: removes old terminal sandboxes (and their workspaces), on a timer, until
//! the agent stops. (Logs are rotated by their writers, see [`crate::logs`].)

use std::sync::Arc;
use std::time::Duration;

use cairn_marathon::now_millis;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::sandbox;

/// How often old terminal sandboxes are collected.
const GC_EVERY: Duration = Duration::from_secs(60);

/// Collects old sandboxes until `stop`.
pub(super) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut gc = tokio::time::interval(GC_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = gc.tick() => {
                let s = shared.clone();
                // A panic in the collection is the blocking pool's to report; the next tick
                // tries again.
                let _ = tokio::task::spawn_blocking(move || s.collect_garbage()).await;
            }
        }
    }
}

impl Shared {
    /// Removes old terminal sandboxes (see [`sandbox::gc_victims`]).
    fn collect_garbage(&self) {
        let finished: Vec<(String, u64)> = self
            .records()
            .into_iter()
            .filter(|r| r.state.is_terminal())
            .map(|r| (r.spec.id.clone(), r.finished_at.unwrap_or(r.updated_at)))
            .collect();
        for id in sandbox::gc_victims(&finished, now_millis()) {
            // The workspace first: the record must stay while anything of the task does.
            let ws = self.workspace(&id);
            match std::fs::remove_dir_all(&ws) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "cannot remove an old workspace");
                    continue;
                }
            }
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

//! Task status updates on their way to offerd: a FIFO queue every state change is pushed to, and
//! one sender that posts whatever is queued as a [`StatusBatch`] at most every
//! [`BATCH_INTERVAL`], removing updates only once offerd acknowledged them (2xx) and retrying in
//! order with backoff otherwise. One sender only, so acknowledgements always match the front of
//! the queue. A 404 means offerd does not know the node: the agent registers again (the
//! registration carries every task's latest status) and the queue keeps being retried.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_cli::LockOrExit as _;
use cairn_client::{Backoff, CatalogClient, ClientError, Method};
use cairn_marathon::{StatusBatch, TaskStatusUpdate};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Least time between two posts.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(50);
/// Most updates in one post.
pub const MAX_BATCH: usize = 500;
/// How long shutdown waits for queued updates to be delivered.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The queue of updates not yet acknowledged.
#[derive(Default)]
pub struct StatusQueue {
    queue: Mutex<VecDeque<TaskStatusUpdate>>,
    notify: Notify,
}

impl StatusQueue {
    /// The queue, under the workspace's lock policy (a poisoned lock stops the agent).
    fn queue(&self) -> MutexGuard<'_, VecDeque<TaskStatusUpdate>> {
        self.queue.lock_or_exit("taskrun status queue")
    }

    pub fn push(&self, update: TaskStatusUpdate) {
        self.queue().push_back(update);
        self.notify.notify_one();
    }

    pub fn len(&self) -> usize {
        self.queue().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest `max` updates, left in the queue.
    fn peek(&self, max: usize) -> Vec<TaskStatusUpdate> {
        self.queue().iter().take(max).cloned().collect()
    }

    /// Drops the `n` oldest updates (acknowledged).
    fn ack(&self, n: usize) {
        let mut q = self.queue();
        let n = n.min(q.len());
        q.drain(..n);
    }
}

/// Posts one batch of the oldest queued updates; `Ok(0)` when there was nothing to send.
pub async fn send_once(
    queue: &StatusQueue,
    client: &CatalogClient,
    node: &str,
) -> Result<usize, ClientError> {
    let updates = queue.peek(MAX_BATCH);
    if updates.is_empty() {
        return Ok(0);
    }
    let n = updates.len();
    let batch = StatusBatch { updates };
    client
        .send_json(
            Method::POST,
            &["v1", "agents", node, "status"],
            Some(&batch),
        )
        .await?;
    queue.ack(n);
    Ok(n)
}

/// The sender: runs until `stop` turns true, then tries for [`FLUSH_TIMEOUT`] to deliver what is
/// still queued.
pub async fn run_sender(
    queue: Arc<StatusQueue>,
    client: CatalogClient,
    node: String,
    reregister: Arc<Notify>,
    stop: CancellationToken,
) {
    let backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    let mut failures = 0u32;
    loop {
        if stop.is_cancelled() {
            break;
        }
        if queue.is_empty() {
            tokio::select! {
                _ = queue.notify.notified() => {}
                () = stop.cancelled() => continue,
            }
        }
        match send_once(&queue, &client, &node).await {
            Ok(n) => {
                if failures > 0 {
                    tracing::info!(failures, "status updates delivered again");
                }
                failures = 0;
                if n > 0 {
                    tracing::debug!(updates = n, "status updates delivered");
                }
                tokio::select! {
                    _ = tokio::time::sleep(BATCH_INTERVAL) => {}
                    () = stop.cancelled() => {}
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if e.status() == Some(404) {
                    reregister.notify_one();
                }
                if failures == 1 {
                    tracing::warn!(error = %e, queued = queue.len(), "cannot deliver status updates; retrying");
                } else {
                    tracing::debug!(error = %e, failures, "status updates still not delivered");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.delay(failures)) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
    }
    flush(&queue, &client, &node, FLUSH_TIMEOUT).await;
}

/// Tries to deliver everything queued within `timeout`.
pub async fn flush(queue: &StatusQueue, client: &CatalogClient, node: &str, timeout: Duration) {
    let attempt = async {
        while !queue.is_empty() {
            if send_once(queue, client, node).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    if tokio::time::timeout(timeout, attempt).await.is_err() {
        tracing::warn!(
            queued = queue.len(),
            "shutting down with undelivered status updates (the next registration carries every task's state)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_marathon::TaskState;

    fn update(id: &str) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: id.into(),
            state: TaskState::Running,
            message: String::new(),
            timestamp: 1,
            healthy: None,
        }
    }

    #[test]
    fn acknowledged_updates_leave_in_order() {
        let q = StatusQueue::default();
        for i in 0..5 {
            q.push(update(&format!("t{i}")));
        }
        let first = q.peek(3);
        assert_eq!(first.len(), 3);
        assert_eq!(q.len(), 5, "peeking removes nothing");
        q.push(update("t5"));
        q.ack(3);
        let rest: Vec<String> = q.peek(10).into_iter().map(|u| u.task_id).collect();
        assert_eq!(rest, ["t3", "t4", "t5"]);
        q.ack(10);
        assert!(q.is_empty());
    }
}

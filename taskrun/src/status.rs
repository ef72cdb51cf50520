//! Task status updates on their way to offerd: a queue every state change is pushed to — the
//! newest update per task, bounded by [`MAX_QUEUED`] tasks — and one sender that posts whatever is queued as a [`StatusBatch`] at most every
//! [`BATCH_INTERVAL`], removing updates only once offerd acknowledged them (2xx) and retrying in
//! order with backoff otherwise. A 404 means offerd does not know the node: the agent registers again (the
//! registration carries every task's latest status) and the queue keeps being retried.

use std::collections::{BTreeMap, HashMap};
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

/// Most tasks with an update waiting; past it the oldest waiting update is dropped (offerd
/// still learns that task's latest state from the next registration, which carries every task).
pub const MAX_QUEUED: usize = 10_000;

/// The updates not yet acknowledged: the newest per task (only it matters to offerd), in the
/// order of their last change. Each has a sequence number, so an acknowledgement removes exactly
/// what was sent and never a newer update that replaced it meanwhile.
#[derive(Default)]
pub struct StatusQueue {
    queue: Mutex<Pending>,
    notify: Notify,
}

#[derive(Default)]
struct Pending {
    next_seq: u64,
    /// Sequence number → update, oldest first.
    by_seq: BTreeMap<u64, TaskStatusUpdate>,
    /// Task id → the sequence number of its waiting update.
    by_task: HashMap<String, u64>,
    /// Updates dropped because the queue was full, not yet reported.
    dropped: u64,
}

/// Updates taken for sending, with what [`StatusQueue::ack`] needs.
pub struct Sending {
    pub updates: Vec<TaskStatusUpdate>,
    seqs: Vec<u64>,
}

impl StatusQueue {
    /// The queue, under the workspace's lock policy (a poisoned lock stops the agent).
    fn queue(&self) -> MutexGuard<'_, Pending> {
        self.queue.lock_or_exit("taskrun status queue")
    }

    /// Queues `update`, replacing the task's update still waiting, if any.
    pub fn push(&self, update: TaskStatusUpdate) {
        {
            let mut q = self.queue();
            let seq = q.next_seq;
            q.next_seq += 1;
            if let Some(old) = q.by_task.insert(update.task_id.clone(), seq) {
                q.by_seq.remove(&old);
            }
            q.by_seq.insert(seq, update);
            while q.by_seq.len() > MAX_QUEUED {
                if let Some((_, oldest)) = q.by_seq.pop_first() {
                    q.by_task.remove(&oldest.task_id);
                    q.dropped += 1;
                }
            }
            if q.dropped > 0 && q.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = q.dropped,
                    max = MAX_QUEUED,
                    "status queue full: dropping the oldest updates (the next registration carries every task's state)"
                );
            }
        }
        self.notify.notify_one();
    }

    /// Tasks with an update waiting.
    pub fn len(&self) -> usize {
        self.queue().by_seq.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest `max` updates, left in the queue.
    fn peek(&self, max: usize) -> Sending {
        let q = self.queue();
        let (seqs, updates) = q
            .by_seq
            .iter()
            .take(max)
            .map(|(seq, u)| (*seq, u.clone()))
            .unzip();
        Sending { updates, seqs }
    }

    /// Removes what was sent (acknowledged), unless a newer update replaced it meanwhile.
    fn ack(&self, sent: &[u64]) {
        let mut q = self.queue();
        for seq in sent {
            if let Some(u) = q.by_seq.remove(seq) {
                q.by_task.remove(&u.task_id);
            }
        }
    }
}

/// Posts one batch of the oldest queued updates; `Ok(0)` when there was nothing to send.
pub async fn send_once(
    queue: &StatusQueue,
    client: &CatalogClient,
    node: &str,
) -> Result<usize, ClientError> {
    let Sending { updates, seqs } = queue.peek(MAX_BATCH);
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
    queue.ack(&seqs);
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

    fn update_in(id: &str, state: TaskState, timestamp: u64) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: id.into(),
            state,
            message: String::new(),
            timestamp,
            healthy: None,
        }
    }

    fn ids(q: &StatusQueue) -> Vec<String> {
        q.peek(usize::MAX)
            .updates
            .into_iter()
            .map(|u| u.task_id)
            .collect()
    }

    #[test]
    fn acknowledged_updates_leave_in_order() {
        let q = StatusQueue::default();
        for i in 0..5 {
            q.push(update(&format!("t{i}")));
        }
        let first = q.peek(3);
        assert_eq!(first.updates.len(), 3);
        assert_eq!(q.len(), 5, "peeking removes nothing");
        q.push(update("t5"));
        q.ack(&first.seqs);
        assert_eq!(ids(&q), ["t3", "t4", "t5"]);
        q.ack(&q.peek(10).seqs);
        assert!(q.is_empty());
    }

    /// A task changing state again and again while offerd is away holds one entry: its newest.
    #[test]
    fn only_the_newest_update_per_task_waits() {
        let q = StatusQueue::default();
        for round in 0..100_000u64 {
            let state = if round % 2 == 0 {
                TaskState::Running
            } else {
                TaskState::Killing
            };
            q.push(update_in(&format!("t{}", round % 10), state, round));
        }
        assert_eq!(q.len(), 10);
        let waiting = q.peek(usize::MAX).updates;
        assert!(waiting.iter().all(|u| u.timestamp >= 100_000 - 10));
        // Oldest change first.
        assert_eq!(waiting[0].task_id, "t0");
        assert_eq!(waiting[9].task_id, "t9");
    }

    /// An update that replaced one in flight survives that one's acknowledgement.
    #[test]
    fn a_newer_update_survives_the_ack_of_the_one_it_replaced() {
        let q = StatusQueue::default();
        q.push(update_in("a", TaskState::Running, 1));
        q.push(update_in("b", TaskState::Running, 1));
        let sending = q.peek(10);
        q.push(update_in("a", TaskState::Killed, 2));
        q.ack(&sending.seqs);
        let left = q.peek(10).updates;
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].task_id.as_str(), left[0].state),
            ("a", TaskState::Killed)
        );
    }

    /// More distinct tasks than the bound: the oldest updates go, the queue stays bounded.
    #[test]
    fn the_queue_is_bounded() {
        let q = StatusQueue::default();
        for i in 0..MAX_QUEUED + 500 {
            q.push(update(&format!("t{i}")));
        }
        assert_eq!(q.len(), MAX_QUEUED);
        let waiting = ids(&q);
        assert_eq!(waiting[0], "t500");
        assert_eq!(waiting[MAX_QUEUED - 1], format!("t{}", MAX_QUEUED + 499));
    }
}

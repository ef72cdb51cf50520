//! One supervisor per task, from acceptance (or adoption) to its terminal state, the same for
//! both drivers ([`Driver`]: [`super::exec_driver`] for processes, [`super::docker_driver`] for
//! containers): record STAGING, launch (unless a kill came first), record RUNNING — a task whose
//! STAGING cannot be saved is not launched, one whose RUNNING cannot be saved is killed at once,
//! and both fail with the reason: never RUNNING without a record — then wait for
//! the end or a kill — a kill records KILLING, drains a running task out of the catalog
//! ([`crate::drain`]) and stops it — and record how it ended before releasing what the task held
//! (its cgroup, its container).

use std::sync::Arc;
use std::time::Duration;

use cairn_marathon::{TaskState, now_millis};
use cairn_wire::CatalogDeregistration;
use tokio::sync::mpsc;

use super::Shared;
use super::docker_driver::ContainerTask;
use super::exec_driver::ProcessTask;
use crate::exec::{self, Proc};
use crate::outcome::{KillReport, Outcome};
use crate::sandbox::TaskRecord;

/// How long a kill waits for the catalog to deregister the task's service before draining.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// How a supervisor begins.
pub(super) enum Start {
    New,
    /// An exec task started by an earlier agent.
    Adopted(Proc),
    /// A Docker task started by an earlier agent (its record holds the container id).
    AdoptedContainer,
}

/// What a launch came to.
pub(super) enum Launched<T> {
    /// Running; the record carries its identity (pid, container).
    Running(T),
    /// A kill arrived during the launch; whatever was begun is undone.
    Abandoned,
    /// It could not start: why.
    Failed(String),
}

/// A task's driver: how to launch, follow, stop and release one task.
pub(super) trait Driver: Sized + Send {
    /// How the task ended, before it becomes an [`Outcome`].
    type Ended: Send;

    /// Starts the task whose STAGING state is recorded.
    async fn launch(
        shared: &Shared,
        rec: &mut TaskRecord,
        kill_rx: &mut mpsc::UnboundedReceiver<()>,
    ) -> Launched<Self>;

    /// Waits until the task has ended by itself.
    async fn wait(&mut self) -> Self::Ended;

    /// Stops the task (its grace period, then by force) and waits for it to end.
    async fn stop(&mut self, grace: Duration) -> (Self::Ended, KillReport);

    /// How it ended, all things considered.
    async fn outcome(
        &mut self,
        rec: &TaskRecord,
        ended: Self::Ended,
        killed: Option<KillReport>,
    ) -> Outcome;

    /// Frees what the task held, once its terminal state is recorded.
    async fn release(self, shared: &Shared, rec: &TaskRecord);
}

/// One task from acceptance (or adoption) to its terminal state.
pub(super) async fn supervise(
    shared: Arc<Shared>,
    rec: TaskRecord,
    start: Start,
    kill_rx: mpsc::UnboundedReceiver<()>,
) {
    match start {
        Start::AdoptedContainer => match ContainerTask::adopted(&shared, &rec) {
            Some(task) => follow(&shared, rec, task, kill_rx).await,
            None => {
                let mut rec = rec;
                rec.set_state(
                    TaskState::Failed,
                    "no container recorded for the task",
                    now_millis(),
                );
                shared.commit_end(&rec).await;
            }
        },
        Start::New if crate::container::wants_docker(&rec.spec) => {
            start_new::<ContainerTask>(&shared, rec, kill_rx).await
        }
        Start::New => start_new::<ProcessTask>(&shared, rec, kill_rx).await,
        Start::Adopted(proc) => {
            let task = ProcessTask::adopted(&shared, &rec, proc);
            follow(&shared, rec, task, kill_rx).await
        }
    }
}

/// A task accepted here: recorded, launched, then followed.
async fn start_new<D: Driver>(
    shared: &Shared,
    mut rec: TaskRecord,
    mut kill_rx: mpsc::UnboundedReceiver<()>,
) {
    if let Err(e) = shared.commit(&rec).await {
        // Not recorded, not launched.
        rec.set_state(TaskState::Failed, e.to_string(), now_millis());
        shared.commit_end(&rec).await;
        return;
    }
    if kill_rx.try_recv().is_ok() {
        killed_before_start(shared, &mut rec).await;
        return;
    }
    match D::launch(shared, &mut rec, &mut kill_rx).await {
        Launched::Abandoned => killed_before_start(shared, &mut rec).await,
        Launched::Failed(why) => {
            rec.set_state(TaskState::Failed, why, now_millis());
            shared.commit_end(&rec).await;
        }
        Launched::Running(mut task) => {
            let now = now_millis();
            rec.started_at = Some(now);
            rec.set_state(TaskState::Running, "", now);
            match shared.commit(&rec).await {
                Ok(()) => follow(shared, rec, task, kill_rx).await,
                Err(e) => {
                    // Never RUNNING without a record: the task goes at once (no grace, it never
                    // was announced), and fails with the reason.
                    tracing::warn!(task = %rec.id(), "killing a task whose start cannot be recorded");
                    let (ended, killed) = task.stop(Duration::ZERO).await;
                    let out = task.outcome(&rec, ended, Some(killed)).await;
                    finish(&mut rec, out);
                    rec.set_state(
                        TaskState::Failed,
                        format!("{e}; the task was killed"),
                        now_millis(),
                    );
                    shared.commit_end(&rec).await;
                    task.release(shared, &rec).await;
                }
            }
        }
    }
}

/// A running (or killing) task until it has ended, and its terminal state recorded.
async fn follow<D: Driver>(
    shared: &Shared,
    mut rec: TaskRecord,
    mut task: D,
    mut kill_rx: mpsc::UnboundedReceiver<()>,
) {
    let grace = exec::grace_of(rec.spec.kill_grace_seconds);
    let (ended, killed) = if rec.state == TaskState::Killing {
        let (ended, k) = task.stop(grace).await;
        (ended, Some(k))
    } else {
        tokio::select! {
            ended = task.wait() => (ended, None),
            Some(()) = kill_rx.recv() => {
                let was_running = begin_kill(shared, &mut rec).await;
                match drain(shared, rec.id(), was_running, task.wait()).await {
                    // It ended by itself during the drain.
                    Some(ended) => (ended, Some(KillReport { escalated: false })),
                    None => {
                        let (ended, k) = task.stop(grace).await;
                        (ended, Some(k))
                    }
                }
            }
        }
    };
    let on_its_own = killed.is_none();
    let out = task.outcome(&rec, ended, killed).await;
    if on_its_own && matches!(out.state, TaskState::Finished | TaskState::Failed) {
        shared.metrics.count_restart(&rec.spec.app_id);
    }
    finish(&mut rec, out);
    shared.commit_end(&rec).await;
    task.release(shared, &rec).await;
}

/// Applies an outcome to a record.
pub(super) fn finish(rec: &mut TaskRecord, out: Outcome) {
    let now = now_millis();
    rec.finished_at = Some(
        out.exit
            .as_ref()
            .map(|e| e.finished_at)
            .filter(|t| *t > 0)
            .unwrap_or(now),
    );
    rec.exit = out.exit;
    rec.set_state(out.state, out.message, now);
}

/// Records a task killed before it started (its kill came while it was being accepted).
async fn killed_before_start(shared: &Shared, rec: &mut TaskRecord) {
    rec.set_state(
        TaskState::Killed,
        "killed: no longer desired (before it started)",
        now_millis(),
    );
    shared.commit_end(rec).await;
}

/// Records the kill decision: TASK_KILLING, and whether the task was running (so registered in
/// the catalog, so to be drained).
async fn begin_kill(shared: &Shared, rec: &mut TaskRecord) -> bool {
    let was_running = rec.state == TaskState::Running;
    rec.set_state(
        TaskState::Killing,
        "killing: no longer desired",
        now_millis(),
    );
    // The kill goes on whether or not KILLING could be saved (commit logged why): the task
    // ends, and its terminal state is announced either way.
    let _ = shared.commit(rec).await;
    was_running
}

/// Takes a task's service out of the catalog now, without waiting for the registrar (which
/// would remove it too, the task being no longer running): a kill drains only after this.
async fn deregister(shared: &Shared, id: &str) {
    let dereg = CatalogDeregistration {
        node: shared.node.clone(),
        service_id: id.to_string(),
        ..Default::default()
    };
    match tokio::time::timeout(
        DEREGISTER_TIMEOUT,
        shared.catalog.catalog_deregister(&dereg),
    )
    .await
    {
        Ok(Ok(())) => {
            tracing::info!(task = %id, drain = ?shared.kill_drain, "service deregistered; draining before the kill")
        }
        Ok(Err(e)) => {
            tracing::warn!(task = %id, error = %e, "cannot deregister the service; draining anyway")
        }
        Err(_) => {
            tracing::warn!(task = %id, "the catalog did not answer the deregistration in time; draining anyway")
        }
    }
}

/// The drain before a kill ([`crate::drain`]): only for a task that was running (and so
/// registered). `Some` when the task ended by itself meanwhile.
async fn drain<T>(
    shared: &Shared,
    id: &str,
    was_running: bool,
    ended: impl std::future::Future<Output = T>,
) -> Option<T> {
    if !was_running {
        return None;
    }
    crate::drain::drain(shared.kill_drain, deregister(shared, id), ended).await
}

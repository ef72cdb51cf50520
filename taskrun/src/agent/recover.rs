//! Start-up recovery: every `task.json` under the work dir is loaded; a task whose supervisor
//! still runs (same pid *and* start time) is re-adopted, one that ended meanwhile is recorded
//! terminal with the outcome its supervisor wrote to `exit_status`. A Docker task is found again
//! by the container id in its record (a running container re-adopted, its log copy and wait
//! resumed; an exited one recorded with the exit code `inspect` gives), and containers of this
//! agent that no live task owns are stopped and removed, as are the task cgroups of tasks no
//! longer live (before any task is launched: the offerd loop starts after recovery).

use std::sync::Arc;
use std::time::Duration;

use cairn_marathon::{TaskState, now_millis};

use super::Shared;
use super::supervise::{Start, finish};
use crate::exec::{self, Proc};
use crate::outcome::KillReport;
use crate::procfs::{Adoption, adoption, read_stat};
use crate::sandbox::{self, ExitInfo, TaskRecord};

/// Grace period of a container no task owns (its spec is unknown).
const ORPHAN_GRACE: Duration = Duration::from_secs(3);

impl Shared {
    /// Loads the work dir: re-adopts live tasks, records the ones that ended while the agent was
    /// away.
    pub(super) async fn recover(self: &Arc<Self>) {
        let work_dir = self.work_dir.clone();
        let (records, errors) = tokio::task::spawn_blocking(move || sandbox::load_all(&work_dir))
            .await
            .unwrap_or_default();
        for e in errors {
            tracing::warn!(error = %e, "skipping an unreadable sandbox");
        }
        for rec in records {
            if rec.state.is_terminal() {
                self.insert(rec, None);
            } else if crate::container::wants_docker(&rec.spec) {
                self.recover_container(rec).await;
            } else {
                self.recover_process(rec).await;
            }
        }
        self.sweep_containers().await;
        self.sweep_cgroups().await;
    }

    /// Removes the task cgroups of tasks that are not live (see [`crate::limits::LimitMode::sweep`]).
    async fn sweep_cgroups(self: &Arc<Self>) {
        let live: std::collections::BTreeSet<String> = self
            .records()
            .into_iter()
            .filter(|r| !r.state.is_terminal())
            .map(|r| r.spec.id)
            .collect();
        let mode = self.limit_mode.clone();
        // A panic in the sweep is the blocking pool's to report; the cgroups are swept again at
        // the next start.
        let _ = tokio::task::spawn_blocking(move || mode.sweep(|id| live.contains(id))).await;
    }

    /// Recovers an exec task that was not terminal when the agent stopped.
    async fn recover_process(self: &Arc<Self>, mut rec: TaskRecord) {
        let id = rec.id().to_string();
        let Some(pid) = rec.pid else {
            // Accepted, not recorded as launched: the agent stopped in between. A process
            // it may have started is nobody's now; end it rather than leak it.
            let exit_file = self.sandbox(&id).join(sandbox::EXIT_FILE);
            let message = match crate::procfs::find_wrapper(&exit_file).filter(|p| *p > 1) {
                Some(orphan) => {
                    if let Err(e) = cairn_proc::signal_group(orphan, cairn_proc::Signal::KILL) {
                        tracing::warn!(task = %id, pid = orphan, error = %e, "cannot kill an unrecorded task");
                    }
                    tracing::warn!(task = %id, pid = orphan, "killed a task whose launch was never recorded");
                    "taskrun stopped while launching the task; it was killed"
                }
                None => "taskrun stopped before the task was launched",
            };
            rec.set_state(TaskState::Failed, message, now_millis());
            self.commit_end(&rec).await;
            return;
        };
        let stat = read_stat(pid).ok().flatten();
        match adoption(rec.start_time, stat.as_ref()) {
            Adoption::Adopt => {
                tracing::info!(task = %id, pid, "re-adopting a running task");
                let proc = Proc::Adopted {
                    pid,
                    start_time: rec.start_time,
                };
                self.spawn_supervisor(rec, Start::Adopted(proc));
            }
            Adoption::Gone => {
                let killing = rec.state == TaskState::Killing;
                let exit = ExitInfo::read(&self.sandbox(&id));
                let out = exec::outcome(
                    exit,
                    None,
                    killing.then_some(KillReport { escalated: false }),
                );
                tracing::info!(task = %id, pid, "task ended while taskrun was away");
                finish(&mut rec, out);
                self.commit_end(&rec).await;
                self.limit_mode.release(&id, rec.cgroup.as_deref());
            }
        }
    }

    /// Recovers a Docker task that was not terminal when the agent stopped.
    async fn recover_container(self: &Arc<Self>, mut rec: TaskRecord) {
        let id = rec.id().to_string();
        if let Some(container) = rec.container.clone() {
            tracing::info!(task = %id, container = %container, "re-adopting a container");
            self.spawn_supervisor(rec, Start::AdoptedContainer);
            return;
        }
        // Accepted, launch not recorded: a container it may have created is nobody's now.
        let name = crate::container::container_name(&id);
        let message = match self.docker.remove(&name).await {
            Ok(()) => "taskrun stopped while launching the container; the launch was abandoned",
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "cannot remove a container whose launch was never recorded");
                "taskrun stopped while launching the container"
            }
        };
        rec.set_state(TaskState::Failed, message, now_millis());
        self.commit_end(&rec).await;
    }

    /// Stops and removes this agent's containers that no live task owns: left by a task that
    /// ended while the agent was away, or whose record is gone. (A live task's container that
    /// offerd no longer wants is killed by the desired-set diff, with the drain.)
    async fn sweep_containers(self: &Arc<Self>) {
        let work_dir = self.work_dir.display().to_string();
        let owned = match self.docker.list_owned(&self.node, &work_dir).await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "no containers to sweep (Docker engine not reachable)");
                return;
            }
        };
        for c in owned {
            let live = self.record(&c.task_id).is_some_and(|r| {
                !r.state.is_terminal() && r.container.as_deref() == Some(c.id.as_str())
            });
            if live {
                continue;
            }
            tracing::info!(task = %c.task_id, container = %c.id, running = c.running, "removing a container no live task owns");
            let engine = self.docker.clone();
            tokio::spawn(async move {
                if c.running
                    && let Err(e) = engine.stop(&c.id, ORPHAN_GRACE).await
                {
                    tracing::warn!(container = %c.id, error = %e, "cannot stop an orphan container");
                }
                if let Err(e) = engine.remove(&c.id).await {
                    tracing::warn!(container = %c.id, error = %e, "cannot remove an orphan container");
                }
            });
        }
    }
}

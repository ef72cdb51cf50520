//! The exec driver under the supervisor: a task as a process under `taskrun wrap`
//! ([`crate::exec`]), launched here or adopted by pid + start time; its outcome comes from the
//! exit file its supervisor wrote, and its cgroup is removed once the end is recorded. It runs
//! as its user ([`crate::user`]) in its workspace, owned by that user ([`crate::sandbox`]).

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use super::supervise::{Driver, Launched};
use crate::exec::{self, Launch, Proc};
use crate::limits::TaskLimits;
use crate::outcome::{KillReport, Outcome};
use crate::sandbox::{self, ExitInfo, TaskRecord};
use crate::user::{Account, Identity, Runtime};

/// A task's process, followed until it ends.
pub(super) struct ProcessTask {
    proc: Proc,
    sandbox: PathBuf,
}

impl ProcessTask {
    /// A process started by an earlier agent.
    pub(super) fn adopted(shared: &Shared, rec: &TaskRecord, proc: Proc) -> ProcessTask {
        ProcessTask {
            proc,
            sandbox: shared.sandbox(rec.id()),
        }
    }
}

impl Driver for ProcessTask {
    type Ended = Option<ExitStatus>;

    async fn launch(
        shared: &Shared,
        rec: &mut TaskRecord,
        _kill_rx: &mut mpsc::UnboundedReceiver<()>,
    ) -> Launched<Self> {
        // The user first: a task that may not run leaves nothing behind but its record.
        let user = match shared.resolve_user(&rec.spec, Runtime::Process).await {
            Ok(Identity::User(account)) => Some(account),
            Ok(Identity::Unnamed) => None,
            Err(e) => return Launched::Failed(e.to_string()),
        };
        let sandbox = shared.sandbox(rec.id());
        let switch = user
            .as_ref()
            .filter(|u| u.switches_from(shared.users.own_uid));
        let owner = switch.map(|u| (u.uid, u.gid));
        let workspace = match sandbox::create_workspace(&shared.work_dir, rec.id(), owner) {
            Ok(w) => w,
            Err(e) => {
                return Launched::Failed(format!(
                    "cannot prepare the task's workspace {}: {e}",
                    shared.workspace(rec.id()).display()
                ));
            }
        };
        let credentials = switch.map(Account::credentials);
        rec.run_as = user.clone();
        let spec = &rec.spec;
        let started = exec::command_argv(spec).and_then(|argv| {
            let env = crate::env::task_env(
                spec,
                &shared.address,
                &workspace,
                user.as_ref(),
                shared.inherited_env.clone(),
            );
            exec::launch(Launch {
                task_id: &spec.id,
                sandbox: &sandbox,
                workdir: &workspace,
                credentials,
                argv,
                env,
                limits: TaskLimits {
                    cpus: spec.cpus,
                    mem_mb: spec.mem,
                },
                mode: &shared.limit_mode,
                wrapper: &shared.wrapper,
                log_rotate_bytes: shared.log_rotate_bytes,
            })
        });
        match started {
            Err(e) => Launched::Failed(e.to_string()),
            Ok(started) => {
                rec.pid = Some(started.pid);
                rec.start_time = started.start_time;
                rec.cgroup = started.cgroup;
                Launched::Running(ProcessTask {
                    proc: Proc::Owned(started.child),
                    sandbox,
                })
            }
        }
    }

    async fn wait(&mut self) -> Self::Ended {
        self.proc.wait().await
    }

    async fn stop(&mut self, grace: Duration) -> (Self::Ended, KillReport) {
        exec::kill(&mut self.proc, grace).await
    }

    async fn outcome(
        &mut self,
        _rec: &TaskRecord,
        ended: Self::Ended,
        killed: Option<KillReport>,
    ) -> Outcome {
        exec::outcome(ExitInfo::read(&self.sandbox), ended, killed)
    }

    async fn release(self, shared: &Shared, rec: &TaskRecord) {
        shared.limit_mode.release(rec.id(), rec.cgroup.as_deref());
    }
}

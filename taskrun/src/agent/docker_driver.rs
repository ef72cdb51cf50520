//! The Docker driver under the supervisor: a task as a container of the local engine
//! ([`crate::docker`]), launched here (a kill during a long pull abandons the launch) or adopted
//! by the container id in its record; its output is copied into the sandbox meanwhile
//! ([`crate::docker_logs`]), all of it before the end is recorded, and the container is removed
//! once it is. The container runs as the task's user (numeric ids, see
//! [`crate::container::set_user`]).

use std::time::Duration;

use cairn_marathon::TaskState;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Shared;
use super::supervise::{Driver, Launched};
use crate::container::{ContainerPlan, ContainerUser, non_root_ids, set_user};
use crate::docker::{ContainerState, DockerError, Engine};
use crate::outcome::{KillReport, Outcome};
use crate::sandbox::TaskRecord;
use crate::user::{Account, Identity, Runtime};

/// How long an ended container's remaining output may take to be copied.
const LOGS_TAIL_TIMEOUT: Duration = Duration::from_secs(10);

/// A task's container, followed until it ends.
pub(super) struct ContainerTask {
    engine: Engine,
    id: String,
    /// The copy of its output into the sandbox.
    logs: JoinHandle<()>,
}

impl ContainerTask {
    fn new(shared: &Shared, rec: &TaskRecord, id: String) -> ContainerTask {
        let engine = shared.docker.clone();
        let logs = crate::docker_logs::follow(
            engine.clone(),
            id.clone(),
            shared.sandbox(rec.id()),
            shared.log_rotate_bytes,
        );
        ContainerTask { engine, id, logs }
    }

    /// The container an earlier agent started, from the record; `None` when none is recorded.
    pub(super) fn adopted(shared: &Shared, rec: &TaskRecord) -> Option<ContainerTask> {
        let id = rec.container.clone()?;
        Some(ContainerTask::new(shared, rec, id))
    }
}

/// The container a Docker task runs in.
fn container_plan(
    shared: &Shared,
    spec: &cairn_marathon::TaskSpec,
) -> Result<ContainerPlan, crate::container::ContainerError> {
    crate::container::plan(
        spec,
        &crate::container::Context {
            node: &shared.node,
            host: &shared.address,
            work_dir: &shared.work_dir,
            host_cpus: crate::node::cpu_count(),
        },
    )
}

/// Sets who the container runs as ([`crate::container::set_user`]); returns the user its
/// COMMAND health checks run as (`None`: taskrun's), or why the task may not run.
async fn container_user(
    shared: &Shared,
    spec: &cairn_marathon::TaskSpec,
    plan: &mut ContainerPlan,
) -> Result<Option<Account>, String> {
    let allow_root = shared.users.allow_root;
    // A `user` docker parameter says it all (set_user refuses it where it could be root).
    if let Some(param) = plan.body.user.clone() {
        set_user(&mut plan.body, &ContainerUser::Image, allow_root).map_err(|e| e.to_string())?;
        return Ok(non_root_ids(&param).map(|(uid, gid)| Account {
            name: param.clone(),
            uid,
            gid,
            groups: Vec::new(),
            home: "/".into(),
        }));
    }
    let (user, run_as) = match shared
        .resolve_user(spec, Runtime::Docker)
        .await
        .map_err(|e| e.to_string())?
    {
        Identity::User(a) => (
            ContainerUser::Ids {
                uid: a.uid,
                gid: a.gid,
                groups: a.groups.clone(),
            },
            Some(a),
        ),
        Identity::Unnamed if allow_root => (ContainerUser::Image, None),
        // taskrun is not root (resolve refuses otherwise): the container runs as taskrun.
        Identity::Unnamed => {
            let (uid, gid) = crate::user::own_ids();
            (
                ContainerUser::Ids {
                    uid,
                    gid,
                    groups: Vec::new(),
                },
                None,
            )
        }
    };
    set_user(&mut plan.body, &user, allow_root).map_err(|e| e.to_string())?;
    Ok(run_as)
}

/// `docker stop` with the grace period, then the container's final state.
async fn stop_container(
    engine: &Engine,
    id: &str,
    grace: Duration,
) -> Result<ContainerState, DockerError> {
    if let Err(e) = engine.stop(id, grace).await {
        tracing::warn!(container = %id, error = %e, "docker stop failed; waiting for the container anyway");
    }
    engine.wait(id).await
}

impl Driver for ContainerTask {
    type Ended = Result<ContainerState, DockerError>;

    async fn launch(
        shared: &Shared,
        rec: &mut TaskRecord,
        kill_rx: &mut mpsc::UnboundedReceiver<()>,
    ) -> Launched<Self> {
        let mut plan = match container_plan(shared, &rec.spec) {
            Ok(p) => p,
            Err(e) => return Launched::Failed(e.to_string()),
        };
        match container_user(shared, &rec.spec, &mut plan).await {
            Ok(run_as) => rec.run_as = run_as,
            Err(why) => return Launched::Failed(why),
        }
        // A pull may take long: a kill meanwhile abandons the launch.
        let launched = tokio::select! {
            r = shared.docker.launch(&plan) => Some(r),
            Some(()) = kill_rx.recv() => None,
        };
        match launched {
            None => {
                if let Err(e) = shared.docker.remove(&plan.name).await {
                    tracing::warn!(task = %rec.id(), error = %e, "cannot remove the container of an abandoned launch");
                }
                Launched::Abandoned
            }
            Some(Err(e)) => Launched::Failed(e.to_string()),
            Some(Ok(id)) => {
                tracing::info!(task = %rec.id(), container = %id, image = %plan.image, "container started");
                rec.container = Some(id.clone());
                Launched::Running(ContainerTask::new(shared, rec, id))
            }
        }
    }

    async fn wait(&mut self) -> Self::Ended {
        self.engine.wait(&self.id).await
    }

    async fn stop(&mut self, grace: Duration) -> (Self::Ended, KillReport) {
        (
            stop_container(&self.engine, &self.id, grace).await,
            KillReport { escalated: false },
        )
    }

    async fn outcome(
        &mut self,
        rec: &TaskRecord,
        ended: Self::Ended,
        killed: Option<KillReport>,
    ) -> Outcome {
        // All its output in the sandbox before the state says terminal (log followers end there).
        if tokio::time::timeout(LOGS_TAIL_TIMEOUT, &mut self.logs)
            .await
            .is_err()
        {
            self.logs.abort();
            tracing::warn!(task = %rec.id(), container = %self.id, "the container's last output was not all copied in time");
        }
        let killed = killed.is_some();
        match ended {
            Ok(state) => crate::docker::outcome(&state, killed),
            Err(e) => Outcome {
                state: if killed {
                    TaskState::Killed
                } else {
                    TaskState::Failed
                },
                message: match e {
                    DockerError::Gone(_) if killed => "killed: no longer desired".into(),
                    DockerError::Gone(_) => {
                        "the container was removed behind taskrun's back".into()
                    }
                    other => other.to_string(),
                },
                exit_code: 128 + libc::SIGKILL,
                exit: None,
            },
        }
    }

    async fn release(self, _shared: &Shared, rec: &TaskRecord) {
        // Recorded terminal first: an agent dying here leaves a container the next one sweeps.
        if let Err(e) = self.engine.remove(&self.id).await {
            tracing::warn!(task = %rec.id(), container = %self.id, error = %e, "cannot remove the container");
        }
    }
}

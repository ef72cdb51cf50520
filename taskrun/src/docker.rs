//! The Docker driver: runs a task as a container through the local Docker engine (bollard, the
//! engine's HTTP API over its unix socket, API version negotiated on first use so a 20.10 engine
//! at API 1.41 is spoken to in its own version), follows it, stops it and says how it ended.
//!
//! A container, like an exec task, never depends on the agent: the engine runs it, so a
//! restarted agent finds it again by the id recorded in `task.json` (and by its labels, see
//! [`crate::container`]), resumes its logs and its wait. The engine is reached lazily: a node
//! without Docker pays nothing until a Docker task arrives, and that task fails with the reason.
//!
//! - launch: the image is used when present locally, else pulled (always pulled with
//!   `forcePullImage`); a failed pull fails the task with Docker's reason. A container of the
//!   same name left from an earlier attempt is removed first. A container that cannot start is
//!   removed and the task fails with Docker's message.
//! - wait: `POST /containers/{id}/wait?condition=not-running`, then `inspect` is the truth (exit
//!   code, OOM kill, Docker's error); an engine that restarts or is briefly unreachable is waited
//!   out, the task keeps its state meanwhile.
//! - stop: `docker stop` with the grace period (the stop signal, then SIGKILL), then remove.
//! - stats: one sample of a container's CPU time and memory (`one-shot`, no second sample to
//!   wait for), for the agent's `/metrics` ([`stats_usage`]).

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerStateStatusEnum, ContainerStatsResponse};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use cairn_marathon::TaskState;
use futures::StreamExt as _;
use std::sync::Arc;
use tokio::sync::OnceCell;

use crate::container::{ContainerError, ContainerPlan, LABEL_NODE, LABEL_TASK_ID, LABEL_WORK_DIR};
use crate::outcome::Outcome;
use crate::sandbox::ExitInfo;

/// Retry delay while the engine cannot be reached.
const RETRY: Duration = Duration::from_secs(1);
/// Extra time a `docker stop` request gets beyond the grace period.
const STOP_SLACK: Duration = Duration::from_secs(60);

/// A point in time as Docker stamps it (log entries, a container's `FinishedAt`), ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Seconds since the Unix epoch (negative before it, as Go's zero time).
    pub secs: i64,
    pub nanos: u32,
}

impl Stamp {
    /// Parses RFC 3339 (`2026-05-07T21:09:36.123456789Z`, or an offset `+02:00`).
    pub fn parse(s: &str) -> Option<Stamp> {
        let ts: jiff::Timestamp = s.parse().ok()?;
        let nanos = ts.as_nanosecond();
        Some(Stamp {
            secs: i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?,
            nanos: u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?,
        })
    }

    /// Unix milliseconds; `None` before the epoch (Docker's "not yet" is year 1).
    pub fn unix_millis(&self) -> Option<u64> {
        let secs = u64::try_from(self.secs).ok()?;
        Some(secs * 1000 + u64::from(self.nanos / 1_000_000))
    }

    /// The whole second it falls in, as the logs API's `since` takes it.
    pub fn since_secs(&self) -> i32 {
        i32::try_from(self.secs.max(0)).unwrap_or(i32::MAX)
    }
}

/// Why a Docker step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker engine: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error("image {image:?} not found locally and pulling failed: {reason}")]
    ImageMissing { image: String, reason: String },
    #[error("pulling image {image:?} failed (forcePullImage): {reason}")]
    Pull { image: String, reason: String },
    #[error("cannot create the container: {0}")]
    Create(String),
    #[error("cannot start the container: {0}")]
    Start(String),
    #[error("no such container {0}")]
    Gone(String),
    #[error("docker {what}: {reason}")]
    Api { what: &'static str, reason: String },
}

/// Docker's own words for an error: the engine's message when it answered, else the error.
pub fn reason(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        BollardError::DockerStreamError { error } => error.trim().to_string(),
        other => {
            // The transport's errors say little at the top ("client error (Connect)"): add
            // their causes.
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let more = s.to_string();
                if !text.contains(&more) {
                    text.push_str(": ");
                    text.push_str(&more);
                }
                source = s.source();
            }
            text
        }
    }
}

/// The HTTP status the engine answered with, if it answered.
fn status(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// An error of step `what`: [`DockerError::Gone`] for a 404 on `id`, [`DockerError::Api`] for
/// another answer of the engine, [`DockerError::Unreachable`] when it did not answer.
fn classify(e: &BollardError, what: &'static str, id: &str) -> DockerError {
    match status(e) {
        Some(404) => DockerError::Gone(id.to_string()),
        Some(_) => DockerError::Api {
            what,
            reason: reason(e),
        },
        None => DockerError::Unreachable(reason(e)),
    }
}

/// A container's figures from one stats sample: CPU = `cpu_stats.cpu_usage.total_usage` (ns),
/// memory = usage minus the inactive file cache, as `docker stats` computes it
/// (`total_inactive_file` on cgroup v1 engines, `inactive_file` on v2, when below the usage).
/// `None` for a sample without figures (a container that is not running).
pub fn stats_usage(stats: &ContainerStatsResponse) -> Option<crate::cgroupfs::Usage> {
    let cpu_ns = stats.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage?;
    let memory = stats.memory_stats.as_ref()?;
    let usage = memory.usage?;
    let stat = |k: &str| memory.stats.as_ref().and_then(|s| s.get(k).copied());
    let inactive = match stat("total_inactive_file") {
        Some(v) => Some(v),
        None => stat("inactive_file"),
    };
    let rss = match inactive {
        Some(v) if v < usage => usage - v,
        _ => usage,
    };
    Some(crate::cgroupfs::Usage {
        cpu_seconds: cpu_ns as f64 / 1e9,
        rss_bytes: rss,
    })
}

/// A container's state as `inspect` tells it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    /// Docker's status word (`created`, `running`, `exited`, ...).
    pub status: String,
    pub exit_code: i64,
    pub oom_killed: bool,
    /// Docker's error (e.g. why it could not run the command).
    pub error: String,
    /// Unix milliseconds, when it has finished.
    pub finished_at: Option<u64>,
}

/// One container of this agent, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    pub id: String,
    pub task_id: String,
    pub running: bool,
}

/// How a container ended, as a task outcome. `killed`: the agent stopped it.
pub fn outcome(state: &ContainerState, killed: bool) -> Outcome {
    let code = i32::try_from(state.exit_code).unwrap_or(i32::MAX);
    let exit = Some(ExitInfo {
        code: Some(code),
        signal: None,
        error: (!state.error.is_empty()).then(|| state.error.clone()),
        finished_at: state.finished_at.unwrap_or(0),
    });
    let (task_state, message) = if killed {
        (TaskState::Killed, "killed: no longer desired".to_string())
    } else if state.oom_killed {
        (
            TaskState::Failed,
            format!(
                "OOM-killed: the container went over its memory limit (exited with status {code})"
            ),
        )
    } else if !state.error.is_empty() {
        (TaskState::Failed, state.error.clone())
    } else if state.status == "created" {
        (TaskState::Failed, "the container was never started".into())
    } else if code == 0 {
        (TaskState::Finished, "exited with status 0".into())
    } else {
        (TaskState::Failed, format!("exited with status {code}"))
    };
    Outcome {
        state: task_state,
        message,
        exit_code: code,
        exit,
    }
}

/// `repo` and `tag` (or digest) of an image reference, for a pull: without either, `latest`
/// (an empty tag would pull every tag of the repository).
pub fn split_reference(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let last = image.rfind('/').map_or(0, |i| i + 1);
    match image[last..].rfind(':') {
        Some(i) => (
            image[..last + i].to_string(),
            image[last + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// The local Docker engine, connected on first use. Cheap to clone.
#[derive(Clone, Default)]
pub struct Engine {
    client: Arc<OnceCell<Docker>>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// The client, negotiating the API version on first success (retried on the next call
    /// after a failure).
    pub async fn client(&self) -> Result<Docker, DockerError> {
        self.client
            .get_or_try_init(|| async {
                let d = Docker::connect_with_local_defaults()
                    .map_err(|e| DockerError::Unreachable(reason(&e)))?;
                let d = d
                    .negotiate_version()
                    .await
                    .map_err(|e| DockerError::Unreachable(reason(&e)))?;
                let v = d.client_version();
                tracing::info!(api = %format!("{}.{}", v.major_version, v.minor_version), "connected to the Docker engine");
                Ok(d)
            })
            .await
            .cloned()
    }

    /// Pulls the image if needed, creates and starts the container; its id.
    pub async fn launch(&self, plan: &ContainerPlan) -> Result<String, DockerError> {
        let d = self.client().await?;
        self.ensure_image(&d, &plan.image, plan.force_pull).await?;
        let opts = CreateContainerOptionsBuilder::default()
            .name(&plan.name)
            .build();
        let created = match d
            .create_container(Some(opts.clone()), plan.body.clone())
            .await
        {
            Ok(c) => c,
            Err(e) if status(&e) == Some(409) => {
                tracing::warn!(name = %plan.name, "removing a container left from an earlier attempt");
                self.remove(&plan.name).await?;
                d.create_container(Some(opts), plan.body.clone())
                    .await
                    .map_err(|e| DockerError::Create(reason(&e)))?
            }
            Err(e) => return Err(DockerError::Create(reason(&e))),
        };
        for w in &created.warnings {
            tracing::warn!(name = %plan.name, warning = %w, "Docker warned when creating the container");
        }
        if let Err(e) = d.start_container(&created.id, None).await {
            if let Err(r) = self.remove(&created.id).await {
                tracing::warn!(id = %created.id, error = %r, "cannot remove a container that did not start");
            }
            return Err(DockerError::Start(reason(&e)));
        }
        Ok(created.id)
    }

    /// Makes sure `image` is local: pulled when forced or missing.
    async fn ensure_image(&self, d: &Docker, image: &str, force: bool) -> Result<(), DockerError> {
        if !force {
            match d.inspect_image(image).await {
                Ok(_) => return Ok(()),
                Err(e) if status(&e) == Some(404) => {}
                Err(e) => return Err(classify(&e, "inspecting the image", image)),
            }
        }
        let (repo, tag) = split_reference(image);
        tracing::info!(image, force, "pulling the image");
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&repo)
            .tag(&tag)
            .build();
        let mut pull = d.create_image(Some(opts), None, None);
        while let Some(step) = pull.next().await {
            if let Err(e) = step {
                let reason = reason(&e);
                return Err(if force {
                    DockerError::Pull {
                        image: image.into(),
                        reason,
                    }
                } else {
                    DockerError::ImageMissing {
                        image: image.into(),
                        reason,
                    }
                });
            }
        }
        Ok(())
    }

    /// The container's state; `None` when there is no such container.
    pub async fn inspect(&self, id: &str) -> Result<Option<ContainerState>, DockerError> {
        let d = self.client().await?;
        let info = match d.inspect_container(id, None).await {
            Ok(i) => i,
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(classify(&e, "inspecting the container", id)),
        };
        let st = info.state.unwrap_or_default();
        let status = st
            .status
            .unwrap_or(ContainerStateStatusEnum::EMPTY)
            .to_string();
        let finished_at = st
            .finished_at
            .as_deref()
            .and_then(Stamp::parse)
            .and_then(|s| s.unix_millis());
        Ok(Some(ContainerState {
            running: st.running.unwrap_or(false) || status == "restarting",
            status,
            exit_code: st.exit_code.unwrap_or(0),
            oom_killed: st.oom_killed.unwrap_or(false),
            error: st.error.unwrap_or_default(),
            finished_at,
        }))
    }

    /// Waits until the container is no longer running and returns its final state. Waits out
    /// an unreachable engine; [`DockerError::Gone`] when the container no longer exists.
    pub async fn wait(&self, id: &str) -> Result<ContainerState, DockerError> {
        let mut failures = 0u32;
        loop {
            let waited = match self.client().await {
                Ok(d) => {
                    let opts = WaitContainerOptionsBuilder::default()
                        .condition("not-running")
                        .build();
                    d.wait_container(id, Some(opts)).next().await
                }
                Err(e) => Some(Err(BollardError::IOError {
                    err: std::io::Error::other(e.to_string()),
                })),
            };
            match waited {
                Some(Err(e)) if status(&e) == Some(404) => {
                    return Err(DockerError::Gone(id.to_string()));
                }
                // A non-zero exit code comes back as this error: the container has ended.
                Some(Ok(_)) | Some(Err(BollardError::DockerContainerWaitError { .. })) | None => {}
                Some(Err(e)) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(id, error = %reason(&e), "waiting for the container failed; retrying");
                    }
                    tokio::time::sleep(RETRY).await;
                }
            }
            match self.inspect(id).await {
                Ok(Some(st)) if !st.running => return Ok(st),
                Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                Ok(None) => return Err(DockerError::Gone(id.to_string())),
                Err(e) => {
                    tracing::debug!(id, error = %e, "cannot inspect the container; retrying");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// `docker stop -t <grace>`: the container's stop signal, SIGKILL after `grace`. A container
    /// already stopped or gone is fine.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<(), DockerError> {
        let t = grace.as_secs_f64().ceil().clamp(0.0, 86_400.0) as i32;
        let d = self
            .client()
            .await?
            .with_timeout(Duration::from_secs(t as u64) + STOP_SLACK);
        let opts = StopContainerOptionsBuilder::default().t(t).build();
        match d.stop_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            Err(e) => Err(classify(&e, "stopping the container", id)),
        }
    }

    /// Removes a container (by id or name) with its anonymous volumes, killing it if it runs.
    pub async fn remove(&self, id: &str) -> Result<(), DockerError> {
        let d = self.client().await?;
        let opts = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match d.remove_container(id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if status(&e) == Some(404) => Ok(()),
            // Removal already in progress (a concurrent remove).
            Err(e) if status(&e) == Some(409) && reason(&e).contains("in progress") => Ok(()),
            Err(e) => Err(classify(&e, "removing the container", id)),
        }
    }

    /// One stats sample of a running container (see [`stats_usage`]), within `timeout`.
    pub async fn stats(
        &self,
        id: &str,
        timeout: Duration,
    ) -> Result<crate::cgroupfs::Usage, DockerError> {
        let d = self.client().await?.with_timeout(timeout);
        let opts = StatsOptionsBuilder::default()
            .stream(false)
            .one_shot(true)
            .build();
        let sample = tokio::time::timeout(timeout, d.stats(id, Some(opts)).next())
            .await
            .map_err(|_| DockerError::Api {
                what: "reading the container's stats",
                reason: format!("no answer within {timeout:?}"),
            })?;
        match sample {
            Some(Ok(s)) => stats_usage(&s).ok_or_else(|| DockerError::Api {
                what: "reading the container's stats",
                reason: "the sample has no CPU or memory figures (not running?)".into(),
            }),
            Some(Err(e)) => Err(classify(&e, "reading the container's stats", id)),
            None => Err(DockerError::Api {
                what: "reading the container's stats",
                reason: "the engine sent no sample".into(),
            }),
        }
    }

    /// Every container (running or not) this agent started: labelled with its node and work dir.
    pub async fn list_owned(&self, node: &str, work_dir: &str) -> Result<Vec<Owned>, DockerError> {
        let d = self.client().await?;
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_NODE}={node}"),
                format!("{LABEL_WORK_DIR}={work_dir}"),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = d
            .list_containers(Some(opts))
            .await
            .map_err(|e| classify(&e, "listing containers", ""))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let task_id = c.labels.as_ref()?.get(LABEL_TASK_ID)?.clone();
                Some(Owned {
                    id: c.id?,
                    task_id,
                    running: c.state.is_some_and(|s| {
                        matches!(s.to_string().as_str(), "running" | "restarting" | "paused")
                    }),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples as engines send them (trimmed): a cgroup v1 engine (total_* keys), a cgroup v2
    /// engine (inactive_file), one whose cache exceeds the usage, a stopped container.
    #[test]
    fn container_stats_as_docker_stats_computes_them() {
        let cases = [
            (
                "cgroup v1 engine",
                r#"{"cpu_stats":{"cpu_usage":{"total_usage":2500000000}},
                    "memory_stats":{"usage":10485760,"limit":33554432,
                      "stats":{"cache":4194304,"total_inactive_file":2097152,"inactive_file":1,"rss":6291456}}}"#,
                Some((2.5, 8_388_608)),
            ),
            (
                "cgroup v2 engine",
                r#"{"cpu_stats":{"cpu_usage":{"total_usage":1000}},
                    "memory_stats":{"usage":4096000,"stats":{"inactive_file":96000,"anon":3000000}}}"#,
                Some((0.000001, 4_000_000)),
            ),
            (
                "inactive above the usage",
                r#"{"cpu_stats":{"cpu_usage":{"total_usage":0}},
                    "memory_stats":{"usage":100,"stats":{"total_inactive_file":200}}}"#,
                Some((0.0, 100)),
            ),
            (
                "no stats map",
                r#"{"cpu_stats":{"cpu_usage":{"total_usage":5}},"memory_stats":{"usage":7}}"#,
                Some((0.000000005, 7)),
            ),
            (
                "stopped container",
                r#"{"cpu_stats":{"cpu_usage":{}},"memory_stats":{}}"#,
                None,
            ),
        ];
        for (what, json, want) in cases {
            let stats: ContainerStatsResponse = serde_json::from_str(json).unwrap();
            let got = stats_usage(&stats).map(|u| (u.cpu_seconds, u.rss_bytes));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn parses_dockers_timestamps() {
        let s = Stamp::parse("2026-05-07T21:09:36.123456789Z").unwrap();
        assert_eq!(s.nanos, 123_456_789);
        assert_eq!(s.unix_millis(), Some(1_778_188_176_123));
        assert_eq!(Stamp::parse("1970-01-01T00:00:00Z").unwrap().secs, 0);
        assert_eq!(
            Stamp::parse("2000-03-01T00:00:00Z").unwrap().secs,
            951_868_800
        );
        // Offsets and short fractions.
        assert_eq!(
            Stamp::parse("1970-01-01T01:00:00.5+01:00").unwrap(),
            Stamp {
                secs: 0,
                nanos: 500_000_000
            }
        );
        // Go's zero time: before the epoch, no milliseconds.
        assert_eq!(
            Stamp::parse("0001-01-01T00:00:00Z").unwrap().unix_millis(),
            None
        );
        for bad in [
            "",
            "2026-05-07",
            "2026-05-07T21:09:36",
            "2026-13-07T21:09:36Z",
            "x026-05-07T21:09:36Z",
            "2026-05-07T21:09:36.Z",
        ] {
            assert_eq!(Stamp::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn orders_by_time_not_by_text() {
        let a = Stamp::parse("2026-05-07T21:09:36.1Z").unwrap();
        let b = Stamp::parse("2026-05-07T21:09:36.12Z").unwrap();
        assert!(
            a < b,
            "0.1 s is before 0.12 s although '.1Z' > '.12' as text"
        );
        assert_eq!(a.since_secs(), i32::try_from(a.secs).unwrap());
    }

    fn exited(code: i64) -> ContainerState {
        ContainerState {
            status: "exited".into(),
            exit_code: code,
            finished_at: Some(5),
            ..Default::default()
        }
    }

    #[test]
    fn outcomes_of_containers() {
        let o = outcome(&exited(0), false);
        assert_eq!(
            (o.state, o.message.as_str()),
            (TaskState::Finished, "exited with status 0")
        );
        assert_eq!(o.exit.as_ref().and_then(|e| e.code), Some(0));
        assert_eq!(o.exit.as_ref().map(|e| e.finished_at), Some(5));
        let o = outcome(&exited(3), false);
        assert_eq!(
            (o.state, o.message.as_str()),
            (TaskState::Failed, "exited with status 3")
        );
        let o = outcome(&exited(143), true);
        assert_eq!((o.state, o.exit_code), (TaskState::Killed, 143));
        let oom = ContainerState {
            oom_killed: true,
            ..exited(137)
        };
        let o = outcome(&oom, false);
        assert_eq!(o.state, TaskState::Failed);
        assert!(
            o.message.contains("OOM") && o.message.contains("137"),
            "{}",
            o.message
        );
        let err = ContainerState {
            error: "exec: \"nope\": executable file not found in $PATH".into(),
            ..exited(127)
        };
        let o = outcome(&err, false);
        assert_eq!(o.state, TaskState::Failed);
        assert!(o.message.contains("nope"));
        let created = ContainerState {
            status: "created".into(),
            ..Default::default()
        };
        assert!(outcome(&created, false).message.contains("never started"));
    }

    #[test]
    fn image_references_for_pulls() {
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(split_reference("nosuch:1"), s("nosuch", "1"));
        assert_eq!(split_reference("busybox"), s("busybox", "latest"));
        assert_eq!(
            split_reference("registry:5000/team/app"),
            s("registry:5000/team/app", "latest")
        );
        assert_eq!(
            split_reference("registry:5000/team/app:2.1"),
            s("registry:5000/team/app", "2.1")
        );
        assert_eq!(split_reference("app@sha256:abc"), s("app", "sha256:abc"));
    }

    #[test]
    fn errors_name_dockers_reason() {
        let e = DockerError::ImageMissing {
            image: "nosuch:1".into(),
            reason: "pull access denied".into(),
        };
        assert_eq!(
            e.to_string(),
            "image \"nosuch:1\" not found locally and pulling failed: pull access denied"
        );
        let server = BollardError::DockerResponseServerError {
            status_code: 404,
            message: "No such container: x".into(),
        };
        assert_eq!(reason(&server), "No such container: x");
        assert_eq!(classify(&server, "x", "id"), DockerError::Gone("id".into()));
        let other = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "boom".into(),
        };
        assert!(matches!(
            classify(&other, "x", "id"),
            DockerError::Api { .. }
        ));
        let io = BollardError::IOError {
            err: std::io::Error::other("connection refused"),
        };
        assert!(matches!(
            classify(&io, "x", "id"),
            DockerError::Unreachable(_)
        ));
    }
}

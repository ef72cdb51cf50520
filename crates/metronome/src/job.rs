//! Metronome's job definition (`/v1/jobs`): the JSON of `jobspec.schema.json` with the defaults
//! of Metronome's models (`JobSpec.scala`, `JobRunSpec.scala`) and its rules, plus what cairn
//! cannot run, each refused with a 422 at its path rather than accepted and ignored.
//!
//! Output is Metronome's: every field it always writes is written (`dependencies`, `labels`,
//! `schedules`, `run.env`, `run.placement`, `run.artifacts`, `run.volumes`, `run.restart`,
//! `run.secrets`, `run.networks`, `docker.parameters`...), and the optional ones it omits when
//! unset are omitted (`description`, `cmd`, `args`, `user`, `docker`, `ucr`,
//! `taskKillGracePeriodSeconds`, `restart.activeDeadlineSeconds`, a constraint's `value`).
//! So a job written out and read back is the same job.

use std::collections::BTreeMap;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use cairn_marathon::{Network, NetworkMode, ValidationError};

use crate::id::check_job_id;
use crate::path::{Violations, invalid, serde_error};
use crate::schedule::ScheduleSpec;

/// Metronome's defaults (`JobRunSpec`).
pub const DEFAULT_CPUS: f64 = 1.0;
pub const DEFAULT_MEM: f64 = 128.0;
pub const DEFAULT_DISK: f64 = 0.0;
pub const DEFAULT_MAX_LAUNCH_DELAY: u64 = 3600;
/// Metronome's schema minimums.
pub const MIN_CPUS: f64 = 0.01;
pub const MIN_MEM: f64 = 32.0;

/// A job, Metronome's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Jobs this one runs after (Metronome writes them as `{"id": ...}`).
    #[serde(default)]
    pub dependencies: Vec<JobRef>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// At most one (as in Metronome), and not together with dependencies.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    pub run: RunSpec,
}

/// Another job, by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    pub id: String,
}

/// What one run of the job runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    /// MB.
    #[serde(default = "default_mem")]
    pub mem: f64,
    /// MB.
    #[serde(default)]
    pub disk: f64,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "env_values")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub placement: Placement,
    /// Accepted only empty: cairn agents do not fetch artifacts.
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// Seconds a run may take to get its task running before it is given up.
    #[serde(default = "default_max_launch_delay")]
    pub max_launch_delay: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerSpec>,
    /// Always refused (cairn has no Mesos containerizer); read so the 422 names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucr: Option<UcrSpec>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub restart: RestartSpec,
    /// Between SIGTERM and SIGKILL; whole seconds (Metronome drops a fraction).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_seconds"
    )]
    pub task_kill_grace_period_seconds: Option<u64>,
    /// Accepted only empty: cairn has no secret store.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretDef>,
    /// Host networking only.
    #[serde(default)]
    pub networks: Vec<Network>,
}

fn default_cpus() -> f64 {
    DEFAULT_CPUS
}
fn default_mem() -> f64 {
    DEFAULT_MEM
}
fn default_max_launch_delay() -> u64 {
    DEFAULT_MAX_LAUNCH_DELAY
}

impl Default for RunSpec {
    /// Metronome's `JobRunSpec()`: nothing to run yet.
    fn default() -> Self {
        RunSpec {
            cpus: DEFAULT_CPUS,
            mem: DEFAULT_MEM,
            disk: DEFAULT_DISK,
            gpus: 0,
            cmd: None,
            args: None,
            user: None,
            env: BTreeMap::new(),
            placement: Placement::default(),
            artifacts: Vec::new(),
            max_launch_delay: DEFAULT_MAX_LAUNCH_DELAY,
            docker: None,
            ucr: None,
            volumes: Vec::new(),
            restart: RestartSpec::default(),
            task_kill_grace_period_seconds: None,
            secrets: BTreeMap::new(),
            networks: Vec::new(),
        }
    }
}

/// Where the run's task may go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    #[serde(default)]
    pub constraints: Vec<ConstraintSpec>,
}

/// Metronome's constraint form, `{"attribute": "rack", "operator": "IS", "value": "r2"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConstraintSpec {
    pub attribute: String,
    pub operator: ConstraintOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The operators Metronome accepts. `EQ` is read as `IS` (Metronome's backwards
/// compatibility) and written as `IS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConstraintOperator {
    #[serde(rename = "IS", alias = "EQ")]
    Is,
    #[serde(rename = "LIKE")]
    Like,
    #[serde(rename = "UNLIKE")]
    Unlike,
}

impl ConstraintOperator {
    /// The Marathon operator of the same meaning.
    pub fn marathon(self) -> cairn_marathon::Operator {
        match self {
            ConstraintOperator::Is => cairn_marathon::Operator::Is,
            ConstraintOperator::Like => cairn_marathon::Operator::Like,
            ConstraintOperator::Unlike => cairn_marathon::Operator::Unlike,
        }
    }
}

/// A URI Mesos would fetch into the sandbox (refused unless the list is empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    pub uri: String,
    #[serde(default = "yes")]
    pub extract: bool,
    #[serde(default)]
    pub executable: bool,
    #[serde(default)]
    pub cache: bool,
}

fn yes() -> bool {
    true
}

/// The Docker image the run's task runs in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerSpec {
    pub image: String,
    #[serde(default)]
    pub privileged: bool,
    /// `docker run` options (cairn passes those in [`cairn_marathon::SUPPORTED_PARAMETERS`]).
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub force_pull_image: bool,
}

/// A `docker run` option, `{"key": "cap-drop", "value": "ALL"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

/// Metronome's UCR (Mesos containerizer) image; always refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UcrSpec {
    pub image: ImageSpec,
    #[serde(default)]
    pub privileged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSpec {
    pub id: String,
    #[serde(default = "docker_kind")]
    pub kind: String,
    #[serde(default)]
    pub force_pull: bool,
}

fn docker_kind() -> String {
    "docker".into()
}

/// A host directory mounted into the Docker container. Metronome reads a volume as a host
/// volume only with exactly `containerPath`, `hostPath` and `mode`; its other kind, a secret
/// volume (`containerPath` + `secret`), is refused here (no secret store).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawVolume")]
pub struct Volume {
    pub container_path: String,
    pub host_path: String,
    pub mode: VolumeMode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VolumeMode {
    #[serde(rename = "RO")]
    ReadOnly,
    #[serde(rename = "RW")]
    ReadWrite,
}

impl VolumeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeMode::ReadOnly => "RO",
            VolumeMode::ReadWrite => "RW",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawVolume {
    container_path: String,
    #[serde(default)]
    host_path: Option<String>,
    #[serde(default)]
    mode: Option<VolumeMode>,
    #[serde(default)]
    secret: Option<String>,
}

impl TryFrom<RawVolume> for Volume {
    type Error = String;

    fn try_from(raw: RawVolume) -> Result<Volume, String> {
        if raw.secret.is_some() {
            return Err("secret volumes are not supported: cairn has no secret store".into());
        }
        match (raw.host_path, raw.mode) {
            (Some(host_path), Some(mode)) => Ok(Volume {
                container_path: raw.container_path,
                host_path,
                mode,
            }),
            _ => Err("a host volume needs containerPath, hostPath and mode (RO or RW)".into()),
        }
    }
}

/// What happens when the run's task fails.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartSpec {
    #[serde(default)]
    pub policy: RestartPolicy,
    /// How long after the run started a failed task may still be relaunched (ON_FAILURE);
    /// unset = no limit. Metronome accepts it with NEVER too (its own example does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RestartPolicy {
    /// The run fails with its task.
    #[default]
    Never,
    /// A failed task is relaunched (within `activeDeadlineSeconds`).
    OnFailure,
}

/// A secret's source in Metronome's secret store (refused unless `secrets` is empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDef {
    pub source: String,
}

/// Environment values are strings; Metronome's other kind, `{"secret": "name"}`, is refused
/// at its own path (`/run/env/DB_PASSWORD`).
fn env_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct EnvValue(String);
    impl<'de> Deserialize<'de> for EnvValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match Value::deserialize(d)? {
                Value::String(s) => Ok(EnvValue(s)),
                Value::Object(o) if o.contains_key("secret") => Err(D::Error::custom(
                    "environment variables from secrets are not supported: cairn has no \
                     secret store",
                )),
                other => Err(D::Error::custom(format!("must be a string, got {other}"))),
            }
        }
    }
    let raw = BTreeMap::<String, EnvValue>::deserialize(d)?;
    Ok(raw.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// Metronome reads a duration as a number of seconds and drops any fraction.
fn whole_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x as u64)),
        Some(x) => Err(D::Error::custom(format!(
            "must be a non-negative number of seconds, got {x}"
        ))),
    }
}

/// The run id `parse_job` checks a job's app with (any valid one does).
const PROBE_RUN_ID: &str = "20000101000000probe";

/// Parses and validates a job (POST `/v1/jobs`, or PUT `/v1/jobs/{id}` with `id_from_path`).
/// As in Metronome's PUT, the path's id replaces the body's, which must still be present and
/// valid (Metronome's schema requires it). Type errors stop at the first, as serde reads one
/// path at a time; rule violations are all reported. A job that passes Metronome's rules is
/// also checked as the Marathon app its runs launch ([`JobSpec::to_app`]), with those paths
/// mapped back to the job's, so a job is refused when it is created, not when it first runs.
pub fn parse_job(value: Value, id_from_path: Option<&str>) -> Result<JobSpec, ValidationError> {
    if !value.is_object() {
        return Err(invalid("/", "a job must be a JSON object"));
    }
    let mut job: JobSpec = serde_path_to_error::deserialize(value).map_err(serde_error)?;
    let mut v = Violations::default();
    if let Err(e) = check_job_id(&job.id) {
        v.add("/id", e);
    }
    if let Some(id) = id_from_path {
        if let Err(e) = check_job_id(id) {
            v.add("/id", format!("the URL's job id: {e}"));
        }
        job.id = id.to_string();
    }

    let mut seen = std::collections::HashSet::new();
    for (i, d) in job.dependencies.iter().enumerate() {
        let path = format!("/dependencies({i})/id");
        if let Err(e) = check_job_id(&d.id) {
            v.add(&path, e);
        } else if d.id == job.id {
            v.add(&path, "a job cannot depend on itself");
        }
        if !seen.insert(&d.id) {
            v.add("/dependencies", "has double entries");
        }
    }
    if job.schedules.len() > 1 {
        v.add(
            "/schedules",
            "a job has at most one schedule (as in Metronome)",
        );
    }
    for (i, s) in job.schedules.iter().enumerate() {
        v.extend(s.violations(&format!("/schedules({i})")));
    }
    if !job.schedules.is_empty() && !job.dependencies.is_empty() {
        v.add(
            "/",
            "Jobs may not have both dependencies and schedules specified",
        );
    }
    run_violations(&job.run, &mut v);

    if v.is_empty()
        && let Err(e) = job.to_app(PROBE_RUN_ID)
    {
        v.extend(e.violations().to_vec());
    }
    v.into_result(job)
}

fn run_violations(run: &RunSpec, v: &mut Violations) {
    if !(run.cpus.is_finite() && run.cpus >= MIN_CPUS) {
        v.add(
            "/run/cpus",
            format!("must be at least {MIN_CPUS}, got {}", run.cpus),
        );
    }
    if !(run.mem.is_finite() && run.mem >= MIN_MEM) {
        v.add(
            "/run/mem",
            format!("must be at least {MIN_MEM} (MB), got {}", run.mem),
        );
    }
    if !(run.disk.is_finite() && run.disk >= 0.0) {
        v.add("/run/disk", format!("must be at least 0, got {}", run.disk));
    }
    if run.max_launch_delay < 1 {
        v.add("/run/maxLaunchDelay", "must be at least 1 (second)");
    }
    if run.cmd.as_deref() == Some("") {
        v.add("/run/cmd", "must not be empty");
    }
    if run.cmd.is_some() && run.args.is_some() {
        v.add("/run", "cmd and args are mutually exclusive");
    }
    let image = run.docker.as_ref().map(|d| d.image.trim());
    if image == Some("") {
        v.add("/run/docker/image", "must not be empty");
    }
    if !(run.cmd.as_deref().is_some_and(|c| !c.is_empty())
        || image.is_some_and(|i| !i.is_empty())
        || run.ucr.is_some())
    {
        v.add("/run", "Cmd, Docker or UCR image must be specified");
    }
    if run.gpus > 0 && run.docker.is_some() {
        v.add("/run/gpus", "GPUs are not supported with Docker");
    }
    if run.ucr.is_some() {
        v.add(
            "/run/ucr",
            "UCR is not supported: cairn agents run tasks as processes or Docker containers; \
             give run.docker instead",
        );
    }
    if !run.artifacts.is_empty() {
        v.add(
            "/run/artifacts",
            "artifacts are not supported: cairn agents do not fetch artifacts; put them in the \
             Docker image or fetch them in cmd",
        );
    }
    if !run.secrets.is_empty() {
        v.add(
            "/run/secrets",
            "secrets are not supported: cairn has no secret store",
        );
    }
    if run.networks.len() > 1 {
        v.add(
            "/run/networks",
            "Only one host network definition is allowed",
        );
    }
    for (i, n) in run.networks.iter().enumerate() {
        let path = format!("/run/networks({i})");
        if n.mode != NetworkMode::Host {
            v.add(
                &format!("{path}/mode"),
                "cairn runs jobs on the host network only (mode \"host\")",
            );
        } else {
            if n.name.is_some() {
                v.add(&format!("{path}/name"), "must be empty for host network");
            }
            if !n.labels.is_empty() {
                v.add(&format!("{path}/labels"), "must be empty for host network");
            }
        }
    }
    if !run.volumes.is_empty() && run.docker.is_none() {
        v.add(
            "/run/volumes",
            "volumes need run.docker: cairn runs command jobs without a container",
        );
    }
    for (i, c) in run.placement.constraints.iter().enumerate() {
        let path = format!("/run/placement/constraints({i})");
        if c.attribute.trim().is_empty() {
            v.add(&format!("{path}/attribute"), "must not be empty");
        }
        let op = c.operator.marathon();
        match c.value.as_deref() {
            None => v.add(&format!("{path}/value"), format!("{op} needs a value")),
            Some(re) if c.operator != ConstraintOperator::Is => {
                // Anchored as offerd evaluates it (cairn_marathon's rule for LIKE/UNLIKE).
                if let Err(e) = regex::Regex::new(&format!("^(?:{re})$")) {
                    v.add(
                        &format!("{path}/value"),
                        format!("invalid regular expression {re:?}: {e}"),
                    );
                }
            }
            Some(_) => {}
        }
    }
}

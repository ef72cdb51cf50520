//! Job runs and their history as Metronome renders them (`/v1/jobs/{id}/runs`, and
//! `?embed=activeRuns|history|historySummary` on a job).
//!
//! Times are kept as Unix milliseconds (`u64`), the form offerd stores, and written the way
//! Metronome writes an `Instant`: `yyyy-MM-dd'T'HH:mm:ss.SSSZ`, `2016-07-15T13:02:59.735+0000`
//! (Metronome formats in the server's zone; cairn always in UTC). That is not Marathon's
//! `...Z` form, hence [`format_time`] rather than `cairn_marathon::iso8601_millis`. Reading
//! accepts any offset, so the CLI can read what offerd writes.
//!
//! Which unset times are `null` and which are left out follows Metronome: a run's
//! `completedAt` and a history's `lastSuccessAt`/`lastFailureAt` are `null`, a task's
//! `completedAt` is omitted.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A run's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobRunStatus {
    /// Created, not yet stored.
    Initial,
    /// Stored; its task is waiting to be launched.
    Starting,
    /// Its task is staging, starting or running.
    Active,
    /// Its task finished.
    Success,
    /// Its task failed and will not be relaunched.
    Failed,
}

impl JobRunStatus {
    /// The run is over (it moves to the history).
    pub fn is_finished(self) -> bool {
        matches!(self, JobRunStatus::Success | JobRunStatus::Failed)
    }
}

/// A run's task state, Metronome's subset of Mesos' names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskStatus {
    #[serde(rename = "TASK_CREATED")]
    Created,
    #[serde(rename = "TASK_STAGING")]
    Staging,
    #[serde(rename = "TASK_STARTING")]
    Starting,
    #[serde(rename = "TASK_RUNNING")]
    Running,
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    #[serde(rename = "TASK_FAILED")]
    Failed,
    #[serde(rename = "TASK_KILLED")]
    Killed,
}

impl From<cairn_marathon::TaskState> for TaskStatus {
    /// As Metronome maps Marathon's task conditions: a task being killed still runs, a lost
    /// or erroneous one failed.
    fn from(s: cairn_marathon::TaskState) -> TaskStatus {
        use cairn_marathon::TaskState as S;
        match s {
            S::Staging => TaskStatus::Staging,
            S::Starting => TaskStatus::Starting,
            S::Running | S::Killing => TaskStatus::Running,
            S::Finished => TaskStatus::Finished,
            S::Failed | S::Lost | S::Error => TaskStatus::Failed,
            S::Killed => TaskStatus::Killed,
        }
    }
}

/// One task of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRunTask {
    pub id: String,
    #[serde(with = "time")]
    pub started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "time_opt")]
    pub completed_at: Option<u64>,
    pub status: TaskStatus,
}

/// A run (`/v1/jobs/{id}/runs/{runId}`, `activeRuns`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRun {
    /// The run's own id ([`new_run_id`]), without the job's.
    pub id: String,
    pub job_id: String,
    pub status: JobRunStatus,
    #[serde(with = "time")]
    pub created_at: u64,
    #[serde(default, with = "time_opt")]
    pub completed_at: Option<u64>,
    pub tasks: Vec<JobRunTask>,
}

/// A finished run in the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRunInfo {
    pub id: String,
    #[serde(with = "time")]
    pub created_at: u64,
    #[serde(with = "time")]
    pub finished_at: u64,
    /// Task ids.
    pub tasks: Vec<String>,
}

/// A job's history (`?embed=history`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobHistory {
    pub success_count: u64,
    pub failure_count: u64,
    #[serde(default, with = "time_opt")]
    pub last_success_at: Option<u64>,
    #[serde(default, with = "time_opt")]
    pub last_failure_at: Option<u64>,
    #[serde(rename = "successfulFinishedRuns")]
    pub successful_finished_runs: Vec<JobRunInfo>,
    #[serde(rename = "failedFinishedRuns")]
    pub failed_finished_runs: Vec<JobRunInfo>,
}

impl JobHistory {
    pub fn summary(&self) -> JobHistorySummary {
        JobHistorySummary {
            success_count: self.success_count,
            failure_count: self.failure_count,
            last_success_at: self.last_success_at,
            last_failure_at: self.last_failure_at,
        }
    }
}

/// The counts of a job's history (`?embed=historySummary`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobHistorySummary {
    pub success_count: u64,
    pub failure_count: u64,
    #[serde(default, with = "time_opt")]
    pub last_success_at: Option<u64>,
    #[serde(default, with = "time_opt")]
    pub last_failure_at: Option<u64>,
}

/// A run id as Metronome makes them: the time as `yyyyMMddHHmmss` (UTC here; Metronome uses
/// the server's zone) followed by `random` (Metronome: 5 alphanumerics). Give lowercase
/// letters and digits so the run's app id ([`crate::app_id`]) names it one to one.
pub fn new_run_id(now: jiff::Timestamp, random: &str) -> String {
    format!("{}{random}", now.strftime("%Y%m%d%H%M%S"))
}

/// Unix milliseconds in Metronome's form, `2016-07-15T13:02:59.735+0000`.
pub fn format_time(ms: u64) -> String {
    let ts = i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        // Past jiff's range (year 9999): the latest time it can write.
        .unwrap_or(jiff::Timestamp::MAX);
    format!("{}+0000", ts.strftime("%Y-%m-%dT%H:%M:%S%.3f"))
}

/// Reads a time in Metronome's form (any offset) or RFC 3339, as Unix milliseconds.
pub fn parse_time(s: &str) -> Option<u64> {
    let ts = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%z", s)
        .or_else(|_| s.parse::<jiff::Timestamp>())
        .ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

mod time {
    use super::*;

    pub fn serialize<S: Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        parse_time(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not a time like 2016-07-15T13:02:59.735+0000"
            ))
        })
    }
}

mod time_opt {
    use super::*;

    pub fn serialize<S: Serializer>(ms: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&format_time(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => parse_time(&s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a time like 2016-07-15T13:02:59.735+0000"
                ))
            }),
        }
    }
}

//! A job's schedule (`/v1/jobs/{id}/schedules`, and `schedules` inside a job): Metronome's JSON,
//! defaults and rules. Metronome's schedule schema allows fields it does not know (its
//! `additionalProperties` is true), so a schedule read back from a GET, with its `nextRunAt`,
//! can be sent again: unknown fields are ignored, not refused.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use cairn_marathon::{ValidationError, Violation};

use crate::cron::{CronError, CronSchedule};
use crate::id::check_schedule_id;
use crate::path::{Violations, invalid, serde_error};

/// Metronome's default zone.
pub const DEFAULT_TIMEZONE: &str = "UTC";
/// Metronome's default `startingDeadlineSeconds` (15 minutes).
pub const DEFAULT_STARTING_DEADLINE_SECONDS: u64 = 900;
/// Metronome refuses a starting deadline under a minute (`ScheduleSpec.validScheduleSpec`).
pub const MIN_STARTING_DEADLINE_SECONDS: u64 = 60;

/// What happens when a run is due while an earlier one is still active.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ConcurrencyPolicy {
    /// Start the new run anyway.
    #[default]
    Allow,
    /// Skip it.
    Forbid,
}

/// One schedule of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSpec {
    pub id: String,
    pub cron: String,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// How long after its tick a run may still start; past it the run is skipped.
    #[serde(default = "default_starting_deadline")]
    pub starting_deadline_seconds: u64,
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn default_timezone() -> String {
    DEFAULT_TIMEZONE.to_string()
}
fn default_starting_deadline() -> u64 {
    DEFAULT_STARTING_DEADLINE_SECONDS
}
fn yes() -> bool {
    true
}

impl ScheduleSpec {
    /// The schedule's cron expression in its zone (always `Ok` for a parsed schedule).
    pub fn cron_schedule(&self) -> Result<CronSchedule, CronError> {
        CronSchedule::parse(&self.cron, &self.timezone)
    }

    /// The first tick strictly after `after` (Metronome's `nextRunAt` is this after now).
    pub fn next_run_at(&self, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.cron_schedule().ok()?.next_after(after)
    }

    /// The violations of Metronome's rules, with paths under `prefix` (`""` for a schedule on
    /// its own, `/schedules(0)` inside a job).
    pub(crate) fn violations(&self, prefix: &str) -> Vec<Violation> {
        let mut v = Violations::default();
        if let Err(e) = check_schedule_id(&self.id) {
            v.add(&format!("{prefix}/id"), e);
        }
        let cron = match CronSchedule::parse(&self.cron, &self.timezone) {
            Err(CronError::TimeZone(_)) => {
                v.add(
                    &format!("{prefix}/timezone"),
                    format!("No time zone found with this id: {:?}", self.timezone),
                );
                // The expression is still worth checking on its own.
                CronSchedule::parse(&self.cron, DEFAULT_TIMEZONE)
            }
            other => other,
        };
        match cron {
            Ok(cron) if cron.never_fires() => v.add(
                &format!("{prefix}/cron"),
                format!(
                    "{:?} matches no date: the day of the month must exist in the given months \
                     (February has at most 29 days) and fall on the given day of the week (both \
                     must match)",
                    self.cron
                ),
            ),
            Ok(_) => {}
            Err(e) => v.add(
                &format!("{prefix}/cron"),
                format!("Can not read cron expression {:?}: {e}", self.cron),
            ),
        }
        if self.starting_deadline_seconds < MIN_STARTING_DEADLINE_SECONDS {
            v.add(
                &format!("{prefix}/startingDeadlineSeconds"),
                format!(
                    "got {} seconds, expected {MIN_STARTING_DEADLINE_SECONDS} or more",
                    self.starting_deadline_seconds
                ),
            );
        }
        v.into_vec()
    }
}

/// Parses and validates a schedule (POST `/v1/jobs/{id}/schedules`, or PUT
/// `/v1/jobs/{id}/schedules/{scheduleId}` with `id_from_path`). As in Metronome's PUT, the
/// path's id replaces the body's (which must still be present and valid).
pub fn parse_schedule(
    value: Value,
    id_from_path: Option<&str>,
) -> Result<ScheduleSpec, ValidationError> {
    if !value.is_object() {
        return Err(invalid("/", "a schedule must be a JSON object"));
    }
    let mut spec: ScheduleSpec = serde_path_to_error::deserialize(value).map_err(serde_error)?;
    let mut v = Violations::default();
    v.extend(spec.violations(""));
    if let Some(id) = id_from_path {
        if let Err(e) = check_schedule_id(id) {
            v.add("/id", format!("the URL's schedule id: {e}"));
        }
        spec.id = id.to_string();
    }
    v.into_result(spec)
}

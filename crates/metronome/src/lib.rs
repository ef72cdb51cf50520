//! What offerd and its CLI share about Metronome's jobs API (`/v1/jobs`): the job and schedule
//! JSON with Metronome's defaults and 422 rules (paths and violations in Marathon's form,
//! [`cairn_marathon::ValidationError`]), cron evaluation in a schedule's time zone, the run and
//! history shapes offerd renders, run ids, and the Marathon app one run's task is launched from.
//!
//! Fidelity comes from Metronome's own source (`jobspec.schema.json`, `schedulespec.schema.json`,
//! the models in `dcos/metronome/model` and their JSON formats). Where cairn cannot do what a
//! job asks (artifacts, secrets, UCR, container networks) the job is refused with a 422 at that
//! field rather than accepted and run differently.
//!
//! Plain data and pure functions: no I/O and no clock (callers pass the time in).

mod app;
pub mod cron;
mod id;
mod job;
mod path;
mod run;
mod schedule;

pub use app::{APP_GROUP, app_id, job_error_of_app_error, job_id_of_app};
pub use cron::{CronError, CronField, CronSchedule};
pub use id::{MAX_JOB_ID_LEN, check_job_id, check_schedule_id};
pub use job::{
    Artifact, ConstraintOperator, ConstraintSpec, DEFAULT_CPUS, DEFAULT_DISK,
    DEFAULT_MAX_LAUNCH_DELAY, DEFAULT_MEM, DockerSpec, ImageSpec, JobRef, JobSpec, MIN_CPUS,
    MIN_MEM, Parameter, Placement, RestartPolicy, RestartSpec, RunSpec, SecretDef, UcrSpec, Volume,
    VolumeMode, parse_job,
};
pub use run::{
    JobHistory, JobHistorySummary, JobRun, JobRunInfo, JobRunStatus, JobRunTask, TaskStatus,
    format_time, new_run_id, parse_time,
};
pub use schedule::{
    ConcurrencyPolicy, DEFAULT_STARTING_DEADLINE_SECONDS, DEFAULT_TIMEZONE,
    MIN_STARTING_DEADLINE_SECONDS, ScheduleSpec, parse_schedule,
};

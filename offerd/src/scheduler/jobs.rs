//! Metronome's jobs in the scheduler: schedules fire runs, runs launch one task at a time like
//! an app's (placement, Docker or exec, the agents' desired sets), and a run ends when its task
//! does — a success when it exits 0; a failure relaunched with backoff under the `ON_FAILURE`
//! policy until `activeDeadlineSeconds`; failed for good otherwise. Finished runs go to their
//! job's bounded history, and a success may start the jobs that depend on this one.
//!
//! Exactly once: a schedule's next tick is part of its job's record, and the change that fires
//! a tick writes the run and the job's next tick in one store batch. A restart (or a new
//! leader) reads both or neither, so a tick is never run twice; a tick missed while offerd was
//! down runs late only within the schedule's `startingDeadlineSeconds`.
//!
//! A run's tasks are tasks of the framework [`JOBS_FRAMEWORK`] under the app
//! `/metronome/<job id>/<run id>` ([`cairn_metronome::app_id`]): never an orphan to the app
//! scheduler, and found again from the task alone ([`run_of_task`]).

use cairn_marathon::{App, TaskState};
use cairn_metronome::{ConcurrencyPolicy, JobRunStatus, JobRunTask, RestartPolicy};
use serde_json::json;

use super::lifecycle::{kill_task, launch};
use super::{Offers, plan};
use crate::events::Event;
use crate::model::{RunRecord, State, Task, run_key};
use crate::tx::Tx;

/// The framework name a run's tasks carry (reserved: the offers API refuses it).
pub const JOBS_FRAMEWORK: &str = "metronome";

/// Active runs one job may have at once (`concurrencyPolicy: ALLOW` included): a tick past it
/// is skipped, a manual run refused. Bounds what a job that can never be placed piles up.
pub const MAX_ACTIVE_RUNS_PER_JOB: usize = 100;

/// Active runs over all jobs at once.
pub const MAX_ACTIVE_RUNS: usize = 10_000;

/// Longest wait between two attempts of an `ON_FAILURE` run.
const MAX_RETRY_BACKOFF_MS: u64 = 60_000;

/// Ticks looked at when catching up on one schedule (a seconds schedule down for a day has
/// 86,400): past it, the catch-up goes on from now.
const MAX_CATCH_UP_TICKS: usize = 10_000;

/// Why a run could not start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RunError {
    #[error("Job '{0}' does not exist")]
    UnknownJob(String),
    #[error(
        "job {job} has {active} active runs, the most one job may have ({MAX_ACTIVE_RUNS_PER_JOB})"
    )]
    TooManyForJob { job: String, active: usize },
    #[error("{0} runs are active, the most offerd keeps ({MAX_ACTIVE_RUNS})")]
    TooMany(usize),
    #[error("job {job}: {reason}")]
    Invalid { job: String, reason: String },
}

/// The active runs of `job_id`, oldest id first.
pub fn runs_of<'a>(state: &'a State, job_id: &str) -> impl Iterator<Item = &'a RunRecord> + 'a {
    let from = format!("{job_id}/");
    state
        .runs
        .range(from.clone()..)
        .take_while(move |(k, _)| k.starts_with(&from))
        .map(|(_, r)| r)
}

/// The run a task belongs to (by its app id), if it is a run's task.
pub fn run_of_task(t: &Task) -> Option<String> {
    if t.framework.as_deref() != Some(JOBS_FRAMEWORK) {
        return None;
    }
    let job = cairn_metronome::job_id_of_app(&t.app_id)?;
    let run = t.app_id.rsplit('/').next()?;
    Some(run_key(&job, run))
}

/// A run's status as Metronome reports it: starting until its task runs, active while it (or
/// a retry) is under way.
pub fn run_status(state: &State, run: &RunRecord) -> JobRunStatus {
    match run.task.as_deref().and_then(|id| state.tasks.get(id)) {
        Some(t) if matches!(t.state, TaskState::Running | TaskState::Killing) => {
            JobRunStatus::Active
        }
        Some(_) => JobRunStatus::Starting,
        None if run.attempts == 0 => JobRunStatus::Starting,
        None => JobRunStatus::Active,
    }
}

/// A run's tasks in Metronome's form: those that ended, then the one under way.
pub fn run_tasks(state: &State, run: &RunRecord) -> Vec<JobRunTask> {
    let mut out = run.ended.clone();
    if let Some(t) = run.task.as_deref().and_then(|id| state.tasks.get(id)) {
        out.push(JobRunTask {
            id: t.id.clone(),
            started_at: t.started_at.unwrap_or(t.staged_at),
            completed_at: None,
            status: t.state.into(),
        });
    }
    out
}

/// Five lowercase letters and digits for a run id (Metronome uses five alphanumerics; lowercase
/// keeps the run's app id one to one with it).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Starts a run of `job_id` now; returns its run key. The run waits for room like an app's
/// task; the round after this change launches it.
pub fn start_run(
    state: &mut State,
    tx: &mut Tx,
    job_id: &str,
    trigger: &str,
) -> Result<String, RunError> {
    let entry = state
        .jobs
        .get(job_id)
        .ok_or_else(|| RunError::UnknownJob(job_id.to_string()))?;
    let active = runs_of(state, job_id).count();
    if active >= MAX_ACTIVE_RUNS_PER_JOB {
        return Err(RunError::TooManyForJob {
            job: job_id.to_string(),
            active,
        });
    }
    if state.runs.len() >= MAX_ACTIVE_RUNS {
        return Err(RunError::TooMany(state.runs.len()));
    }
    let now = jiff::Timestamp::from_millisecond(tx.now_ms as i64).unwrap_or(jiff::Timestamp::MAX);
    let mut id = cairn_metronome::new_run_id(now, &random_suffix());
    while state.runs.contains_key(&run_key(job_id, &id)) {
        id = cairn_metronome::new_run_id(now, &random_suffix());
    }
    let mut app: App = entry.spec.to_app(&id).map_err(|e| RunError::Invalid {
        job: job_id.to_string(),
        reason: e.to_string(),
    })?;
    // One catalog service per job, not one per run.
    app.labels
        .entry("SERVICE_NAME".into())
        .or_insert_with(|| format!("job-{}", job_id.replace('.', "-")));
    app.version = Some(cairn_marathon::iso8601_millis(tx.now_ms));
    let run = RunRecord {
        id: id.clone(),
        job_id: job_id.to_string(),
        created_ms: tx.now_ms,
        trigger: trigger.to_string(),
        app,
        restart: entry.spec.run.restart.clone(),
        max_launch_delay: entry.spec.run.max_launch_delay,
        task: None,
        ended: Vec::new(),
        attempts: 0,
        next_attempt_ms: 0,
        waiting_since_ms: tx.now_ms,
        started_ms: None,
        stopping: None,
        waiting: None,
    };
    let key = run_key(job_id, &id);
    tracing::info!(job = %job_id, run = %id, %trigger, "job run started");
    tx.event(Event::new(
        "job_run_started",
        tx.now_ms,
        json!({ "jobId": job_id, "runId": id, "trigger": trigger }),
    ));
    state.runs.insert(key.clone(), run);
    tx.run(&key);
    Ok(key)
}

/// Stops a run: its task is killed and the run ends as failed (`reason` says why). A run
/// with no task under way ends at once.
pub fn stop_run(state: &mut State, tx: &mut Tx, key: &str, reason: &str) {
    let Some(run) = state.runs.get_mut(key) else {
        return;
    };
    run.stopping.get_or_insert_with(|| reason.to_string());
    tx.run(key);
    match run.task.clone() {
        // The task's end (at once when it never started) finishes the run.
        Some(task) => kill_task(state, tx, &task),
        None => finish_run(state, tx, key, JobRunStatus::Failed, reason),
    }
}

/// Finished runs kept per job and outcome, as Metronome's `--history_count` default.
pub const DEFAULT_JOB_HISTORY: usize = 10;

/// A run's task ended (called by [`super::finish_task`] once the task is out of the table).
pub fn task_ended(state: &mut State, tx: &mut Tx, t: &Task, end: TaskState, message: &str) {
    let Some(key) = run_of_task(t) else {
        return;
    };
    let Some(run) = state.runs.get_mut(&key) else {
        return;
    };
    if run.task.as_deref() != Some(t.id.as_str()) {
        return;
    }
    run.task = None;
    run.ended.push(JobRunTask {
        id: t.id.clone(),
        started_at: t.started_at.unwrap_or(t.staged_at),
        completed_at: Some(tx.now_ms),
        status: end.into(),
    });
    tx.run(&key);
    if let Some(reason) = run.stopping.clone() {
        return finish_run(state, tx, &key, JobRunStatus::Failed, &reason);
    }
    if end == TaskState::Finished {
        return finish_run(state, tx, &key, JobRunStatus::Success, message);
    }
    let within_deadline = match (run.restart.active_deadline_seconds, run.started_ms) {
        (Some(secs), Some(started)) => tx.now_ms < started + secs * 1000,
        _ => true,
    };
    if run.restart.policy == RestartPolicy::OnFailure && within_deadline {
        let exp = run.attempts.saturating_sub(1).min(16);
        let backoff = (1000u64 << exp).min(MAX_RETRY_BACKOFF_MS);
        run.next_attempt_ms = tx.now_ms + backoff;
        run.waiting_since_ms = tx.now_ms;
        tracing::info!(run = %key, attempts = run.attempts, backoff_ms = backoff, state = %end, "job run's task failed; relaunching (ON_FAILURE)");
        return;
    }
    let reason = format!("its task ended {}: {message}", end.as_str());
    finish_run(state, tx, &key, JobRunStatus::Failed, &reason);
}

/// Ends a run: out of the active runs, into its job's history (bounded), with its event; a
/// success counts towards the jobs that depend on this one.
fn finish_run(state: &mut State, tx: &mut Tx, key: &str, status: JobRunStatus, reason: &str) {
    let Some(run) = state.runs.remove(key) else {
        return;
    };
    tx.run(key);
    let success = status == JobRunStatus::Success;
    tracing::info!(job = %run.job_id, run = %run.id, ?status, %reason, "job run finished");
    tx.event(Event::new(
        if success {
            "job_run_finished"
        } else {
            "job_run_failed"
        },
        tx.now_ms,
        json!({
            "jobId": run.job_id, "runId": run.id, "status": status,
            "message": reason, "tasks": run.ended.iter().map(|t| &t.id).collect::<Vec<_>>(),
        }),
    ));
    let Some(entry) = state.jobs.get_mut(&run.job_id) else {
        return;
    };
    let info = cairn_metronome::JobRunInfo {
        id: run.id.clone(),
        created_at: run.created_ms,
        finished_at: tx.now_ms,
        tasks: run.ended.iter().map(|t| t.id.clone()).collect(),
    };
    let h = &mut entry.history;
    let list = if success {
        h.success_count += 1;
        h.last_success_at = Some(tx.now_ms);
        &mut h.successful_finished_runs
    } else {
        h.failure_count += 1;
        h.last_failure_at = Some(tx.now_ms);
        &mut h.failed_finished_runs
    };
    // Newest first, as Metronome lists them.
    list.insert(0, info);
    list.truncate(tx.job_history);
    tx.job(&run.job_id);
    if success {
        parent_succeeded(state, tx, &run.job_id);
    }
}

/// `parent` had a successful run: each job depending on it notes it, and a job whose parents
/// have all succeeded since its last such run starts one (Chronos' rule for dependent jobs).
fn parent_succeeded(state: &mut State, tx: &mut Tx, parent: &str) {
    let children: Vec<String> = state
        .jobs
        .values()
        .filter(|j| j.spec.dependencies.iter().any(|d| d.id == parent))
        .map(|j| j.spec.id.clone())
        .collect();
    for child in children {
        let Some(entry) = state.jobs.get_mut(&child) else {
            continue;
        };
        entry.parents_done.insert(parent.to_string());
        let ready = entry
            .spec
            .dependencies
            .iter()
            .all(|d| entry.parents_done.contains(&d.id));
        if ready {
            entry.parents_done.clear();
        }
        tx.job(&child);
        if ready && let Err(e) = start_run(state, tx, &child, &format!("dependency:{parent}")) {
            tracing::warn!(job = %child, error = %e, "a dependent job could not start");
        }
    }
}

/// The next tick of `schedule` strictly after `after_ms` (None: disabled, or it never fires).
pub fn next_tick(schedule: &cairn_metronome::ScheduleSpec, after_ms: u64) -> Option<u64> {
    if !schedule.enabled {
        return None;
    }
    let after = jiff::Timestamp::from_millisecond(after_ms as i64).ok()?;
    let next = schedule.next_run_at(after)?;
    u64::try_from(next.as_millisecond()).ok()
}

/// Sets job `job_id`'s next ticks from its schedules as of `now_ms` (a new job, or new
/// schedules), and lets the next round look at them.
pub fn plan_ticks(state: &mut State, job_id: &str, now_ms: u64) {
    let Some(entry) = state.jobs.get_mut(job_id) else {
        return;
    };
    entry.next_ticks = entry
        .spec
        .schedules
        .iter()
        .filter_map(|s| Some((s.id.clone(), next_tick(s, now_ms)?)))
        .collect();
    if let Some(first) = entry.next_ticks.values().min() {
        state.ticks_not_before = state.ticks_not_before.min(*first);
    }
}

/// Fires the ticks that are due: one run per due schedule (unless `FORBID` finds a run under
/// way, or the tick is older than its `startingDeadlineSeconds`), and the next tick planned
/// from now, in the same change.
pub fn fire_schedules(state: &mut State, tx: &mut Tx) {
    let now = tx.now_ms;
    if now < state.ticks_not_before {
        return;
    }
    let due: Vec<(String, String, u64)> = state
        .jobs
        .values()
        .flat_map(|j| {
            j.next_ticks
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(s, at)| (j.spec.id.clone(), s.clone(), *at))
        })
        .collect();
    for (job_id, schedule_id, first_due) in due {
        let Some(schedule) = state
            .jobs
            .get(&job_id)
            .and_then(|j| j.spec.schedules.iter().find(|s| s.id == schedule_id))
            .cloned()
        else {
            continue;
        };
        // The latest tick that is due: ticks missed in between (offerd was down) are not run
        // one after the other, only the last, and only within its starting deadline.
        let mut last = first_due;
        for _ in 0..MAX_CATCH_UP_TICKS {
            match next_tick(&schedule, last) {
                Some(t) if t <= now => last = t,
                _ => break,
            }
        }
        let next = next_tick(&schedule, now);
        if let Some(entry) = state.jobs.get_mut(&job_id) {
            match next {
                Some(t) => entry.next_ticks.insert(schedule_id.clone(), t),
                None => entry.next_ticks.remove(&schedule_id),
            };
        }
        tx.job(&job_id);
        let late_ms = now - last;
        if late_ms > schedule.starting_deadline_seconds * 1000 {
            tracing::warn!(job = %job_id, schedule = %schedule_id, late_ms, "tick missed past startingDeadlineSeconds; skipped");
            continue;
        }
        if schedule.concurrency_policy == ConcurrencyPolicy::Forbid
            && runs_of(state, &job_id).next().is_some()
        {
            tracing::info!(job = %job_id, schedule = %schedule_id, "tick skipped: a run is under way (FORBID)");
            tx.event(Event::new(
                "job_run_skipped",
                now,
                json!({ "jobId": job_id, "scheduleId": schedule_id,
                        "reason": "concurrencyPolicy FORBID: a run is active" }),
            ));
            continue;
        }
        if let Err(e) = start_run(state, tx, &job_id, &format!("schedule:{schedule_id}")) {
            tracing::warn!(job = %job_id, schedule = %schedule_id, error = %e, "tick skipped");
        }
    }
    // Every tick is now in the future: none is looked at again before the first of them.
    state.ticks_not_before = state
        .jobs
        .values()
        .flat_map(|j| j.next_ticks.values())
        .min()
        .copied()
        .unwrap_or(u64::MAX);
}

/// Drives every active run: deadlines, launches of runs waiting for room (after their
/// backoff), tasks that vanished. Runs are few next to apps' tasks (bounded by
/// [`MAX_ACTIVE_RUNS`]), so every round looks at all of them.
pub fn drive_runs(state: &mut State, tx: &mut Tx, offers: &mut Offers) {
    let keys: Vec<String> = state.runs.keys().cloned().collect();
    for key in keys {
        drive_run(state, tx, &key, offers);
    }
}

fn drive_run(state: &mut State, tx: &mut Tx, key: &str, offers: &mut Offers) {
    let now = tx.now_ms;
    let Some(run) = state.runs.get(key) else {
        return;
    };
    if !state.jobs.contains_key(&run.job_id) {
        return stop_run(state, tx, key, "its job was deleted");
    }
    // A task the table no longer has (it cannot end unseen, but a record is only trusted so
    // far): the run goes on as if it had failed.
    let vanished = run
        .task
        .as_deref()
        .is_some_and(|task| !state.tasks.contains_key(task));
    if vanished && let Some(run) = state.runs.get_mut(key) {
        run.task = None;
        run.waiting_since_ms = now;
        tx.run(key);
    }
    let Some(run) = state.runs.get(key) else {
        return;
    };
    if run.stopping.is_some() {
        if run.task.is_none() {
            let reason = run.stopping.clone().unwrap_or_default();
            finish_run(state, tx, key, JobRunStatus::Failed, &reason);
        }
        return;
    }
    if let (Some(secs), Some(started)) = (run.restart.active_deadline_seconds, run.started_ms)
        && now >= started + secs * 1000
    {
        let reason = format!("activeDeadlineSeconds ({secs}s) exceeded");
        tracing::warn!(run = %key, %reason, "stopping the job run");
        return stop_run(state, tx, key, &reason);
    }
    if run.task.is_some() || now < run.next_attempt_ms {
        return;
    }
    if now >= run.waiting_since_ms + run.max_launch_delay * 1000 {
        let reason = format!(
            "not launched within maxLaunchDelay ({}s): {}",
            run.max_launch_delay,
            run.waiting.as_deref().unwrap_or("no room")
        );
        return finish_run(state, tx, key, JobRunStatus::Failed, &reason);
    }
    let app = run.app.clone();
    let offers = offers.for_app(state, &app.id);
    let placed = plan::place(&app, 1, offers);
    let Some((node, ports)) = placed.tasks.into_iter().next() else {
        if let Some(run) = state.runs.get_mut(key) {
            run.waiting = placed.short.or_else(|| Some("no agent".into()));
        }
        return;
    };
    let task = launch(state, tx, &app, "", &node, ports, Some(JOBS_FRAMEWORK));
    if let Some(run) = state.runs.get_mut(key) {
        run.task = Some(task);
        run.attempts += 1;
        run.started_ms.get_or_insert(now);
        run.waiting = None;
        tx.run(key);
    }
}

/// Tasks of runs that are no longer active (a run ended while its task was being killed, a
/// job deleted): killed, as the app scheduler kills an orphan app's tasks.
pub fn kill_orphan_run_tasks(state: &mut State, tx: &mut Tx) {
    let orphans: Vec<String> = state
        .tasks
        .app_ids()
        .filter(|id| {
            id.strip_prefix(cairn_metronome::APP_GROUP)
                .is_some_and(|rest| rest.starts_with('/'))
        })
        .flat_map(|id| state.tasks.of_app(id))
        .filter(|t| t.is_desired())
        .filter(|t| {
            run_of_task(t).is_none_or(|key| {
                state
                    .runs
                    .get(&key)
                    .is_none_or(|r| r.task.as_deref() != Some(t.id.as_str()))
            })
        })
        .map(|t| t.id.clone())
        .collect();
    for id in orphans {
        kill_task(state, tx, &id);
    }
}

#[cfg(test)]
mod tests {
    use cairn_marathon::TaskStatusUpdate;
    use serde_json::json;

    use super::super::testkit::{self, agent};
    use super::super::{SchedulerConfig, apply_status, reconcile};
    use super::*;
    use crate::model::JobEntry;

    /// 2026-01-01T00:00:00Z: ticks of the test schedules fall on whole seconds and minutes.
    const T0: u64 = 1_767_225_600_000;

    fn cfg() -> SchedulerConfig {
        SchedulerConfig {
            agent_timeout: std::time::Duration::from_secs(3600),
            lost_agent_retention: std::time::Duration::from_secs(3600),
            job_history: 3,
        }
    }

    fn job(def: serde_json::Value) -> JobEntry {
        let spec = cairn_metronome::parse_job(def, None).expect("valid test job");
        let mut s = State::default();
        let id = spec.id.clone();
        s.jobs.insert(
            id.clone(),
            JobEntry {
                spec,
                next_ticks: Default::default(),
                history: Default::default(),
                parents_done: Default::default(),
            },
        );
        plan_ticks(&mut s, &id, T0);
        s.jobs[&id].clone()
    }

    /// A state with one agent (1 cpu) and these jobs, its agent heard from at `T0`.
    fn state(jobs: Vec<JobEntry>) -> State {
        let mut a = agent("a1", 1.0, 1024.0);
        a.last_seen_ms = T0;
        let mut s = testkit::state(&[a], &[]);
        for j in jobs {
            s.jobs.insert(j.spec.id.clone(), j);
        }
        s
    }

    /// A full scheduling round at `now`.
    fn round(s: &mut State, now: u64) -> Tx {
        let mut tx = Tx::new(now);
        tx.job_history = cfg().job_history;
        reconcile(s, &mut tx, &cfg());
        tx
    }

    /// The agent reports `state` for the run's task.
    fn report(s: &mut State, task: &str, state: TaskState, now: u64) {
        let mut tx = Tx::new(now);
        tx.job_history = cfg().job_history;
        let u = TaskStatusUpdate {
            task_id: task.into(),
            state,
            message: format!("{state:?}"),
            timestamp: now,
            healthy: None,
        };
        apply_status(s, &mut tx, "a1", &u);
    }

    fn only_run(s: &State, job: &str) -> RunRecord {
        let runs: Vec<&RunRecord> = runs_of(s, job).collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs[0].clone()
    }

    fn every_ten_seconds(id: &str, policy: &str) -> JobEntry {
        job(json!({
            "id": id, "run": {"cmd": "true", "cpus": 0.5, "mem": 32},
            "schedules": [{"id": "s", "cron": "*/10 * * * * *", "concurrencyPolicy": policy,
                           "startingDeadlineSeconds": 60}],
        }))
    }

    #[test]
    fn a_tick_fires_one_run_and_plans_the_next_in_the_same_change() {
        let mut s = state(vec![every_ten_seconds("tick", "ALLOW")]);
        assert_eq!(s.jobs["tick"].next_ticks["s"], T0 + 10_000);
        let tx = round(&mut s, T0 + 9_999);
        assert!(s.runs.is_empty() && tx.runs.is_empty(), "not due yet");
        let tx = round(&mut s, T0 + 10_100);
        let run = only_run(&s, "tick");
        assert_eq!(run.trigger, "schedule:s");
        assert!(run.task.is_some(), "launched in the round that fired it");
        assert_eq!(s.jobs["tick"].next_ticks["s"], T0 + 20_000);
        assert!(tx.jobs.contains("tick") && tx.runs.contains(&run_key("tick", &run.id)));
        round(&mut s, T0 + 10_200);
        assert_eq!(
            runs_of(&s, "tick").count(),
            1,
            "the same tick never fires twice"
        );
    }

    #[test]
    fn ticks_missed_while_down_run_once_and_only_within_the_starting_deadline() {
        let cases = [
            // (offerd back at, runs started)
            (T0 + 50_500, 1),  // five ticks missed: one late run, for the last
            (T0 + 130_000, 1), // the last tick (130 s) is on time
            (T0 + 125_000, 1), // the last tick (120 s) 5 s late: within 60 s
        ];
        for (back, runs) in cases {
            let mut s = state(vec![every_ten_seconds("late", "ALLOW")]);
            round(&mut s, back);
            assert_eq!(runs_of(&s, "late").count(), runs, "back at +{}", back - T0);
            assert!(s.jobs["late"].next_ticks["s"] > back);
        }
        // A schedule whose ticks are all older than its deadline: nothing runs.
        let mut e = job(json!({
            "id": "old", "run": {"cmd": "true", "cpus": 0.1, "mem": 32},
            "schedules": [{"id": "s", "cron": "0 0 * * *", "startingDeadlineSeconds": 60}],
        }));
        e.next_ticks.insert("s".into(), T0);
        let mut s = state(vec![e]);
        s.ticks_not_before = T0;
        round(&mut s, T0 + 3_600_000);
        assert_eq!(runs_of(&s, "old").count(), 0, "an hour late, past 60 s");
        assert_eq!(s.jobs["old"].next_ticks["s"], T0 + 86_400_000);
    }

    #[test]
    fn a_round_looks_at_the_ticks_only_once_the_first_is_due() {
        let mut s = state(vec![every_ten_seconds("tick", "ALLOW")]);
        round(&mut s, T0 + 1_000);
        assert_eq!(
            s.ticks_not_before,
            T0 + 10_000,
            "the scan found the first tick"
        );
        // A tick planned earlier than that (a new schedule) lowers the bound.
        let mut e = every_ten_seconds("soon", "ALLOW");
        e.spec.schedules[0].cron = "*/2 * * * * *".into();
        s.jobs.insert("soon".into(), e);
        plan_ticks(&mut s, "soon", T0 + 1_000);
        assert_eq!(s.ticks_not_before, T0 + 2_000);
        round(&mut s, T0 + 2_000);
        assert_eq!(runs_of(&s, "soon").count(), 1);
        assert_eq!(runs_of(&s, "tick").count(), 0);
        assert_eq!(s.ticks_not_before, T0 + 4_000);
    }

    #[test]
    fn forbid_skips_a_tick_while_a_run_is_active_and_allow_does_not() {
        for (policy, expected) in [("FORBID", 1), ("ALLOW", 2)] {
            let mut s = state(vec![every_ten_seconds("slow", policy)]);
            round(&mut s, T0 + 10_000);
            round(&mut s, T0 + 20_000);
            assert_eq!(runs_of(&s, "slow").count(), expected, "{policy}");
        }
    }

    #[test]
    fn on_failure_relaunches_with_backoff_until_a_success_then_files_the_run() {
        let mut s = state(vec![job(json!({
            "id": "flaky", "run": {"cmd": "x", "cpus": 0.5, "mem": 32,
                                   "restart": {"policy": "ON_FAILURE"}},
        }))]);
        let mut tx = Tx::new(T0);
        start_run(&mut s, &mut tx, "flaky", "manual").expect("started");
        round(&mut s, T0);
        let first = only_run(&s, "flaky").task.expect("launched");
        report(&mut s, &first, TaskState::Running, T0 + 100);
        report(&mut s, &first, TaskState::Failed, T0 + 200);
        let run = only_run(&s, "flaky");
        assert_eq!((run.task.as_deref(), run.attempts), (None, 1));
        assert_eq!(run.ended.len(), 1);
        round(&mut s, T0 + 500);
        assert!(
            only_run(&s, "flaky").task.is_none(),
            "waits out its backoff"
        );
        round(&mut s, T0 + 1_300);
        let second = only_run(&s, "flaky").task.expect("relaunched after 1 s");
        assert_ne!(first, second);
        report(&mut s, &second, TaskState::Finished, T0 + 2_000);
        assert!(s.runs.is_empty());
        let h = &s.jobs["flaky"].history;
        assert_eq!((h.success_count, h.failure_count), (1, 0));
        assert_eq!(h.successful_finished_runs[0].tasks, vec![first, second]);
        assert_eq!(h.last_success_at, Some(T0 + 2_000));
    }

    #[test]
    fn a_failure_under_never_fails_the_run_and_history_keeps_the_newest() {
        let mut s = state(vec![job(json!({
            "id": "once", "run": {"cmd": "x", "cpus": 0.5, "mem": 32},
        }))]);
        let mut ids = Vec::new();
        for i in 0..5u64 {
            let now = T0 + i * 10_000;
            let mut tx = Tx::new(now);
            let key = start_run(&mut s, &mut tx, "once", "manual").expect("started");
            ids.push(s.runs[&key].id.clone());
            round(&mut s, now);
            let task = only_run(&s, "once").task.expect("launched");
            report(&mut s, &task, TaskState::Failed, now + 1);
            assert!(s.runs.is_empty(), "NEVER: no relaunch");
        }
        let h = &s.jobs["once"].history;
        assert_eq!(h.failure_count, 5);
        let kept: Vec<&str> = h
            .failed_finished_runs
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(
            kept,
            vec![&*ids[4], &*ids[3], &*ids[2]],
            "the newest 3, newest first"
        );
    }

    #[test]
    fn the_active_deadline_kills_an_overrunning_run() {
        let mut s = state(vec![job(json!({
            "id": "long", "run": {"cmd": "sleep 100", "cpus": 0.5, "mem": 32,
                                  "restart": {"policy": "ON_FAILURE", "activeDeadlineSeconds": 5}},
        }))]);
        let mut tx = Tx::new(T0);
        start_run(&mut s, &mut tx, "long", "manual").expect("started");
        round(&mut s, T0);
        let task = only_run(&s, "long").task.expect("launched");
        report(&mut s, &task, TaskState::Running, T0 + 100);
        round(&mut s, T0 + 4_000);
        assert!(s.tasks[&task].is_desired(), "within its deadline");
        round(&mut s, T0 + 5_000);
        assert!(!s.tasks[&task].is_desired(), "killed at its deadline");
        assert!(only_run(&s, "long").stopping.is_some());
        report(&mut s, &task, TaskState::Killed, T0 + 5_100);
        assert!(s.runs.is_empty(), "no relaunch past the deadline");
        assert_eq!(s.jobs["long"].history.failure_count, 1);
    }

    #[test]
    fn a_run_with_no_room_fails_after_max_launch_delay() {
        let mut s = state(vec![job(json!({
            "id": "big", "run": {"cmd": "x", "cpus": 4, "mem": 32, "maxLaunchDelay": 30},
        }))]);
        let mut tx = Tx::new(T0);
        start_run(&mut s, &mut tx, "big", "manual").expect("started");
        round(&mut s, T0 + 29_000);
        let run = only_run(&s, "big");
        assert!(run.task.is_none());
        assert!(
            run.waiting.as_deref().is_some_and(|w| w.contains("cpus")),
            "{run:?}"
        );
        round(&mut s, T0 + 30_000);
        assert!(s.runs.is_empty());
        assert_eq!(s.jobs["big"].history.failure_count, 1);
    }

    #[test]
    fn a_dependent_job_runs_once_every_parent_has_succeeded() {
        let child = |deps: &[&str]| {
            job(json!({
                "id": "child", "run": {"cmd": "x", "cpus": 0.1, "mem": 32},
                "dependencies": deps.iter().map(|d| json!({"id": d})).collect::<Vec<_>>(),
            }))
        };
        let parent = |id: &str| job(json!({"id": id, "run": {"cmd": "x", "cpus": 0.1, "mem": 32}}));
        let mut s = state(vec![parent("p1"), parent("p2"), child(&["p1", "p2"])]);
        let succeed = |s: &mut State, job: &str, now: u64| {
            let mut tx = Tx::new(now);
            start_run(s, &mut tx, job, "manual").expect("started");
            round(s, now);
            let task = only_run(s, job).task.expect("launched");
            report(s, &task, TaskState::Finished, now + 1);
        };
        succeed(&mut s, "p1", T0);
        assert_eq!(runs_of(&s, "child").count(), 0, "p2 has not run yet");
        succeed(&mut s, "p1", T0 + 10);
        assert_eq!(runs_of(&s, "child").count(), 0, "p1 twice is still not p2");
        succeed(&mut s, "p2", T0 + 20);
        assert_eq!(only_run(&s, "child").trigger, "dependency:p2");
        assert!(
            s.jobs["child"].parents_done.is_empty(),
            "counting starts over"
        );
    }

    #[test]
    fn stopping_a_run_kills_its_task_and_files_it_as_failed() {
        let mut s = state(vec![job(json!({
            "id": "stop", "run": {"cmd": "x", "cpus": 0.1, "mem": 32,
                                  "restart": {"policy": "ON_FAILURE"}},
        }))]);
        let mut tx = Tx::new(T0);
        let key = start_run(&mut s, &mut tx, "stop", "manual").expect("started");
        round(&mut s, T0);
        let task = only_run(&s, "stop").task.expect("launched");
        report(&mut s, &task, TaskState::Running, T0 + 10);
        let mut tx = Tx::new(T0 + 20);
        stop_run(&mut s, &mut tx, &key, "stopped by request");
        assert!(!s.tasks[&task].is_desired());
        report(&mut s, &task, TaskState::Killed, T0 + 30);
        assert!(
            s.runs.is_empty(),
            "ON_FAILURE does not relaunch a stopped run"
        );
        assert_eq!(s.jobs["stop"].history.failure_count, 1);
    }

    #[test]
    fn a_runs_task_is_found_from_the_task_alone() {
        let mut s = state(vec![job(
            json!({"id": "a.b", "run": {"cmd": "x", "cpus": 0.1, "mem": 32}}),
        )]);
        let mut tx = Tx::new(T0);
        let key = start_run(&mut s, &mut tx, "a.b", "manual").expect("started");
        round(&mut s, T0);
        let task = s.runs[&key].task.clone().expect("launched");
        assert_eq!(run_of_task(&s.tasks[&task]), Some(key));
        assert_eq!(s.tasks[&task].spec.service_name, "job-a-b");
    }
}

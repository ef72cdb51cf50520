//! Metronome's jobs API (`/v1/jobs`, `/v1/queue`): job definitions, their schedule, runs
//! started now or by the schedule, and each job's history. Shapes, status codes and error texts
//! are Metronome's (its `JobSpecController`, `JobScheduleController`, `JobRunController`); the
//! definitions are read by [`cairn_metronome`], the runs driven by [`crate::scheduler::jobs`].
//!
//! Rights: a job `a.b.c` is, for the auth file's deployer paths, at `/a/b/c` (Metronome and
//! DC/OS treat a job id's dots as folders): reading needs a principal, changing a job, its
//! schedules or its runs needs "change" on that path. `env` values are hidden from callers who
//! may not change the job, as apps' are.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use cairn_marathon::{ValidationError, Violation};
use cairn_metronome::{JobRun, JobSpec, ScheduleSpec, format_time, parse_job, parse_schedule};
use serde_json::{Value, json};

use super::guard::require_change;
use super::{ApiError, AppState};
use crate::auth::{Caller, HIDDEN_ENV_VALUE};
use crate::model::{JobEntry, RunRecord, State as Offerd, run_key};
use crate::scheduler::jobs::{
    RunError, next_tick, plan_ticks, run_status, run_tasks, runs_of, start_run, stop_run,
};

/// The path a job's rights are judged on: `a.b.c` → `/a/b/c`.
pub fn job_path(job_id: &str) -> String {
    format!("/{}", job_id.replace('.', "/"))
}

fn require_job_change(caller: &Caller, job_id: &str, action: &str) -> Result<(), ApiError> {
    require_change(caller, &job_path(job_id), action)
}

/// Metronome's 404 bodies: `{"id","message"}` for a job or a schedule, with `jobSpec` for a run.
fn unknown_job(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "id": id, "message": "Job not found" })),
    )
        .into_response()
}

fn unknown_schedule(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "id": id, "message": "Schedule not found" })),
    )
        .into_response()
}

fn unknown_run(job_id: &str, run_id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "jobSpec": job_id, "id": run_id, "message": "Job Run not found" })),
    )
        .into_response()
}

/// Metronome's `ErrorDetail`: `{"message"}` with a status.
fn detail(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "message": message.into() }))).into_response()
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid(ValidationError::Syntax(e.to_string())))
}

/// What `?embed=` asks to add to a job.
#[derive(Default, Clone, Copy)]
struct Embed {
    active_runs: bool,
    schedules: bool,
    history: bool,
    history_summary: bool,
}

impl Embed {
    fn of(q: &QueryParams) -> Result<Embed, ApiError> {
        let mut e = Embed::default();
        for v in q.all("embed") {
            match v {
                "activeRuns" => e.active_runs = true,
                "schedules" => e.schedules = true,
                "history" => e.history = true,
                "historySummary" => e.history_summary = true,
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown embed {other:?}: use activeRuns, schedules, history or historySummary"
                    )));
                }
            }
        }
        Ok(e)
    }
}

/// A schedule as Metronome writes it: the spec and its `nextRunAt`.
fn schedule_json(entry: &JobEntry, s: &ScheduleSpec, now_ms: u64) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    let next = entry
        .next_ticks
        .get(&s.id)
        .copied()
        // A disabled schedule still has a next execution in Metronome's answer.
        .or_else(|| {
            let mut enabled = s.clone();
            enabled.enabled = true;
            next_tick(&enabled, now_ms)
        });
    if let (Value::Object(m), Some(next)) = (&mut v, next) {
        m.insert("nextRunAt".into(), json!(format_time(next)));
    }
    v
}

fn run_json(state: &Offerd, run: &RunRecord) -> Value {
    serde_json::to_value(JobRun {
        id: run.id.clone(),
        job_id: run.job_id.clone(),
        status: run_status(state, run),
        created_at: run.created_ms,
        completed_at: None,
        tasks: run_tasks(state, run),
    })
    .unwrap_or(Value::Null)
}

/// The job's definition as Metronome writes a `JobSpec` (POST, PUT and DELETE answer it): its
/// schedules with their `nextRunAt`, `env` values hidden unless the caller may change the job.
fn spec_json(entry: &JobEntry, caller: &Caller, now_ms: u64) -> Value {
    let spec = &entry.spec;
    let mut v = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(Value::Array(schedules)) = v.get_mut("schedules") {
        *schedules = spec
            .schedules
            .iter()
            .map(|s| schedule_json(entry, s, now_ms))
            .collect();
    }
    if !caller.may_change(&job_path(&spec.id))
        && let Some(Value::Object(env)) = v.pointer_mut("/run/env")
    {
        for value in env.values_mut() {
            *value = json!(HIDDEN_ENV_VALUE);
        }
    }
    v
}

/// A job as `GET /v1/jobs[/{id}]` answers it: Metronome's `JobInfo` (the definition without
/// its schedules, unless embedded, plus what `embed` asks for).
fn job_json(state: &Offerd, entry: &JobEntry, embed: Embed, caller: &Caller, now_ms: u64) -> Value {
    let mut v = spec_json(entry, caller, now_ms);
    let Value::Object(m) = &mut v else {
        return v;
    };
    m.remove("schedules");
    if embed.schedules {
        let schedules: Vec<Value> = entry
            .spec
            .schedules
            .iter()
            .map(|s| schedule_json(entry, s, now_ms))
            .collect();
        m.insert("schedules".into(), json!(schedules));
    }
    if embed.active_runs {
        let runs: Vec<Value> = runs_of(state, &entry.spec.id)
            .map(|r| run_json(state, r))
            .collect();
        m.insert("activeRuns".into(), json!(runs));
    }
    if embed.history {
        m.insert("history".into(), json!(entry.history));
    }
    if embed.history_summary {
        m.insert("historySummary".into(), json!(entry.history.summary()));
    }
    v
}

/// `GET /v1/jobs`: every job.
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let embed = Embed::of(&q)?;
    let now = cairn_marathon::now_millis();
    Ok(Json(st.core.read(|s| {
        Value::Array(
            s.jobs
                .values()
                .map(|e| job_json(s, e, embed, &caller, now))
                .collect(),
        )
    })))
}

/// `GET /v1/jobs/{id}`.
pub async fn get_one(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let embed = Embed::of(&q)?;
    let now = cairn_marathon::now_millis();
    Ok(st.core.read(|s| match s.jobs.get(&id) {
        Some(e) => Json(job_json(s, e, embed, &caller, now)).into_response(),
        None => unknown_job(&id),
    }))
}

/// Metronome's dependency rules against the jobs there are: every parent known, no cycle
/// (a path from a parent back to the job).
fn check_dependencies(state: &Offerd, spec: &JobSpec) -> Result<(), String> {
    let unknown: Vec<&str> = spec
        .dependencies
        .iter()
        .map(|d| d.id.as_str())
        .filter(|d| !state.jobs.contains_key(*d))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "Dependencies contain unknown jobs. unknown=[{}]",
            unknown.join(", ")
        ));
    }
    // Depth-first from each parent through the parents' parents, looking for this job.
    let mut stack: Vec<&str> = spec.dependencies.iter().map(|d| d.id.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = stack.pop() {
        if id == spec.id {
            return Err("Dependencies have a cycle.".into());
        }
        if !seen.insert(id) {
            continue;
        }
        if let Some(j) = state.jobs.get(id) {
            stack.extend(j.spec.dependencies.iter().map(|d| d.id.as_str()));
        }
    }
    Ok(())
}

/// What a job change may answer besides success.
pub enum JobRefusal {
    Api(ApiError),
    /// A body of Metronome's own (boxed: a response is large, a refusal rare).
    Response(Box<Response>),
}

impl JobRefusal {
    fn response(r: Response) -> JobRefusal {
        JobRefusal::Response(Box::new(r))
    }
}

impl From<ApiError> for JobRefusal {
    fn from(e: ApiError) -> Self {
        JobRefusal::Api(e)
    }
}

impl From<crate::core::CoreError> for JobRefusal {
    fn from(e: crate::core::CoreError) -> Self {
        JobRefusal::Api(e.into())
    }
}

impl IntoResponse for JobRefusal {
    fn into_response(self) -> Response {
        match self {
            JobRefusal::Api(e) => e.into_response(),
            JobRefusal::Response(r) => *r,
        }
    }
}

/// `POST /v1/jobs`: a new job (201 with its definition; 409 when the id is taken).
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<Response, JobRefusal> {
    let spec = parse_job(json_body(&body)?, None).map_err(ApiError::from)?;
    require_job_change(&caller, &spec.id, "create job")?;
    admit(&st, &spec)?;
    let out = st
        .core
        .mutate(|s, tx| {
            if s.jobs.contains_key(&spec.id) {
                return Err(JobRefusal::response(detail(
                    StatusCode::CONFLICT,
                    "Job with this id already exists",
                )));
            }
            check_dependencies(s, &spec)
                .map_err(|m| JobRefusal::response(detail(StatusCode::UNPROCESSABLE_ENTITY, m)))?;
            let entry = JobEntry {
                spec: spec.clone(),
                next_ticks: Default::default(),
                history: Default::default(),
                parents_done: Default::default(),
            };
            s.jobs.insert(spec.id.clone(), entry);
            plan_ticks(s, &spec.id, tx.now_ms);
            tx.job(&spec.id);
            Ok(spec_json(&s.jobs[&spec.id], &caller, tx.now_ms))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// What the agents' hosts allow (host volumes, privileged containers), checked on the app a
/// run of the job would launch, with the job's paths.
fn admit(st: &AppState, spec: &JobSpec) -> Result<(), ApiError> {
    let app = spec.to_app("check")?;
    st.host_policy
        .admit(&app)
        .map_err(|e| ApiError::Invalid(cairn_metronome::job_error_of_app_error(e)))
}

/// `PUT /v1/jobs/{id}`: replaces the definition, keeping its schedules (as Metronome does).
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, JobRefusal> {
    let mut spec = parse_job(json_body(&body)?, Some(&id)).map_err(ApiError::from)?;
    require_job_change(&caller, &id, "update job")?;
    admit(&st, &spec)?;
    let out = st
        .core
        .mutate(|s, tx| {
            let Some(old) = s.jobs.get(&id) else {
                return Err(JobRefusal::response(unknown_job(&id)));
            };
            spec.schedules = old.spec.schedules.clone();
            if !spec.schedules.is_empty() && !spec.dependencies.is_empty() {
                return Err(JobRefusal::Api(ApiError::Invalid(
                    ValidationError::Invalid(vec![Violation {
                        path: "/".into(),
                        errors: vec![
                            "Jobs may not have both dependencies and schedules specified".into(),
                        ],
                    }]),
                )));
            }
            check_dependencies(s, &spec)
                .map_err(|m| JobRefusal::response(detail(StatusCode::UNPROCESSABLE_ENTITY, m)))?;
            let Some(entry) = s.jobs.get_mut(&id) else {
                return Err(JobRefusal::response(unknown_job(&id)));
            };
            entry.spec = spec.clone();
            // Parents no longer listed do not count any more.
            entry
                .parents_done
                .retain(|p| spec.dependencies.iter().any(|d| &d.id == p));
            let out = spec_json(entry, &caller, tx.now_ms);
            tx.job(&id);
            Ok(out)
        })
        .await?;
    Ok(Json(out).into_response())
}

/// `DELETE /v1/jobs/{id}[?stopCurrentJobRuns=true]`: 409 while runs are active unless they
/// are to be stopped, or while another job depends on it.
pub async fn delete(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Response, JobRefusal> {
    require_job_change(&caller, &id, "delete job")?;
    let stop = q
        .bool("stopCurrentJobRuns")
        .map_err(ApiError::from)?
        .unwrap_or(false);
    let out = st
        .core
        .mutate(|s, tx| {
            let Some(entry) = s.jobs.get(&id) else {
                return Err(JobRefusal::response(unknown_job(&id)));
            };
            let out = spec_json(entry, &caller, tx.now_ms);
            let runs: Vec<String> = runs_of(s, &id).map(|r| run_key(&id, &r.id)).collect();
            if !runs.is_empty() && !stop {
                return Err(JobRefusal::response(detail(
                    StatusCode::CONFLICT,
                    "There are active job runs. Override with stopCurrentJobRuns=true",
                )));
            }
            let children: Vec<String> = s
                .jobs
                .values()
                .filter(|j| j.spec.dependencies.iter().any(|d| d.id == id))
                .map(|j| j.spec.id.clone())
                .collect();
            if !children.is_empty() {
                return Err(JobRefusal::response(detail(
                    StatusCode::CONFLICT,
                    format!(
                        "There are jobs with a dependency on {id}. children=[{}]",
                        children.join(", ")
                    ),
                )));
            }
            for key in runs {
                stop_run(s, tx, &key, "its job was deleted");
            }
            s.jobs.remove(&id);
            tx.job(&id);
            Ok(out)
        })
        .await?;
    Ok(Json(out).into_response())
}

/// `GET /v1/jobs/{id}/schedules`.
pub async fn schedules(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let now = cairn_marathon::now_millis();
    Ok(st.core.read(|s| match s.jobs.get(&id) {
        Some(e) => Json(Value::Array(
            e.spec
                .schedules
                .iter()
                .map(|sc| schedule_json(e, sc, now))
                .collect(),
        ))
        .into_response(),
        None => unknown_job(&id),
    }))
}

/// `GET /v1/jobs/{id}/schedules/{sid}`.
pub async fn schedule(
    State(st): State<AppState>,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let now = cairn_marathon::now_millis();
    Ok(st.core.read(|s| match s.jobs.get(&id) {
        Some(e) => match e.spec.schedules.iter().find(|sc| sc.id == sid) {
            Some(sc) => Json(schedule_json(e, sc, now)).into_response(),
            None => unknown_schedule(&sid),
        },
        None => unknown_job(&id),
    }))
}

/// `POST /v1/jobs/{id}/schedules`: 201; 409 when the job has one already (Metronome supports
/// one schedule per job) or the id is taken.
pub async fn create_schedule(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, JobRefusal> {
    let schedule = parse_schedule(json_body(&body)?, None).map_err(ApiError::from)?;
    require_job_change(&caller, &id, "schedule job")?;
    let out = st
        .core
        .mutate(|s, tx| {
            let Some(entry) = s.jobs.get_mut(&id) else {
                return Err(JobRefusal::response(unknown_job(&id)));
            };
            if entry.spec.schedules.iter().any(|sc| sc.id == schedule.id) {
                return Err(JobRefusal::response(detail(
                    StatusCode::CONFLICT,
                    format!("A schedule with id {} already exists", schedule.id),
                )));
            }
            if !entry.spec.schedules.is_empty() {
                return Err(JobRefusal::response(detail(
                    StatusCode::CONFLICT,
                    "Only one schedule supported at the moment",
                )));
            }
            if !entry.spec.dependencies.is_empty() {
                return Err(JobRefusal::response(detail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Jobs may not have both dependencies and schedules specified",
                )));
            }
            entry.spec.schedules.insert(0, schedule.clone());
            plan_ticks(s, &id, tx.now_ms);
            tx.job(&id);
            Ok(schedule_json(&s.jobs[&id], &schedule, tx.now_ms))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `PUT /v1/jobs/{id}/schedules/{sid}`: replaces it (the path names it; 404 when it is not
/// there, as Metronome answers).
pub async fn update_schedule(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, sid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, JobRefusal> {
    let schedule = parse_schedule(json_body(&body)?, Some(&sid)).map_err(ApiError::from)?;
    require_job_change(&caller, &id, "schedule job")?;
    let out = st
        .core
        .mutate(|s, tx| {
            let Some(entry) = s.jobs.get_mut(&id) else {
                return Err(JobRefusal::response(unknown_job(&id)));
            };
            let Some(slot) = entry.spec.schedules.iter_mut().find(|sc| sc.id == sid) else {
                return Err(JobRefusal::response(unknown_schedule(&sid)));
            };
            *slot = schedule.clone();
            plan_ticks(s, &id, tx.now_ms);
            tx.job(&id);
            Ok(schedule_json(&s.jobs[&id], &schedule, tx.now_ms))
        })
        .await?;
    Ok(Json(out).into_response())
}

/// `DELETE /v1/jobs/{id}/schedules/{sid}`.
pub async fn delete_schedule(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Response, JobRefusal> {
    require_job_change(&caller, &id, "unschedule job")?;
    st.core
        .mutate(|s, tx| {
            let Some(entry) = s.jobs.get_mut(&id) else {
                return Err(JobRefusal::response(unknown_job(&id)));
            };
            let before = entry.spec.schedules.len();
            entry.spec.schedules.retain(|sc| sc.id != sid);
            if entry.spec.schedules.len() == before {
                return Err(JobRefusal::response(unknown_schedule(&sid)));
            }
            plan_ticks(s, &id, tx.now_ms);
            tx.job(&id);
            Ok(())
        })
        .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/jobs/{id}/runs`: the active runs.
pub async fn runs(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(st.core.read(|s| {
        if !s.jobs.contains_key(&id) {
            return unknown_job(&id);
        }
        Json(Value::Array(
            runs_of(s, &id).map(|r| run_json(s, r)).collect(),
        ))
        .into_response()
    }))
}

/// `GET /v1/jobs/{id}/runs/{run}`: an active run, or one in the history (then with its end).
pub async fn run(
    State(st): State<AppState>,
    Path((id, run_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(st.core.read(|s| {
        if let Some(r) = s.runs.get(&run_key(&id, &run_id)) {
            return Json(run_json(s, r)).into_response();
        }
        let finished = s.jobs.get(&id).and_then(|e| {
            let h = &e.history;
            let ok = h.successful_finished_runs.iter().find(|r| r.id == run_id);
            let failed = h.failed_finished_runs.iter().find(|r| r.id == run_id);
            ok.map(|r| (r, "SUCCESS"))
                .or_else(|| failed.map(|r| (r, "FAILED")))
        });
        match finished {
            Some((r, status)) => Json(json!({
                "id": r.id, "jobId": id, "status": status,
                "createdAt": format_time(r.created_at),
                "completedAt": format_time(r.finished_at),
                "tasks": r.tasks.iter().map(|t| json!({ "id": t })).collect::<Vec<_>>(),
            }))
            .into_response(),
            None => unknown_run(&id, &run_id),
        }
    }))
}

impl From<RunError> for JobRefusal {
    fn from(e: RunError) -> Self {
        match e {
            RunError::UnknownJob(id) => JobRefusal::response(unknown_job(&id)),
            RunError::TooMany(_) | RunError::TooManyForJob { .. } => {
                JobRefusal::response(detail(StatusCode::CONFLICT, e.to_string()))
            }
            RunError::Invalid { .. } => {
                JobRefusal::response(detail(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
            }
        }
    }
}

/// `POST /v1/jobs/{id}/runs`: starts a run now (201 with it).
pub async fn start(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, JobRefusal> {
    require_job_change(&caller, &id, "run job")?;
    let out = st
        .core
        .mutate(|s, tx| {
            let key = start_run(s, tx, &id, "manual")?;
            Ok::<_, JobRefusal>(key)
        })
        .await?;
    // The run as the change left it (its task may be staging already).
    let body = st.core.read(|s| match s.runs.get(&out) {
        Some(r) => run_json(s, r),
        None => Value::Null,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /v1/jobs/{id}/runs/{run}/actions/stop`: kills its task; the run ends as failed.
pub async fn stop(
    State(st): State<AppState>,
    caller: Caller,
    Path((id, run_id)): Path<(String, String)>,
) -> Result<Response, JobRefusal> {
    require_job_change(&caller, &id, "stop a run of job")?;
    let key = run_key(&id, &run_id);
    let out = st
        .core
        .mutate(|s, tx| {
            if !s.jobs.contains_key(&id) {
                return Err(JobRefusal::response(unknown_job(&id)));
            }
            let Some(r) = s.runs.get(&key) else {
                return Err(JobRefusal::response(unknown_run(&id, &run_id)));
            };
            let before = run_json(s, r);
            stop_run(s, tx, &key, "stopped by request");
            Ok(before)
        })
        .await?;
    Ok(Json(out).into_response())
}

/// `GET /v1/queue`: runs waiting to be launched, per job, in Metronome's form.
pub async fn queue(State(st): State<AppState>) -> Json<Value> {
    Json(st.core.read(|s| {
        let mut per_job: std::collections::BTreeMap<&str, Vec<Value>> = Default::default();
        for r in s.runs.values().filter(|r| r.task.is_none()) {
            per_job
                .entry(r.job_id.as_str())
                .or_default()
                .push(json!({ "runId": r.id }));
        }
        Value::Array(
            per_job
                .into_iter()
                .map(|(job, runs)| json!({ "jobId": job, "runs": runs }))
                .collect(),
        )
    }))
}

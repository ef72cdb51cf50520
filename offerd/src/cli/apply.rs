//! `offerd apply -f FILE|DIR`: make the cluster's apps and jobs match definitions kept in files
//! (the operator's git checkout). Every file is read and validated first — one bad file and
//! nothing is sent; then all app creations and changes go in one bulk `PUT /v2/apps` (validated
//! whole by the server, applied together), and with `--prune` apps not in the files are deleted.
//!
//! Jobs: a JSON object with a `run` object is a Metronome job (read as `POST /v1/jobs` reads
//! it), in a file of its own or in an array beside apps. A new job is created with its
//! schedules (`POST /v1/jobs`); a changed definition is replaced (`PUT /v1/jobs/{id}`, which
//! keeps the server's schedules), and the file's `schedules` being the desired state, the
//! server's are made to match through the schedule endpoints (deleted first, as a job has at
//! most one: then the definition, then created or replaced). Jobs are created and changed
//! parents first (`dependencies`). With `--prune-jobs` (not `--prune`, which has always meant
//! apps: a directory of apps applied with `--prune` must not delete jobs created some other
//! way), jobs no file defines are deleted, children first; one with active runs is refused
//! before anything is sent unless `--force`, which stops them (`?stopCurrentJobRuns=true`).
//! Against a server without the jobs API (Marathon), files without jobs apply as before.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use cairn_marathon::{App, parse_app};
use cairn_metronome::{JobSpec, ScheduleSpec, parse_job, parse_schedule};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ClientAuth, OfferdClient, answer_status, app_path};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// An app or job JSON file, or a directory of them (*.json, searched recursively); an
    /// object with a `run` object is a Metronome job
    #[arg(short = 'f', long = "file", required = true)]
    pub paths: Vec<PathBuf>,
    /// Delete apps that no file defines
    #[arg(long)]
    pub prune: bool,
    /// Delete jobs that no file defines (apart from --prune, so that applying a directory of
    /// apps never deletes jobs made some other way)
    #[arg(long)]
    pub prune_jobs: bool,
    /// Show what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Override deployments in progress; with --prune-jobs, delete jobs with active runs too
    /// (stopping the runs)
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

/// The app files under `path`. Any entry that cannot be read stops everything with an error
/// naming it: an app directory skipped silently would have its apps deleted by `--prune`.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let e = e.with_context(|| format!("reading an entry of {}", path.display()))?;
        entries.push(e.path());
    }
    entries.sort();
    for e in entries {
        // Follows symlinks: a link to a directory is a directory of apps, a dangling one an error.
        let meta = std::fs::metadata(&e).with_context(|| format!("reading {}", e.display()))?;
        if meta.is_dir() {
            collect(&e, out)?;
        } else if e.extension().is_some_and(|x| x == "json") {
            out.push(e);
        }
    }
    Ok(())
}

/// What the files define: apps and Metronome jobs, each with its JSON as written.
#[derive(Debug, Default)]
pub struct Definitions {
    pub apps: Vec<(App, Value)>,
    pub jobs: Vec<(JobSpec, Value)>,
}

/// A file's item is a Metronome job when it is an object with a `run` object (no Marathon app
/// has a `run` field).
fn is_job(item: &Value) -> bool {
    item.get("run").is_some_and(Value::is_object)
}

/// Reads every app and job of the files: a file holds one app or job, an array of them, or
/// `{"apps": [...]}`. All errors of all files are reported together.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Definitions> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut defs = Definitions::default();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    let mut seen_jobs = std::collections::HashMap::new();
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{}: invalid JSON: {e}", f.display()));
                continue;
            }
        };
        let items = match value {
            Value::Array(a) => a,
            Value::Object(mut m) if m.get("apps").is_some_and(Value::is_array) => m
                .remove("apps")
                .and_then(|a| a.as_array().cloned())
                .unwrap_or_default(),
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            if is_job(&item) {
                match parse_job(item.clone(), None) {
                    Ok(job) => {
                        if let Some(prev) = seen_jobs.insert(job.id.clone(), f.clone()) {
                            errors.push(format!(
                                "{}: job {} is also defined in {}",
                                f.display(),
                                job.id,
                                prev.display()
                            ));
                        }
                        defs.jobs.push((job, item));
                    }
                    Err(e) => errors.push(format!("{} (job {i}): {e}", f.display())),
                }
                continue;
            }
            match parse_app(item.clone(), None) {
                Ok(app) => {
                    if let Some(prev) = seen.insert(app.id.clone(), f.clone()) {
                        errors.push(format!(
                            "{}: app {} is also defined in {}",
                            f.display(),
                            app.id,
                            prev.display()
                        ));
                    }
                    defs.apps.push((app, item));
                }
                Err(e) => errors.push(format!("{} (app {i}): {e}", f.display())),
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "{} problem(s), nothing applied:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    Ok(defs)
}

/// One change to a job's schedules.
#[derive(Debug, PartialEq)]
enum ScheduleChange {
    Create(ScheduleSpec),
    Replace(ScheduleSpec),
    Delete(String),
}

impl ScheduleChange {
    fn describe(&self) -> String {
        match self {
            ScheduleChange::Create(sc) => format!("schedule {} created", sc.id),
            ScheduleChange::Replace(sc) => format!("schedule {} replaced", sc.id),
            ScheduleChange::Delete(id) => format!("schedule {id} deleted"),
        }
    }
}

/// What apply does to one job.
#[derive(Debug, PartialEq)]
enum JobAction {
    Create,
    Update {
        definition: bool,
        schedules: Vec<ScheduleChange>,
    },
    Unchanged,
    /// `stop_runs`: it has active runs, stopped with it (`--force`).
    Delete {
        stop_runs: bool,
    },
}

#[derive(Debug)]
struct JobChange {
    id: String,
    action: JobAction,
    /// The file's JSON (created and updated jobs).
    body: Option<Value>,
}

impl JobChange {
    /// What changes, for the report: `["definition", "schedule nightly replaced"]`.
    fn details(&self) -> Vec<String> {
        match &self.action {
            JobAction::Update {
                definition,
                schedules,
            } => definition
                .then(|| "definition".to_string())
                .into_iter()
                .chain(schedules.iter().map(ScheduleChange::describe))
                .collect(),
            JobAction::Delete { stop_runs: true } => vec!["active runs stopped".to_string()],
            _ => Vec::new(),
        }
    }
}

/// The schedule changes that turn `remote` (id, and the schedule when it reads) into `local`.
fn schedule_changes(
    local: &[ScheduleSpec],
    remote: &[(String, Option<ScheduleSpec>)],
) -> Vec<ScheduleChange> {
    let mut out: Vec<ScheduleChange> = remote
        .iter()
        .filter(|(id, _)| !local.iter().any(|l| &l.id == id))
        .map(|(id, _)| ScheduleChange::Delete(id.clone()))
        .collect();
    for l in local {
        match remote.iter().find(|(id, _)| id == &l.id) {
            None => out.push(ScheduleChange::Create(l.clone())),
            Some((_, Some(r))) if r == l => {}
            Some(_) => out.push(ScheduleChange::Replace(l.clone())),
        }
    }
    out
}

/// A job as offerd lists it (`?embed=schedules&embed=activeRuns`): its definition without
/// schedules (None when it does not read as a job) and its schedules.
fn remote_job(v: &Value) -> (Option<JobSpec>, Vec<(String, Option<ScheduleSpec>)>) {
    let schedules = v["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|sc| {
            (
                sc["id"].as_str().unwrap_or_default().to_string(),
                parse_schedule(sc.clone(), None).ok(),
            )
        })
        .collect();
    let mut def = v.clone();
    if let Value::Object(m) = &mut def {
        for k in ["schedules", "activeRuns", "history", "historySummary"] {
            m.remove(k);
        }
    }
    (parse_job(def, None).ok(), schedules)
}

/// `ids` (each with the ids it depends on) ordered so that a job comes after those of its
/// dependencies that are in the list; otherwise in the given order (a cycle, which offerd
/// refuses, is left as given).
fn dependency_order(ids: &[(String, Vec<String>)]) -> Vec<String> {
    let mut placed: Vec<String> = Vec::with_capacity(ids.len());
    let mut left: Vec<&(String, Vec<String>)> = ids.iter().collect();
    while !left.is_empty() {
        let ready = left.iter().position(|(_, deps)| {
            deps.iter()
                .all(|d| placed.contains(d) || !ids.iter().any(|(id, _)| id == d))
        });
        let next = left.remove(ready.unwrap_or(0));
        placed.push(next.0.clone());
    }
    placed
}

fn dependencies(spec: &JobSpec) -> Vec<String> {
    spec.dependencies.iter().map(|d| d.id.clone()).collect()
}

/// What apply does to each job: the files' jobs parents first, then (with `prune`) the
/// others children first. Errors (each a line) when a pruned job has active runs without
/// `force`, or a job of the files depends on one being pruned.
fn plan_jobs(
    local: &[(JobSpec, Value)],
    remote: &[Value],
    prune: bool,
    force: bool,
) -> Result<Vec<JobChange>, Vec<String>> {
    let find = |id: &str| remote.iter().find(|r| r["id"] == id);
    let order = dependency_order(
        &local
            .iter()
            .map(|(j, _)| (j.id.clone(), dependencies(j)))
            .collect::<Vec<_>>(),
    );
    let mut out = Vec::new();
    for id in order {
        let Some((spec, raw)) = local.iter().find(|(j, _)| j.id == id) else {
            continue;
        };
        let action = match find(&id) {
            None => JobAction::Create,
            Some(r) => {
                let (remote_spec, remote_schedules) = remote_job(r);
                let mut mine = spec.clone();
                mine.schedules.clear();
                let definition = remote_spec.is_none_or(|r| r != mine);
                let schedules = schedule_changes(&spec.schedules, &remote_schedules);
                if !definition && schedules.is_empty() {
                    JobAction::Unchanged
                } else {
                    JobAction::Update {
                        definition,
                        schedules,
                    }
                }
            }
        };
        out.push(JobChange {
            id,
            action,
            body: Some(raw.clone()),
        });
    }
    if !prune {
        return Ok(out);
    }
    let mut errors = Vec::new();
    let pruned: Vec<(String, Vec<String>)> = remote
        .iter()
        .filter_map(|r| r["id"].as_str())
        .filter(|id| !local.iter().any(|(j, _)| j.id == *id))
        .map(|id| {
            let deps = find(id)
                .and_then(|r| r["dependencies"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|d| d["id"].as_str().map(str::to_string))
                .collect();
            (id.to_string(), deps)
        })
        .collect();
    let mut order = dependency_order(&pruned);
    order.reverse();
    for id in order {
        let active = find(&id)
            .and_then(|r| r["activeRuns"].as_array())
            .map_or(0, Vec::len);
        if active > 0 && !force {
            errors.push(format!(
                "job {id} (in no file) has {active} active run(s): not deleted without --force, which stops them"
            ));
        }
        for (child, _) in local.iter().filter(|(j, _)| dependencies(j).contains(&id)) {
            errors.push(format!(
                "job {id} (in no file) would be deleted, but job {} of the files depends on it",
                child.id
            ));
        }
        out.push(JobChange {
            id,
            action: JobAction::Delete {
                stop_runs: active > 0,
            },
            body: None,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The server's jobs, when they matter (job files, or `--prune-jobs`): `GET /v1/jobs` with their
/// schedules and active runs. A server without the jobs API (Marathon: 404) has none, unless
/// the files define jobs.
async fn remote_jobs(
    c: &OfferdClient,
    local: &[(JobSpec, Value)],
    prune: bool,
) -> anyhow::Result<Vec<Value>> {
    if local.is_empty() && !prune {
        return Ok(Vec::new());
    }
    let query = [("embed", "schedules"), ("embed", "activeRuns")];
    match c.get("/v1/jobs", &query).await {
        Ok(v) => Ok(v.as_array().cloned().unwrap_or_default()),
        Err(e) if answer_status(&e) == Some(404) && local.is_empty() => Ok(Vec::new()),
        Err(e) if answer_status(&e) == Some(404) => {
            Err(e.context("the files define jobs, but this server has no jobs API (/v1/jobs)"))
        }
        Err(e) => Err(e),
    }
}

/// Makes one job's change on the server.
async fn apply_job(c: &OfferdClient, ch: &JobChange) -> anyhow::Result<()> {
    let path = super::jobs::job_path(&ch.id);
    let body = ch.body.as_ref();
    let schedule_path = |sid: &str| format!("{path}/schedules/{sid}");
    match &ch.action {
        JobAction::Unchanged => {}
        JobAction::Create => {
            c.call(Method::POST, "/v1/jobs", &[], body).await?;
        }
        JobAction::Update {
            definition,
            schedules,
        } => {
            // Deleted first: a job has at most one schedule, and a definition that gains
            // dependencies may not keep one.
            for sc in schedules {
                if let ScheduleChange::Delete(sid) = sc {
                    c.call(Method::DELETE, &schedule_path(sid), &[], None)
                        .await?;
                }
            }
            if *definition {
                c.call(Method::PUT, &path, &[], body).await?;
            }
            for sc in schedules {
                match sc {
                    ScheduleChange::Create(spec) => {
                        let spec = serde_json::to_value(spec).context("a schedule as JSON")?;
                        c.call(Method::POST, &format!("{path}/schedules"), &[], Some(&spec))
                            .await?;
                    }
                    ScheduleChange::Replace(spec) => {
                        let body = serde_json::to_value(spec).context("a schedule as JSON")?;
                        c.call(Method::PUT, &schedule_path(&spec.id), &[], Some(&body))
                            .await?;
                    }
                    ScheduleChange::Delete(_) => {}
                }
            }
        }
        JobAction::Delete { stop_runs } => {
            let q: &[(&str, &str)] = if *stop_runs {
                &[("stopCurrentJobRuns", "true")]
            } else {
                &[]
            };
            c.call(Method::DELETE, &path, q, None).await?;
        }
    }
    Ok(())
}

/// Whether the running definition already is what the file says (service ports the server
/// assigned for a 0, in `portDefinitions` or in port mappings, count as equal).
fn same(local: &App, remote: &Value) -> bool {
    let Ok(mut remote) = parse_app(remote.clone(), None) else {
        return false;
    };
    remote.version = None;
    remote.version_info = None;
    let mut local = local.clone();
    // In port definitions and in BRIDGE port mappings alike.
    let (l, r) = (local.service_ports(), remote.service_ports());
    if l.len() == r.len() {
        let merged: Vec<i64> = l
            .iter()
            .zip(&r)
            .map(|(l, r)| if *l == 0 { *r } else { *l })
            .collect();
        local.set_service_ports(&merged);
    }
    local == remote
}

fn strip_counts(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for k in [
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
            "tasks",
            "lastTaskFailure",
        ] {
            m.remove(k);
        }
    }
    v
}

pub async fn apply(c: &OfferdClient, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let Definitions { apps, jobs } = load(&args.paths)?;
    let remote = c.get("/v2/apps", &[]).await?;
    let remote: Vec<Value> = remote["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(strip_counts)
        .collect();
    let find = |id: &str| remote.iter().find(|r| r["id"] == id);
    let (mut created, mut updated, mut unchanged, mut deleted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bulk = Vec::new();
    for (app, raw) in &apps {
        match find(&app.id) {
            None => created.push(app.id.clone()),
            Some(r) if same(app, r) => {
                unchanged.push(app.id.clone());
                continue;
            }
            Some(_) => updated.push(app.id.clone()),
        }
        let mut body = raw.clone();
        body["id"] = json!(app.id);
        bulk.push(body);
    }
    if args.prune {
        for r in &remote {
            let id = r["id"].as_str().unwrap_or_default();
            if !apps.iter().any(|(a, _)| a.id == id) {
                deleted.push(id.to_string());
            }
        }
    }
    // The jobs' plan is complete before anything is sent: a job that cannot be pruned stops
    // the apps' changes too.
    let remote_jobs = remote_jobs(c, &jobs, args.prune_jobs).await?;
    let job_changes =
        plan_jobs(&jobs, &remote_jobs, args.prune_jobs, args.force).map_err(|errors| {
            anyhow::anyhow!(
                "{} problem(s), nothing applied:\n  {}",
                errors.len(),
                errors.join("\n  ")
            )
        })?;
    let mut deployment = Value::Null;
    if !args.dry_run {
        let force: &[(&str, &str)] = if args.force {
            &[("force", "true"), ("partialUpdate", "false")]
        } else {
            &[("partialUpdate", "false")]
        };
        if !bulk.is_empty() {
            deployment = c
                .call(Method::PUT, "/v2/apps", force, Some(&Value::Array(bulk)))
                .await?;
        }
        for id in &deleted {
            let q: &[(&str, &str)] = if args.force {
                &[("force", "true")]
            } else {
                &[]
            };
            c.call(Method::DELETE, &app_path(id), q, None).await?;
        }
    }
    let verb = |w: &str| {
        if args.dry_run {
            format!("would be {w}")
        } else {
            w.to_string()
        }
    };
    let dry = if args.dry_run { " (dry run)" } else { "" };
    // Text: the apps' report now, each job's line once it is made (so a job that fails is
    // reported after those that were changed).
    let mut printing = !args.json;
    if printing {
        let mut text = String::new();
        for (list, w) in [
            (&created, "created"),
            (&updated, "updated"),
            (&deleted, "deleted"),
        ] {
            for id in list {
                text.push_str(&format!("{id} {}\n", verb(w)));
            }
        }
        text.push_str(&format!(
            "{} created, {} updated, {} unchanged, {} deleted{dry}\n",
            created.len(),
            updated.len(),
            unchanged.len(),
            deleted.len(),
        ));
        printing = super::jobs::emit(&text)?;
    }
    let mut job_lists: [Vec<&str>; 4] = Default::default();
    let mut job_details = serde_json::Map::new();
    for ch in &job_changes {
        let (slot, w) = match ch.action {
            JobAction::Create => (0, "created"),
            JobAction::Update { .. } => (1, "updated"),
            JobAction::Unchanged => (2, ""),
            JobAction::Delete { .. } => (3, "deleted"),
        };
        job_lists[slot].push(&ch.id);
        if ch.action == JobAction::Unchanged {
            continue;
        }
        if !args.dry_run {
            apply_job(c, ch)
                .await
                .with_context(|| format!("job {}: not {w}", ch.id))?;
        }
        let details = ch.details();
        if printing {
            let mut line = format!("job {} {}", ch.id, verb(w));
            if !details.is_empty() {
                line.push_str(&format!(": {}", details.join(", ")));
            }
            printing = super::jobs::emit(&format!("{line}\n"))?;
        }
        job_details.insert(ch.id.clone(), json!(details));
    }
    let [jobs_created, jobs_updated, jobs_unchanged, jobs_deleted] = &job_lists;
    if args.json {
        super::jobs::emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&json!({
                "created": created, "updated": updated, "unchanged": unchanged, "deleted": deleted,
                "dryRun": args.dry_run, "deploymentId": deployment.get("deploymentId"),
                "jobs": {
                    "created": jobs_created, "updated": jobs_updated,
                    "unchanged": jobs_unchanged, "deleted": jobs_deleted,
                    "changes": job_details,
                },
            }))
            .unwrap_or_default()
        ))?;
    } else if printing && !job_changes.is_empty() {
        super::jobs::emit(&format!(
            "jobs: {} created, {} updated, {} unchanged, {} deleted{dry}\n",
            jobs_created.len(),
            jobs_updated.len(),
            jobs_unchanged.len(),
            jobs_deleted.len(),
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assigned_service_ports_do_not_count_as_changes() {
        let bridge = |sp: u16| {
            json!({"id": "/web", "networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "docker": {"image": "web"},
                              "portMappings": [{"containerPort": 80, "servicePort": sp}]}})
        };
        let host = |p: i64| json!({"id": "/h", "cmd": "x", "portDefinitions": [{"port": p}]});
        for (file, running, want) in [
            (bridge(0), bridge(10004), true),
            (bridge(10005), bridge(10004), false),
            (host(0), host(10004), true),
            (host(10005), host(10004), false),
        ] {
            let local = parse_app(file.clone(), None).unwrap();
            assert_eq!(same(&local, &running), want, "{file} vs {running}");
        }
    }

    #[test]
    fn an_unreadable_entry_stops_the_apply_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("web.json"),
            r#"{"id": "/web", "cmd": "sleep 100"}"#,
        )
        .expect("write");
        // A directory of apps that cannot be read (an unmounted share): its apps must not be
        // taken as gone.
        let team = dir.path().join("team-b");
        std::os::unix::fs::symlink(dir.path().join("missing"), &team).expect("symlink");
        let err = load(&[dir.path().to_path_buf()]).expect_err("refused");
        assert!(
            format!("{err:#}").contains(&team.display().to_string()),
            "names the entry: {err:#}"
        );
    }

    #[test]
    fn job_files_are_read_beside_app_files_and_all_errors_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("web.json", r#"{"id": "/web", "cmd": "sleep 100"}"#);
        write(
            "backup.json",
            r#"{"id": "backup", "run": {"cmd": "echo hi"},
                "schedules": [{"id": "nightly", "cron": "0 2 * * *"}]}"#,
        );
        write(
            "both.json",
            r#"[{"id": "/api", "cmd": "x"}, {"id": "report", "run": {"cmd": "y"}}]"#,
        );
        let defs = load(&[dir.path().to_path_buf()]).expect("loads");
        let apps: Vec<&str> = defs.apps.iter().map(|(a, _)| a.id.as_str()).collect();
        let jobs: Vec<&str> = defs.jobs.iter().map(|(j, _)| j.id.as_str()).collect();
        // Files in name order: backup.json, both.json, web.json.
        assert_eq!(apps, ["/api", "/web"]);
        assert_eq!(jobs, ["backup", "report"]);
        assert_eq!(defs.jobs[0].0.schedules[0].timezone, "UTC");

        // A bad job and a bad app in other files: both named, nothing loaded.
        write("bad-job.json", r#"{"id": "Bad_Id", "run": {"cpus": 0}}"#);
        write("bad-app.json", r#"{"id": "/x", "cpus": -1}"#);
        write("dup.json", r#"{"id": "backup", "run": {"cmd": "z"}}"#);
        let err = format!(
            "{:#}",
            load(&[dir.path().to_path_buf()]).expect_err("refused")
        );
        assert!(err.contains("nothing applied"), "{err}");
        assert!(
            err.contains("bad-job.json (job 0)") && err.contains("/run/cpus"),
            "{err}"
        );
        assert!(err.contains("bad-app.json (app 0)"), "{err}");
        assert!(err.contains("job backup is also defined in"), "{err}");
    }

    fn local(v: Value) -> (JobSpec, Value) {
        (parse_job(v.clone(), None).expect("a job"), v)
    }

    /// A job as offerd lists it: Metronome's defaults written out, a schedule's nextRunAt.
    fn listed(id: &str, cmd: &str, cron: Option<&str>, active: usize) -> Value {
        let mut spec = parse_job(json!({"id": id, "run": {"cmd": cmd}}), None).unwrap();
        spec.schedules.clear();
        let mut v = serde_json::to_value(&spec).unwrap();
        v["schedules"] = json!(
            cron.map(|c| vec![json!({
            "id": "nightly", "cron": c, "timezone": "UTC", "startingDeadlineSeconds": 900,
            "concurrencyPolicy": "ALLOW", "enabled": true,
            "nextRunAt": "2026-01-02T02:00:00.000+0000"})])
                .unwrap_or_default()
        );
        v["activeRuns"] = json!(vec![json!({"id": "r"}); active]);
        v
    }

    fn actions(changes: &[JobChange]) -> Vec<(&str, &JobAction)> {
        changes.iter().map(|c| (c.id.as_str(), &c.action)).collect()
    }

    #[test]
    fn jobs_are_compared_with_their_schedules() {
        let file = |cmd: &str, cron: &str, sid: &str| {
            local(json!({"id": "backup", "run": {"cmd": cmd},
                "schedules": [{"id": sid, "cron": cron}]}))
        };
        let remote = [listed("backup", "echo hi", Some("0 2 * * *"), 0)];
        let plan = |l: (JobSpec, Value)| plan_jobs(&[l], &remote, false, false).unwrap();

        let same = plan(file("echo hi", "0 2 * * *", "nightly"));
        assert_eq!(actions(&same), [("backup", &JobAction::Unchanged)]);

        let changed = plan(file("echo bye", "0 2 * * *", "nightly"));
        assert_eq!(
            changed[0].action,
            JobAction::Update {
                definition: true,
                schedules: vec![]
            }
        );
        assert_eq!(changed[0].details(), ["definition"]);

        let rescheduled = plan(file("echo hi", "0 3 * * *", "nightly"));
        assert_eq!(rescheduled[0].details(), ["schedule nightly replaced"]);

        // Another schedule id: the old one goes first (a job has at most one).
        let renamed = plan(file("echo hi", "0 3 * * *", "hourly"));
        assert_eq!(
            renamed[0].details(),
            ["schedule nightly deleted", "schedule hourly created"]
        );

        let unscheduled = plan(local(json!({"id": "backup", "run": {"cmd": "echo hi"}})));
        assert_eq!(unscheduled[0].details(), ["schedule nightly deleted"]);

        let new = plan_jobs(&[file("x", "* * * * *", "s")], &[], false, false).unwrap();
        assert_eq!(actions(&new), [("backup", &JobAction::Create)]);
    }

    #[test]
    fn jobs_are_created_parents_first_and_pruned_children_first() {
        let child = local(json!({"id": "child", "run": {"cmd": "x"},
            "dependencies": [{"id": "parent"}]}));
        let parent = local(json!({"id": "parent", "run": {"cmd": "x"}}));
        let plan = plan_jobs(&[child, parent], &[], false, false).unwrap();
        let ids: Vec<&str> = plan.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["parent", "child"]);

        let mut old_child = listed("old-child", "x", None, 0);
        old_child["dependencies"] = json!([{"id": "old"}]);
        let remote = [
            listed("old", "x", None, 0),
            old_child,
            listed("kept", "x", None, 0),
        ];
        let kept = local(json!({"id": "kept", "run": {"cmd": "x"}}));
        let plan = plan_jobs(std::slice::from_ref(&kept), &remote, true, false).unwrap();
        assert_eq!(
            actions(&plan),
            [
                ("kept", &JobAction::Unchanged),
                ("old-child", &JobAction::Delete { stop_runs: false }),
                ("old", &JobAction::Delete { stop_runs: false }),
            ]
        );
        // Without --prune-jobs the others are left alone.
        assert_eq!(plan_jobs(&[kept], &remote, false, false).unwrap().len(), 1);
    }

    #[test]
    fn pruning_refuses_active_runs_without_force_and_needed_parents() {
        let remote = [listed("busy", "x", None, 2), listed("parent", "x", None, 0)];
        let child = local(json!({"id": "child", "run": {"cmd": "x"},
            "dependencies": [{"id": "parent"}]}));
        let errors =
            plan_jobs(std::slice::from_ref(&child), &remote, true, false).expect_err("refused");
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].contains("job parent") && errors[0].contains("job child"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("job busy") && errors[1].contains("2 active run(s)"),
            "{errors:?}"
        );
        // --force stops the runs; the parent is still needed.
        let errors =
            plan_jobs(std::slice::from_ref(&child), &remote, true, true).expect_err("refused");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let plan = plan_jobs(&[], &remote[..1], true, true).unwrap();
        assert_eq!(
            actions(&plan),
            [("busy", &JobAction::Delete { stop_runs: true })]
        );
        assert_eq!(plan[0].details(), ["active runs stopped"]);
    }
}

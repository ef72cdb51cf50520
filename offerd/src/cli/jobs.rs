//! `offerd jobs list|show|run|stop|history|delete`: Metronome's jobs (`/v1/jobs`) for scripts,
//! cron and CI, text by default and `--json` for machines.
//!
//! - `jobs run ID --wait` starts a run, prints its id on stdout at once, follows the run
//!   (`GET /v1/jobs/{id}/runs/{run}`, every [`RUN_POLL`], with no deadline: wrap it in
//!   `timeout` for one), telling each change of its status on stderr, and exits 0 when the run
//!   ends SUCCESS, 1 when it ends FAILED. While offerd cannot be reached or answers 5xx it keeps
//!   asking (said once per distinct error on stderr); a 4xx (the job deleted, the run no longer
//!   in the history) ends it with 1.
//! - Times are shown in UTC to the second (`2026-01-02T03:00:00Z`); `--json` gives offerd's
//!   answers as they are (Metronome's form).
//! - Errors are offerd's answers (`GET /v1/jobs/x: 404 Job not found`, a 422's fields each on a
//!   line) with exit 1; usage errors (a job id offerd could not have) exit 2 before anything
//!   is sent.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use cairn_metronome::parse_time;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ClientAuth, OfferdClient, answer_status};

/// How often `jobs run --wait` asks for its run.
pub const RUN_POLL: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: JobsAction,
    #[command(flatten)]
    pub auth: ClientAuth,
}

#[derive(clap::Subcommand, Debug)]
pub enum JobsAction {
    /// List jobs with their schedule, next run, active runs and last outcomes
    List(JsonArgs),
    /// A job's definition, schedules, active runs (with their tasks) and history counts
    Show(JobArgs),
    /// Start a run now and print its id; with --wait follow it to its end: exit 0 when it
    /// succeeded, 1 when it failed
    Run(RunArgs),
    /// Stop an active run: its task is killed and the run ends as FAILED
    Stop(StopArgs),
    /// A job's finished runs, newest first: outcome, times, duration, tasks
    History(JobArgs),
    /// Delete a job (refused while it has active runs, unless --stop-runs)
    Delete(DeleteArgs),
}

#[derive(clap::Args, Debug)]
pub struct JsonArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct JobArgs {
    /// Job id (e.g. prod.backup)
    #[arg(value_parser = job_id)]
    pub id: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Job id (e.g. prod.backup)
    #[arg(value_parser = job_id)]
    pub id: String,
    /// Follow the run until it is over (status changes on stderr); exit 0 on SUCCESS, 1 on
    /// FAILED. No deadline of its own: use timeout(1) for one
    #[arg(long)]
    pub wait: bool,
    /// Print the run as JSON (with --wait: the finished run) instead of its id
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Job id
    #[arg(value_parser = job_id)]
    pub id: String,
    /// Run id (from `offerd jobs run` or `offerd jobs show`)
    #[arg(value_parser = run_id)]
    pub run: String,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// Job id
    #[arg(value_parser = job_id)]
    pub id: String,
    /// Stop the job's active runs (else a job with active runs is not deleted)
    #[arg(long)]
    pub stop_runs: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// A job id as offerd takes them (checked here: it becomes part of the request's path).
pub fn job_id(s: &str) -> Result<String, String> {
    cairn_metronome::check_job_id(s)?;
    Ok(s.to_string())
}

/// A run id: letters and digits (offerd's are `20260102030000abcde`).
pub fn run_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{s:?} is not a run id (letters and digits, like 20260102030000abcde)"
        ));
    }
    Ok(s.to_string())
}

pub fn job_path(id: &str) -> String {
    format!("/v1/jobs/{id}")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// Writes `text` to stdout now. Output that can no longer be written (`| head` closed the
/// pipe) is not an error: `Ok(false)`, and the caller stops printing.
pub fn emit(text: &str) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn emit_json(v: &Value) -> anyhow::Result<bool> {
    let text = serde_json::to_string_pretty(v).context("writing JSON")?;
    emit(&format!("{text}\n"))
}

/// A time offerd wrote (`2026-01-02T03:00:00.123+0000`) in UTC to the second
/// (`2026-01-02T03:00:00Z`); `-` when unset, the text as it is when it is not a time.
pub fn when(v: &Value) -> String {
    match v.as_str() {
        None => "-".to_string(),
        Some(t) => parse_time(t).map_or_else(|| t.to_string(), utc),
    }
}

fn utc(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map_or_else(
            || "-".to_string(),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

/// A run's length for people: `0.4s`, `42s`, `3m07s`, `2h05m`, `1d03h`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0..10 => format!("{:.1}s", ms as f64 / 1000.0),
        10..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// Rows in aligned columns, two spaces apart (the last column is not padded), each line
/// starting with `indent`. The first row is the header.
pub fn table(rows: &[Vec<String>], indent: &str) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = indent.to_string();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// A job's schedule as one cell: `0 2 * * * Europe/Berlin` (`(disabled)` after it when it
/// is), `-` without one.
pub fn schedule_cell(job: &Value) -> String {
    let Some(sc) = job["schedules"].as_array().and_then(|a| a.first()) else {
        return "-".to_string();
    };
    let mut cell = format!("{} {}", s(&sc["cron"]), s(&sc["timezone"]));
    if sc["enabled"] == false {
        cell.push_str(" (disabled)");
    }
    cell
}

/// When the job's schedule fires next (`-`: none, or disabled).
fn next_run_cell(job: &Value) -> String {
    job["schedules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|sc| sc["enabled"] != false)
        .filter_map(|sc| sc["nextRunAt"].as_str().and_then(parse_time))
        .min()
        .map_or_else(|| "-".to_string(), utc)
}

const LIST_EMBED: [(&str, &str); 3] = [
    ("embed", "activeRuns"),
    ("embed", "schedules"),
    ("embed", "historySummary"),
];

pub async fn jobs(c: &OfferdClient, args: JobsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        JobsAction::List(a) => list(c, a.json).await,
        JobsAction::Show(a) => show(c, a).await,
        JobsAction::Run(a) => run(c, a).await,
        JobsAction::Stop(a) => stop(c, a).await,
        JobsAction::History(a) => history(c, a).await,
        JobsAction::Delete(a) => delete(c, a).await,
    }
}

/// The `offerd jobs list` table of `GET /v1/jobs?embed=...`.
pub fn list_table(jobs: &Value) -> String {
    let mut rows = vec![header(&[
        "ID",
        "SCHEDULE",
        "NEXT RUN",
        "ACTIVE",
        "LAST SUCCESS",
        "LAST FAILURE",
        "SUCCESS/FAILURE",
    ])];
    for j in jobs.as_array().into_iter().flatten() {
        let h = &j["historySummary"];
        rows.push(vec![
            s(&j["id"]).to_string(),
            schedule_cell(j),
            next_run_cell(j),
            j["activeRuns"].as_array().map_or(0, Vec::len).to_string(),
            when(&h["lastSuccessAt"]),
            when(&h["lastFailureAt"]),
            format!(
                "{}/{}",
                h["successCount"].as_u64().unwrap_or(0),
                h["failureCount"].as_u64().unwrap_or(0)
            ),
        ]);
    }
    table(&rows, "")
}

async fn list(c: &OfferdClient, as_json: bool) -> anyhow::Result<ExitCode> {
    let v = c.get("/v1/jobs", &LIST_EMBED).await?;
    if as_json {
        emit_json(&v)?;
    } else {
        emit(&list_table(&v))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `offerd jobs show`'s text for a job read with [`LIST_EMBED`].
pub fn show_text(job: &Value) -> String {
    let mut definition = job.clone();
    if let Value::Object(m) = &mut definition {
        m.remove("activeRuns");
        m.remove("historySummary");
        // The definition's schedules without what offerd adds (shown below).
        for sc in m
            .get_mut("schedules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Value::Object(sc) = sc {
                sc.remove("nextRunAt");
            }
        }
    }
    let mut out = serde_json::to_string_pretty(&definition).unwrap_or_default();
    out.push_str("\n\nSchedules:\n");
    let schedules = job["schedules"].as_array().cloned().unwrap_or_default();
    if schedules.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut rows = vec![header(&[
            "ID",
            "CRON",
            "TIMEZONE",
            "ENABLED",
            "NEXT RUN",
            "CONCURRENCY",
            "STARTING DEADLINE",
        ])];
        for sc in &schedules {
            rows.push(vec![
                s(&sc["id"]).to_string(),
                s(&sc["cron"]).to_string(),
                s(&sc["timezone"]).to_string(),
                (sc["enabled"] != false).to_string(),
                if sc["enabled"] == false {
                    "-".to_string()
                } else {
                    when(&sc["nextRunAt"])
                },
                s(&sc["concurrencyPolicy"]).to_string(),
                format!("{}s", sc["startingDeadlineSeconds"]),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }
    out.push_str("\nActive runs:\n");
    let runs = job["activeRuns"].as_array().cloned().unwrap_or_default();
    if runs.is_empty() {
        out.push_str("  none\n");
    } else {
        let mut rows = vec![header(&[
            "RUN",
            "STATUS",
            "CREATED",
            "TASK",
            "TASK STATUS",
            "STARTED",
        ])];
        for r in &runs {
            let tasks = r["tasks"].as_array().cloned().unwrap_or_default();
            let base = vec![
                s(&r["id"]).to_string(),
                s(&r["status"]).to_string(),
                when(&r["createdAt"]),
            ];
            if tasks.is_empty() {
                let mut row = base.clone();
                row.extend(["-".to_string(), "-".to_string(), "-".to_string()]);
                rows.push(row);
            }
            for t in &tasks {
                let mut row = base.clone();
                row.extend([
                    s(&t["id"]).to_string(),
                    s(&t["status"]).to_string(),
                    when(&t["startedAt"]),
                ]);
                rows.push(row);
            }
        }
        out.push_str(&table(&rows, "  "));
    }
    let h = &job["historySummary"];
    out.push_str(&format!(
        "\nHistory: {} succeeded (last {}), {} failed (last {}); runs: offerd jobs history {}\n",
        h["successCount"].as_u64().unwrap_or(0),
        when(&h["lastSuccessAt"]),
        h["failureCount"].as_u64().unwrap_or(0),
        when(&h["lastFailureAt"]),
        s(&job["id"]),
    ));
    out
}

async fn show(c: &OfferdClient, args: JobArgs) -> anyhow::Result<ExitCode> {
    let v = c.get(&job_path(&args.id), &LIST_EMBED).await?;
    if args.json {
        emit_json(&v)?;
    } else {
        emit(&show_text(&v))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How a run stands, for `--wait`'s progress lines: `ACTIVE (task t TASK_RUNNING)`.
pub fn run_progress(run: &Value) -> String {
    let mut line = s(&run["status"]).to_string();
    if let Some(t) = run["tasks"].as_array().and_then(|t| t.last()) {
        line.push_str(&format!(" (task {}", s(&t["id"])));
        if let Some(st) = t["status"].as_str() {
            line.push(' ');
            line.push_str(st);
        }
        line.push(')');
    }
    line
}

/// Follows a run until it is over; returns it as offerd answers it then.
async fn wait_run(c: &OfferdClient, job: &str, run: &str, progress: bool) -> anyhow::Result<Value> {
    let path = format!("{}/runs/{run}", job_path(job));
    let mut last_progress = String::new();
    let mut last_error = String::new();
    loop {
        match c.get(&path, &[]).await {
            Ok(v) => {
                last_error.clear();
                let now = run_progress(&v);
                if progress && now != last_progress {
                    eprintln!("{job} {run}: {now}");
                }
                last_progress = now;
                if matches!(s(&v["status"]), "SUCCESS" | "FAILED") {
                    return Ok(v);
                }
            }
            Err(e) if answer_status(&e).is_some_and(|st| (400..500).contains(&st)) => {
                return Err(e).with_context(|| {
                    format!(
                        "following run {run} of job {job} (was the job deleted, or the run \
                         dropped from its history?)"
                    )
                });
            }
            // offerd restarting, a leader changing: the run goes on meanwhile.
            Err(e) => {
                let text = format!("{e:#}");
                if text != last_error {
                    eprintln!("offerd jobs run: {text}; asking again");
                    last_error = text;
                }
            }
        }
        tokio::time::sleep(RUN_POLL).await;
    }
}

async fn run(c: &OfferdClient, args: RunArgs) -> anyhow::Result<ExitCode> {
    let created = c
        .call(
            Method::POST,
            &format!("{}/runs", job_path(&args.id)),
            &[],
            None,
        )
        .await?;
    let Some(run) = created["id"].as_str().map(str::to_string) else {
        bail!("offerd answered a new run without its id: {created}");
    };
    if !args.wait {
        if args.json {
            emit_json(&created)?;
        } else {
            emit(&format!("{run}\n"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    // The id first, so a script has it while the run goes on (a closed stdout does not stop
    // the wait: the exit code is the answer).
    if !args.json {
        emit(&format!("{run}\n"))?;
    }
    let done = wait_run(c, &args.id, &run, !args.json).await?;
    let success = done["status"] == "SUCCESS";
    if args.json {
        emit_json(&done)?;
    } else if !success {
        eprintln!(
            "{} {run}: the run failed; its output: offerd logs --job {} --run {run} [--stderr]",
            args.id, args.id
        );
    }
    Ok(if success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn stop(c: &OfferdClient, args: StopArgs) -> anyhow::Result<ExitCode> {
    let v = c
        .call(
            Method::POST,
            &format!("{}/runs/{}/actions/stop", job_path(&args.id), args.run),
            &[],
            None,
        )
        .await?;
    if args.json {
        emit_json(&v)?;
    } else {
        emit(&format!(
            "stopping run {} of job {}: its task is killed, the run ends as FAILED\n",
            args.run, args.id
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A job's finished runs (from `?embed=history`), newest first, each with its `outcome`.
pub fn finished_runs(job: &Value) -> Vec<Value> {
    let h = &job["history"];
    let mut runs: Vec<Value> = [
        ("successfulFinishedRuns", "SUCCESS"),
        ("failedFinishedRuns", "FAILED"),
    ]
    .into_iter()
    .flat_map(|(key, outcome)| {
        h[key].as_array().into_iter().flatten().map(move |r| {
            json!({
                "id": r["id"], "outcome": outcome, "createdAt": r["createdAt"],
                "finishedAt": r["finishedAt"], "tasks": r["tasks"],
            })
        })
    })
    .collect();
    let at = |r: &Value, k: &str| r[k].as_str().and_then(parse_time).unwrap_or(0);
    runs.sort_by(|a, b| {
        at(b, "finishedAt")
            .cmp(&at(a, "finishedAt"))
            .then_with(|| at(b, "createdAt").cmp(&at(a, "createdAt")))
            .then_with(|| s(&b["id"]).cmp(s(&a["id"])))
    });
    runs
}

/// The `offerd jobs history` table of [`finished_runs`].
pub fn history_table(runs: &[Value]) -> String {
    let mut rows = vec![header(&[
        "RUN", "OUTCOME", "CREATED", "FINISHED", "DURATION", "TASKS",
    ])];
    for r in runs {
        let created = r["createdAt"].as_str().and_then(parse_time);
        let finished = r["finishedAt"].as_str().and_then(parse_time);
        let took = match (created, finished) {
            (Some(c), Some(f)) => duration(f.saturating_sub(c)),
            _ => "-".to_string(),
        };
        let tasks: Vec<&str> = r["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        rows.push(vec![
            s(&r["id"]).to_string(),
            s(&r["outcome"]).to_string(),
            when(&r["createdAt"]),
            when(&r["finishedAt"]),
            took,
            if tasks.is_empty() {
                "-".to_string()
            } else {
                tasks.join(",")
            },
        ]);
    }
    table(&rows, "")
}

async fn history(c: &OfferdClient, args: JobArgs) -> anyhow::Result<ExitCode> {
    let v = c.get(&job_path(&args.id), &[("embed", "history")]).await?;
    let runs = finished_runs(&v);
    if args.json {
        emit_json(&Value::Array(runs))?;
    } else {
        emit(&history_table(&runs))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn delete(c: &OfferdClient, args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let query: &[(&str, &str)] = if args.stop_runs {
        &[("stopCurrentJobRuns", "true")]
    } else {
        &[]
    };
    let v = match c
        .call(Method::DELETE, &job_path(&args.id), query, None)
        .await
    {
        Ok(v) => v,
        Err(e) if answer_status(&e) == Some(409) && format!("{e}").contains("active job runs") => {
            return Err(e.context(format!(
                "job {} has active runs: --stop-runs stops them and deletes it",
                args.id
            )));
        }
        Err(e) => return Err(e),
    };
    if args.json {
        emit_json(&v)?;
    } else {
        emit(&format!(
            "job {} deleted{}\n",
            args.id,
            if args.stop_runs {
                " (its active runs stopped)"
            } else {
                ""
            }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_can_be_part_of_a_path() {
        assert!(job_id("prod.backup-db").is_ok());
        for bad in ["", "a/b", "a?b", "Prod", "../x", "-a"] {
            assert!(job_id(bad).is_err(), "{bad:?}");
        }
        assert!(run_id("20260102030000abcde").is_ok());
        for bad in ["", "a/b", "a.b", "a?b", "../x"] {
            assert!(run_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn times_and_durations_for_people() {
        assert_eq!(
            when(&json!("2026-01-02T03:04:05.678+0000")),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(
            when(&json!("2026-01-02T04:04:05.678+0100")),
            "2026-01-02T03:04:05Z"
        );
        assert_eq!(when(&Value::Null), "-");
        assert_eq!(when(&json!("yesterday")), "yesterday");
        for (ms, want) in [
            (0, "0.0s"),
            (420, "0.4s"),
            (9_960, "10.0s"),
            (42_000, "42s"),
            (187_000, "3m07s"),
            (7_500_000, "2h05m"),
            (97_200_000, "1d03h"),
        ] {
            assert_eq!(duration(ms), want, "{ms}");
        }
    }

    #[test]
    fn tables_are_aligned_on_the_widest_cell() {
        let rows = vec![
            header(&["ID", "SCHEDULE", "N"]),
            vec!["backup".into(), "0 2 * * * UTC".into(), "1".into()],
            vec!["a".into(), "-".into(), "10".into()],
        ];
        assert_eq!(
            table(&rows, "  "),
            "  ID      SCHEDULE       N\n  backup  0 2 * * * UTC  1\n  a       -              10\n"
        );
    }

    fn job() -> Value {
        json!({
            "id": "backup", "run": {"cmd": "echo hi"},
            "schedules": [{"id": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Berlin",
                           "enabled": true, "concurrencyPolicy": "ALLOW",
                           "startingDeadlineSeconds": 900,
                           "nextRunAt": "2026-01-02T01:00:00.000+0000"}],
            "activeRuns": [{"id": "20260101000000abcde", "status": "ACTIVE",
                            "createdAt": "2026-01-01T00:00:00.000+0000",
                            "tasks": [{"id": "t1", "status": "TASK_RUNNING",
                                       "startedAt": "2026-01-01T00:00:01.000+0000"}]}],
            "historySummary": {"successCount": 3, "failureCount": 1,
                               "lastSuccessAt": "2025-12-31T02:00:09.000+0000",
                               "lastFailureAt": null},
        })
    }

    #[test]
    fn the_list_shows_schedule_next_run_and_outcomes() {
        let mut plain = json!({"id": "adhoc", "run": {"cmd": "x"}, "schedules": [],
            "activeRuns": [], "historySummary": {"successCount": 0, "failureCount": 0,
            "lastSuccessAt": null, "lastFailureAt": null}});
        let text = list_table(&json!([job(), plain.clone()]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let cells = |l: &str| {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[1]),
            [
                "backup",
                "0 2 * * * Europe/Berlin",
                "2026-01-02T01:00:00Z",
                "1",
                "2025-12-31T02:00:09Z",
                "-",
                "3/1"
            ]
        );
        assert_eq!(cells(lines[2]), ["adhoc", "-", "-", "0", "-", "-", "0/0"]);
        // A disabled schedule has no next run.
        plain["schedules"] = json!([{"id": "s", "cron": "* * * * *", "timezone": "UTC",
            "enabled": false, "nextRunAt": "2026-01-02T01:00:00.000+0000"}]);
        assert_eq!(schedule_cell(&plain), "* * * * * UTC (disabled)");
        assert_eq!(next_run_cell(&plain), "-");
    }

    #[test]
    fn show_has_the_definition_then_schedules_runs_and_history() {
        let text = show_text(&job());
        let (definition, rest) = text.split_once("\n\nSchedules:\n").expect("sections");
        let def: Value = serde_json::from_str(definition).expect("the definition is JSON");
        assert!(def.get("activeRuns").is_none() && def.get("historySummary").is_none());
        assert!(def["schedules"][0].get("nextRunAt").is_none());
        assert_eq!(def["schedules"][0]["cron"], "0 2 * * *");
        assert!(rest.contains("nightly  0 2 * * *"), "{rest}");
        assert!(
            rest.contains("20260101000000abcde  ACTIVE  2026-01-01T00:00:00Z  t1    TASK_RUNNING"),
            "{rest}"
        );
        assert!(
            rest.contains("History: 3 succeeded (last 2025-12-31T02:00:09Z), 1 failed (last -)"),
            "{rest}"
        );
    }

    #[test]
    fn history_is_newest_first_with_outcomes() {
        let job = json!({"history": {
            "successfulFinishedRuns": [
                {"id": "r3", "createdAt": "2026-01-03T00:00:00.000+0000",
                 "finishedAt": "2026-01-03T00:03:07.000+0000", "tasks": ["t3"]},
                {"id": "r1", "createdAt": "2026-01-01T00:00:00.000+0000",
                 "finishedAt": "2026-01-01T00:00:01.500+0000", "tasks": ["t1"]}],
            "failedFinishedRuns": [
                {"id": "r2", "createdAt": "2026-01-02T00:00:00.000+0000",
                 "finishedAt": "2026-01-02T00:00:42.000+0000", "tasks": []}]}});
        let runs = finished_runs(&job);
        let order: Vec<(&str, &str)> = runs
            .iter()
            .map(|r| (s(&r["id"]), s(&r["outcome"])))
            .collect();
        assert_eq!(
            order,
            [("r3", "SUCCESS"), ("r2", "FAILED"), ("r1", "SUCCESS")]
        );
        let text = history_table(&runs);
        assert!(
            text.contains("r3   SUCCESS  2026-01-03T00:00:00Z  2026-01-03T00:03:07Z  3m07s     t3"),
            "{text}"
        );
        assert!(text.contains("42s       -"), "{text}");
        assert!(text.contains("1.5s"), "{text}");
    }

    #[test]
    fn progress_names_the_latest_task() {
        assert_eq!(
            run_progress(&json!({"status": "STARTING", "tasks": []})),
            "STARTING"
        );
        assert_eq!(
            run_progress(&json!({"status": "ACTIVE", "tasks": [
                {"id": "t1", "status": "TASK_FAILED"}, {"id": "t2", "status": "TASK_RUNNING"}]})),
            "ACTIVE (task t2 TASK_RUNNING)"
        );
        // A finished run's tasks are ids only.
        assert_eq!(
            run_progress(&json!({"status": "SUCCESS", "tasks": [{"id": "t2"}]})),
            "SUCCESS (task t2)"
        );
    }

    #[test]
    fn subcommands_and_their_flags() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            crate::cli::Cli::try_parse_from(["offerd", "jobs"].iter().chain(args)).map(|cli| {
                match cli.command {
                    crate::cli::Command::Jobs(j) => (j.action, j.auth.token),
                    other => panic!("{other:?}"),
                }
            })
        };
        let (action, token) = parse(&["run", "prod.backup", "--wait", "--token", "t"]).unwrap();
        assert!(
            matches!(&action, JobsAction::Run(r) if r.id == "prod.backup" && r.wait && !r.json),
            "{action:?}"
        );
        assert_eq!(token.as_deref(), Some("t"));
        let (action, _) = parse(&["delete", "x", "--stop-runs"]).unwrap();
        assert!(matches!(action, JobsAction::Delete(d) if d.stop_runs));
        let (action, _) = parse(&["stop", "x", "20260101000000abcde"]).unwrap();
        assert!(matches!(action, JobsAction::Stop(st) if st.run == "20260101000000abcde"));
        for bad in [
            &["run", "a/b"][..],
            &["stop", "x"],
            &["stop", "x", "../r"],
            &["history"],
            &["list", "extra"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}

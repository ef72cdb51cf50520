//! `offerd jobs` and jobs in `offerd apply` / `offerd logs` against a real cluster (offerd,
//! two taskrun agents): `apply -f DIR` with an app file and a job file creates both, and again
//! changes nothing and says so; a changed schedule in the file changes the server's (a dry run
//! first, which changes nothing); `jobs run --wait` exits 0 for a run that succeeds and 1 for
//! one that fails (`exit 3`); `jobs history` lists both outcomes, newest first; `offerd logs
//! --job` prints a run's output (the newest run by default, `--run` another); `jobs list
//! --json` is JSON naming the job; an unknown job is offerd's 404 with exit 1; once its file is
//! gone, `apply --prune` (apps) leaves the job alone and `apply --prune-jobs` deletes it.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cairn_tests::bin;
use cairn_tests::cluster::{Cluster, ClusterOpts};
use serde_json::{Value, json};

const JOB: &str = "reports.hello";

/// `offerd --offerd URL args...` with no credentials from the environment, given two minutes
/// (`jobs run --wait` has no deadline of its own).
async fn cli(c: &Cluster, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(bin("offerd"))
        .arg("--offerd")
        .arg(&c.offerd.url)
        .args(args)
        .env_remove("CAIRN_OFFERD_TOKEN")
        .env_remove("CAIRN_OFFERD_CREDENTIALS")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("offerd {args:?} did not end within 120 s\n{}", c.logs()))
        .expect("running offerd")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the CLI and expects exit 0; its stdout.
async fn ok(c: &Cluster, args: &[&str]) -> String {
    let out = cli(c, args).await;
    assert!(
        out.status.success(),
        "offerd {args:?}: {out:?}\n{}\n{}",
        stderr(&out),
        c.logs()
    );
    stdout(&out)
}

/// The job file: `cmd`, and a schedule that fires only at leap-day times, so no run starts
/// by itself during the test.
fn job(cmd: &str, cron: &str, timezone: &str) -> Value {
    json!({
        "id": JOB, "description": "says hello",
        "run": { "cmd": cmd, "cpus": 0.1, "mem": 32 },
        "schedules": [{ "id": "nightly", "cron": cron, "timezone": timezone }],
    })
}

fn write(dir: &Path, name: &str, v: &Value) {
    std::fs::write(dir.join(name), serde_json::to_vec_pretty(v).expect("JSON")).expect("write");
}

/// `jobs run JOB --wait`: its exit code, the run id it printed first, its stderr.
async fn run_and_wait(c: &Cluster) -> (Option<i32>, String, String) {
    let out = cli(c, &["jobs", "run", JOB, "--wait"]).await;
    let text = stdout(&out);
    let run = text.lines().next().unwrap_or_default().to_string();
    assert!(
        !run.is_empty() && run.chars().all(|ch| ch.is_ascii_alphanumeric()),
        "the run id first on stdout: {out:?}"
    );
    (out.status.code(), run, stderr(&out))
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_from_files_runs_history_and_logs_through_the_cli() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let app = json!({ "id": "/jobs-e2e/web", "cmd": "sleep 600", "cpus": 0.1, "mem": 32,
                      "instances": 1, "portDefinitions": [] });
    write(dir.path(), "web.json", &app);
    write(
        dir.path(),
        "hello.json",
        &job("echo hello", "0 0 29 2 *", "UTC"),
    );
    let path = dir.path().display().to_string();

    // Both created.
    let text = ok(&c, &["apply", "-f", &path]).await;
    assert!(text.contains("/jobs-e2e/web created"), "{text}");
    assert!(text.contains(&format!("job {JOB} created")), "{text}");
    assert_eq!(c.offerd.http.get("/v2/apps/jobs-e2e/web").await.status, 200);
    let server = c
        .offerd
        .http
        .get(&format!("/v1/jobs/{JOB}?embed=schedules"))
        .await;
    assert_eq!(server.status, 200, "{}", server.text());
    assert_eq!(server.value()["schedules"][0]["cron"], "0 0 29 2 *");
    c.wait_running("/jobs-e2e/web", 1, 60).await;

    // Again: nothing to change, and it says so.
    let text = ok(&c, &["apply", "-f", &path]).await;
    assert!(
        text.contains("0 created, 0 updated, 1 unchanged, 0 deleted"),
        "{text}"
    );
    assert!(
        text.contains("jobs: 0 created, 0 updated, 1 unchanged, 0 deleted"),
        "{text}"
    );
    assert!(!text.contains("job reports.hello"), "{text}");
    let report: Value = serde_json::from_str(&ok(&c, &["apply", "-f", &path, "--json"]).await)
        .expect("apply --json is JSON");
    assert_eq!(report["jobs"]["unchanged"], json!([JOB]), "{report}");
    assert_eq!(report["jobs"]["updated"], json!([]), "{report}");

    // A new schedule in the file: a dry run shows it and changes nothing; then the server's
    // schedule is the file's.
    write(
        dir.path(),
        "hello.json",
        &job("echo hello", "30 3 29 2 *", "Europe/Berlin"),
    );
    let text = ok(&c, &["apply", "-f", &path, "--dry-run"]).await;
    assert!(
        text.contains(&format!(
            "job {JOB} would be updated: schedule nightly replaced"
        )),
        "{text}"
    );
    let schedule = |v: Value| v["schedules"][0].clone();
    let before = schedule(
        c.offerd
            .http
            .get(&format!("/v1/jobs/{JOB}?embed=schedules"))
            .await
            .value(),
    );
    assert_eq!(before["cron"], "0 0 29 2 *");
    let text = ok(&c, &["apply", "-f", &path]).await;
    assert!(
        text.contains(&format!("job {JOB} updated: schedule nightly replaced")),
        "{text}"
    );
    let after = schedule(
        c.offerd
            .http
            .get(&format!("/v1/jobs/{JOB}?embed=schedules"))
            .await
            .value(),
    );
    assert_eq!(after["cron"], "30 3 29 2 *", "{after}");
    assert_eq!(after["timezone"], "Europe/Berlin", "{after}");

    // A run that succeeds: exit 0.
    let (code, ok_run, err) = run_and_wait(&c).await;
    assert_eq!(code, Some(0), "jobs run --wait: {err}\n{}", c.logs());
    assert!(err.contains("SUCCESS"), "{err}");
    let run = c
        .offerd
        .http
        .get(&format!("/v1/jobs/{JOB}/runs/{ok_run}"))
        .await
        .value();
    assert_eq!(run["status"], "SUCCESS", "{run}");

    // The file's command changed to one that fails: the definition is replaced, the run
    // fails, exit 1.
    write(
        dir.path(),
        "hello.json",
        &job("echo failing; exit 3", "30 3 29 2 *", "Europe/Berlin"),
    );
    let text = ok(&c, &["apply", "-f", &path]).await;
    assert!(
        text.contains(&format!("job {JOB} updated: definition")),
        "{text}"
    );
    let (code, failed_run, err) = run_and_wait(&c).await;
    assert_eq!(code, Some(1), "jobs run --wait: {err}\n{}", c.logs());
    assert!(err.contains("FAILED"), "{err}");
    assert_ne!(ok_run, failed_run);

    // The history: both outcomes, newest first.
    let text = ok(&c, &["jobs", "history", JOB]).await;
    let line = |run: &str| {
        text.lines()
            .find(|l| l.starts_with(run))
            .unwrap_or_else(|| panic!("{run} in the history:\n{text}"))
            .to_string()
    };
    assert!(line(&ok_run).contains("SUCCESS"), "{text}");
    assert!(line(&failed_run).contains("FAILED"), "{text}");
    let history: Value = serde_json::from_str(&ok(&c, &["jobs", "history", JOB, "--json"]).await)
        .expect("history --json is JSON");
    let runs: Vec<(&str, &str)> = history
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        runs,
        [
            (failed_run.as_str(), "FAILED"),
            (ok_run.as_str(), "SUCCESS")
        ]
    );

    // The runs' output: the successful run's by --run, the newest (failed) one by default.
    let text = ok(&c, &["logs", "--job", JOB, "--run", &ok_run]).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with('[') && l.ends_with("] hello")),
        "{text}"
    );
    let text = ok(&c, &["logs", "--job", JOB]).await;
    assert!(text.lines().any(|l| l.ends_with("] failing")), "{text}");
    assert!(!text.lines().any(|l| l.ends_with("] hello")), "{text}");

    // The list, as JSON and as text.
    let list: Value =
        serde_json::from_str(&ok(&c, &["jobs", "list", "--json"]).await).expect("JSON");
    let listed = list
        .as_array()
        .and_then(|a| a.iter().find(|j| j["id"] == JOB))
        .unwrap_or_else(|| panic!("{JOB} in {list}"));
    assert_eq!(listed["historySummary"]["successCount"], 1, "{listed}");
    let text = ok(&c, &["jobs", "list"]).await;
    let row = text
        .lines()
        .find(|l| l.starts_with(JOB))
        .unwrap_or_else(|| panic!("{JOB} listed:\n{text}"));
    assert!(row.contains("30 3 29 2 * Europe/Berlin"), "{row}");
    assert!(row.trim_end().ends_with("1/1"), "{row}");

    // An unknown job: offerd's 404, exit 1.
    let out = cli(&c, &["jobs", "show", "no.such.job"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("404 Job not found"), "{out:?}");

    // The job's file gone: --prune is about apps and leaves the job alone...
    std::fs::remove_file(dir.path().join("hello.json")).expect("remove");
    let text = ok(&c, &["apply", "-f", &path, "--prune"]).await;
    assert!(!text.contains(&format!("job {JOB}")), "{text}");
    assert_eq!(
        c.offerd.http.get(&format!("/v1/jobs/{JOB}")).await.status,
        200
    );
    // ... and --prune-jobs deletes it (the app stays).
    let text = ok(&c, &["apply", "-f", &path, "--prune-jobs"]).await;
    assert!(text.contains(&format!("job {JOB} deleted")), "{text}");
    assert_eq!(
        c.offerd.http.get(&format!("/v1/jobs/{JOB}")).await.status,
        404
    );
    assert_eq!(c.offerd.http.get("/v2/apps/jobs-e2e/web").await.status, 200);
}

//! offerd's Metronome jobs API (`/v1/jobs`) against a real cluster (catalogd, offerd, taskrun
//! agents running the runs' tasks as processes or Docker containers), as Metronome's users and
//! clients rely on it:
//!
//! - a seconds schedule (cairn's 6-field cron) runs a job again and again: the history counts
//!   and lists each run (newest first, with its tasks, the newest `--job-history`), the
//!   schedule shows its next tick, and a run's output is readable through offerd
//!   (`/v1/tasks/{task}/logs`, `offerd logs --task`);
//! - `concurrencyPolicy: FORBID` never lets two runs overlap, and says so (`job_run_skipped`);
//! - `restart.policy: ON_FAILURE` relaunches a failing task inside one run until it succeeds;
//! - `activeDeadlineSeconds` ends an overrunning run as failed and kills its process, whatever
//!   the restart policy; a run that fits no agent waits in `/v1/queue` and fails after
//!   `maxLaunchDelay`;
//! - `kill -9` of offerd across ticks: every tick gets exactly one run, the tick that passed
//!   while offerd was down runs late once after the restart, and no task runs twice;
//! - Chronos-style dependencies: B runs after A succeeded; unknown parents are a 422 and a parent
//!   with children cannot be deleted (409), with Metronome's texts;
//! - a Docker job runs in the real engine (the locally imported busybox image);
//! - bad definitions are refused with Metronome's status, paths and texts, and store nothing;
//! - Metronome's own example job goes in and comes out the same (defaults filled once), a PUT
//!   keeps the schedules, and the schedule endpoints answer 201/200/404/409 as Metronome's;
//! - the `dcos-metronome` client from PyPI drives schedules and runs unmodified.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_tests::cluster::{Cluster, ClusterOpts, alive};
use cairn_tests::docker::{DockerCluster, busybox_image, require_engine};
use cairn_tests::{Resp, bin, read_stream_until, wait_for};
use serde_json::{Value, json};

/// Every embed Metronome offers on a job.
const ALL_EMBEDS: &str = "?embed=history&embed=historySummary&embed=activeRuns&embed=schedules";

fn one_agent() -> ClusterOpts {
    ClusterOpts {
        agents: 1,
        ..Default::default()
    }
}

/// A small command job.
fn job(id: &str, cmd: &str) -> Value {
    json!({ "id": id, "run": { "cmd": cmd, "cpus": 0.1, "mem": 32 } })
}

async fn send(c: &Cluster, method: &str, path: &str, body: Option<&Value>) -> Resp {
    c.offerd
        .http
        .send(method, path, body.map(|b| b.to_string().into_bytes()))
        .await
}

/// `POST /v1/jobs`, asserting 201; the body offerd answered.
async fn create(c: &Cluster, def: &Value) -> Value {
    let r = send(c, "POST", "/v1/jobs", Some(def)).await;
    assert_eq!(r.status, 201, "POST /v1/jobs {def}: {}", r.text());
    r.value()
}

/// `POST /v1/jobs/{id}/runs`, asserting 201; the run's id.
async fn start_run(c: &Cluster, id: &str) -> String {
    let r = send(c, "POST", &format!("/v1/jobs/{id}/runs"), None).await;
    assert_eq!(r.status, 201, "POST /v1/jobs/{id}/runs: {}", r.text());
    let run = r.value();
    assert_eq!(run["jobId"], id, "{run}");
    run["id"].as_str().expect("a run id").to_string()
}

/// The job with everything embedded.
async fn job_info(c: &Cluster, id: &str) -> Value {
    let r = c
        .offerd
        .http
        .get(&format!("/v1/jobs/{id}{ALL_EMBEDS}"))
        .await;
    assert_eq!(r.status, 200, "GET /v1/jobs/{id}: {}", r.text());
    r.value()
}

/// Waits until the job's history satisfies `done`; the job with everything embedded.
async fn wait_job(
    c: &Cluster,
    id: &str,
    what: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    c.wait_for(&format!("job {id}: {what}"), secs, || async {
        let info = job_info(c, id).await;
        done(&info).then_some(info)
    })
    .await
}

fn count(info: &Value, field: &str) -> u64 {
    info["history"][field].as_u64().unwrap_or(0)
}

/// The active runs of a job (`GET /v1/jobs/{id}/runs`).
async fn active_runs(c: &Cluster, id: &str) -> Vec<Value> {
    let r = c.offerd.http.get(&format!("/v1/jobs/{id}/runs")).await;
    assert_eq!(r.status, 200, "GET /v1/jobs/{id}/runs: {}", r.text());
    r.value().as_array().cloned().unwrap_or_default()
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Unix milliseconds of a time as Metronome writes it, `2016-07-15T13:02:59.735+0000`; panics
/// on anything else.
pub(crate) fn ms(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a Metronome time: {v}"));
    cairn_metronome::parse_time(s)
        .unwrap_or_else(|| panic!("{s:?} is not a time like 2016-07-15T13:02:59.735+0000"))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// `GET /v1/tasks/{task}/logs` through offerd (stdout).
async fn task_log(c: &Cluster, task: &str) -> Resp {
    c.offerd
        .http
        .get(&format!("/v1/tasks/{task}/logs?stream=stdout"))
        .await
}

/// The JSON `data:` lines of an SSE text.
fn sse_events(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .collect()
}

async fn events(c: &Cluster, event_type: &str) -> reqwest::Response {
    let r = reqwest::Client::new()
        .get(format!(
            "{}/v2/events?event_type={event_type}",
            c.offerd.url
        ))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("event stream");
    assert_eq!(r.status(), 200);
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seconds_schedule_runs_the_job_repeatedly_with_its_history_and_output() {
    // The history keeps the newest two runs; the counts go on.
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        offerd_args: vec!["--job-history".into(), "2".into()],
        ..Default::default()
    })
    .await;
    let id = "tick.every3";
    let mut def = job(id, "echo \"hello from $MARATHON_APP_ID\"");
    def["schedules"] =
        json!([{ "id": "every3", "cron": "*/3 * * * * *", "concurrencyPolicy": "ALLOW" }]);
    let created = create(&c, &def).await;
    assert_eq!(
        created["schedules"][0]["cron"], "*/3 * * * * *",
        "{created}"
    );

    let first = wait_job(&c, id, "a successful run", 60, |j| {
        count(j, "successCount") >= 1
    })
    .await;
    let seen = count(&first, "successCount");
    let info = wait_job(&c, id, "two more successful runs", 60, |j| {
        count(j, "successCount") >= seen + 2
    })
    .await;

    let h = &info["history"];
    assert_eq!(count(&info, "failureCount"), 0, "{info}");
    for field in [
        "successCount",
        "failureCount",
        "lastSuccessAt",
        "lastFailureAt",
    ] {
        assert_eq!(
            info["historySummary"][field], h[field],
            "historySummary.{field}: {info}"
        );
    }
    assert!(h["lastFailureAt"].is_null(), "{h}");
    let runs = list(&h["successfulFinishedRuns"]);
    assert!(count(&info, "successCount") >= 3, "{h}");
    assert_eq!(runs.len(), 2, "--job-history 2 keeps the newest two: {h}");
    assert!(list(&h["failedFinishedRuns"]).is_empty(), "{h}");
    // Newest first; the newest is the last success.
    let finished: Vec<u64> = runs.iter().map(|r| ms(&r["finishedAt"])).collect();
    assert!(
        finished.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {h}"
    );
    assert_eq!(ms(&h["lastSuccessAt"]), finished[0], "{h}");
    let ids: BTreeSet<&str> = runs.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(ids.len(), runs.len(), "a run id twice: {h}");
    for r in &runs {
        assert!(ms(&r["createdAt"]) <= ms(&r["finishedAt"]), "{r}");
        assert_eq!(
            list(&r["tasks"]).len(),
            1,
            "one task per successful run: {r}"
        );
    }

    // The schedule, with its next tick on a multiple of three seconds after the last run.
    let schedules = list(&info["schedules"]);
    assert_eq!(schedules.len(), 1, "{info}");
    assert_eq!(schedules[0]["id"], "every3");
    assert_eq!(schedules[0]["concurrencyPolicy"], "ALLOW");
    let next = ms(&schedules[0]["nextRunAt"]);
    assert_eq!(
        next % 3000,
        0,
        "nextRunAt {} is no tick of */3",
        schedules[0]["nextRunAt"]
    );
    assert!(next > ms(&runs[0]["createdAt"]), "{info}");
    assert!(info["activeRuns"].is_array(), "{info}");

    // The newest run's output, through offerd's API and `offerd logs --task`.
    let run_id = runs[0]["id"].as_str().expect("run id");
    let task = runs[0]["tasks"][0].as_str().expect("task id");
    let line = format!("hello from /metronome/{id}/{run_id}");
    let log = task_log(&c, task).await;
    assert_eq!(log.status, 200, "{}", log.text());
    assert!(
        log.text().contains(&line),
        "{line:?} not in {:?}",
        log.text()
    );
    let out = Command::new(bin("offerd"))
        .args(["--offerd", &c.offerd.url, "logs", "--task", task])
        .env_remove("CAIRN_OFFERD_TOKEN")
        .env_remove("CAIRN_OFFERD_CREDENTIALS")
        .output()
        .expect("running offerd logs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&line),
        "offerd logs --task {task}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn forbid_never_lets_two_runs_overlap_and_reports_the_skipped_ticks() {
    let c = Cluster::start(one_agent()).await;
    let mut skipped = events(&c, "job_run_skipped").await;
    let id = "slow";
    let mut def = job(id, "sleep 4");
    def["schedules"] =
        json!([{ "id": "often", "cron": "*/2 * * * * *", "concurrencyPolicy": "FORBID" }]);
    create(&c, &def).await;

    let mut most_active = 0;
    let info = wait_for(
        "two finished runs of a job every 2 s that takes 4 s",
        Duration::from_secs(90),
        || c.logs(),
        async || {
            most_active = most_active.max(active_runs(&c, id).await.len());
            let info = job_info(&c, id).await;
            (count(&info, "successCount") >= 2).then_some(info)
        },
    )
    .await;
    assert_eq!(
        most_active, 1,
        "FORBID let {most_active} runs be active at once"
    );
    let mut runs = list(&info["history"]["successfulFinishedRuns"]);
    runs.sort_by_key(|r| ms(&r["createdAt"]));
    for w in runs.windows(2) {
        assert!(
            ms(&w[1]["createdAt"]) >= ms(&w[0]["finishedAt"]),
            "a run started before the previous one finished: {w:?}"
        );
    }
    let text = read_stream_until(&mut skipped, 30, |t| t.contains("\"jobId\":\"slow\""))
        .await
        .unwrap_or_else(|e| panic!("no job_run_skipped event: {e}\n{}", c.logs()));
    let event = sse_events(&text)
        .into_iter()
        .find(|e| e["jobId"] == id)
        .expect("the skipped event's data");
    assert_eq!(event["eventType"], "job_run_skipped", "{event}");
    assert_eq!(event["scheduleId"], "often", "{event}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_failure_relaunches_the_task_within_one_run_until_it_succeeds() {
    let c = Cluster::start(one_agent()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let counter = dir.path().join("attempts");
    let id = "flaky";
    let cmd = format!(
        "n=$(( $(cat {f} 2>/dev/null || echo 0) + 1 )); echo $n > {f}; test $n -ge 3",
        f = counter.display()
    );
    let mut def = job(id, &cmd);
    def["run"]["restart"] = json!({ "policy": "ON_FAILURE" });
    create(&c, &def).await;
    let run = start_run(&c, id).await;

    let info = wait_job(&c, id, "its run to succeed", 90, |j| {
        count(j, "successCount") + count(j, "failureCount") >= 1
    })
    .await;
    assert_eq!(count(&info, "successCount"), 1, "{info}");
    assert_eq!(count(&info, "failureCount"), 0, "{info}");
    let entry = &info["history"]["successfulFinishedRuns"][0];
    assert_eq!(entry["id"], run.as_str(), "{info}");
    let task_ids: Vec<String> = list(&entry["tasks"])
        .iter()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    assert_eq!(task_ids.len(), 3, "three attempts, three tasks: {entry}");
    assert_eq!(
        task_ids.iter().collect::<BTreeSet<_>>().len(),
        3,
        "each attempt is a task of its own: {entry}"
    );
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap_or_default().trim(),
        "3"
    );
    let r = c
        .offerd
        .http
        .get(&format!("/v1/jobs/{id}/runs/{run}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.value();
    assert_eq!(v["status"], "SUCCESS", "{v}");
    assert_eq!(list(&v["tasks"]).len(), 3, "{v}");
    assert!(active_runs(&c, id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_active_deadline_fails_an_overrunning_run_and_kills_its_process() {
    let c = Cluster::start(one_agent()).await;
    for policy in ["NEVER", "ON_FAILURE"] {
        let id = format!("overrun-{}", policy.to_lowercase().replace('_', "-"));
        let mut def = job(&id, "sleep 600");
        def["run"]["restart"] = json!({ "policy": policy, "activeDeadlineSeconds": 3 });
        create(&c, &def).await;
        let run = start_run(&c, &id).await;
        let (task, pid) = c
            .wait_for(&format!("{id}'s task to run"), 60, || async {
                let r = c
                    .offerd
                    .http
                    .get(&format!("/v1/jobs/{id}/runs/{run}"))
                    .await;
                let v = r.value();
                let t = list(&v["tasks"])
                    .into_iter()
                    .find(|t| t["status"] == "TASK_RUNNING")?;
                let task = t["id"].as_str()?.to_string();
                let pid = c.task_pid(&task)?;
                Some((task, pid))
            })
            .await;
        assert!(
            alive(pid),
            "{policy}: the task's process {pid} is not running"
        );

        let info = wait_job(&c, &id, "its run to end", 60, |j| {
            count(j, "successCount") + count(j, "failureCount") >= 1
        })
        .await;
        assert_eq!(count(&info, "failureCount"), 1, "{policy}: {info}");
        assert_eq!(count(&info, "successCount"), 0, "{policy}: {info}");
        let entry = &info["history"]["failedFinishedRuns"][0];
        assert_eq!(entry["id"], run.as_str(), "{policy}: {info}");
        assert_eq!(
            entry["tasks"],
            json!([task]),
            "{policy}: no relaunch past the deadline"
        );
        let r = c
            .offerd
            .http
            .get(&format!("/v1/jobs/{id}/runs/{run}"))
            .await;
        assert_eq!(r.value()["status"], "FAILED", "{policy}: {}", r.text());
        assert!(
            !alive(pid),
            "{policy}: the run failed but its task's process {pid} still runs"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_fits_no_agent_waits_in_the_queue_then_fails_after_max_launch_delay() {
    let c = Cluster::start(one_agent()).await;
    let id = "too.big";
    let mut def = job(id, "true");
    def["run"]["cpus"] = json!(64);
    def["run"]["maxLaunchDelay"] = json!(2);
    create(&c, &def).await;
    let run = start_run(&c, id).await;
    let queue = c.offerd.http.get("/v1/queue").await.value();
    assert_eq!(
        queue,
        json!([{ "jobId": id, "runs": [{ "runId": run }] }]),
        "the waiting run in /v1/queue"
    );
    let info = wait_job(&c, id, "its run to give up", 60, |j| {
        count(j, "successCount") + count(j, "failureCount") >= 1
    })
    .await;
    assert_eq!(count(&info, "failureCount"), 1, "{info}");
    let entry = &info["history"]["failedFinishedRuns"][0];
    assert_eq!(entry["id"], run.as_str(), "{info}");
    assert_eq!(
        entry["tasks"],
        json!([]),
        "no task was ever launched: {info}"
    );
    assert_eq!(c.offerd.http.get("/v1/queue").await.value(), json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tick_runs_exactly_once_across_kill_9_of_offerd() {
    let mut c = Cluster::start(one_agent()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ran = dir.path().join("ran");
    // Three ticks at known seconds: A, B three seconds later, C twelve seconds after A.
    // offerd is killed just after A's run started and restarted after B: B passes while
    // offerd is down (it must run late, once), and C runs on time.
    let a = (now_ms() / 1000 + 8) * 1000;
    let (b, cc) = (a + 3000, a + 12_000);
    let sec = |t: u64| (t / 1000) % 60;
    let id = "exactly.once";
    let mut def = job(
        id,
        &format!("echo \"$MARATHON_APP_ID\" >> {}; sleep 1", ran.display()),
    );
    def["schedules"] = json!([{
        "id": "abc", "cron": format!("{},{},{} * * * * *", sec(a), sec(b), sec(cc)),
        "concurrencyPolicy": "ALLOW", "startingDeadlineSeconds": 60,
    }]);
    create(&c, &def).await;

    let first = c
        .wait_for("the run of the first tick", 60, || async {
            active_runs(&c, id).await.into_iter().next()
        })
        .await;
    c.offerd.kill9();
    assert!(
        ms(&first["createdAt"]) >= a,
        "a run before the first tick: {first}"
    );
    wait_for(
        "the second tick to pass while offerd is down",
        Duration::from_secs(30),
        String::new,
        async || (now_ms() >= b + 1000).then_some(()),
    )
    .await;
    let restarted_at = now_ms();
    c.offerd.restart().await;

    let info = wait_job(&c, id, "the third tick's run to finish", 90, |j| {
        let h = &j["history"];
        let ended: Vec<Value> = list(&h["successfulFinishedRuns"])
            .into_iter()
            .chain(list(&h["failedFinishedRuns"]))
            .collect();
        list(&j["activeRuns"]).is_empty() && ended.iter().any(|r| ms(&r["createdAt"]) >= cc)
    })
    .await;
    let h = &info["history"];
    let mut runs: Vec<Value> = list(&h["successfulFinishedRuns"])
        .into_iter()
        .chain(list(&h["failedFinishedRuns"]))
        .collect();
    runs.sort_by_key(|r| ms(&r["createdAt"]));
    // The tick a run is for: the latest of A, B, C at or before its creation.
    let ticks: Vec<u64> = runs
        .iter()
        .map(|r| {
            let created = ms(&r["createdAt"]);
            *[a, b, cc]
                .iter()
                .rev()
                .find(|t| **t <= created)
                .unwrap_or_else(|| panic!("a run created before the first tick: {r}"))
        })
        .collect();
    assert_eq!(ticks, vec![a, b, cc], "one run per tick, no more: {h}");
    assert!(
        ms(&runs[1]["createdAt"]) >= restarted_at,
        "the tick missed while offerd was down ran late after the restart: {h}"
    );
    assert_eq!(
        runs[0]["id"], first["id"],
        "the first tick's run is the one seen before the kill"
    );
    assert_eq!(count(&info, "successCount"), 3, "{h}");
    assert_eq!(count(&info, "failureCount"), 0, "{h}");
    // Each run's task ran once on the agent.
    let mut lines: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut expected: Vec<String> = runs
        .iter()
        .map(|r| format!("/metronome/{id}/{}", r["id"].as_str().unwrap_or("")))
        .collect();
    expected.sort();
    assert_eq!(lines, expected, "each run's task ran exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dependent_job_runs_after_its_parent_succeeded() {
    let c = Cluster::start(one_agent()).await;
    create(&c, &job("dep-a", "echo a")).await;

    // An unknown parent: Metronome's 422, and nothing stored.
    let mut orphan = job("dep-b", "echo b");
    orphan["dependencies"] = json!([{ "id": "dep-missing" }]);
    let r = send(&c, "POST", "/v1/jobs", Some(&orphan)).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        r.value()["message"],
        "Dependencies contain unknown jobs. unknown=[dep-missing]"
    );
    assert_eq!(c.offerd.http.get("/v1/jobs/dep-b").await.status, 404);

    let mut child = job("dep-b", "echo b");
    child["dependencies"] = json!([{ "id": "dep-a" }]);
    let created = create(&c, &child).await;
    assert_eq!(created["dependencies"], json!([{ "id": "dep-a" }]));

    // A job with a dependency takes no schedule.
    let r = send(
        &c,
        "POST",
        "/v1/jobs/dep-b/schedules",
        Some(&json!({ "id": "s", "cron": "0 * * * *" })),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.text());

    // The parent cannot go while a job depends on it.
    let r = c.offerd.http.delete("/v1/jobs/dep-a").await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.value()["message"],
        "There are jobs with a dependency on dep-a. children=[dep-b]"
    );
    assert_eq!(c.offerd.http.get("/v1/jobs/dep-a").await.status, 200);

    let run_a = start_run(&c, "dep-a").await;
    let b = wait_job(&c, "dep-b", "a successful run after dep-a's", 60, |j| {
        count(j, "successCount") >= 1
    })
    .await;
    let a = job_info(&c, "dep-a").await;
    let a_run = &a["history"]["successfulFinishedRuns"][0];
    assert_eq!(a_run["id"], run_a.as_str(), "{a}");
    let b_run = &b["history"]["successfulFinishedRuns"][0];
    assert!(
        ms(&b_run["createdAt"]) >= ms(&a_run["finishedAt"]),
        "dep-b's run {b_run} was created before dep-a's run {a_run} finished"
    );
    assert_eq!(count(&b, "successCount"), 1, "{b}");
    assert_eq!(count(&b, "failureCount"), 0, "{b}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_docker_job_runs_to_success_in_the_engine() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(one_agent()).await;
    let id = "in.docker";
    let mut def = job(id, "echo \"hello from docker $MARATHON_APP_ID\"");
    def["run"]["docker"] = json!({ "image": image });
    let created = create(&c, &def).await;
    assert_eq!(created["run"]["docker"]["image"], image.as_str());
    let run = start_run(&c, id).await;
    let info = wait_job(&c, id, "its run to end", 120, |j| {
        count(j, "successCount") + count(j, "failureCount") >= 1
    })
    .await;
    assert_eq!(count(&info, "successCount"), 1, "{info}\n{}", c.logs());
    let entry = &info["history"]["successfulFinishedRuns"][0];
    assert_eq!(entry["id"], run.as_str());
    let task = entry["tasks"][0].as_str().expect("a task");
    let log = task_log(&c, task).await;
    let line = format!("hello from docker /metronome/{id}/{run}");
    assert!(
        log.text().contains(&line),
        "{line:?} not in {:?}",
        log.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_definitions_are_refused_with_metronomes_paths_and_store_nothing() {
    let c = Cluster::start(one_agent()).await;
    let mut good = job("good", "true");
    good["description"] = json!("the original");
    create(&c, &good).await;

    let with = |id: &str, f: &dyn Fn(&mut Value)| {
        let mut v = job(id, "true");
        f(&mut v);
        v.to_string()
    };
    // (what, job id the body names, body, status, a 422's path or a message's text)
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "mem under 32",
            "small",
            with("small", &|v| v["run"]["mem"] = json!(10)),
            422,
            "/run/mem",
        ),
        ("uppercase id", "Bad", with("Bad", &|_| {}), 422, "/id"),
        (
            "bad cron",
            "badcron",
            with("badcron", &|v| {
                v["schedules"] = json!([{ "id": "s", "cron": "every day" }])
            }),
            422,
            "/schedules(0)/cron",
        ),
        (
            "artifacts",
            "fetch",
            with("fetch", &|v| {
                v["run"]["artifacts"] = json!([{ "uri": "http://example.com/a.tgz" }])
            }),
            422,
            "/run/artifacts",
        ),
        (
            "cmd and args",
            "both",
            with("both", &|v| v["run"]["args"] = json!(["echo", "x"])),
            422,
            "/run",
        ),
        (
            "env from a secret",
            "secret",
            with("secret", &|v| {
                v["run"]["env"] = json!({ "DB_PASSWORD": { "secret": "db" } })
            }),
            422,
            "/run/env/DB_PASSWORD",
        ),
        (
            "nothing to run",
            "empty",
            json!({ "id": "empty", "run": { "cpus": 0.1, "mem": 32 } }).to_string(),
            422,
            "/run",
        ),
        (
            "invalid JSON",
            "broken",
            r#"{"id": "broken", "run": {"#.to_string(),
            400,
            "",
        ),
        (
            "duplicate id",
            "good",
            with("good", &|v| v["description"] = json!("a second one")),
            409,
            "Job with this id already exists",
        ),
    ];
    for (what, id, body, status, detail) in &cases {
        let r = c
            .offerd
            .http
            .send("POST", "/v1/jobs", Some(body.clone().into_bytes()))
            .await;
        assert_eq!(r.status, *status, "{what}: {}", r.text());
        let v: Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{what}: the answer is not JSON ({e}): {}", r.text()));
        match status {
            422 => {
                assert!(
                    list(&v["details"])
                        .iter()
                        .any(|d| d["path"] == *detail && !list(&d["errors"]).is_empty()),
                    "{what}: no error at {detail} in {v}"
                );
                assert_eq!(v["message"], "Object is not valid", "{what}: {v}");
            }
            409 => assert_eq!(v["message"], *detail, "{what}: {v}"),
            _ => assert!(v["message"].is_string(), "{what}: {v}"),
        }
        if *id != "good" {
            let r = c.offerd.http.get(&format!("/v1/jobs/{id}")).await;
            assert_eq!(r.status, 404, "{what}: job {id} was stored: {}", r.text());
        }
    }

    let r = c.offerd.http.get("/v1/jobs/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.value(),
        json!({ "id": "nope", "message": "Job not found" })
    );
    let r = c.offerd.http.get("/v1/jobs/good/runs/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.value(),
        json!({ "jobSpec": "good", "id": "nope", "message": "Job Run not found" })
    );
    let jobs = c.offerd.http.get("/v1/jobs").await.value();
    let ids: Vec<Value> = list(&jobs).iter().map(|j| j["id"].clone()).collect();
    assert_eq!(ids, vec![json!("good")], "{jobs}");
    assert_eq!(
        jobs[0]["description"], "the original",
        "the duplicate changed it: {jobs}"
    );
}

/// Metronome's example job (`api/v1/examples/job.json`) without what cairn refuses (artifacts,
/// the Calico network).
fn metronome_example() -> Value {
    json!({
        "description": "Example Application",
        "id": "prod.example.app",
        "labels": { "location": "olympus", "owner": "zeus" },
        "schedules": [],
        "run": {
            "cmd": "nuke --dry --master local",
            "cpus": 1.5,
            "mem": 32,
            "disk": 128,
            "docker": { "image": "foo/bla:test" },
            "env": { "MON": "test", "CONNECT": "direct" },
            "maxLaunchDelay": 3600,
            "placement": {
                "constraints": [{ "attribute": "rack", "operator": "EQ", "value": "rack-2" }]
            },
            "restart": { "activeDeadlineSeconds": 120, "policy": "NEVER" },
            "user": "root",
            "volumes": [{ "containerPath": "/mnt/test", "hostPath": "/etc/guest", "mode": "RW" }]
        }
    })
}

/// Asserts every field of `sent` is in `got` with the same value (`got` may add defaults).
fn assert_contains(got: &Value, sent: &Value, at: &str) {
    match (got, sent) {
        (Value::Object(g), Value::Object(s)) => {
            for (k, v) in s {
                let g = g
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}/{k} is missing from {got}"));
                assert_contains(g, v, &format!("{at}/{k}"));
            }
        }
        (Value::Array(g), Value::Array(s)) => {
            assert_eq!(g.len(), s.len(), "{at}: {got} vs {sent}");
            for (i, (g, s)) in g.iter().zip(s).enumerate() {
                assert_contains(g, s, &format!("{at}({i})"));
            }
        }
        (Value::Number(g), Value::Number(s)) => {
            assert_eq!(g.as_f64(), s.as_f64(), "{at}: {got} vs {sent}")
        }
        _ => assert_eq!(got, sent, "{at}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metronomes_example_job_round_trips_and_schedules_follow_metronomes_rules() {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        offerd_args: vec!["--allow-host-volumes".into(), "/etc/guest".into()],
        ..Default::default()
    })
    .await;
    let id = "prod.example.app";
    let example = metronome_example();
    let posted = create(&c, &example).await;
    // What was sent comes back (EQ is Metronome's old name of IS), with Metronome's defaults.
    let mut expected = example.clone();
    expected["run"]["placement"]["constraints"][0]["operator"] = json!("IS");
    assert_contains(&posted, &expected, "");
    for (path, default) in [
        ("/dependencies", json!([])),
        ("/run/gpus", json!(0)),
        ("/run/artifacts", json!([])),
        ("/run/secrets", json!({})),
        ("/run/networks", json!([])),
        ("/run/docker/privileged", json!(false)),
        ("/run/docker/forcePullImage", json!(false)),
        ("/run/docker/parameters", json!([])),
    ] {
        assert_eq!(posted.pointer(path), Some(&default), "{path}: {posted}");
    }
    // GET answers the definition POST answered.
    let got = c
        .offerd
        .http
        .get(&format!("/v1/jobs/{id}?embed=schedules"))
        .await;
    assert_eq!(
        got.value(),
        posted,
        "GET ?embed=schedules differs from POST's answer"
    );
    let mut without_schedules = posted.clone();
    without_schedules
        .as_object_mut()
        .map(|m| m.remove("schedules"));
    assert_eq!(
        c.offerd.http.get(&format!("/v1/jobs/{id}")).await.value(),
        without_schedules,
        "GET without embed is the definition without its schedules"
    );
    // What offerd wrote is a definition it reads back as the same job.
    let mut copy = posted.clone();
    copy["id"] = json!("prod.example.copy");
    let copied = create(&c, &copy).await;
    assert_eq!(copied, copy, "re-POSTing the answer under another id");

    // Schedules: POST 201, then one per job (409 for the same id or another one).
    let nightly = json!({ "id": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin" });
    let path = format!("/v1/jobs/{id}/schedules");
    let r = send(&c, "POST", &path, Some(&nightly)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let s = r.value();
    assert_contains(&s, &nightly, "schedule");
    assert_eq!(s["concurrencyPolicy"], "ALLOW", "{s}");
    assert_eq!(s["enabled"], true, "{s}");
    assert_eq!(s["startingDeadlineSeconds"], 900, "{s}");
    assert!(s["nextRunAt"].is_string(), "{s}");
    let r = send(&c, "POST", &path, Some(&nightly)).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text()
            .contains("A schedule with id nightly already exists"),
        "{}",
        r.text()
    );
    let other = json!({ "id": "other", "cron": "0 4 * * *" });
    let r = send(&c, "POST", &path, Some(&other)).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text()
            .contains("Only one schedule supported at the moment"),
        "{}",
        r.text()
    );

    // PUT of the job keeps its schedules.
    let mut changed = without_schedules.clone();
    changed["description"] = json!("changed");
    let r = send(&c, "PUT", &format!("/v1/jobs/{id}"), Some(&changed)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.value()["description"], "changed");
    let after = c
        .offerd
        .http
        .get(&format!("/v1/jobs/{id}?embed=schedules"))
        .await
        .value();
    assert_eq!(after["description"], "changed", "{after}");
    let kept = list(&after["schedules"]);
    assert_eq!(kept.len(), 1, "PUT dropped the schedule: {after}");
    assert_contains(&kept[0], &nightly, "kept schedule");

    // PUT and DELETE of a schedule: 200, and 404 with Metronome's body for an unknown one.
    let later = json!({ "id": "nightly", "cron": "30 4 * * *", "timezone": "Europe/Berlin" });
    let r = send(&c, "PUT", &format!("{path}/nightly"), Some(&later)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.value()["cron"], "30 4 * * *");
    let one = c.offerd.http.get(&format!("{path}/nightly")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.value()["cron"], "30 4 * * *");
    let r = send(&c, "PUT", &format!("{path}/nope"), Some(&later)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        r.value(),
        json!({ "id": "nope", "message": "Schedule not found" })
    );
    let r = c.offerd.http.delete(&format!("{path}/nope")).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.offerd.http.delete(&format!("{path}/nightly")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.offerd.http.get(&path).await.value(), json!([]));
    assert_eq!(
        c.offerd
            .http
            .delete(&format!("{path}/nightly"))
            .await
            .status,
        404
    );
    let r = send(&c, "POST", "/v1/jobs/nope/schedules", Some(&nightly)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        r.value(),
        json!({ "id": "nope", "message": "Job not found" })
    );

    // A definition as POST and PUT answer it: Metronome writes every schedule with its
    // `nextRunAt` (its `ScheduleSpecFormat` adds it to whatever JSON holds a schedule).
    let mut scheduled = job("with.schedule", "true");
    scheduled["schedules"] = json!([nightly]);
    let posted = create(&c, &scheduled).await;
    let r = send(&c, "PUT", "/v1/jobs/with.schedule", Some(&job("x", "true"))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    for (what, body) in [("POST", posted), ("PUT", r.value())] {
        assert!(
            body["schedules"][0]["nextRunAt"].is_string(),
            "{what} /v1/jobs answered a schedule without nextRunAt: {body}"
        );
    }
}

/// Drives offerd with the `dcos-metronome` client (PyPI, `import metronome`) as it is:
/// schedules, runs and a stop. Its 2017 protobuf models predate `dependencies`, `schedules`,
/// `gpus`, `secrets` and `networks` in a job, which Metronome's current API writes, so its
/// `create_job`/`get_job`/`list_jobs` cannot read Metronome's answers either; the script
/// creates the jobs with plain HTTP and uses the client for everything else.
const PY_METRONOME: &str = r#"
import json, sys, time
import requests
import metronome
from metronome.models import ScheduleSpec, JobRun

url = sys.argv[1]
c = metronome.MetronomeClient(url)
assert c.ping().strip() == "pong", c.ping()

for job in ({"id": "py.ok", "run": {"cmd": "echo py", "cpus": 0.1, "mem": 32}},
            {"id": "py.slow", "run": {"cmd": "sleep 600", "cpus": 0.1, "mem": 32}}):
    r = requests.post(url + "/v1/jobs", json=job)
    assert r.status_code == 201, r.text

s = ScheduleSpec(id="nightly", cron="0 3 * * *", timezone="UTC",
                 startingDeadlineSeconds=120, enabled=True)
created = c.create_schedule("py.ok", s)
assert created and created.id == "nightly" and created.nextRunAt, created
assert [x.id for x in c.list_schedules("py.ok")] == ["nightly"]
assert c.get_schedule("py.ok", "nightly").cron == "0 3 * * *"
s.cron = "30 4 * * *"
assert c.update_schedule("py.ok", "nightly", s).cron == "30 4 * * *"
assert c.delete_schedule("py.ok", "nightly").status_code == 200
assert c.list_schedules("py.ok") == []
try:
    c.get_schedule("py.ok", "nightly")
    raise AssertionError("an unknown schedule was found")
except metronome.NotFoundError:
    pass

run = c.run_job("py.ok")
assert run and run.jobId == "py.ok", run
deadline = time.time() + 60
while True:
    got = c.get_run("py.ok", run.id)
    if got.status == JobRun.SUCCESS:
        break
    assert time.time() < deadline, got
    time.sleep(0.2)
assert len(got.tasks) == 1, got

slow = c.run_job("py.slow")
deadline = time.time() + 60
while c.get_run("py.slow", slow.id).status != JobRun.ACTIVE:
    assert time.time() < deadline, c.get_run("py.slow", slow.id)
    time.sleep(0.2)
assert [r.id for r in c.list_runs("py.slow")] == [slow.id]
assert c.stop_run("py.slow", slow.id).status_code == 200
deadline = time.time() + 60
while c.get_run("py.slow", slow.id).status != JobRun.FAILED:
    assert time.time() < deadline, c.get_run("py.slow", slow.id)
    time.sleep(0.2)
assert c.list_runs("py.slow") == []
assert c.delete_job("py.slow").status_code == 200
try:
    c.list_runs("py.slow")
    raise AssertionError("a deleted job still lists runs")
except metronome.NotFoundError:
    pass
print("py-metronome: all checks passed")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_dcos_metronome_python_client_drives_schedules_and_runs() {
    let c = Cluster::start(one_agent()).await;
    let url = c.offerd.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", PY_METRONOME, &url])
            // Its generated protobuf modules predate protobuf 4's C++ descriptors.
            .env("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
            .current_dir(Path::new("/"))
            .output()
            .expect("running python3")
    })
    .await
    .expect("python3 thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'metronome'"),
        "the dcos-metronome client is not installed: pip install dcos-metronome"
    );
    assert!(
        out.status.success() && stdout.contains("py-metronome: all checks passed"),
        "dcos-metronome script failed:\n{stdout}\n{stderr}\n{}",
        c.logs()
    );
}

//! Operating a cluster: health-driven replacement and rolling upgrades that keep capacity, node
//! drain, and the offers API with the example cron framework (examples/frameworks/cron.sh).

use std::process::Command;
use std::time::Duration;

use cairn_tests::cluster::{Cluster, ClusterOpts, alive, sleep_app};
use cairn_tests::{read_stream_until, workspace_root};
use serde_json::{Value, json};

/// An HTTP app that is healthy (python's http.server on PORT0).
fn healthy_web(id: &str, n: usize, tag: &str) -> Value {
    json!({
        "id": id, "cpus": 0.1, "mem": 32, "instances": n,
        "cmd": format!("exec python3 -m http.server $PORT0 --bind 127.0.0.1 # {tag}"),
        "upgradeStrategy": { "minimumHealthCapacity": 1.0, "maximumOverCapacity": 0.5 },
        // Tolerant checks: on a loaded 2-core machine a single slow answer must not fail v1.
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "intervalSeconds": 1, "timeoutSeconds": 5,
                           "gracePeriodSeconds": 1, "maxConsecutiveFailures": 10 }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn unhealthy_tasks_are_killed_and_replaced() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let mut events = reqwest::get(format!(
        "{}/v2/events?event_type=unhealthy_instance_kill_event",
        c.offerd.url
    ))
    .await
    .expect("events");
    // Nothing listens on PORT0: the TCP check never passes.
    let app = json!({
        "id": "/sick", "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 1,
        "healthChecks": [{ "protocol": "TCP", "intervalSeconds": 1, "timeoutSeconds": 1,
                           "gracePeriodSeconds": 1, "maxConsecutiveFailures": 2 }]
    });
    assert_eq!(c.post_app(&app).await.status, 201);
    let first = c
        .wait_for("the first task to run", 60, || async {
            let r = c.running("/sick").await;
            (r.len() == 1).then(|| r[0].clone())
        })
        .await;
    let pid = c
        .wait_for("its pid", 30, || async { c.task_pid(&first) })
        .await;
    let text = read_stream_until(&mut events, 60, |t| t.contains(&first))
        .await
        .unwrap_or_else(|e| panic!("no kill event: {e}\n{}", c.logs()));
    assert!(text.contains("maxConsecutiveFailures"), "{text}");
    c.wait_for("the unhealthy task's process to be killed", 30, || async {
        (!alive(pid)).then_some(())
    })
    .await;
    c.wait_for("a replacement", 60, || async {
        let t = c.tasks("/sick").await;
        (t.len() == 1 && t[0]["id"] != first.as_str()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unhealthy_version_never_replaces_the_healthy_one_and_cancel_rolls_back() {
    let c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&healthy_web("/web", 2, "v1")).await.status, 201);
    let v1 = c.wait_running("/web", 2, 60).await;
    c.wait_for("v1 healthy", 60, || async {
        let a = c.offerd.http.get("/v2/apps/web").await.value();
        (a["app"]["tasksHealthy"] == 2).then_some(())
    })
    .await;

    // v2 listens nowhere: never healthy.
    let r = c
        .put_app(
            "/web",
            &json!({ "cmd": "sleep 600", "healthChecks": [{ "protocol": "TCP", "intervalSeconds": 1,
            "timeoutSeconds": 1, "gracePeriodSeconds": 30, "maxConsecutiveFailures": 0 }] }),
            false,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dep = r.value()["deploymentId"]
        .as_str()
        .expect("deployment")
        .to_string();
    // The new task starts (maximumOverCapacity 0.5 of 2 = one extra) ...
    c.wait_for("a v2 task running", 60, || async {
        let t = c.tasks("/web").await;
        t.iter()
            .any(|t| {
                !v1.contains(&t["id"].as_str().unwrap_or_default().to_string())
                    && t["state"] == "TASK_RUNNING"
            })
            .then_some(())
    })
    .await;
    // ... but for as long as we watch, both healthy v1 tasks keep running and the deployment waits.
    for _ in 0..20 {
        let running = c.running("/web").await;
        assert!(
            v1.iter().all(|id| running.contains(id)),
            "a healthy v1 task was killed: {running:?}\n{}",
            c.logs()
        );
        assert!(c.tasks("/web").await.len() <= 3, "over capacity");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let deps = c.offerd.http.get("/v2/deployments").await.value();
    assert!(
        deps.as_array()
            .is_some_and(|d| d.iter().any(|d| d["id"] == dep.as_str()))
    );

    // Cancel: back to v1, the v2 task goes, the v1 tasks are the same ones.
    let r = c
        .offerd
        .http
        .delete(&format!("/v2/deployments/{dep}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = c.wait_running("/web", 2, 60).await;
    assert_eq!(after, v1, "rollback replaced the healthy tasks");
    let app = c.offerd.http.get("/v2/apps/web").await.value();
    assert!(app["app"]["cmd"].as_str().unwrap_or("").contains("v1"));

    // A healthy v3 rolls through: all new, capacity kept (never fewer than 2 healthy).
    let r = c
        .put_app("/web", &healthy_web("/web", 2, "v3"), false)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_for("v3 to replace v1", 90, || async {
        let a = c.offerd.http.get("/v2/apps/web").await.value();
        let healthy = a["app"]["tasksHealthy"].as_u64().unwrap_or(0);
        assert!(
            healthy >= 2 || a["app"]["tasks"].as_array().map_or(0, Vec::len) >= 2,
            "capacity dropped: {a}"
        );
        let ids = c.running("/web").await;
        let done = a["app"]["deployments"]
            .as_array()
            .is_some_and(Vec::is_empty);
        (done && ids.len() == 2 && ids.iter().all(|id| !v1.contains(id))).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn draining_a_node_moves_its_tasks_and_undrain_brings_it_back() {
    let c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/d", 3)).await.status, 201);
    c.wait_running("/d", 3, 60).await;
    let node = c.tasks("/d").await[0]["slaveId"]
        .as_str()
        .expect("node")
        .to_string();
    let pids: Vec<i32> = c
        .running("/d")
        .await
        .iter()
        .filter_map(|id| c.task_pid(id))
        .collect();

    let out = Command::new(cairn_tests::bin("offerd"))
        .args(["drain", &node, "--wait", "--offerd", &c.offerd.url])
        .output()
        .expect("offerd drain");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{node}: drained")
    );
    let tasks = c.tasks("/d").await;
    assert_eq!(tasks.len(), 3);
    assert!(
        tasks
            .iter()
            .all(|t| t["slaveId"] != node.as_str() && t["state"] == "TASK_RUNNING"),
        "{tasks:?}"
    );
    for pid in pids {
        c.wait_for("old process gone", 30, || async {
            (!alive(pid)).then_some(())
        })
        .await;
    }
    // Nothing new lands there while drained.
    assert_eq!(c.post_app(&sleep_app("/more", 2)).await.status, 201);
    c.wait_running("/more", 2, 60).await;
    assert!(
        c.tasks("/more")
            .await
            .iter()
            .all(|t| t["slaveId"] != node.as_str())
    );

    let r = c
        .offerd
        .http
        .send("DELETE", &format!("/v1/agents/{node}/drain"), None)
        .await;
    assert_eq!(r.value()["state"], "active");
    let agents = c.offerd.http.get("/v1/agents").await.value();
    assert!(
        agents
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["state"] == "active")),
        "{agents}"
    );
    assert_eq!(
        c.offerd
            .http
            .send("POST", "/v1/agents/nope/drain", None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn offers_are_single_use_and_declines_refuse_the_agent() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let http = &c.offerd.http;
    assert_eq!(
        http.get("/v1/offers").await.status,
        400,
        "framework is required"
    );
    let offers = http.get("/v1/offers?framework=batch&wait=1s").await.value();
    let list = offers["offers"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2, "{offers}");
    let o0 = list
        .iter()
        .find(|o| o["node"] == "node-0")
        .cloned()
        .expect("node-0 offer");
    let o1 = list
        .iter()
        .find(|o| o["node"] == "node-1")
        .cloned()
        .expect("node-1 offer");
    assert_eq!(o0["resources"]["cpus"], 4.0);
    assert_eq!(o0["resources"]["ports"][0]["begin"], c.port_base(0));

    // Decline node-0 for a minute: only node-1 is offered (the same, still valid offer).
    let r = http
        .send(
            "POST",
            &format!(
                "/v1/offers/{}/decline?framework=batch",
                o0["id"].as_str().unwrap_or("")
            ),
            Some(br#"{"refuse_seconds": 60}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let again = http.get("/v1/offers?framework=batch&wait=1s").await.value();
    let again = again["offers"].as_array().cloned().unwrap_or_default();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0]["id"], o1["id"]);

    // Asking for more than the offer holds is refused and leaves the offer usable.
    let id1 = o1["id"].as_str().unwrap_or("").to_string();
    let too_big = json!({ "tasks": [{ "name": "big", "cmd": "true", "cpus": 8, "mem": 16 }] });
    let r = http
        .send(
            "POST",
            &format!("/v1/offers/{id1}/accept?framework=batch"),
            Some(too_big.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let job = json!({ "tasks": [{ "name": "job", "cmd": "echo done-$MESOS_TASK_ID", "cpus": 0.5, "mem": 16, "ports": 1 }] });
    let r = http
        .send(
            "POST",
            &format!("/v1/offers/{id1}/accept?framework=batch"),
            Some(job.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let task = r.value()["tasks"][0].clone();
    let task_id = task["id"].as_str().expect("task id").to_string();
    assert_eq!(task["slaveId"], "node-1");
    assert!(
        task["ports"][0]
            .as_u64()
            .is_some_and(|p| (c.port_base(1)..c.port_base(2)).contains(&(p as u16)))
    );
    // Used once.
    let r = http
        .send(
            "POST",
            &format!("/v1/offers/{id1}/accept?framework=batch"),
            Some(job.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = http
        .send(
            "POST",
            &format!(
                "/v1/offers/{}/accept?framework=other",
                o0["id"].as_str().unwrap_or("")
            ),
            Some(job.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 404, "a declined offer was still usable");

    // The task runs on taskrun like any other, and its end is readable.
    let done = c
        .wait_for("the framework task to finish", 60, || async {
            let t = http.get(&format!("/v1/tasks/{task_id}")).await.value();
            (t["state"] == "TASK_FINISHED").then_some(t)
        })
        .await;
    assert_eq!(done["framework"], "batch");
    let listed = http.get("/v1/frameworks/batch/tasks").await.value();
    assert!(
        listed["tasks"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["id"] == task_id.as_str()))
    );
    assert_eq!(http.get("/v1/tasks/batch_job.nope").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_cron_framework_runs_its_job_through_offers() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let out_file = dir.path().join("runs.txt");
    let script = workspace_root().join("examples/frameworks/cron.sh");
    let url = c.offerd.url.clone();
    let job = format!("echo ran >> {}", out_file.display());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(script)
            .env("CAIRN_OFFERD", url)
            .env("JOB", job)
            .env("INTERVAL", "1")
            .env("RUNS", "3")
            .output()
            .expect("cron.sh")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("TASK_FINISHED"))
            .count(),
        3,
        "{stdout}"
    );
    let runs = std::fs::read_to_string(&out_file).expect("the job wrote its file");
    assert_eq!(runs.lines().count(), 3);
    let listed = c.offerd.http.get("/v1/frameworks/cron/tasks").await.value();
    assert_eq!(
        listed["tasks"].as_array().map(Vec::len),
        Some(3),
        "{listed}"
    );
}

//! offerd + taskrun when things die: crashing tasks relaunched with backoff, an agent killed
//! (tasks replaced on the other, stale ones killed when it returns), taskrun restarted (tasks
//! adopted, not restarted), offerd restarted (nothing lost or duplicated).

use std::time::Duration;

use cairn_tests::cluster::{Cluster, ClusterOpts, alive, sleep_app};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn crashing_tasks_are_relaunched_with_growing_backoff() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let app = json!({
        "id": "/crash", "cmd": "sleep 0.2; exit 3", "cpus": 0.1, "mem": 16, "instances": 1,
        "backoffSeconds": 1, "backoffFactor": 3, "maxLaunchDelaySeconds": 60
    });
    assert_eq!(c.post_app(&app).await.status, 201);
    // The queue shows the backoff while the app waits.
    let q = c
        .wait_for("the queue to show a backoff delay", 60, || async {
            let q = c.offerd.http.get("/v2/queue").await.value();
            let item = q["queue"]
                .as_array()?
                .iter()
                .find(|i| i["app"]["id"] == "/crash")?
                .clone();
            let reason = item["processedOffersSummary"]["rejectSummaryLastOffers"][0]["reason"]
                .as_str()?
                .to_string();
            reason.contains("backoff").then_some(item)
        })
        .await;
    assert_eq!(q["count"], 1);
    // Three failures: each one recorded, each relaunch later than the one before. Launch times
    // come from the sandboxes' task records; a sandbox may exist a moment before its record.
    let staged_times = || {
        let mut staged: Vec<u64> = Vec::new();
        for d in &c.agent_dirs {
            for e in std::fs::read_dir(d.join("tasks"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let rec: Value = serde_json::from_slice(
                    &std::fs::read(e.path().join("task.json")).unwrap_or_default(),
                )
                .unwrap_or(Value::Null);
                if let Some(t) = rec["staged_at"].as_u64() {
                    staged.push(t);
                }
            }
        }
        staged.sort();
        staged
    };
    let (failures, staged) = c
        .wait_for("three failed launches", 90, || async {
            let app = c.offerd.http.get("/v2/apps/crash").await.value();
            let f = &app["app"]["lastTaskFailure"];
            (f["state"] == "TASK_FAILED").then_some(())?;
            let staged = staged_times();
            (staged.len() >= 3).then_some((f.clone(), staged))
        })
        .await;
    assert!(
        failures["message"].as_str().unwrap_or("").contains("3"),
        "{failures}"
    );
    // The gaps grow (1 s, then 3 s).
    let (g1, g2) = (staged[1] - staged[0], staged[2] - staged[1]);
    assert!(g2 > g1, "backoff did not grow: gaps {g1} ms then {g2} ms");

    // A new version resets the backoff and runs.
    let r = c
        .put_app("/crash", &json!({ "cmd": "sleep 600" }), true)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_running("/crash", 1, 60).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_agent_loses_its_tasks_and_kills_them_when_it_returns() {
    let mut c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/move", 3)).await.status, 201);
    c.wait_running("/move", 3, 60).await;
    // Bin-packing put them together; find that agent.
    let tasks = c.tasks("/move").await;
    let node = tasks[0]["slaveId"].as_str().expect("slaveId").to_string();
    assert!(
        tasks.iter().all(|t| t["slaveId"] == node.as_str()),
        "bin-packing spread the tasks: {tasks:?}"
    );
    let idx: usize = node
        .trim_start_matches("node-")
        .parse()
        .expect("node index");
    let stale: Vec<(String, i32)> = tasks
        .iter()
        .map(|t| {
            let id = t["id"].as_str().unwrap_or_default().to_string();
            let pid = c.task_pid(&id).expect("pid");
            (id, pid)
        })
        .collect();

    let events = c.offerd.http.get("/v1/agents").await.value();
    assert!(events.as_array().is_some_and(|a| a.len() == 2));
    c.agents[idx].kill9();
    // Past the agent timeout (3 s) the tasks are lost and replaced on the other agent.
    let moved = c
        .wait_for("tasks replaced on the other agent", 60, || async {
            let t = c.tasks("/move").await;
            (t.len() == 3
                && t.iter()
                    .all(|t| t["slaveId"] != node.as_str() && t["state"] == "TASK_RUNNING"))
            .then_some(t)
        })
        .await;
    assert!(
        moved
            .iter()
            .all(|t| !stale.iter().any(|(id, _)| t["id"] == id.as_str()))
    );
    let agents = c.offerd.http.get("/v1/agents").await.value();
    let lost = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["node"] == node.as_str()))
        .cloned();
    assert_eq!(lost.map(|a| a["state"].clone()), Some(json!("lost")));
    // The old processes still run: nobody told them otherwise yet. But the catalog no longer
    // offers them to DNS and load balancers: offerd removed the lost tasks' services.
    assert!(stale.iter().all(|(_, pid)| alive(*pid)));
    let mut moved_ids: Vec<String> = moved
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    moved_ids.sort();
    c.wait_for("the catalog to list only the replacements", 60, || async {
        let mut ids: Vec<String> = c
            .catalog_instances("move")
            .await
            .into_iter()
            .map(|i| i.0)
            .collect();
        ids.sort();
        (ids == moved_ids).then_some(())
    })
    .await;

    // The agent comes back: it learns its desired set is empty and kills the stale tasks.
    c.agents[idx].restart().await;
    for (id, pid) in &stale {
        c.wait_for(&format!("stale task {id} to be killed"), 60, || async {
            (!alive(*pid)).then_some(())
        })
        .await;
    }
    let agents = c.offerd.http.get("/v1/agents").await.value();
    assert!(
        agents
            .as_array()
            .is_some_and(|a| a.iter().all(|a| a["state"] == "active")),
        "{agents}"
    );
    assert_eq!(c.running("/move").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn taskrun_restart_adopts_running_tasks() {
    let mut c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/adopt", 2)).await.status, 201);
    let ids = c.wait_running("/adopt", 2, 60).await;
    let pids: Vec<i32> = ids.iter().map(|id| c.task_pid(id).expect("pid")).collect();
    let node = c.tasks("/adopt").await[0]["slaveId"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let idx: usize = node
        .trim_start_matches("node-")
        .parse()
        .expect("node index");

    c.agents[idx].kill9();
    assert!(pids.iter().all(|p| alive(*p)), "tasks died with taskrun");
    c.agents[idx].restart().await;
    // Same tasks, same processes, nothing new started.
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.wait_running("/adopt", 2, 30).await, ids);
    for (id, pid) in ids.iter().zip(&pids) {
        assert_eq!(c.task_pid(id), Some(*pid));
        assert!(alive(*pid));
    }
    let sandboxes = std::fs::read_dir(c.agent_dirs[idx].join("tasks"))
        .expect("tasks dir")
        .count();
    assert_eq!(
        sandboxes, 2,
        "taskrun started extra tasks after its restart"
    );

    // An adopted task that dies is noticed, reported and replaced.
    // SAFETY: killing a process group this test's agent started.
    unsafe {
        libc::kill(-pids[0], libc::SIGKILL);
    }
    let after = c
        .wait_for("the dead adopted task to be replaced", 60, || async {
            let r = c.running("/adopt").await;
            (r.len() == 2 && !r.contains(&ids[0])).then_some(r)
        })
        .await;
    assert!(after.contains(&ids[1]));
    // SIGTERM stops taskrun cleanly and leaves the tasks running.
    let status = c.agents[idx].sigterm(Duration::from_secs(10));
    assert!(status.success(), "taskrun exit status {status}");
    assert!(alive(pids[1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn offerd_restart_loses_and_duplicates_nothing() {
    let mut c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/keep", 3)).await.status, 201);
    assert_eq!(c.post_app(&sleep_app("/other", 1)).await.status, 201);
    let keep = c.wait_running("/keep", 3, 60).await;
    let other = c.wait_running("/other", 1, 60).await;
    let apps_before = c.offerd.http.get("/v2/apps").await.value();

    c.offerd.kill9();
    c.offerd.restart().await;
    // Same apps, same tasks; no agent lost, no task relaunched.
    let apps_after = c.offerd.http.get("/v2/apps").await.value();
    let strip = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["id"].clone(),
                    a["version"].clone(),
                    a["instances"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(strip(&apps_before), strip(&apps_after));
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(c.wait_running("/keep", 3, 30).await, keep);
    assert_eq!(c.wait_running("/other", 1, 30).await, other);
    let sandboxes: usize = c
        .agent_dirs
        .iter()
        .map(|d| {
            std::fs::read_dir(d.join("tasks"))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(sandboxes, 4, "tasks were started twice");
    // And it keeps working.
    assert_eq!(
        c.put_app("/keep", &json!({ "instances": 1 }), false)
            .await
            .status,
        200
    );
    c.wait_running("/keep", 1, 60).await;
    // SIGTERM stops offerd cleanly.
    let status = c.offerd.sigterm(Duration::from_secs(10));
    assert!(status.success(), "offerd exit status {status}");
}

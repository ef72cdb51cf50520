//! offerd with agents that speak the agent protocol over HTTP but run nothing: the path
//! `cairn-bench agents` measures at fleet size (register, long-poll the desired set, report
//! states), checked here at a small size against the real offerd binary.

use cairn_tests::bin;
use cairn_tests::cluster::{Cluster, ClusterOpts};
use serde_json::{Value, json};

/// A cluster of catalogd and offerd with no taskrun: the test is the agents.
async fn offerd_alone() -> Cluster {
    Cluster::start(ClusterOpts {
        agents: 0,
        // The test's agents poll only when it asks them to.
        agent_timeout: "120s",
        ..ClusterOpts::default()
    })
    .await
}

async fn register(c: &Cluster, node: &str) {
    let reg = json!({
        "node": node,
        "address": "127.0.0.1",
        "resources": {"cpus": 8.0, "mem": 8192.0, "disk": 1000.0,
                      "ports": [{"begin": 31000, "end": 31099}]},
    });
    let r = c
        .offerd
        .http
        .send(
            "POST",
            "/v1/agents/register",
            Some(reg.to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The desired set of `node` past `index` (the long poll), with the index to poll on next.
async fn desired(c: &Cluster, node: &str, index: u64, wait: &str) -> (Vec<String>, u64) {
    let r = c
        .offerd
        .http
        .get(&format!(
            "/v1/agents/{node}/tasks?index={index}&wait={wait}"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ids = r.value()["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (ids, r.index())
}

async fn report(c: &Cluster, node: &str, ids: &[String], state: &str) {
    let updates: Vec<Value> = ids
        .iter()
        .map(|id| json!({"task_id": id, "state": state}))
        .collect();
    let r = c
        .offerd
        .http
        .send(
            "POST",
            &format!("/v1/agents/{node}/status"),
            Some(json!({ "updates": updates }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn app(c: &Cluster, id: &str) -> Value {
    c.offerd.http.get(&format!("/v2/apps{id}")).await.value()["app"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn protocol_agents_run_every_task_and_a_scale_down_leaves_their_desired_sets() {
    let c = offerd_alone().await;
    let nodes = ["fleet-0", "fleet-1", "fleet-2"];
    for n in nodes {
        register(&c, n).await;
    }
    let def = json!({"id": "/fleet", "cmd": "sleep 1000", "instances": 6, "cpus": 0.01,
                     "mem": 8, "constraints": [["hostname", "GROUP_BY"]]});
    assert_eq!(c.post_app(&def).await.status, 201);

    // Each agent takes up its set (GROUP_BY spreads it: two each) and reports it running; a
    // report is acknowledged once offerd holds it.
    let mut sets = Vec::new();
    for n in nodes {
        let (ids, i) = desired(&c, n, 0, "1s").await;
        assert_eq!(ids.len(), 2, "{n}: {ids:?}");
        report(&c, n, &ids, "TASK_RUNNING").await;
        sets.push((ids, i));
    }
    let a = app(&c, "/fleet").await;
    assert_eq!(a["tasksRunning"], 6, "{a}");
    let deployments = c.offerd.http.get("/v2/deployments").await.value();
    assert_eq!(deployments, json!([]), "the start deployment is done");

    // A state the agent reported itself leaves its desired set as it was: the poll is not
    // answered with a new index.
    let (same, i) = desired(&c, nodes[0], sets[0].1, "1s").await;
    assert_eq!((&same, i), (&sets[0].0, sets[0].1));

    // Scaling down takes tasks out of the desired sets (the polls parked on the old index
    // are answered); the agents report them killed.
    let r = c.put_app("/fleet", &json!({ "instances": 3 }), false).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut left = 0;
    for (n, (before, index)) in nodes.iter().zip(&sets) {
        let (now, _) = desired(&c, n, *index, "5s").await;
        assert!(now.iter().all(|id| before.contains(id)), "{n}: {now:?}");
        let gone: Vec<String> = before
            .iter()
            .filter(|id| !now.contains(id))
            .cloned()
            .collect();
        report(&c, n, &gone, "TASK_KILLED").await;
        left += now.len();
    }
    assert_eq!(left, 3, "three tasks stay desired");
    let a = app(&c, "/fleet").await;
    assert_eq!(a["tasksRunning"], 3, "{a}");
    assert_eq!(c.tasks("/fleet").await.len(), 3);
    let deployments = c.offerd.http.get("/v2/deployments").await.value();
    assert_eq!(deployments, json!([]), "the scale deployment is done");
}

#[tokio::test(flavor = "multi_thread")]
async fn cairn_bench_agents_runs_apps_on_simulated_agents_to_the_end() {
    let c = offerd_alone().await;
    let out = tokio::process::Command::new(bin("cairn-bench"))
        .args([
            "agents",
            "--offerd",
            &c.offerd.url,
            "--agents",
            "4",
            "--apps",
            "3",
            "--instances",
            "4",
            "--scale",
            "4",
            "--timeout-s",
            "120",
            "--pid",
            &c.offerd.pid().to_string(),
        ])
        .output()
        .await
        .expect("cairn-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = stdout
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap_or_else(|| panic!("no result line: {stdout}"));
    for field in [
        "tasks=12 ",
        "offerd_running=12 ",
        "scaled_tasks=16 ",
        "scaled_offerd_running=16 ",
        "rss_mb=",
    ] {
        assert!(result.contains(field), "{field} in {result}");
    }
    // offerd holds what the simulated agents reported.
    let running: u64 = c.offerd.http.get("/v2/apps").await.value()["apps"]
        .as_array()
        .map(|apps| apps.iter().filter_map(|a| a["tasksRunning"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(running, 16);
}

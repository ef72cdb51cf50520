//! offerd's state changes as clients see them: a request is applied whole or not at all, and
//! naming a task twice counts it once.

use cairn_tests::cluster::{Cluster, ClusterOpts, sleep_app};
use serde_json::{Value, json};

async fn instances(c: &Cluster, app: &str) -> i64 {
    c.offerd.http.get(&format!("/v2/apps{app}")).await.value()["app"]["instances"]
        .as_i64()
        .unwrap_or(-1)
}

async fn deployments_of(c: &Cluster, app: &str) -> usize {
    let deps = c.offerd.http.get("/v2/deployments").await.value();
    deps.as_array().map_or(0, |d| {
        d.iter().filter(|d| d["affectedApps"][0] == app).count()
    })
}

async fn kill_scaled(c: &Cluster, ids: &[&str]) -> cairn_tests::Resp {
    c.offerd
        .http
        .send(
            "POST",
            "/v2/tasks/delete?scale=true",
            Some(json!({ "ids": ids }).to_string().into_bytes()),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_tasks_of_two_apps_with_scale_changes_nothing_when_the_second_is_locked() {
    let c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/a", 2)).await.status, 201);
    assert_eq!(c.post_app(&sleep_app("/b", 1)).await.status, 201);
    let a_tasks = c.wait_running("/a", 2, 60).await;
    let b_tasks = c.wait_running("/b", 1, 60).await;
    // A deployment that cannot finish locks /b: its new tasks fit no agent.
    assert_eq!(
        c.put_app("/b", &json!({ "mem": 100000 }), false)
            .await
            .status,
        200
    );
    assert_eq!(deployments_of(&c, "/b").await, 1);

    let r = kill_scaled(&c, &[&a_tasks[0], &b_tasks[0]]).await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    // /a, first in the request, kept its instances, its tasks and had no deployment started.
    assert_eq!(instances(&c, "/a").await, 2);
    assert_eq!(deployments_of(&c, "/a").await, 0);
    assert_eq!(c.running("/a").await, a_tasks);
    assert_eq!(c.running("/b").await, b_tasks);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_named_twice_lowers_instances_once() {
    let c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/twice", 3)).await.status, 201);
    let tasks = c.wait_running("/twice", 3, 60).await;
    let r = kill_scaled(&c, &[&tasks[0], &tasks[0]]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body: Value = r.value();
    assert!(body["deploymentId"].is_string(), "{body}");
    assert_eq!(instances(&c, "/twice").await, 2);
    let left = c.wait_running("/twice", 2, 60).await;
    assert!(!left.contains(&tasks[0]));
}

fn offerd_cli(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(cairn_tests::bin("offerd"))
        .args(args)
        .args(["--offerd", &c.offerd.url])
        .output()
        .expect("offerd CLI")
}

async fn agent_state(c: &Cluster, node: &str) -> Option<String> {
    let agents = c.offerd.http.get("/v1/agents").await.value();
    agents
        .as_array()?
        .iter()
        .find(|a| a["node"] == node)
        .and_then(|a| a["state"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_removes_a_lost_agent_but_not_a_connected_one() {
    let mut c = Cluster::start(ClusterOpts::default()).await;
    let out = offerd_cli(&c, &["agents", "remove", "node-0"]);
    assert!(!out.status.success(), "a connected agent is refused");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connected"), "{err}");
    assert_eq!(agent_state(&c, "node-0").await.as_deref(), Some("active"));

    c.agents[1].kill9();
    c.wait_for("node-1 to be lost", 60, || async {
        (agent_state(&c, "node-1").await.as_deref() == Some("lost")).then_some(())
    })
    .await;
    let out = offerd_cli(&c, &["agents", "remove", "node-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "node-1: removed"
    );
    assert_eq!(agent_state(&c, "node-1").await, None);
    let again = c
        .offerd
        .http
        .send("DELETE", "/v1/agents/node-1", None)
        .await;
    assert_eq!(again.status, 404);

    // Forgotten durably: still gone after a restart.
    c.offerd.kill9();
    c.offerd.restart().await;
    assert_eq!(agent_state(&c, "node-1").await, None);
    assert_eq!(agent_state(&c, "node-0").await.as_deref(), Some("active"));
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_are_bounded_and_a_huge_refusal_is_accepted() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let mut app = sleep_app("/many", 1);
    app["instances"] = json!(10_001);
    let r = c.post_app(&app).await;
    assert_eq!(r.status, 422);
    let body = r.value();
    assert_eq!(body["details"][0]["path"], "/instances", "{body}");
    let long_id = format!("/{}", "a".repeat(200));
    let r = c.post_app(&sleep_app(&long_id, 1)).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.value()["details"][0]["path"], "/id");
    assert_eq!(
        c.offerd.http.get("/v2/apps").await.value()["apps"],
        json!([])
    );

    // A refusal for longer than time can count is a refusal until the end of time.
    let offers = c
        .offerd
        .http
        .get("/v1/offers?framework=batch&wait=1s")
        .await
        .value();
    let id = offers["offers"][0]["id"]
        .as_str()
        .expect("an offer")
        .to_string();
    let r = c
        .offerd
        .http
        .send(
            "POST",
            &format!("/v1/offers/{id}/decline?framework=batch"),
            Some(br#"{"refuse_seconds": 1e300}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(c.offerd.http.get("/ping").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_lists_its_last_fifty_versions() {
    let c = Cluster::start(ClusterOpts {
        agents: 0,
        ..Default::default()
    })
    .await;
    assert_eq!(c.post_app(&sleep_app("/v", 0)).await.status, 201);
    for i in 0..60 {
        let r = c
            .put_app("/v", &json!({ "cmd": format!("sleep {}", 1000 + i) }), true)
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let versions = c.offerd.http.get("/v2/apps/v/versions").await.value();
    let list = versions["versions"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 50);
    let current = c.offerd.http.get("/v2/apps/v").await.value()["app"]["version"].clone();
    assert_eq!(list[0], current, "newest first");
    // The oldest listed is still readable; the dropped ones are gone.
    let oldest = list[49].as_str().unwrap_or_default();
    assert_eq!(
        c.offerd
            .http
            .get(&format!("/v2/apps/v/versions/{oldest}"))
            .await
            .status,
        200
    );
}

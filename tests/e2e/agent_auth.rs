//! Only agents holding the cluster's agent token act as agents (issue 15): without it a client
//! on the network could register as an agent (and receive tasks with their secrets in `env`),
//! poll another node's tasks or post status for them. taskrun's own API (tasks and their
//! output) needs the same token; its health probe stays open.

use cairn_tests::cluster::{Cluster, ClusterOpts, sleep_app};
use serde_json::json;

const TOKEN: &str = "agent-s3cret-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn only_agents_with_the_token_register_poll_and_report() {
    let token_flag = || vec!["--agent-token".to_string(), TOKEN.to_string()];
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        offerd_args: token_flag(),
        agent_args: token_flag(),
        ..Default::default()
    })
    .await;
    // The real agent registered with the token (start waits for it) and runs tasks.
    assert_eq!(c.post_app(&sleep_app("/guarded", 1)).await.status, 201);
    c.wait_for("the task to run", 60, || async {
        let t = c.tasks("/guarded").await;
        (t.first()?["state"] == "TASK_RUNNING").then_some(())
    })
    .await;

    let http = reqwest::Client::new();
    let offerd = &c.offerd.url;
    let register =
        json!({"node": "rogue", "address": "127.0.0.1", "resources": "cpus:64;mem:65536"});
    let status = json!({"updates": [{"task_id": "x", "state": "TASK_FAILED", "message": "forged", "timestamp": 0}]});
    let routes = [
        (
            "POST",
            format!("{offerd}/v1/agents/register"),
            Some(&register),
        ),
        ("GET", format!("{offerd}/v1/agents/node-0/tasks"), None),
        (
            "POST",
            format!("{offerd}/v1/agents/node-0/status"),
            Some(&status),
        ),
    ];
    let credentials: [(&str, Option<(&str, String)>); 3] = [
        ("none", None),
        (
            "a wrong bearer token",
            Some(("authorization", "Bearer guess".into())),
        ),
        (
            "a wrong Consul token",
            Some(("x-consul-token", format!("{TOKEN}x"))),
        ),
    ];
    for (method, url, body) in &routes {
        for (what, header) in &credentials {
            let mut req = http.request(method.parse().unwrap(), url.as_str());
            if let Some((name, value)) = header {
                req = req.header(*name, value);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await.expect("request");
            assert_eq!(r.status(), 401, "{method} {url} with {what}");
        }
    }
    // Nothing changed: one agent, the task still running.
    let agents = c.offerd.http.get("/v1/agents").await.value();
    let nodes: Vec<&str> = agents
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["node"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(nodes, ["node-0"], "{agents}");
    let t = c.tasks("/guarded").await;
    assert_eq!(t[0]["state"], "TASK_RUNNING", "{t:?}");

    // taskrun's API: tasks and logs need the token, health does not.
    let agent = &c.agents[0].url;
    let get = |path: &str, auth: Option<String>| {
        let mut req = http.get(format!("{agent}{path}"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    assert_eq!(get("/v1/tasks", None).await.expect("tasks").status(), 401);
    let id = t[0]["id"].as_str().expect("task id");
    let logs = format!("/v1/tasks/{id}/logs");
    assert_eq!(get(&logs, None).await.expect("logs").status(), 401);
    let bearer = Some(format!("Bearer {TOKEN}"));
    assert_eq!(
        get("/v1/tasks", bearer.clone())
            .await
            .expect("tasks")
            .status(),
        200
    );
    assert_eq!(get(&logs, bearer).await.expect("logs").status(), 200);
    assert_eq!(get("/health", None).await.expect("health").status(), 200);

    // The refusals are logged; the token never is.
    let logs = c.logs();
    assert!(logs.contains("refused: no valid token"), "{logs}");
    assert!(
        logs.contains("peer=127.0.0.1:"),
        "the refusal names the peer: {logs}"
    );
    assert!(!logs.contains(TOKEN), "the token is in a log:\n{logs}");
}

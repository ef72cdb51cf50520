//! The whole control plane with catalogd's ACLs on and default deny, each daemon holding the
//! least token it needs: taskrun agents a node-scoped token (their nodes, the services they
//! run), offerd a read-only one. Apps still deploy, their tasks register and turn healthy in
//! the catalog, and a scale-down takes the instance out; a token for one agent's nodes cannot
//! write another agent's node.

use cairn_tests::cluster::{Cluster, ClusterOpts};
use cairn_tests::{Http, Resp};
use serde_json::{Value, json};

const ROOT: &str = "3b1f6f0e-8d4c-4a8e-9f51-2a7d4c0b6e11";

/// A policy and a token holding it, with the given SecretID.
async fn token(root: &Http, name: &str, secret: &str, rules: &str) {
    let r = root
        .put_json("/v1/acl/policy", &json!({"Name": name, "Rules": rules}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r: Resp = root
        .put_json(
            "/v1/acl/token",
            &json!({"SecretID": secret, "Policies": [{"Name": name}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_control_plane_runs_on_least_privilege_catalog_tokens() {
    // The daemons start with their tokens' secrets before those tokens exist (an operator may
    // provision them in either order): until then their catalog calls are refused and retried.
    let agent_token = "5d7c0e3a-1f2b-4c6d-8e9f-0a1b2c3d4e5f".to_string();
    let offerd_token = "6e8d1f4b-2a3c-4d7e-9fa0-1b2c3d4e5f60".to_string();
    let c = Cluster::start(ClusterOpts {
        agents: 2,
        catalogd_args: [
            "--acl-enabled",
            "--acl-default-policy",
            "deny",
            "--acl-initial-management-token",
            ROOT,
        ]
        .map(String::from)
        .to_vec(),
        agent_args: vec!["--token".into(), agent_token.clone()],
        offerd_args: vec!["--token".into(), offerd_token.clone()],
        ..Default::default()
    })
    .await;
    let root = Http::new(&c.catalog.url).with_header("X-Consul-Token", ROOT);
    token(
        &root,
        "taskrun-agents",
        &agent_token,
        r#"
node_prefix "node-" { policy = "write" }
service_prefix "" { policy = "write" }
node_prefix "" { policy = "read" }
"#,
    )
    .await;
    token(
        &root,
        "offerd",
        &offerd_token,
        r#"
service_prefix "" { policy = "read" }
node_prefix "" { policy = "read" }
"#,
    )
    .await;

    let app = json!({"id": "/shop/web", "cmd": "sleep 600", "cpus": 0.1, "mem": 16,
        "instances": 2, "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                          "intervalSeconds": 1, "gracePeriodSeconds": 5}]});
    let r = c.post_app(&app).await;
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_running("/shop/web", 2, 60).await;
    let passing = |v: &Value| v.as_array().map_or(0, Vec::len);
    c.wait_for("both instances healthy in the catalog", 60, || async {
        let v = root
            .get("/v1/health/service/web-shop?passing")
            .await
            .value();
        (passing(&v) == 2).then_some(())
    })
    .await;
    // offerd reads that health through its read-only token: the app is healthy there too.
    c.wait_for("offerd to see both tasks healthy", 60, || async {
        let v = c.offerd.http.get("/v2/apps/shop/web").await.value();
        (v["app"]["tasksHealthy"] == 2).then_some(())
    })
    .await;

    let r = c.put_app("/shop/web", &json!({"instances": 1}), true).await;
    assert!(r.status < 300, "{}", r.text());
    c.wait_for(
        "the scaled-down instance to leave the catalog",
        60,
        || async {
            let v = root.get("/v1/health/service/web-shop").await.value();
            (passing(&v) == 1).then_some(())
        },
    )
    .await;

    // Nothing here may be done by the agents' token beyond their nodes: it cannot register a
    // node outside `node-*`, and offerd's token writes nothing.
    let agents = Http::new(&c.catalog.url).with_header("X-Consul-Token", &agent_token);
    let r = agents
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "db-1", "Address": "10.0.0.9"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let offerd = Http::new(&c.catalog.url).with_header("X-Consul-Token", &offerd_token);
    assert_eq!(offerd.put("/v1/kv/x", "y").await.status, 403);
    for log in [c.logs(), c.catalog.log_text()] {
        for secret in [ROOT, agent_token.as_str(), offerd_token.as_str()] {
            assert!(!log.contains(secret), "a catalog token reached a log");
        }
    }
}

//! catalogd's ACL system as Consul's clients and operators meet it: default-deny refuses every
//! route to an anonymous caller and changes nothing; a token sees and changes exactly what its
//! policy grants (reads filtered with `X-Consul-Results-Filtered-By-ACLs`, blocking queries
//! too); a node identity writes its own node's checks and nobody else's; ACL state survives
//! `kill -9`; bootstrap happens once; secrets stay out of the log.

use std::time::Duration;

use cairn_tests::{Catalogd, Http, Resp, workspace_root};
use serde_json::{Value, json};

const ROOT: &str = "6f0a7b5e-36f5-4b3e-9a51-0d2c3c6c7e01";

async fn deny_by_default(extra: &[&str]) -> Catalogd {
    let mut args = vec![
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        ROOT,
    ];
    args.extend_from_slice(extra);
    Catalogd::start_with(&args).await
}

fn as_token(c: &Catalogd, secret: &str) -> Http {
    Http::new(&c.url).with_header("X-Consul-Token", secret)
}

/// Creates a policy and a token holding it; returns the token's secret.
async fn token_with_rules(root: &Http, name: &str, rules: &str) -> String {
    let policy = root
        .put_json("/v1/acl/policy", &json!({"Name": name, "Rules": rules}))
        .await;
    assert_eq!(policy.status, 200, "{}", policy.text());
    let token = root
        .put_json(
            "/v1/acl/token",
            &json!({"Description": name, "Policies": [{"Name": name}]}),
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.text());
    token.value()["SecretID"].as_str().unwrap().to_string()
}

/// What an anonymous request under default-deny may get.
#[derive(Clone, Copy, Debug)]
enum Anonymous {
    /// 401 or 403 (or, for a transaction, Consul's 409 naming "Permission denied").
    Refused,
    /// 200 with nothing in it (the list filtered empty) or a 404.
    Empty,
    /// Readable by anyone, as in Consul.
    Open,
}

/// Every route of catalogd's API (catalogd/src/http/mod.rs), called the way a client would.
fn route_table() -> Vec<(&'static str, &'static str, Option<Value>, Anonymous)> {
    use Anonymous::*;
    let svc = json!({"Name": "evil", "Port": 1});
    vec![
        (
            "PUT",
            "/v1/catalog/register",
            Some(json!({"Node": "x", "Address": "10.0.0.9"})),
            Refused,
        ),
        (
            "PUT",
            "/v1/catalog/deregister",
            Some(json!({"Node": "n1"})),
            Refused,
        ),
        ("GET", "/v1/catalog/services", None, Empty),
        ("GET", "/v1/catalog/service/web", None, Empty),
        ("GET", "/v1/catalog/connect/web", None, Empty),
        ("GET", "/v1/catalog/gateway-services/gw", None, Refused),
        ("GET", "/v1/catalog/nodes", None, Empty),
        ("GET", "/v1/catalog/node/n1", None, Empty),
        ("GET", "/v1/catalog/datacenters", None, Open),
        ("GET", "/v1/catalog/node-services/n1", None, Empty),
        ("GET", "/v1/health/service/web", None, Empty),
        ("GET", "/v1/health/connect/web", None, Empty),
        ("GET", "/v1/health/ingress/web", None, Empty),
        ("GET", "/v1/health/checks/web", None, Empty),
        ("GET", "/v1/health/node/n1", None, Empty),
        ("GET", "/v1/health/state/any", None, Empty),
        ("GET", "/v1/agent/self", None, Refused),
        ("GET", "/v1/agent/version", None, Open),
        ("GET", "/v1/agent/members", None, Empty),
        ("GET", "/v1/agent/services", None, Empty),
        ("GET", "/v1/agent/service/web-1", None, Refused),
        ("GET", "/v1/agent/checks", None, Empty),
        ("GET", "/v1/agent/health/service/id/web-1", None, Refused),
        ("GET", "/v1/agent/health/service/name/web", None, Refused),
        ("GET", "/v1/agent/metrics", None, Refused),
        ("GET", "/v1/agent/monitor", None, Refused),
        ("PUT", "/v1/agent/reload", None, Refused),
        ("PUT", "/v1/agent/leave", None, Refused),
        ("PUT", "/v1/agent/force-leave/n1", None, Refused),
        (
            "PUT",
            "/v1/agent/token/default",
            Some(json!({"Token": "x"})),
            Refused,
        ),
        ("PUT", "/v1/agent/maintenance?enable=true", None, Refused),
        ("PUT", "/v1/agent/service/register", Some(svc), Refused),
        ("PUT", "/v1/agent/service/deregister/web-1", None, Refused),
        (
            "PUT",
            "/v1/agent/service/maintenance/web-1?enable=true",
            None,
            Refused,
        ),
        (
            "PUT",
            "/v1/agent/check/register",
            Some(json!({"Name": "pwn", "Args": ["/bin/touch", "/tmp/pwned"], "Interval": "1s"})),
            Refused,
        ),
        ("PUT", "/v1/agent/check/deregister/node-ttl", None, Refused),
        ("PUT", "/v1/agent/check/pass/node-ttl", None, Refused),
        ("PUT", "/v1/agent/check/warn/node-ttl", None, Refused),
        ("PUT", "/v1/agent/check/fail/node-ttl", None, Refused),
        (
            "PUT",
            "/v1/agent/check/update/node-ttl",
            Some(json!({"Status": "critical"})),
            Refused,
        ),
        ("GET", "/v1/kv/app/config", None, Refused),
        ("GET", "/v1/kv/?recurse", None, Empty),
        ("PUT", "/v1/kv/app/config", Some(json!("changed")), Refused),
        ("DELETE", "/v1/kv/app?recurse", None, Refused),
        ("PUT", "/v1/session/create", Some(json!({})), Refused),
        ("PUT", "/v1/session/destroy/SESSION", None, Refused),
        ("PUT", "/v1/session/renew/SESSION", None, Refused),
        ("GET", "/v1/session/info/SESSION", None, Empty),
        ("GET", "/v1/session/list", None, Empty),
        ("GET", "/v1/session/node/cairn-test", None, Empty),
        (
            "PUT",
            "/v1/txn",
            Some(json!([{"KV": {"Verb": "set", "Key": "app/config", "Value": "eA=="}}])),
            Refused,
        ),
        ("GET", "/v1/coordinate/datacenters", None, Open),
        ("GET", "/v1/coordinate/nodes", None, Empty),
        ("GET", "/v1/coordinate/node/n1", None, Empty),
        (
            "PUT",
            "/v1/coordinate/update",
            Some(
                json!({"Node": "n1", "Coord": {"Vec": [0,0,0,0,0,0,0,0], "Error": 1.5, "Adjustment": 0, "Height": 0.00001}}),
            ),
            Refused,
        ),
        ("GET", "/v1/operator/raft/configuration", None, Refused),
        ("POST", "/v1/operator/raft/transfer-leader", None, Refused),
        (
            "DELETE",
            "/v1/operator/raft/peer?address=10.0.0.1:8300",
            None,
            Refused,
        ),
        ("GET", "/v1/operator/autopilot/configuration", None, Refused),
        (
            "PUT",
            "/v1/operator/autopilot/configuration",
            Some(json!({"CleanupDeadServers": false})),
            Refused,
        ),
        ("GET", "/v1/operator/autopilot/health", None, Refused),
        ("GET", "/v1/operator/autopilot/state", None, Refused),
        ("GET", "/v1/operator/keyring", None, Refused),
        ("GET", "/v1/operator/usage", None, Refused),
        ("GET", "/v1/discovery-chain/web", None, Refused),
        ("GET", "/v1/snapshot", None, Refused),
        (
            "PUT",
            "/v1/snapshot",
            Some(json!("not a snapshot")),
            Refused,
        ),
        ("GET", "/v1/query", None, Empty),
        (
            "POST",
            "/v1/query",
            Some(json!({"Name": "evil", "Service": {"Service": "web"}})),
            Refused,
        ),
        ("GET", "/v1/query/web-query/execute", None, Refused),
        ("DELETE", "/v1/query/QUERY", None, Refused),
        (
            "PUT",
            "/v1/config",
            Some(json!({"Kind": "service-defaults", "Name": "web", "Protocol": "tcp"})),
            Refused,
        ),
        ("GET", "/v1/config/", None, Empty),
        ("GET", "/v1/config/service-defaults/web", None, Refused),
        ("DELETE", "/v1/config/service-defaults/web", None, Refused),
        ("PUT", "/v1/event/fire/deploy", None, Refused),
        ("GET", "/v1/event/list", None, Empty),
        ("GET", "/v1/connect/intentions", None, Empty),
        (
            "GET",
            "/v1/connect/intentions/exact?source=a&destination=web",
            None,
            Refused,
        ),
        (
            "PUT",
            "/v1/connect/intentions/exact?source=a&destination=web",
            Some(json!({"Action": "allow"})),
            Refused,
        ),
        (
            "DELETE",
            "/v1/connect/intentions/exact?source=a&destination=web",
            None,
            Refused,
        ),
        (
            "GET",
            "/v1/connect/intentions/check?source=a&destination=web",
            None,
            Refused,
        ),
        (
            "GET",
            "/v1/connect/intentions/match?by=destination&name=web",
            None,
            Empty,
        ),
        ("GET", "/v1/connect/ca/configuration", None, Refused),
        (
            "PUT",
            "/v1/connect/ca/configuration",
            Some(json!({"Provider": "consul", "Config": {}})),
            Refused,
        ),
        ("GET", "/v1/peerings", None, Refused),
        (
            "POST",
            "/v1/peering/token",
            Some(json!({"PeerName": "p"})),
            Refused,
        ),
        (
            "POST",
            "/v1/peering/establish",
            Some(json!({"PeerName": "p"})),
            Refused,
        ),
        ("GET", "/v1/peering/p", None, Refused),
        ("GET", "/v1/status/leader", None, Open),
        // It tells a token about itself (the anonymous one: nothing is allowed).
        (
            "POST",
            "/v1/internal/acl/authorize",
            Some(json!([{"Resource": "key", "Segment": "a", "Access": "write"}])),
            Open,
        ),
        ("GET", "/v1/status/peers", None, Open),
        ("GET", "/v1/cairn/catalog", None, Empty),
        ("GET", "/v1/cairn/prometheus/targets", None, Empty),
        ("GET", "/", None, Open),
        ("GET", "/metrics", None, Refused),
        ("PUT", "/v1/acl/bootstrap", None, Refused),
        ("GET", "/v1/acl/replication", None, Open),
        ("GET", "/v1/acl/tokens", None, Refused),
        (
            "PUT",
            "/v1/acl/token",
            Some(json!({"Policies": [{"Name": "global-management"}]})),
            Refused,
        ),
        ("GET", "/v1/acl/token/self", None, Open),
        ("GET", "/v1/acl/policies", None, Refused),
        (
            "PUT",
            "/v1/acl/policy",
            Some(json!({"Name": "p", "Rules": "acl = \"write\""})),
            Refused,
        ),
        (
            "GET",
            "/v1/acl/policy/name/global-management",
            None,
            Refused,
        ),
        (
            "GET",
            "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
            None,
            Refused,
        ),
        (
            "DELETE",
            "/v1/acl/policy/00000000-0000-0000-0000-000000000002",
            None,
            Refused,
        ),
        ("GET", "/v1/acl/roles", None, Refused),
        ("PUT", "/v1/acl/role", Some(json!({"Name": "r"})), Refused),
        ("GET", "/v1/acl/role/name/r", None, Refused),
        ("GET", "/v1/acl/templated-policies", None, Refused),
        (
            "GET",
            "/v1/acl/templated-policy/name/builtin/service",
            None,
            Refused,
        ),
        (
            "POST",
            "/v1/acl/templated-policy/preview/builtin/service",
            Some(json!({"Name": "web"})),
            Refused,
        ),
        ("GET", "/v1/acl/auth-methods", None, Refused),
        (
            "PUT",
            "/v1/acl/auth-method",
            Some(json!({"Name": "m", "Type": "jwt"})),
            Refused,
        ),
        ("GET", "/v1/acl/auth-method/m", None, Refused),
        ("GET", "/v1/acl/binding-rules", None, Refused),
        (
            "PUT",
            "/v1/acl/binding-rule",
            Some(json!({"AuthMethod": "m", "BindType": "service", "BindName": "x"})),
            Refused,
        ),
        (
            "GET",
            "/v1/acl/binding-rule/00000000-0000-0000-0000-00000000beef",
            None,
            Refused,
        ),
        (
            "POST",
            "/v1/acl/login",
            Some(json!({"AuthMethod": "m", "BearerToken": "x"})),
            Refused,
        ),
        ("POST", "/v1/acl/logout", None, Refused),
    ]
}

/// The route patterns registered in catalogd's router, read from its source.
fn registered_routes() -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join("catalogd/src/http/mod.rs"))
        .expect("reading catalogd's router");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let start = rest.find('"').expect("a route path") + 1;
        let end = start + rest[start..].find('"').expect("closing quote");
        out.push(rest[start..end].to_string());
        rest = &rest[end..];
    }
    out
}

/// Whether a concrete path is an instance of a route pattern (`{x}` one segment, `{*x}` the
/// rest).
fn instance_of(path: &str, pattern: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let mut p = path.split('/');
    for seg in pattern.split('/') {
        if seg.starts_with("{*") {
            return p.next().is_some();
        }
        match p.next() {
            Some(s) if seg.starts_with('{') || s == seg => {}
            _ => return false,
        }
    }
    p.next().is_none()
}

async fn everything(root: &Http) -> Value {
    let kv = root.get("/v1/kv/?recurse").await.value();
    let catalog = root.get("/v1/cairn/catalog").await.value();
    let sessions = root.get("/v1/session/list").await.value();
    let tokens = root.get("/v1/acl/tokens").await.value();
    let policies = root.get("/v1/acl/policies").await.value();
    let queries = root.get("/v1/query").await.value();
    let config = root.get("/v1/config/").await.value();
    json!({"kv": kv, "catalog": catalog, "sessions": sessions, "tokens": tokens,
           "policies": policies, "queries": queries, "config": config})
}

#[tokio::test]
async fn anonymous_callers_are_refused_everywhere_and_change_nothing() {
    let c = deny_by_default(&[]).await;
    let root = as_token(&c, ROOT);
    // Something on every table for the anonymous caller to try to read or spoil.
    assert_eq!(root.put("/v1/kv/app/config", "v1").await.status, 200);
    let reg = json!({"Node": "n1", "Address": "10.0.0.1",
        "Service": {"ID": "web-1", "Service": "web", "Port": 80},
        "Check": {"CheckID": "web-alive", "Name": "alive", "Status": "passing", "ServiceID": "web-1"}});
    assert_eq!(
        root.put_json("/v1/catalog/register", &reg).await.status,
        200
    );
    let agent_svc = json!({"ID": "web-1", "Name": "web", "Port": 80});
    assert_eq!(
        root.put_json("/v1/agent/service/register", &agent_svc)
            .await
            .status,
        200
    );
    let ttl = json!({"ID": "node-ttl", "Name": "ttl", "TTL": "1h"});
    assert_eq!(
        root.put_json("/v1/agent/check/register", &ttl).await.status,
        200
    );
    let session = root
        .put_json("/v1/session/create", &json!({"Name": "s"}))
        .await
        .value()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let query = root
        .send(
            "POST",
            "/v1/query",
            Some(
                serde_json::to_vec(&json!({"Name": "web-query", "Service": {"Service": "web"}}))
                    .unwrap(),
            ),
        )
        .await
        .value()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let entry = json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"});
    assert_eq!(root.put_json("/v1/config", &entry).await.status, 200);
    let before = everything(&root).await;

    let table = route_table();
    let routes = registered_routes();
    assert!(routes.len() > 60, "router source read: {routes:?}");
    for route in &routes {
        assert!(
            table.iter().any(|(_, path, _, _)| instance_of(path, route)),
            "route {route} of catalogd's router is missing from this test's table"
        );
    }
    let anonymous = Http::new(&c.url);
    for (method, path, body, expect) in table {
        let path = path.replace("SESSION", &session).replace("QUERY", &query);
        let body = body.map(|b| match b {
            Value::String(s) => s.into_bytes(),
            other => serde_json::to_vec(&other).unwrap(),
        });
        let resp: Resp = anonymous.send(method, &path, body).await;
        match expect {
            Anonymous::Refused => assert!(
                resp.status == 401
                    || resp.status == 403
                    || (resp.status == 409 && resp.text().contains("Permission denied")),
                "{method} {path}: expected 401/403, got {} {}",
                resp.status,
                resp.text()
            ),
            Anonymous::Empty => {
                let empty = resp.status == 404
                    || resp.status == 403
                    || matches!(serde_json::from_slice::<Value>(&resp.body), Ok(Value::Null))
                    || serde_json::from_slice::<Value>(&resp.body).is_ok_and(|v| match v {
                        Value::Array(a) => a.is_empty(),
                        Value::Object(o) => {
                            o.is_empty()
                                || o.values()
                                    .all(|v| v.as_array().is_some_and(|a| a.is_empty()))
                        }
                        _ => false,
                    });
                assert!(
                    empty,
                    "{method} {path}: expected nothing shown, got {} {}",
                    resp.status,
                    resp.text()
                );
            }
            Anonymous::Open => assert!(
                resp.status < 500,
                "{method} {path}: {} {}",
                resp.status,
                resp.text()
            ),
        }
    }
    assert_eq!(
        everything(&root).await,
        before,
        "an anonymous request changed something"
    );
    assert!(
        !std::path::Path::new("/tmp/pwned").exists(),
        "an anonymous script check ran"
    );
    assert!(
        !c.log_text().contains(ROOT),
        "the management token reached the log"
    );
}

#[tokio::test]
async fn a_token_sees_and_changes_only_what_its_policy_grants() {
    // The harness counts parked blocking queries on /metrics.
    let c = deny_by_default(&["--unauthenticated-metrics"]).await;
    let root = as_token(&c, ROOT);
    for (k, v) in [("app/config", "a"), ("app/secret", "s"), ("other/x", "o")] {
        assert_eq!(root.put(&format!("/v1/kv/{k}"), v).await.status, 200);
    }
    for (node, svc) in [("n1", "web"), ("n2", "db")] {
        let reg =
            json!({"Node": node, "Address": "10.0.0.1", "Service": {"Service": svc, "Port": 80}});
        assert_eq!(
            root.put_json("/v1/catalog/register", &reg).await.status,
            200
        );
    }
    let secret = token_with_rules(
        &root,
        "app-reader",
        r#"
key_prefix "app/" { policy = "read" }
key "app/secret" { policy = "deny" }
service_prefix "" { policy = "read" }
service "db" { policy = "deny" }
node_prefix "" { policy = "read" }
"#,
    )
    .await;
    let t = as_token(&c, &secret);

    assert_eq!(t.get("/v1/kv/app/config").await.status, 200);
    let denied = t.get("/v1/kv/app/secret").await;
    assert_eq!(denied.status, 403);
    assert!(
        denied.text().starts_with("Permission denied"),
        "{}",
        denied.text()
    );
    assert!(denied.text().contains("key:read"), "{}", denied.text());
    assert_eq!(t.get("/v1/kv/other/x").await.status, 403);
    assert_eq!(t.put("/v1/kv/app/config", "b").await.status, 403);
    assert_eq!(t.delete("/v1/kv/app/config").await.status, 403);

    let tree = t.get("/v1/kv/app/?recurse").await;
    assert_eq!(keys_of(&tree), ["app/config"]);
    assert_eq!(
        tree.header("x-consul-results-filtered-by-acls"),
        Some("true")
    );
    let full = root.get("/v1/kv/app/?recurse").await;
    assert_eq!(full.value().as_array().unwrap().len(), 2);
    assert_eq!(full.header("x-consul-results-filtered-by-acls"), None);

    let services = t.get("/v1/catalog/services").await;
    assert!(services.value().get("web").is_some() && services.value().get("db").is_none());
    assert_eq!(
        services.header("x-consul-results-filtered-by-acls"),
        Some("true")
    );
    assert_eq!(t.get("/v1/health/service/db").await.value(), json!([]));
    assert_eq!(
        t.get("/v1/health/service/web")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A blocking query wakes on a change and still answers only what the token may read.
    let index = tree.index();
    let watcher = {
        let t = t.clone();
        tokio::spawn(async move {
            t.get(&format!("/v1/kv/app/?recurse&index={index}&wait=30s"))
                .await
        })
    };
    c.wait_parked(1).await;
    assert_eq!(root.put("/v1/kv/app/new", "n").await.status, 200);
    let woke = tokio::time::timeout(Duration::from_secs(20), watcher)
        .await
        .expect("the blocking query woke")
        .expect("watcher task");
    assert_eq!(keys_of(&woke), ["app/config", "app/new"]);
    assert_eq!(
        woke.header("x-consul-results-filtered-by-acls"),
        Some("true")
    );

    // A transaction with one refused operation is refused whole.
    let txn = json!([
        {"KV": {"Verb": "get", "Key": "app/config"}},
        {"KV": {"Verb": "set", "Key": "app/config", "Value": "eA=="}}
    ]);
    let refused = t.put_json("/v1/txn", &txn).await;
    assert_eq!(refused.status, 409, "{}", refused.text());
    assert_eq!(refused.value()["Errors"][0]["OpIndex"], 1);
    assert_eq!(root.get("/v1/kv/app/config?raw").await.text(), "a");

    // An unknown token is refused, as Consul does.
    let unknown = as_token(&c, "7c5cdc5f-0000-4000-8000-000000000000")
        .get("/v1/kv/app/config")
        .await;
    assert_eq!(
        (unknown.status, unknown.text().as_str()),
        (403, "ACL not found")
    );
    assert!(
        !c.log_text().contains(&secret),
        "a token's secret reached the log"
    );
}

#[tokio::test]
async fn a_node_identity_writes_its_own_node_and_no_other() {
    let c = deny_by_default(&[]).await;
    let root = as_token(&c, ROOT);
    let healthy = json!({"Node": "n2", "Address": "10.0.0.2",
        "Service": {"ID": "web-1", "Service": "web", "Port": 80},
        "Check": {"CheckID": "web-alive", "Name": "alive", "Status": "passing", "ServiceID": "web-1"}});
    assert_eq!(
        root.put_json("/v1/catalog/register", &healthy).await.status,
        200
    );
    let agent = root
        .put_json(
            "/v1/acl/token",
            &json!({"Description": "agent n1", "NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}]}),
        )
        .await;
    assert_eq!(agent.status, 200, "{}", agent.text());
    let t = as_token(&c, agent.value()["SecretID"].as_str().unwrap());

    let own = json!({"Node": "n1", "Address": "10.0.0.1",
        "Check": {"CheckID": "serfHealth", "Name": "agent alive", "Status": "passing"}});
    let r = t.put_json("/v1/catalog/register", &own).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Forging a critical check on another node's service: refused, and the service stays healthy.
    let forged = json!({"Node": "n2", "Address": "10.0.0.2", "SkipNodeUpdate": true,
        "Check": {"CheckID": "web-alive", "Name": "alive", "Status": "critical", "ServiceID": "web-1"}});
    let r = t.put_json("/v1/catalog/register", &forged).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = t
        .put_json("/v1/catalog/deregister", &json!({"Node": "n2"}))
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let health = root.get("/v1/health/service/web?passing").await.value();
    assert_eq!(health.as_array().unwrap().len(), 1, "{health}");
    // A node identity reads every service name, but instances only on nodes it may read (its
    // own), as Consul's synthetic policy grants.
    assert!(
        t.get("/v1/catalog/services")
            .await
            .value()
            .get("web")
            .is_some()
    );
    assert_eq!(t.get("/v1/catalog/service/web").await.value(), json!([]));
}

#[tokio::test]
async fn acl_state_survives_kill_9_and_bootstrap_happens_once() {
    let mut c = Catalogd::start_with(&["--acl-enabled", "--acl-default-policy", "deny"]).await;
    let anonymous = Http::new(&c.url);
    let boot = anonymous.put("/v1/acl/bootstrap", "").await;
    assert_eq!(boot.status, 200, "{}", boot.text());
    let management = boot.value()["SecretID"].as_str().unwrap().to_string();
    let again = anonymous.put("/v1/acl/bootstrap", "").await;
    assert_eq!(again.status, 403, "{}", again.text());
    assert!(
        again.text().contains("ACL bootstrap no longer allowed"),
        "{}",
        again.text()
    );

    let root = as_token(&c, &management);
    let reader = token_with_rules(&root, "kv-reader", r#"key_prefix "" { policy = "read" }"#).await;
    assert_eq!(root.put("/v1/kv/k", "v").await.status, 200);
    c.kill9();
    c.restart().await;
    let t = as_token(&c, &reader);
    assert_eq!(t.get("/v1/kv/k?raw").await.text(), "v");
    assert_eq!(t.put("/v1/kv/k", "w").await.status, 403);
    let again = Http::new(&c.url).put("/v1/acl/bootstrap", "").await;
    assert_eq!(again.status, 403, "bootstrap allowed again after a restart");
    let log = c.log_text();
    assert!(
        !log.contains(&management) && !log.contains(&reader),
        "a secret reached the log"
    );
}

#[tokio::test]
async fn guessing_tokens_is_slowed_down_per_address() {
    let c = deny_by_default(&[]).await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let guess = format!("00000000-0000-4000-8000-{i:012}");
        let r = as_token(&c, &guess).get("/v1/kv/app/config").await;
        statuses.push(r.status);
        if r.status == 429 {
            let wait: u64 = r
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .unwrap();
            assert!((1..=10).contains(&wait), "Retry-After {wait}");
            assert!(!r.text().contains(&guess), "{}", r.text());
        }
    }
    assert_eq!(&statuses[..10], &[403; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    // Refusals name the address in the log, never the token.
    let log = c.log_text();
    assert!(
        log.contains("unknown ACL token") && log.contains("127.0.0.1"),
        "{log}"
    );
    assert!(
        !log.contains("00000000-0000-4000-8000-000000000003"),
        "{log}"
    );
}

#[tokio::test]
async fn acls_off_answers_acl_endpoints_as_consul_does() {
    let c = Catalogd::start().await;
    let r = c.http.get("/v1/acl/tokens").await;
    assert_eq!((r.status, r.text().as_str()), (401, "ACL support disabled"));
    // Everything else stays open, as before ACLs existed.
    assert_eq!(c.http.put("/v1/kv/a", "b").await.status, 200);
    assert_eq!(c.http.get("/v1/kv/a?raw").await.text(), "b");
    assert_eq!(
        c.http
            .get("/v1/kv/a")
            .await
            .header("x-consul-default-acl-policy"),
        Some("allow")
    );
}

/// Consul's `POST /v1/internal/acl/authorize`, what the web UI asks before it offers an
/// action: one `Allow` per check asked, as the token's policy decides; everything allowed with
/// ACLs off; bad checks and more than 64 refused with Consul's texts.
#[tokio::test]
async fn a_token_learns_what_it_may_do() {
    let c = deny_by_default(&[]).await;
    let root = as_token(&c, ROOT);
    let reader = token_with_rules(
        &root,
        "kv-reader",
        r#"key_prefix "app/" { policy = "read" } service "web" { policy = "write" }"#,
    )
    .await;
    let ask = json!([
        {"Resource": "key", "Segment": "app/config", "Access": "read"},
        {"Resource": "key", "Segment": "app/config", "Access": "write"},
        {"Resource": "key", "Segment": "other", "Access": "read"},
        {"Resource": "service", "Segment": "web", "Access": "write"},
        {"Resource": "operator", "Access": "read"},
        {"Resource": "acl", "Access": "write"},
    ]);
    let allowed = |r: Resp| -> Vec<bool> {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.value();
        let answers = v.as_array().expect("an array");
        for (answer, asked) in answers.iter().zip(ask.as_array().expect("asked")) {
            assert_eq!(answer["Resource"], asked["Resource"]);
            assert_eq!(answer["Access"], asked["Access"]);
        }
        answers.iter().map(|a| a["Allow"] == true).collect()
    };
    let body = || Some(ask.to_string().into_bytes());
    let as_reader = as_token(&c, &reader);
    assert_eq!(
        allowed(
            as_reader
                .send("POST", "/v1/internal/acl/authorize", body())
                .await
        ),
        [true, false, false, true, false, false]
    );
    assert_eq!(
        allowed(
            root.send("POST", "/v1/internal/acl/authorize", body())
                .await
        ),
        [true; 6]
    );
    assert_eq!(
        allowed(
            c.http
                .send("POST", "/v1/internal/acl/authorize", body())
                .await
        ),
        [false; 6]
    );

    // (body, status, text in the answer)
    let too_many = serde_json::Value::Array(vec![json!({"Resource": "acl", "Access": "read"}); 65]);
    let refusals = [
        (
            json!([{"Resource": "disk", "Access": "read"}]),
            "Invalid ACL resource requested: \"disk\"",
        ),
        (
            json!([{"Resource": "key", "Segment": "a", "Access": "own"}]),
            "Invalid access level for key resource: own",
        ),
        (
            too_many,
            "Refusing to process more than 64 authorizations at once",
        ),
    ];
    for (asked, text) in refusals {
        let r = as_reader
            .send(
                "POST",
                "/v1/internal/acl/authorize",
                Some(asked.to_string().into_bytes()),
            )
            .await;
        assert_eq!(r.status, 400, "{asked}");
        assert!(r.text().contains(text), "{}", r.text());
    }

    // ACLs off: everything is allowed.
    let open = Catalogd::start().await;
    assert_eq!(
        allowed(
            open.http
                .send("POST", "/v1/internal/acl/authorize", body())
                .await
        ),
        [true; 6]
    );
}

#[tokio::test]
async fn a_consul_config_file_turns_acls_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consul.json");
    std::fs::write(
        &path,
        json!({"datacenter": "dc1", "acl": {"enabled": true, "default_policy": "deny",
               "tokens": {"initial_management": ROOT}}})
        .to_string(),
    )
    .unwrap();
    let c = Catalogd::start_with(&["--config", path.to_str().unwrap()]).await;
    let anonymous = Http::new(&c.url);
    let r = anonymous.get("/v1/kv/a").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("x-consul-default-acl-policy"), Some("deny"));
    let me = as_token(&c, ROOT).get("/v1/acl/token/self").await;
    assert_eq!(me.value()["Description"], "Initial Management Token");
}

fn keys_of(resp: &Resp) -> Vec<String> {
    resp.value()
        .as_array()
        .expect("a KV listing")
        .iter()
        .map(|e| e["Key"].as_str().expect("a key").to_string())
        .collect()
}

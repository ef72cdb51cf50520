//! Catalog and health endpoints: registration, reads with Consul's field names, tag, passing,
//! node-meta and filter parameters, deregistration.

use cairn_tests::Catalogd;
use serde_json::{Value, json};

fn web(node: &str, addr: &str, id: &str, tags: &[&str], status: &str) -> Value {
    json!({
        "Node": node, "Address": addr, "NodeMeta": {"rack": format!("r-{node}")},
        "Service": {"ID": id, "Service": "web", "Tags": tags, "Port": 8080,
                    "Meta": {"lb_vhost": "web.example.com"}},
        "Check": {"CheckID": format!("chk-{id}"), "Name": "http", "Status": status, "ServiceID": id}
    })
}

#[tokio::test]
async fn register_then_read_every_catalog_view() {
    let c = Catalogd::start().await;
    let h = &c.http;
    assert_eq!(
        h.put_json(
            "/v1/catalog/register",
            &web("n1", "10.0.0.1", "web-1", &["prod", "v1"], "passing")
        )
        .await
        .text(),
        "true"
    );
    assert_eq!(
        h.put_json(
            "/v1/catalog/register",
            &web("n2", "10.0.0.2", "web-2", &["canary"], "critical")
        )
        .await
        .status,
        200
    );

    let services = h.get("/v1/catalog/services").await;
    assert_eq!(services.status, 200);
    services.index();
    let map: Value = services.value();
    let mut tags: Vec<String> = serde_json::from_value(map["web"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, vec!["canary", "prod", "v1"]);

    let rows = h.get("/v1/catalog/service/web").await.value();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let row = &rows[0];
    for field in [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "NodeMeta",
        "ServiceID",
        "ServiceName",
        "ServiceAddress",
        "ServiceTags",
        "ServiceMeta",
        "ServicePort",
        "ServiceWeights",
        "ServiceEnableTagOverride",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(
            row.get(field).is_some(),
            "catalog service row lacks {field}: {row}"
        );
    }
    assert_eq!(row["ServicePort"], 8080);
    assert_eq!(row["Datacenter"], "dc1");

    let tagged = h.get("/v1/catalog/service/web?tag=prod").await.value();
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(tagged[0]["ServiceID"], "web-1");

    let nodes = h.get("/v1/catalog/nodes").await.value();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"n1") && names.contains(&"n2") && names.contains(&"cairn-test"),
        "{names:?}"
    );

    let meta = h.get("/v1/catalog/nodes?node-meta=rack:r-n2").await.value();
    assert_eq!(meta.as_array().unwrap().len(), 1);
    assert_eq!(meta[0]["Node"], "n2");

    let node = h.get("/v1/catalog/node/n1").await.value();
    assert_eq!(node["Node"]["Address"], "10.0.0.1");
    assert_eq!(node["Services"]["web-1"]["Port"], 8080);
    let unknown = h.get("/v1/catalog/node/nope").await;
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.text(), "null");

    assert_eq!(
        h.get("/v1/catalog/datacenters").await.value(),
        json!(["dc1"])
    );
    let other_dc = h.get("/v1/catalog/services?dc=dc9").await;
    assert_eq!(other_dc.status, 500);
    assert_eq!(other_dc.text(), "No path to datacenter");
}

#[tokio::test]
async fn health_views_follow_check_status() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put_json(
        "/v1/catalog/register",
        &web("n1", "10.0.0.1", "web-1", &["prod"], "passing"),
    )
    .await;
    h.put_json(
        "/v1/catalog/register",
        &web("n2", "10.0.0.2", "web-2", &["prod"], "warning"),
    )
    .await;

    let all = h.get("/v1/health/service/web").await.value();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let entry = &all[0];
    assert!(entry["Node"]["Node"].is_string() && entry["Service"]["Service"] == "web");
    assert_eq!(entry["Checks"][0]["Status"], "passing");

    let passing = h.get("/v1/health/service/web?passing").await.value();
    assert_eq!(passing.as_array().unwrap().len(), 1);
    assert_eq!(passing[0]["Service"]["ID"], "web-1");
    // `?passing=1` and `?passing=true` mean the same.
    assert_eq!(
        h.get("/v1/health/service/web?passing=1").await.value(),
        passing
    );

    // A critical node-level check takes every service on that node out.
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n1", "Address": "10.0.0.1",
        "Check": {"CheckID": "serfHealth", "Name": "node alive", "Status": "critical"}}),
    )
    .await;
    let passing = h.get("/v1/health/service/web?passing").await.value();
    assert_eq!(passing.as_array().unwrap().len(), 0);
    let entries = h.get("/v1/health/service/web").await.value();
    let n1 = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Node"]["Node"] == "n1")
        .unwrap();
    assert_eq!(
        n1["Checks"].as_array().unwrap().len(),
        2,
        "service and node checks: {n1}"
    );

    let checks = h.get("/v1/health/checks/web").await.value();
    assert_eq!(checks.as_array().unwrap().len(), 2);
    for field in [
        "Node",
        "CheckID",
        "Name",
        "Status",
        "Notes",
        "Output",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "Type",
        "Definition",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(checks[0].get(field).is_some(), "check lacks {field}");
    }
    let node_checks = h.get("/v1/health/node/n1").await.value();
    assert_eq!(node_checks.as_array().unwrap().len(), 2);
    let critical = h.get("/v1/health/state/critical").await.value();
    assert_eq!(critical.as_array().unwrap().len(), 1);
    assert_eq!(critical[0]["CheckID"], "serfHealth");
    let warning = h.get("/v1/health/state/warning").await.value();
    assert_eq!(warning[0]["ServiceID"], "web-2");
    assert_eq!(
        h.get("/v1/health/state/any")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        4,
        "three checks on n1, and catalogd's own serfHealth"
    );
    let bad = h.get("/v1/health/state/sick").await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("sick"));
}

#[tokio::test]
async fn filter_expressions_select_rows() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put_json(
        "/v1/catalog/register",
        &web("n1", "10.0.0.1", "web-1", &["prod", "v1"], "passing"),
    )
    .await;
    h.put_json(
        "/v1/catalog/register",
        &web("n2", "10.0.0.2", "web-2", &["canary"], "passing"),
    )
    .await;
    let q = |expr: &str| format!("/v1/health/service/web?filter={}", urlencode(expr));
    let ids = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(h.get(&q("\"prod\" in Service.Tags")).await.value()),
        vec!["web-1"]
    );
    assert_eq!(
        ids(h.get(&q("Service.Tags contains canary")).await.value()),
        vec!["web-2"]
    );
    assert_eq!(
        ids(h
            .get(&q("Node.Meta.rack == \"r-n2\" or Service.ID == web-1"))
            .await
            .value())
        .len(),
        2
    );
    assert_eq!(
        ids(h
            .get(&q("not (Node.Node == n1) and Service.Port == 8080"))
            .await
            .value()),
        vec!["web-2"]
    );
    assert_eq!(
        ids(h
            .get(&q("Node.Address matches \"^10\\.0\\.0\\.1$\""))
            .await
            .value()),
        vec!["web-1"]
    );
    assert_eq!(
        ids(h.get(&q("Service.Meta.missing is empty")).await.value()).len(),
        2
    );
    let rows = h
        .get(&format!(
            "/v1/catalog/service/web?filter={}",
            urlencode("ServiceTags not contains prod")
        ))
        .await
        .value();
    assert_eq!(rows[0]["ServiceID"], "web-2");
    let bad = h.get(&q("Service.Port ==")).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("filter"), "{}", bad.text());
}

#[tokio::test]
async fn deregister_service_check_and_node() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put_json(
        "/v1/catalog/register",
        &web("n1", "10.0.0.1", "web-1", &[], "passing"),
    )
    .await;
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n1", "Address": "10.0.0.1",
        "Service": {"Service": "db", "Port": 5432}}),
    )
    .await;
    h.put_json(
        "/v1/catalog/deregister",
        &json!({"Node": "n1", "CheckID": "chk-web-1"}),
    )
    .await;
    assert_eq!(h.get("/v1/health/checks/web").await.value(), json!([]));
    h.put_json(
        "/v1/catalog/deregister",
        &json!({"Node": "n1", "ServiceID": "web-1"}),
    )
    .await;
    assert_eq!(h.get("/v1/catalog/service/web").await.value(), json!([]));
    assert_eq!(
        h.get("/v1/catalog/service/db")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    h.put_json("/v1/catalog/deregister", &json!({"Node": "n1"}))
        .await;
    assert_eq!(h.get("/v1/catalog/service/db").await.value(), json!([]));
    assert_eq!(h.get("/v1/catalog/node/n1").await.text(), "null");
    let services = h.get("/v1/catalog/services").await.value();
    assert!(
        services.get("db").is_none() && services.get("web").is_none(),
        "{services}"
    );
}

#[tokio::test]
async fn lowercase_and_snake_case_bodies_are_accepted() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let r = h
        .put_json(
            "/v1/catalog/register",
            &json!({"node": "n1", "address": "10.0.0.9",
        "service": {"service": "api", "port": 9000, "meta": {"Some_Key": "v"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rows = h.get("/v1/catalog/service/api").await.value();
    assert_eq!(rows[0]["ServicePort"], 9000);
    assert_eq!(
        rows[0]["ServiceMeta"]["Some_Key"], "v",
        "user meta keys keep their case"
    );
    let r = h
        .put_json(
            "/v1/agent/service/register",
            &json!({"name": "cache", "port": 6379,
        "check": {"ttl": "30s", "deregister_critical_service_after": "90m"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let checks = h.get("/v1/agent/checks").await.value();
    assert_eq!(checks["service:cache"]["Definition"]["TTL"], "30s");
    assert_eq!(
        checks["service:cache"]["Definition"]["DeregisterCriticalServiceAfter"], "1h30m0s",
        "durations come back as Go prints them"
    );
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `/v1/cairn/catalog?delta&index=N` over HTTP: a parked consumer is answered with what changed
/// (X-Consul-Index is the delta's `Index`), a removal names the instance, a consumer holding
/// nothing or an index older than catalogd's log reaches gets the whole catalog marked `Full`,
/// and a consumer attached across a restart of catalogd (same data) goes on with deltas from the
/// index it holds.
#[tokio::test(flavor = "multi_thread")]
async fn deltas_over_http_across_a_restart() {
    let mut c = Catalogd::start().await;
    // The same port after the restart: one HTTP helper throughout.
    let http = c.http.clone();
    let reg = |v: Value| {
        let h = http.clone();
        async move {
            let r = h.put_json("/v1/catalog/register", &v).await;
            assert_eq!(r.text(), "true");
        }
    };
    reg(web("n1", "10.0.0.1", "web-1", &[], "passing")).await;
    let whole = c.http.get("/v1/cairn/catalog").await;
    let held = whole.index();

    // Parked on the index it holds, woken by a registration elsewhere.
    let parked = {
        let h = c.http.clone();
        tokio::spawn(async move {
            h.get(&format!("/v1/cairn/catalog?delta&index={held}&wait=30s"))
                .await
        })
    };
    c.wait_parked(1).await;
    reg(web("n2", "10.0.0.2", "web-2", &[], "critical")).await;
    let answer = parked.await.expect("the parked read");
    assert_eq!(answer.status, 200, "{}", answer.text());
    let delta = answer.value();
    assert_eq!(delta["Full"], false, "{delta}");
    assert_eq!(delta["Index"].as_u64(), Some(answer.index()));
    assert!(answer.index() > held);
    let ids: Vec<&str> = delta["Services"]
        .as_array()
        .expect("Services")
        .iter()
        .filter_map(|e| e["Service"]["ID"].as_str())
        .collect();
    assert_eq!(ids, ["web-2"], "only what changed: {delta}");
    assert_eq!(delta["Services"][0]["Checks"][0]["Status"], "critical");
    let held = answer.index();

    let r = c
        .http
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": "n1", "ServiceID": "web-1"}),
        )
        .await;
    assert_eq!(r.text(), "true");
    let delta = c
        .http
        .get(&format!("/v1/cairn/catalog?delta&index={held}"))
        .await
        .value();
    assert_eq!(
        delta["RemovedServices"],
        json!([{"Node": "n1", "ServiceID": "web-1"}]),
        "{delta}"
    );
    let held = delta["Index"].as_u64().expect("Index");

    // Holding nothing (index 0): the whole catalog.
    let full = c.http.get("/v1/cairn/catalog?delta&index=0").await.value();
    assert_eq!(full["Full"], true, "{full}");
    assert!(
        full["Services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|e| e["Service"]["ID"] == "web-2"))
    );

    // catalogd restarts; the consumer holding `held` (everything up to the restart) goes on
    // with deltas.
    tokio::task::block_in_place(|| c.sigterm(std::time::Duration::from_secs(15)));
    c.restart().await;
    reg(web("n3", "10.0.0.3", "web-3", &[], "passing")).await;
    let delta = c
        .http
        .get(&format!("/v1/cairn/catalog?delta&index={held}"))
        .await
        .value();
    assert_eq!(delta["Full"], false, "{delta}");
    let ids: Vec<&str> = delta["Services"]
        .as_array()
        .expect("Services")
        .iter()
        .filter_map(|e| e["Service"]["ID"].as_str())
        .collect();
    assert!(ids.contains(&"web-3") && !ids.contains(&"web-2"), "{delta}");
    // An index from before what the restarted catalogd's log reaches: the whole catalog.
    let old = held - 1;
    let full = http
        .get(&format!("/v1/cairn/catalog?delta&index={old}"))
        .await
        .value();
    assert_eq!(full["Full"], true, "{full}");
}

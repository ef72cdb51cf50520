//! Prepared queries against a real catalogd, and the same queries answered over DNS by a real
//! dnsbridge asked with real `dig`: creation and Consul's refusals, resolution by ID, name and
//! template prefix, execution (health, tags, `near`, `limit`), explain, a query bound to a
//! session going away with it, and `<query>.query.consul` A and SRV answers with the query's TTL,
//! following changes to the queries and the catalog.

use cairn_tests::{Catalogd, Http};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::dnsbridge_common::{Bridge, Inst, register_all, set};

/// Three web instances (one warning, one critical) and a db.
async fn populate(c: &Catalogd) {
    register_all(
        c,
        &[
            Inst::new("web", "web-1", "n1", "127.0.0.11", 8081).tags(&["prod"]),
            Inst::new("web", "web-2", "n2", "127.0.0.12", 8082)
                .tags(&["prod", "canary"])
                .check("warning"),
            Inst::new("web", "web-3", "n3", "127.0.0.13", 8083)
                .tags(&["prod"])
                .check("critical"),
            Inst::new("db", "db-1", "n1", "127.0.0.11", 5432),
        ],
    )
    .await;
}

async fn create(h: &Http, def: &Value) -> String {
    let r = h
        .send("POST", "/v1/query", Some(def.to_string().into_bytes()))
        .await;
    assert_eq!(r.status, 200, "{def}: {}", r.text());
    r.value()["ID"].as_str().expect("an ID").to_string()
}

/// Node names an execution picked, in order.
async fn execute(h: &Http, name: &str, params: &str) -> Vec<String> {
    let r = h.get(&format!("/v1/query/{name}/execute{params}")).await;
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    r.value()["Nodes"]
        .as_array()
        .expect("Nodes")
        .iter()
        .map(|n| n["Node"]["Node"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn queries_are_created_resolved_and_executed_as_consuls() {
    let c = Catalogd::start().await;
    let h = &c.http;
    populate(&c).await;
    assert_eq!(h.get("/v1/query").await.value(), json!([]));

    let id = create(
        h,
        &json!({"Name": "web", "Service": {"Service": "web"},
        "DNS": {"TTL": "10s"}}),
    )
    .await;
    // The stored query has every field Consul returns, nulls included.
    let got = h.get(&format!("/v1/query/{id}")).await;
    let q = &got.value()[0];
    assert_eq!(q["Name"], "web");
    assert_eq!(q["Service"]["Tags"], Value::Null);
    assert_eq!(q["Service"]["Failover"]["NearestN"], 0);
    assert_eq!(q["DNS"]["TTL"], "10s");
    assert!(got.index() >= q["ModifyIndex"].as_u64().unwrap());

    // Critical instances are left out; warning ones stay unless OnlyPassing.
    assert_eq!(sorted(execute(h, "web", "").await), ["n1", "n2"]);
    assert_eq!(sorted(execute(h, &id, "").await), ["n1", "n2"], "by ID");
    assert_eq!(
        sorted(execute(h, "WEB", "").await),
        ["n1", "n2"],
        "names ignore case"
    );
    for _ in 0..5 {
        assert_eq!(execute(h, "web", "?near=n2").await[0], "n2");
    }
    assert_eq!(execute(h, "web", "?limit=1").await.len(), 1);
    let exec = h.get("/v1/query/web/execute").await.value();
    assert_eq!(exec["Service"], "web");
    assert_eq!(exec["DNS"]["TTL"], "10s");
    assert_eq!(exec["Failovers"], 0);
    assert_eq!(
        exec["KnownLeader"], true,
        "Consul's query metadata is in the body"
    );

    create(
        h,
        &json!({"Name": "web-strict", "Service": {"Service": "web",
        "OnlyPassing": true, "Tags": ["PROD", "!canary"]}}),
    )
    .await;
    assert_eq!(execute(h, "web-strict", "").await, ["n1"]);

    // A template answers every name under its prefix, rendered for that name.
    create(
        h,
        &json!({"Name": "svc-", "Template": {"Type": "name_prefix_match"},
        "Service": {"Service": "${name.suffix}"}}),
    )
    .await;
    assert_eq!(execute(h, "svc-db", "").await, ["n1"]);
    let explain = h.get("/v1/query/svc-db/explain").await.value();
    assert_eq!(explain["Query"]["Service"]["Service"], "db");

    // Consul's refusals, and nothing stored.
    let before = h.get("/v1/query").await.value();
    for (body, status, needle) in [
        (
            json!({"Name": "x"}),
            500,
            "Invalid prepared query: Must provide a Service name to query",
        ),
        (
            json!({"Name": "web", "Service": {"Service": "db"}}),
            500,
            "name 'web' aliases an existing query name",
        ),
        (
            json!({"Name": "y", "Service": {"Service": "db"}, "DNS": {"TTL": "soon"}}),
            500,
            "Bad DNS TTL 'soon'",
        ),
        (
            json!({"Name": "z", "Template": {"Type": "regexp"}, "Service": {"Service": "db"}}),
            500,
            "Bad Template.Type 'regexp'",
        ),
        (
            json!({"ID": "abc", "Name": "w", "Service": {"Service": "db"}}),
            500,
            "ID must be empty when creating a new prepared query",
        ),
        (json!({"Name": 5}), 400, "Request decode failed"),
    ] {
        let r = h
            .send("POST", "/v1/query", Some(body.to_string().into_bytes()))
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    assert_eq!(h.get("/v1/query").await.value(), before);
    assert_eq!(h.get("/v1/query/nope/execute").await.status, 404);
    assert_eq!(
        h.get("/v1/query/nope/execute").await.text(),
        "Query not found"
    );

    // Update replaces the query whole; delete removes it.
    let r = h
        .put_json(
            &format!("/v1/query/{id}"),
            &json!({"Name": "web", "Service": {"Service": "db"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(execute(h, "web", "").await, ["n1"]);
    assert_eq!(h.delete(&format!("/v1/query/{id}")).await.status, 200);
    assert_eq!(h.get(&format!("/v1/query/{id}")).await.status, 404);
    let r = h.delete(&format!("/v1/query/{id}")).await;
    assert_eq!(r.status, 500);
    assert!(
        r.text()
            .contains("Cannot modify non-existent prepared query")
    );
}

#[tokio::test]
async fn a_query_bound_to_a_session_goes_with_it() {
    let c = Catalogd::start().await;
    let h = &c.http;
    populate(&c).await;
    let session = h.put("/v1/session/create", "{}").await.value()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h
        .send(
            "POST",
            "/v1/query",
            Some(
                json!({"Session": "not-a-session", "Service": {"Service": "web"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("invalid session"), "{}", r.text());
    let id = create(
        h,
        &json!({"Session": session, "Service": {"Service": "web"}}),
    )
    .await;
    assert_eq!(sorted(execute(h, &id, "").await), ["n1", "n2"]);
    h.put(&format!("/v1/session/destroy/{session}"), "").await;
    assert_eq!(h.get(&format!("/v1/query/{id}")).await.status, 404);
}

#[tokio::test]
async fn dnsbridge_answers_prepared_queries() {
    let c = Catalogd::start().await;
    let h = &c.http;
    populate(&c).await;
    create(
        h,
        &json!({"Name": "web", "Service": {"Service": "web"},
        "DNS": {"TTL": "30s"}}),
    )
    .await;
    let b = Bridge::start(&c.url, &[]);
    b.wait_for_addrs(
        "web.query.consul",
        RecordType::A,
        &["127.0.0.11", "127.0.0.12"],
    );

    // Real dig: A with the query's TTL, SRV with node targets and glue.
    let a = b.dig(&["web.query.consul", "A"]);
    assert_eq!(a.status, "NOERROR", "{}", a.out);
    assert!(a.answer.iter().all(|r| r.ttl == 30), "{}", a.out);
    let srv = b.dig(&["_web._tcp.query.consul", "SRV"]);
    assert_eq!(
        srv.answer_set(),
        set(&[
            "SRV 1 1 8081 n1.node.dc1.consul.",
            "SRV 1 1 8082 n2.node.dc1.consul."
        ]),
        "{}",
        srv.out
    );
    let missing = b.dig(&["nope.query.consul", "A"]);
    assert_eq!(missing.status, "NXDOMAIN", "{}", missing.out);
    assert_eq!(missing.authority[0].rtype, "SOA", "{}", missing.out);

    // A query created while the bridge runs, and a template, are answered as well.
    create(
        h,
        &json!({"Name": "strict", "Service": {"Service": "web", "OnlyPassing": true}}),
    )
    .await;
    b.wait_for_addrs("strict.query.consul", RecordType::A, &["127.0.0.11"]);
    create(
        h,
        &json!({"Name": "any-", "Template": {"Type": "name_prefix_match"},
        "Service": {"Service": "${name.suffix}"}}),
    )
    .await;
    b.wait_for_addrs("any-db.query.consul", RecordType::A, &["127.0.0.11"]);
    // Catalog changes reach query answers too: web-3 recovers.
    h.put_json(
        "/v1/catalog/register",
        &Inst::new("web", "web-3", "n3", "127.0.0.13", 8083)
            .tags(&["prod"])
            .check("passing")
            .body(),
    )
    .await;
    b.wait_for_addrs(
        "strict.query.consul",
        RecordType::A,
        &["127.0.0.11", "127.0.0.13"],
    );
    let none = b.udp("nothing-.query.consul", RecordType::A);
    assert_eq!(none.rcode(), ResponseCode::NXDomain);
}

//! Agent endpoints (catalogd as the agent of its own node): self, members and status, service and
//! check registration with TTL checks and their expiry, pass/warn/fail/update, deregistration,
//! `replace-existing-checks`, and service and node maintenance mode.

use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, Http};
use serde_json::{Value, json};

/// The agent's checks, keyed by check ID.
async fn agent_checks(h: &Http) -> Value {
    let r = h.get("/v1/agent/checks").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.value()
}

/// Status of one agent check.
async fn status_of(h: &Http, id: &str) -> String {
    let checks = agent_checks(h).await;
    checks[id]["Status"]
        .as_str()
        .unwrap_or_else(|| panic!("no check {id:?} in {checks}"))
        .to_string()
}

/// IDs of the instances `/v1/health/service/<name>?passing` returns.
async fn passing_ids(h: &Http, name: &str) -> Vec<String> {
    let r = h.get(&format!("/v1/health/service/{name}?passing")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.value()
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn self_members_and_status_describe_this_agent() {
    let c = Catalogd::start().await;
    let h = &c.http;

    let me = h.get("/v1/agent/self").await;
    assert_eq!(me.status, 200);
    let me = me.value();
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Config"]["NodeName"], c.node.as_str());
    assert_eq!(c.node, "cairn-test");
    let version = me["Config"]["Version"].as_str().expect("Config.Version");
    assert!(!version.is_empty(), "{me}");
    assert!(me["Member"].is_object(), "Member missing: {me}");
    assert_eq!(me["Member"]["Name"], "cairn-test");

    let members = h.get("/v1/agent/members").await.value();
    let members = members.as_array().expect("members is a list");
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["Name"], "cairn-test");
    assert_eq!(members[0]["Status"], 1, "1 = alive");

    let leader = h.get("/v1/status/leader").await;
    assert_eq!(leader.status, 200);
    let leader: String = leader.json();
    assert!(!leader.is_empty(), "clients wait for a non-empty leader");
    let peers: Vec<String> = h.get("/v1/status/peers").await.json();
    assert!(!peers.is_empty());
    assert!(peers.contains(&leader), "{peers:?} lacks {leader}");
}

#[tokio::test]
async fn service_with_ttl_check_is_driven_by_pass_warn_fail_and_update() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let r = h
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["prod"],
                    "Check": {"TTL": "30s"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let services = h.get("/v1/agent/services").await.value();
    assert_eq!(services["web-1"]["Service"], "web");
    assert_eq!(services["web-1"]["Port"], 8080);
    assert_eq!(services["web-1"]["Tags"], json!(["prod"]));
    let one = h.get("/v1/agent/service/web-1").await;
    assert_eq!(one.status, 200);
    assert_eq!(one.value()["ID"], "web-1");
    assert_eq!(one.value()["Service"], "web");
    let missing = h.get("/v1/agent/service/nope").await;
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("nope"), "{}", missing.text());

    // The lone check gets Consul's default ID and starts critical until its first heartbeat.
    let checks = agent_checks(h).await;
    let check = &checks["service:web-1"];
    assert_eq!(check["Status"], "critical", "{checks}");
    assert_eq!(check["ServiceID"], "web-1");
    assert_eq!(check["ServiceName"], "web");
    assert_eq!(check["Node"], "cairn-test");
    assert_eq!(check["Type"], "ttl");
    assert_eq!(check["Definition"]["TTL"], "30s");
    assert!(passing_ids(h, "web").await.is_empty());

    for (verb, status, note) in [
        ("pass", "passing", "all good"),
        ("warn", "warning", "disk 91%"),
        ("fail", "critical", "down"),
        ("pass", "passing", "back"),
    ] {
        let q = crate::catalogd_catalog::urlencode(note);
        let r = h
            .put(
                &format!("/v1/agent/check/{verb}/service:web-1?note={q}"),
                "",
            )
            .await;
        assert_eq!(r.status, 200, "{verb}: {}", r.text());
        let check = agent_checks(h).await["service:web-1"].clone();
        assert_eq!(check["Status"], status, "after {verb}");
        assert_eq!(check["Output"], note, "after {verb}");
    }
    assert_eq!(passing_ids(h, "web").await, vec!["web-1"]);

    h.put("/v1/agent/check/fail/service:web-1", "").await;
    let r = h
        .put_json(
            "/v1/agent/check/update/service:web-1",
            &json!({"Status": "passing", "Output": "ok"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let check = agent_checks(h).await["service:web-1"].clone();
    assert_eq!(check["Status"], "passing");
    assert_eq!(check["Output"], "ok");

    // An unknown status is refused, named, and changes nothing.
    let r = h
        .put_json(
            "/v1/agent/check/update/service:web-1",
            &json!({"Status": "bogus", "Output": "??"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("bogus"), "{}", r.text());
    let check = agent_checks(h).await["service:web-1"].clone();
    assert_eq!(
        (check["Status"].clone(), check["Output"].clone()),
        (json!("passing"), json!("ok"))
    );

    // Unknown check IDs are 404 on every verb.
    for path in [
        "/v1/agent/check/pass/no-such-check",
        "/v1/agent/check/warn/no-such-check",
        "/v1/agent/check/fail/no-such-check",
    ] {
        let r = h.put(path, "").await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(r.text().contains("no-such-check"), "{}", r.text());
    }
    let r = h
        .put_json(
            "/v1/agent/check/update/no-such-check",
            &json!({"Status": "passing"}),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(agent_checks(h).await.get("no-such-check").is_none());
}

#[tokio::test]
async fn ttl_checks_expire_unless_refreshed() {
    let c = Catalogd::start().await;
    let h = &c.http;
    for id in ["lapses", "refreshed"] {
        let r = h
            .put_json(
                "/v1/agent/check/register",
                &json!({"Name": id, "TTL": "1s"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(status_of(h, id).await, "critical");
        h.put(&format!("/v1/agent/check/pass/{id}?note=alive"), "")
            .await;
        assert_eq!(status_of(h, id).await, "passing");
    }

    // "refreshed" gets a heartbeat every 300 ms for 2.5 s (well past its 1 s TTL); "lapses" none.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let r = h.put("/v1/agent/check/pass/refreshed?note=alive", "").await;
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    h.put("/v1/agent/check/pass/refreshed?note=alive", "").await;
    assert_eq!(
        status_of(h, "refreshed").await,
        "passing",
        "a check refreshed well within its TTL must stay passing"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let checks = agent_checks(h).await;
        if checks["lapses"]["Status"] == "critical" {
            let output = checks["lapses"]["Output"].as_str().unwrap_or_default();
            assert!(output.contains("TTL"), "output says why: {output}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a 1s TTL check not refreshed for 10s is still {}",
            checks["lapses"]["Status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn check_register_and_deregister() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let r = h
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "web-http", "HTTP": "http://127.0.0.1:1/health", "Interval": "10s",
                    "Timeout": "2s", "Notes": "front page"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let checks = agent_checks(h).await;
    let check = &checks["web-http"];
    assert_eq!(check["Name"], "web-http", "the ID defaults to the name");
    assert_eq!(check["Type"], "http");
    assert_eq!(check["Notes"], "front page");
    assert_eq!(check["Definition"]["HTTP"], "http://127.0.0.1:1/health");
    assert_eq!(check["Definition"]["Interval"], "10s");
    assert_eq!(check["ServiceID"], "");
    // It shows in the node's health too.
    let node = h.get("/v1/health/node/cairn-test").await.value();
    assert!(
        node.as_array()
            .unwrap()
            .iter()
            .any(|c| c["CheckID"] == "web-http"),
        "{node}"
    );

    let r = h
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "no-interval", "HTTP": "http://127.0.0.1:1/"}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Interval"), "{}", r.text());
    assert!(agent_checks(h).await.get("no-interval").is_none());

    let r = h.put("/v1/agent/check/deregister/web-http", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(agent_checks(h).await.get("web-http").is_none());
    let r = h.put("/v1/agent/check/deregister/web-http", "").await;
    assert_eq!(r.status, 404, "deregistering twice: {}", r.text());
}

#[tokio::test]
async fn service_deregister_removes_service_and_its_checks() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "api", "ID": "api-1", "Port": 9000, "Check": {"TTL": "30s"}}),
    )
    .await;
    h.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "api", "ID": "api-2", "Port": 9001}),
    )
    .await;
    assert_eq!(
        h.get("/v1/catalog/service/api")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let r = h.put("/v1/agent/service/deregister/api-1", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let services = h.get("/v1/agent/services").await.value();
    assert!(services.get("api-1").is_none(), "{services}");
    assert!(services.get("api-2").is_some(), "{services}");
    assert!(agent_checks(h).await.get("service:api-1").is_none());
    assert_eq!(h.get("/v1/agent/service/api-1").await.status, 404);
    let rows = h.get("/v1/catalog/service/api").await.value();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["ServiceID"], "api-2");

    let r = h.put("/v1/agent/service/deregister/api-1", "").await;
    assert_eq!(r.status, 404, "{}", r.text());
}

/// Consul routes agent IDs by the rest of the path, so IDs holding `/` (as Nomad and
/// Kubernetes sync name theirs) are addressable everywhere an ID is.
#[tokio::test]
async fn ids_with_slashes_are_addressed_by_the_rest_of_the_path() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let r = h
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "api", "ID": "_nomad-task/a1/api", "Port": 9000,
                    "Check": {"CheckID": "chk/api/ttl", "TTL": "30s"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let r = h.get("/v1/agent/service/_nomad-task/a1/api").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.value()["ID"], "_nomad-task/a1/api");
    let r = h
        .get("/v1/agent/health/service/id/_nomad-task/a1/api")
        .await;
    assert_eq!(r.status, 503, "a fresh TTL check is critical: {}", r.text());

    let r = h.put("/v1/agent/check/pass/chk/api/ttl?note=up", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let check = &agent_checks(h).await["chk/api/ttl"];
    assert_eq!(check["Status"], "passing", "{check}");
    assert_eq!(check["Output"], "up", "{check}");
    assert_eq!(check["ServiceID"], "_nomad-task/a1/api", "{check}");
    let r = h
        .get("/v1/agent/health/service/id/_nomad-task/a1/api")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let r = h
        .put(
            "/v1/agent/service/maintenance/_nomad-task/a1/api?enable=true&reason=x",
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        agent_checks(h)
            .await
            .get("_service_maintenance:_nomad-task/a1/api")
            .is_some()
    );

    let r = h.put("/v1/agent/check/deregister/chk/api/ttl", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(agent_checks(h).await.get("chk/api/ttl").is_none());
    let r = h
        .put("/v1/agent/service/deregister/_nomad-task/a1/api", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        h.get("/v1/agent/service/_nomad-task/a1/api").await.status,
        404
    );
    assert!(h.get("/v1/catalog/service/api").await.value()[0].is_null());
}

#[tokio::test]
async fn replace_existing_checks_drops_checks_left_out() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let ids = |checks: &Value| -> Vec<String> {
        let mut ids: Vec<String> = checks
            .as_object()
            .unwrap()
            .values()
            .filter(|c| c["ServiceID"] == "db-1")
            .map(|c| c["CheckID"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    h.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "db", "ID": "db-1", "Port": 5432,
                "Checks": [{"CheckID": "a", "TTL": "30s"}, {"CheckID": "b", "TTL": "30s"}]}),
    )
    .await;
    assert_eq!(ids(&agent_checks(h).await), vec!["a", "b"]);

    // Without the flag, re-registering adds to the existing checks.
    h.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "db", "ID": "db-1", "Port": 5432,
                "Check": {"CheckID": "c", "TTL": "30s"}}),
    )
    .await;
    assert_eq!(ids(&agent_checks(h).await), vec!["a", "b", "c"]);

    let r = h
        .put_json(
            "/v1/agent/service/register?replace-existing-checks",
            &json!({"Name": "db", "ID": "db-1", "Port": 5432,
                    "Check": {"CheckID": "d", "TTL": "30s"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ids(&agent_checks(h).await), vec!["d"]);
    assert_eq!(
        h.get("/v1/health/checks/db")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn maintenance_mode_takes_a_service_or_the_node_out_of_passing() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "web", "ID": "web-1", "Port": 80, "Check": {"TTL": "60s"}}),
    )
    .await;
    h.put("/v1/agent/check/pass/service:web-1", "").await;
    assert_eq!(passing_ids(h, "web").await, vec!["web-1"]);

    let r = h
        .put(
            "/v1/agent/service/maintenance/web-1?enable=true&reason=deploying",
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(passing_ids(h, "web").await.is_empty());
    let checks = agent_checks(h).await;
    let maint = &checks["_service_maintenance:web-1"];
    assert_eq!(maint["Status"], "critical", "{checks}");
    assert_eq!(maint["Notes"], "deploying");
    assert_eq!(maint["ServiceID"], "web-1");
    // Still listed without ?passing, so operators see why it is out.
    assert_eq!(
        h.get("/v1/health/service/web")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = h
        .put("/v1/agent/service/maintenance/web-1?enable=false", "")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(passing_ids(h, "web").await, vec!["web-1"]);
    assert!(
        agent_checks(h)
            .await
            .get("_service_maintenance:web-1")
            .is_none()
    );

    let r = h
        .put("/v1/agent/service/maintenance/ghost?enable=true", "")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = h.put("/v1/agent/service/maintenance/web-1", "").await;
    assert_eq!(r.status, 400, "enable is required: {}", r.text());
    assert!(r.text().contains("enable"), "{}", r.text());

    // Node maintenance takes every service on the node out.
    let r = h
        .put(
            "/v1/agent/maintenance?enable=true&reason=kernel%20upgrade",
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(passing_ids(h, "web").await.is_empty());
    let checks = agent_checks(h).await;
    assert_eq!(checks["_node_maintenance"]["Status"], "critical");
    assert_eq!(checks["_node_maintenance"]["Notes"], "kernel upgrade");
    assert_eq!(checks["_node_maintenance"]["ServiceID"], "");
    let r = h.put("/v1/agent/maintenance?enable=false", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(passing_ids(h, "web").await, vec!["web-1"]);
    assert!(agent_checks(h).await.get("_node_maintenance").is_none());
}

/// Load balancers probe an agent's view of one service and read only the status code.
#[tokio::test]
async fn agent_service_health_answers_with_status_codes() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let r = h
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "web", "ID": "web-1", "Port": 80, "Check": {"TTL": "60s"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = |r: cairn_tests::Resp| (r.status, r.text());
    for (update, code, status) in [
        ("", 503, "critical"),
        ("pass", 200, "passing"),
        ("warn", 429, "warning"),
        ("fail", 503, "critical"),
        ("pass", 200, "passing"),
    ] {
        if !update.is_empty() {
            h.put(&format!("/v1/agent/check/{update}/service:web-1"), "")
                .await;
        }
        let r = h.get("/v1/agent/health/service/id/web-1").await;
        assert_eq!(r.status, code, "{}", r.text());
        assert_eq!(r.value()["AggregatedStatus"], status);
        assert_eq!(r.value()["Service"]["ID"], "web-1");
        assert_eq!(
            text(h.get("/v1/agent/health/service/id/web-1?format=text").await),
            (code, status.to_string())
        );
        let by_name = h.get("/v1/agent/health/service/name/web").await;
        assert_eq!(by_name.status, code);
        assert_eq!(by_name.value()[0]["AggregatedStatus"], status);
    }
    h.put("/v1/agent/service/maintenance/web-1?enable=true", "")
        .await;
    let r = h.get("/v1/agent/health/service/id/web-1").await;
    assert_eq!(
        (r.status, r.value()["AggregatedStatus"].clone()),
        (503, json!("maintenance"))
    );
    assert_eq!(
        text(h.get("/v1/agent/health/service/id/nope?format=text").await),
        (404, "ServiceId nope not found".to_string())
    );
    assert_eq!(
        h.get("/v1/agent/health/service/name/nope").await.status,
        404
    );

    // The catalog's list form of a node's services.
    let ns = h.get("/v1/catalog/node-services/cairn-test").await;
    assert!(ns.index() > 0);
    let body = ns.value();
    assert_eq!(body["Node"]["Node"], "cairn-test");
    let ids: Vec<&str> = body["Services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["ID"].as_str())
        .collect();
    assert_eq!(ids, ["consul", "web-1"]);
    assert_eq!(h.get("/v1/catalog/node-services/nope").await.text(), "null");
}

/// `/v1/agent/monitor` streams catalogd's log as it happens, in hclog's text or JSON lines.
#[tokio::test]
async fn monitor_streams_the_log() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let client = reqwest::Client::new();
    let bad = h.get("/v1/agent/monitor?loglevel=loud").await;
    assert_eq!(
        (bad.status, bad.text()),
        (400, "Unknown log level: loud".to_string())
    );
    for (query, json_lines) in [("loglevel=info", false), ("loglevel=INFO&logjson", true)] {
        let mut stream = client
            .get(format!("{}/v1/agent/monitor?{query}", c.url))
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        // Something catalogd logs at info: it starts running a newly registered HTTP check.
        let id = format!("probe-{json_lines}");
        let r = h
            .put_json(
                "/v1/agent/check/register",
                &json!({"Name": id, "HTTP": format!("{}/v1/status/leader", c.url),
                    "Interval": "10s"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = cairn_tests::read_stream_until(&mut stream, 20, |t| t.contains(&id))
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let line = text.lines().find(|l| l.contains(&id)).unwrap();
        if json_lines {
            let v: Value = serde_json::from_str(line).expect("one JSON object per line");
            assert_eq!(v["@level"], "info", "{line}");
            assert!(
                v["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
                "{line}"
            );
        } else {
            assert!(line.contains("[INFO]"), "{line}");
        }
    }
}

/// Nodes a taskrun agent keeps alive (a `serfHealth` check) are members: alive while it passes,
/// failed once it does not; force-leave reaps one, as Consul's leader reaps a member that left.
#[tokio::test]
async fn members_follow_serf_health_and_force_leave_reaps() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let node = |status: &str| {
        json!({"Node": "worker-1", "Address": "10.0.0.7", "Check": {"CheckID": "serfHealth",
            "Name": "Serf Health Status", "Status": status}})
    };
    h.put_json("/v1/catalog/register", &node("passing")).await;
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "plain", "Address": "10.0.0.8"}),
    )
    .await;
    let status_of = |members: &Value, name: &str| {
        members
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["Name"] == name)
            .map(|m| m["Status"].clone())
    };
    let members = h.get("/v1/agent/members").await.value();
    assert_eq!(status_of(&members, "cairn-test"), Some(json!(1)));
    assert_eq!(status_of(&members, "worker-1"), Some(json!(1)));
    assert_eq!(status_of(&members, "plain"), None, "no agent keeps it");
    let wan = h.get("/v1/agent/members?wan=1").await.value();
    assert_eq!(wan.as_array().unwrap().len(), 1);
    assert_eq!(wan[0]["Name"], "cairn-test.dc1");

    h.put_json("/v1/catalog/register", &node("critical")).await;
    let members = h.get("/v1/agent/members").await.value();
    assert_eq!(status_of(&members, "worker-1"), Some(json!(4)), "failed");

    let r = h.put("/v1/agent/force-leave/worker-1?prune", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(h.get("/v1/catalog/node/worker-1").await.text(), "null");
    let r = h.put("/v1/agent/force-leave/nobody", "").await;
    assert_eq!(
        (r.status, r.text()),
        (500, "agent: No node found with name 'nobody'".to_string())
    );
}

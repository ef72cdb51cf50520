//! `cairn_client` against the real server: KV calls, `Watch` yielding only on relevant changes
//! (KV, health, whole catalog), a watch resuming across a kill -9 and restart, and `/metrics`.

use std::time::Duration;

use cairn_client::{CatalogClient, KvPutOptions, QueryOptions, Watch, WatchConfig};
use cairn_tests::Catalogd;
use cairn_wire::CheckStatus;
use serde_json::json;
use tokio::time::timeout;

const SOON: Duration = Duration::from_secs(20);

fn client(c: &Catalogd) -> CatalogClient {
    CatalogClient::new(&c.url, None).expect("client")
}

#[tokio::test]
async fn kv_calls_round_trip() {
    let c = Catalogd::start().await;
    let cl = client(&c);
    let put = KvPutOptions::default();
    assert!(cl.kv_put("lib/a", b"alpha", &put).await.unwrap());
    assert!(cl.kv_put("lib/b/c", b"gamma", &put).await.unwrap());
    assert!(cl.kv_put("other", b"x", &put).await.unwrap());

    let opts = QueryOptions::default();
    let (pair, meta) = cl.kv_get("lib/a", &opts).await.unwrap();
    let pair = pair.expect("lib/a exists");
    assert_eq!(pair.key, "lib/a");
    assert_eq!(pair.value_bytes(), b"alpha");
    assert_eq!(meta.index, pair.modify_index);
    assert!(meta.known_leader);
    let (raw, _) = cl.kv_get_raw("lib/b/c", &opts).await.unwrap();
    assert_eq!(raw.as_deref(), Some(&b"gamma"[..]));

    let (pairs, _) = cl.kv_list("lib/", &opts).await.unwrap();
    let keys: Vec<&str> = pairs.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, vec!["lib/a", "lib/b/c"]);
    let (keys, _) = cl.kv_keys("lib/", None, &opts).await.unwrap();
    assert_eq!(keys, vec!["lib/a", "lib/b/c"]);
    let (keys, _) = cl.kv_keys("lib/", Some("/"), &opts).await.unwrap();
    assert_eq!(keys, vec!["lib/a", "lib/b/"]);

    // Check-and-set through the client.
    let stale = KvPutOptions {
        cas: Some(pair.modify_index + 100),
        ..Default::default()
    };
    assert!(!cl.kv_put("lib/a", b"nope", &stale).await.unwrap());
    let fresh = KvPutOptions {
        cas: Some(pair.modify_index),
        flags: Some(9),
        ..Default::default()
    };
    assert!(cl.kv_put("lib/a", b"beta", &fresh).await.unwrap());
    let (pair, _) = cl.kv_get("lib/a", &opts).await.unwrap();
    let pair = pair.unwrap();
    assert_eq!(pair.value_bytes(), b"beta");
    assert_eq!(pair.flags, 9);

    assert!(cl.kv_delete("lib/a", false, None).await.unwrap());
    let (gone, meta) = cl.kv_get("lib/a", &opts).await.unwrap();
    assert!(gone.is_none());
    assert!(meta.index > 0, "a missing key still carries an index");
    assert!(cl.kv_delete("lib/", true, None).await.unwrap());
    let (pairs, _) = cl.kv_list("lib/", &opts).await.unwrap();
    assert!(pairs.is_empty());
    let (keys, _) = cl.kv_keys("", None, &opts).await.unwrap();
    assert_eq!(keys, vec!["other"]);
}

#[tokio::test]
async fn kv_watch_yields_only_when_its_key_changes() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/w/k", "one").await;
    let mut w = Watch::kv(client(&c), "w/k");
    let first = timeout(SOON, w.next()).await.expect("first read").unwrap();
    assert_eq!(first.expect("present").value_bytes(), b"one");

    {
        let next = w.next();
        tokio::pin!(next);
        // Let the blocking read reach the server, then write elsewhere.
        assert!(
            timeout(Duration::from_millis(300), &mut next)
                .await
                .is_err(),
            "yielded with no change at all"
        );
        h.put("/v1/kv/w/other", "x").await;
        h.put("/v1/kv/w/k-sibling", "x").await;
        assert!(
            timeout(Duration::from_millis(700), &mut next)
                .await
                .is_err(),
            "yielded after a write to another key"
        );
        h.put("/v1/kv/w/k", "two").await;
        let second = timeout(SOON, &mut next)
            .await
            .expect("yields after its key changed")
            .unwrap();
        assert_eq!(second.expect("present").value_bytes(), b"two");
    }

    h.delete("/v1/kv/w/k").await;
    let third = timeout(SOON, w.next()).await.expect("deletion").unwrap();
    assert!(third.is_none(), "a deleted key reads as None");
}

#[tokio::test]
async fn health_watch_yields_on_a_check_status_change() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "hs", "ID": "hs-1", "Port": 7000, "Check": {"TTL": "60s"}}),
    )
    .await;
    let mut w = Watch::health_service(client(&c), "hs", QueryOptions::default());
    let first = timeout(SOON, w.next()).await.expect("first").unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].service.id, "hs-1");
    assert_eq!(first[0].status(), CheckStatus::Critical);

    h.put("/v1/agent/check/pass/service:hs-1", "").await;
    let passing = timeout(SOON, w.next())
        .await
        .expect("status change")
        .unwrap();
    assert_eq!(passing[0].status(), CheckStatus::Passing);
    assert_eq!(passing[0].checks[0].status, CheckStatus::Passing);

    let mut passing_only = Watch::health_service(
        client(&c),
        "hs",
        QueryOptions {
            passing: true,
            ..Default::default()
        },
    );
    let now = timeout(SOON, passing_only.next()).await.unwrap().unwrap();
    assert_eq!(now.len(), 1);
    h.put("/v1/agent/check/warn/service:hs-1?note=slow", "")
        .await;
    let warned = timeout(SOON, w.next()).await.expect("warning").unwrap();
    assert_eq!(warned[0].status(), CheckStatus::Warning);
    let filtered = timeout(SOON, passing_only.next())
        .await
        .expect("passing watch sees it leave")
        .unwrap();
    assert!(filtered.is_empty(), "{filtered:?}");
}

#[tokio::test]
async fn whole_catalog_watch_sees_a_new_service() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let mut w = Watch::whole_catalog(client(&c));
    let first = timeout(SOON, w.next()).await.expect("first").unwrap();
    assert!(first.instances("newsvc").next().is_none());
    assert!(first.nodes.iter().any(|n| n.node.node == "cairn-test"));

    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n7", "Address": "10.0.0.7",
                "Service": {"ID": "newsvc-1", "Service": "newsvc", "Port": 1234},
                "Check": {"CheckID": "c", "Name": "c", "Status": "passing", "ServiceID": "newsvc-1"}}),
    )
    .await;
    let next = timeout(SOON, w.next()).await.expect("the change").unwrap();
    let instances: Vec<_> = next.instances("newsvc").collect();
    assert_eq!(instances.len(), 1, "{next:?}");
    assert_eq!(instances[0].service.port, 1234);
    assert_eq!(instances[0].node.address, "10.0.0.7");
    assert_eq!(instances[0].status(), CheckStatus::Passing);
    assert!(next.nodes.iter().any(|n| n.node.node == "n7"));
}

#[tokio::test]
async fn a_watch_resumes_after_catalogd_is_killed_and_restarted() {
    let mut c = Catalogd::start().await;
    c.http.put("/v1/kv/resume/k", "before").await;
    let config = WatchConfig {
        wait: Duration::from_secs(5),
        min_interval: Duration::from_millis(20),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
    };
    let mut w = Watch::kv(client(&c), "resume/k").with_config(config);
    let status = w.status();
    let first = timeout(SOON, w.next()).await.expect("first").unwrap();
    assert_eq!(first.unwrap().value_bytes(), b"before");

    let task = tokio::spawn(async move {
        let r = w.next().await;
        (w, r)
    });
    c.wait_parked(1).await;
    c.kill9();
    // The watch notices the server is gone and keeps retrying.
    let saw_failure = timeout(SOON, async {
        let mut status = status.clone();
        loop {
            if status.borrow().failures > 0 {
                return;
            }
            if status.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        saw_failure.is_ok(),
        "the watch never noticed the server was gone"
    );
    assert!(!task.is_finished(), "a failure is not a change");

    c.restart().await;
    c.http.put("/v1/kv/resume/k", "after").await;
    let (w, got) = timeout(Duration::from_secs(30), task)
        .await
        .expect("the watch resumed within 30s")
        .expect("watch task");
    assert_eq!(got.unwrap().expect("present").value_bytes(), b"after");
    assert_eq!(w.failures(), 0);
    assert!(w.last_error().is_none());
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

#[tokio::test]
async fn metrics_count_commits_and_kv_entries() {
    let c = Catalogd::start().await;
    let h = &c.http;
    for k in ["m/a", "m/b", "m/c"] {
        h.put(&format!("/v1/kv/{k}"), "v").await;
    }
    let r = h.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    assert!(
        text.contains("# TYPE catalogd_commits_total counter"),
        "{text}"
    );
    let commits = metric(&text, "catalogd_commits_total");
    assert!(
        commits >= 1.0,
        "three acknowledged writes, {commits} commits"
    );
    assert_eq!(metric(&text, "catalogd_kv_entries"), 3.0);
    assert_eq!(metric(&text, "catalogd_nodes"), 1.0, "catalogd's own node");

    h.delete("/v1/kv/m/a").await;
    h.put("/v1/kv/m/d", "v").await;
    h.put("/v1/kv/m/e", "v").await;
    let text = h.get("/metrics").await.text();
    assert_eq!(metric(&text, "catalogd_kv_entries"), 4.0);
    assert!(metric(&text, "catalogd_commits_total") > commits);
    assert_eq!(
        h.get("/v1/agent/metrics?format=prometheus")
            .await
            .text()
            .lines()
            .filter(|l| l.starts_with("# TYPE"))
            .count(),
        text.lines().filter(|l| l.starts_with("# TYPE")).count(),
        "Consul's path serves the same metrics in Prometheus' format"
    );
    let summary = h.get("/v1/agent/metrics").await.value();
    assert!(
        summary["Gauges"].as_array().is_some_and(|g| g
            .iter()
            .any(|g| g["Name"] == "consul.kv.entries" && g["Value"] == 4.0)),
        "Consul's JSON summary counts the KV entries: {summary}"
    );
}

//! Blocking queries: `?index=&wait=` waits for a change to what the query reads, returns on
//! timeout with the same index, wakes only for its own data, and works on every read endpoint.

use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, Http};
use serde_json::json;

/// Starts a blocking GET in the background.
fn spawn_get(h: &Http, path: String) -> tokio::task::JoinHandle<(Instant, cairn_tests::Resp)> {
    let h = h.clone();
    tokio::spawn(async move {
        let r = h.get(&path).await;
        (Instant::now(), r)
    })
}

#[tokio::test]
async fn kv_query_blocks_until_its_key_changes() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/watched", "v1").await;
    let idx = h.get("/v1/kv/watched").await.index();
    let waiter = spawn_get(h, format!("/v1/kv/watched?index={idx}&wait=30s"));
    c.wait_parked(1).await;
    // Writes elsewhere must not answer the query.
    h.put("/v1/kv/unrelated", "x").await;
    h.put("/v1/kv/watched-sibling", "x").await;
    // Not a wait for a state: an observation window in which nothing may happen (a wrong
    // wake-up answers within milliseconds of the write).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "a write to another key woke the watcher"
    );
    let written = Instant::now();
    h.put("/v1/kv/watched", "v2").await;
    let (answered, r) = waiter.await.unwrap();
    assert!(answered >= written);
    assert_eq!(r.status, 200);
    assert!(r.index() > idx);
    assert_eq!(r.value()[0]["Value"], "djI=");
}

#[tokio::test]
async fn wait_expires_with_the_same_index() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/quiet", "v").await;
    let idx = h.get("/v1/kv/quiet").await.index();
    let started = Instant::now();
    // Go's client sends milliseconds.
    let r = h.get(&format!("/v1/kv/quiet?index={idx}&wait=700ms")).await;
    let took = started.elapsed();
    assert_eq!(r.index(), idx);
    // It waited, and it did not take the default wait (5 min): that would outlast the
    // harness client's 120 s timeout and fail the GET above.
    assert!(
        took >= Duration::from_millis(700),
        "returned after {took:?}"
    );
    let bad = h.get(&format!("/v1/kv/quiet?index={idx}&wait=soon")).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("wait"));
}

#[tokio::test]
async fn missing_key_query_wakes_on_creation_and_prefix_on_delete() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let missing = h.get("/v1/kv/later").await;
    assert_eq!(missing.status, 404);
    let waiter = spawn_get(
        h,
        format!("/v1/kv/later?index={}&wait=30s", missing.index()),
    );
    c.wait_parked(1).await;
    h.put("/v1/kv/later", "here").await;
    let (_, r) = waiter.await.unwrap();
    assert_eq!(r.status, 200);

    h.put("/v1/kv/dir/a", "1").await;
    h.put("/v1/kv/dir/b", "2").await;
    let listing = h.get("/v1/kv/dir/?recurse").await;
    let waiter = spawn_get(
        h,
        format!("/v1/kv/dir/?recurse&index={}&wait=30s", listing.index()),
    );
    c.wait_parked(1).await;
    assert!(!waiter.is_finished());
    h.delete("/v1/kv/dir/a").await;
    let (_, r) = waiter.await.unwrap();
    assert!(
        r.index() > listing.index(),
        "a delete under the prefix moves its index"
    );
    assert_eq!(r.value().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn service_health_and_catalog_queries_block() {
    let c = Catalogd::start().await;
    let h = &c.http;
    let reg = |status: &str| {
        json!({"Node": "n1", "Address": "10.0.0.1",
        "Service": {"ID": "web-1", "Service": "web", "Port": 80},
        "Check": {"CheckID": "web-http", "Name": "http", "Status": status, "ServiceID": "web-1"}})
    };
    h.put_json("/v1/catalog/register", &reg("passing")).await;
    let health = h.get("/v1/health/service/web").await;
    let whole = h.get("/v1/cairn/catalog").await;
    let services = h.get("/v1/catalog/services").await;
    let w_health = spawn_get(
        h,
        format!("/v1/health/service/web?index={}&wait=30s", health.index()),
    );
    let w_whole = spawn_get(
        h,
        format!("/v1/cairn/catalog?index={}&wait=30s", whole.index()),
    );
    let w_services = spawn_get(
        h,
        format!("/v1/catalog/services?index={}&wait=2s", services.index()),
    );
    c.wait_parked(3).await;
    // Re-registering the same thing changes nothing: nobody may wake.
    h.put_json("/v1/catalog/register", &reg("passing")).await;
    h.put("/v1/kv/noise", "x").await;
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n9", "Address": "10.0.0.9",
        "Service": {"Service": "db", "Port": 5432}}),
    )
    .await;
    // An observation window in which nothing may wake (see above).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !w_health.is_finished(),
        "web's watcher woke for another service"
    );
    h.put_json("/v1/catalog/register", &reg("critical")).await;
    let (_, r) = w_health.await.unwrap();
    assert_eq!(r.value()[0]["Checks"][0]["Status"], "critical");
    // The whole-catalog watcher woke for the first real change (node n9 with db).
    let (_, r) = w_whole.await.unwrap();
    assert!(r.index() > whole.index());
    let body = r.value();
    assert!(
        body["Nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Node"]["Node"] == "n9")
    );
    let now = h.get("/v1/cairn/catalog").await.value();
    let web = now["Services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Service"]["ID"] == "web-1")
        .unwrap();
    assert_eq!(web["Checks"][0]["Status"], "critical");
    // The services list changed (db appeared) before the health change.
    let (_, r) = w_services.await.unwrap();
    assert!(r.value().get("db").is_some());
}

#[tokio::test]
async fn many_watchers_on_one_key_all_wake() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/fanout", "0").await;
    let idx = h.get("/v1/kv/fanout").await.index();
    let parked = || async {
        let metrics = h.get("/metrics").await.text();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("catalogd_blocking_queries_waiting "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("catalogd_blocking_queries_waiting in /metrics")
    };
    let waiters: Vec<_> = (0..200)
        .map(|_| spawn_get(h, format!("/v1/kv/fanout?index={idx}&wait=60s")))
        .collect();
    // Poll /metrics until every watcher is parked (a loaded machine may take a while).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = parked().await;
        if waiting as usize == 200 {
            break;
        }
        assert!(
            waiting <= 200.0,
            "more watchers parked than sent: {waiting}"
        );
        assert!(
            Instant::now() < deadline,
            "only {waiting} of 200 watchers parked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nobody was answered before the write.
    assert!(waiters.iter().all(|w| !w.is_finished()));
    h.put("/v1/kv/fanout", "1").await;
    for w in waiters {
        let (_, r) = w.await.unwrap();
        assert_eq!(r.value()[0]["Value"], "MQ==");
    }
}

//! Sessions and locks: create (string and nanosecond lock delays), reads, renew and destroy; KV
//! acquire/release; what ending a session does to its locks (release or delete), TTL expiry,
//! lock-delay, sessions tied to checks, and refused creations.

use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, Http};
use serde_json::{Value, json};

async fn start() -> Catalogd {
    Catalogd::start_with(&["--session-ttl-min", "1s"]).await
}

/// Creates a session and returns its ID.
async fn create(h: &Http, body: &Value) -> String {
    let r = h.put_json("/v1/session/create", body).await;
    assert_eq!(r.status, 200, "create {body}: {}", r.text());
    let id = r.value()["ID"].as_str().expect("ID").to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    id
}

/// `/v1/session/info/<id>`: the session, or None when it is gone.
async fn info(h: &Http, id: &str) -> Option<Value> {
    let r = h.get(&format!("/v1/session/info/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.index();
    let list = r.value();
    let list = list.as_array().expect("info is a list");
    assert!(list.len() <= 1);
    list.first().cloned()
}

/// The KV entry at `key`, or None.
async fn entry(h: &Http, key: &str) -> Option<Value> {
    let r = h.get(&format!("/v1/kv/{key}")).await;
    match r.status {
        404 => None,
        200 => Some(r.value()[0].clone()),
        s => panic!("GET {key}: {s} {}", r.text()),
    }
}

async fn acquire(h: &Http, key: &str, session: &str, value: &str) -> bool {
    let r = h
        .put(&format!("/v1/kv/{key}?acquire={session}"), value)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn release(h: &Http, key: &str, session: &str) -> bool {
    let r = h.put(&format!("/v1/kv/{key}?release={session}"), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["ID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn create_read_renew_and_destroy() {
    let c = start().await;
    let h = &c.http;

    // An empty body is allowed: defaults for everything.
    let r = h.put("/v1/session/create", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let plain = r.value()["ID"].as_str().unwrap().to_string();
    let s = info(h, &plain).await.expect("created");
    assert_eq!(s["ID"], plain.as_str());
    assert_eq!(s["Node"], "cairn-test");
    assert_eq!(s["Behavior"], "release");
    assert_eq!(s["LockDelay"], 15_000_000_000u64, "Consul's default 15s");
    assert_eq!(s["TTL"], "");
    for field in [
        "Name",
        "NodeChecks",
        "ServiceChecks",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(s.get(field).is_some(), "session lacks {field}: {s}");
    }

    let named = create(
        h,
        &json!({"Name": "leader-lock", "TTL": "10s", "Behavior": "delete", "LockDelay": "0s"}),
    )
    .await;
    let s = info(h, &named).await.unwrap();
    assert_eq!(s["Name"], "leader-lock");
    assert_eq!(s["TTL"], "10s");
    assert_eq!(s["Behavior"], "delete");
    assert_eq!(s["LockDelay"], 0);

    // The Go client sends LockDelay as integer nanoseconds; below 1000 it means seconds.
    let nanos = create(h, &json!({"LockDelay": 2_000_000_000u64})).await;
    assert_eq!(
        info(h, &nanos).await.unwrap()["LockDelay"],
        2_000_000_000u64
    );
    let secs = create(h, &json!({"LockDelay": 5})).await;
    assert_eq!(info(h, &secs).await.unwrap()["LockDelay"], 5_000_000_000u64);

    let mut all = vec![plain.clone(), named.clone(), nanos.clone(), secs.clone()];
    all.sort();
    let list = h.get("/v1/session/list").await;
    list.index();
    assert_eq!(ids(&list.value()), all);
    assert_eq!(
        ids(&h.get("/v1/session/node/cairn-test").await.value()),
        all
    );
    assert_eq!(h.get("/v1/session/node/elsewhere").await.value(), json!([]));

    let r = h.put(&format!("/v1/session/renew/{named}"), "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let renewed = r.value();
    assert_eq!(renewed.as_array().map(Vec::len), Some(1), "{renewed}");
    assert_eq!(renewed[0]["ID"], named.as_str());
    assert_eq!(renewed[0]["TTL"], "10s");
    let r = h
        .put("/v1/session/renew/00000000-0000-0000-0000-000000000000", "")
        .await;
    assert_eq!(r.status, 404, "{}", r.text());

    let r = h.put(&format!("/v1/session/destroy/{named}"), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "true");
    assert!(info(h, &named).await.is_none());
    assert!(!ids(&h.get("/v1/session/list").await.value()).contains(&named));
    let r = h.put(&format!("/v1/session/renew/{named}"), "").await;
    assert_eq!(r.status, 404, "a destroyed session cannot be renewed");
}

#[tokio::test]
async fn acquire_and_release_follow_consul_lock_rules() {
    let c = start().await;
    let h = &c.http;
    let s1 = create(h, &json!({"Name": "one"})).await;
    let s2 = create(h, &json!({"Name": "two"})).await;

    assert!(acquire(h, "svc/leader", &s1, "node-a").await);
    let e = entry(h, "svc/leader").await.unwrap();
    assert_eq!(e["LockIndex"], 1);
    assert_eq!(e["Session"], s1.as_str());

    assert!(
        !acquire(h, "svc/leader", &s2, "node-b").await,
        "held by another session"
    );
    let e = entry(h, "svc/leader").await.unwrap();
    assert_eq!(e["Session"], s1.as_str());
    assert_eq!(h.get("/v1/kv/svc/leader?raw").await.text(), "node-a");

    // Re-acquiring by the holder updates the value without counting a new acquisition.
    assert!(acquire(h, "svc/leader", &s1, "node-a2").await);
    let e = entry(h, "svc/leader").await.unwrap();
    assert_eq!(e["LockIndex"], 1);
    assert_eq!(h.get("/v1/kv/svc/leader?raw").await.text(), "node-a2");

    assert!(!release(h, "svc/leader", &s2).await, "s2 does not hold it");
    assert_eq!(
        entry(h, "svc/leader").await.unwrap()["Session"],
        s1.as_str()
    );
    assert!(release(h, "svc/leader", &s1).await);
    let e = entry(h, "svc/leader").await.unwrap();
    assert!(e.get("Session").is_none(), "released: {e}");
    assert_eq!(e["LockIndex"], 1);

    // A release by request starts no lock-delay: s2 takes it at once.
    assert!(acquire(h, "svc/leader", &s2, "node-b").await);
    let e = entry(h, "svc/leader").await.unwrap();
    assert_eq!(e["LockIndex"], 2);
    assert_eq!(e["Session"], s2.as_str());

    let r = h
        .put(
            "/v1/kv/svc/leader?acquire=00000000-0000-0000-0000-000000000000",
            "x",
        )
        .await;
    assert_eq!(r.status, 500, "unknown session: {}", r.text());
    assert!(r.text().contains("invalid session"), "{}", r.text());
}

#[tokio::test]
async fn destroy_releases_or_deletes_per_behavior() {
    let c = start().await;
    let h = &c.http;
    let rel = create(h, &json!({"Behavior": "release", "LockDelay": "0s"})).await;
    let del = create(h, &json!({"Behavior": "delete", "LockDelay": "0s"})).await;
    let other = create(h, &json!({})).await;
    assert!(acquire(h, "locks/released", &rel, "r").await);
    assert!(acquire(h, "locks/deleted", &del, "d").await);
    h.put("/v1/kv/locks/unheld", "u").await;

    h.put(&format!("/v1/session/destroy/{rel}"), "").await;
    let e = entry(h, "locks/released").await.expect("kept");
    assert!(e.get("Session").is_none(), "{e}");
    assert_eq!(h.get("/v1/kv/locks/released?raw").await.text(), "r");
    assert!(
        acquire(h, "locks/released", &other, "o").await,
        "free again (no lock-delay)"
    );

    h.put(&format!("/v1/session/destroy/{del}"), "").await;
    assert!(entry(h, "locks/deleted").await.is_none());
    assert!(
        entry(h, "locks/unheld").await.is_some(),
        "keys the session did not hold stay"
    );
}

#[tokio::test]
async fn ttl_expiry_ends_a_session_and_renewal_keeps_one() {
    let c = start().await;
    let h = &c.http;
    let lapses = create(h, &json!({"TTL": "1s", "LockDelay": "0s"})).await;
    let renewed = create(h, &json!({"TTL": "1s", "LockDelay": "0s"})).await;
    assert!(acquire(h, "ttl/lapses", &lapses, "a").await);
    assert!(acquire(h, "ttl/renewed", &renewed, "b").await);

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut gone_at = None;
    loop {
        let r = h.put(&format!("/v1/session/renew/{renewed}"), "").await;
        assert_eq!(r.status, 200, "the renewed session expired: {}", r.text());
        if gone_at.is_none() && info(h, &lapses).await.is_none() {
            gone_at = Some(Instant::now());
        }
        // Keep renewing for a while after the other one expired: 2.5 s more than its TTL.
        if let Some(t) = gone_at
            && t.elapsed() > Duration::from_millis(2500)
        {
            break;
        }
        assert!(
            gone_at.is_some() || Instant::now() < deadline,
            "a 1s TTL session not renewed for 10s still exists"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let e = entry(h, "ttl/lapses").await.expect("released, not deleted");
    assert!(e.get("Session").is_none(), "{e}");
    assert_eq!(
        renewed_info(h, &renewed).await["ID"],
        renewed.as_str(),
        "the renewed session survives"
    );
    assert_eq!(
        entry(h, "ttl/renewed").await.unwrap()["Session"],
        renewed.as_str()
    );
    let r = h.put(&format!("/v1/session/renew/{lapses}"), "").await;
    assert_eq!(r.status, 404);
}

async fn renewed_info(h: &Http, id: &str) -> Value {
    info(h, id)
        .await
        .unwrap_or_else(|| panic!("session {id} is gone"))
}

#[tokio::test]
async fn lock_delay_blocks_reacquisition_after_a_session_ends() {
    let c = start().await;
    let h = &c.http;
    let first = create(h, &json!({"LockDelay": "2s"})).await;
    let second = create(h, &json!({})).await;
    assert!(acquire(h, "delayed", &first, "1").await);

    let destroyed = Instant::now();
    h.put(&format!("/v1/session/destroy/{first}"), "").await;
    assert!(
        !acquire(h, "delayed", &second, "2").await,
        "lock-delay must refuse an immediate acquisition"
    );
    // Other keys are not delayed.
    assert!(acquire(h, "not-delayed", &second, "x").await);

    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        if acquire(h, "delayed", &second, "2").await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused long after the 2s lock-delay"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        destroyed.elapsed() >= Duration::from_secs(2),
        "acquired {:?} after the destroy, inside the 2s lock-delay",
        destroyed.elapsed()
    );
    assert_eq!(
        entry(h, "delayed").await.unwrap()["Session"],
        second.as_str()
    );
}

#[tokio::test]
async fn a_critical_check_invalidates_sessions_tied_to_it() {
    let c = start().await;
    let h = &c.http;
    for id in ["guard", "guard-node"] {
        let r = h
            .put_json(
                "/v1/agent/check/register",
                &json!({"Name": id, "TTL": "60s"}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // Still critical (no heartbeat yet): refused, naming the check (Consul: 500 with the reason).
    let r = h
        .put_json("/v1/session/create", &json!({"Checks": ["guard"]}))
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("guard"), "{}", r.text());
    assert!(r.text().contains("critical"), "{}", r.text());
    let r = h
        .put_json("/v1/session/create", &json!({"Checks": ["no-such-check"]}))
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("no-such-check"), "{}", r.text());
    assert_eq!(h.get("/v1/session/list").await.value(), json!([]));

    h.put("/v1/agent/check/pass/guard", "").await;
    h.put("/v1/agent/check/pass/guard-node", "").await;
    let tied = create(h, &json!({"Checks": ["guard"], "LockDelay": "0s"})).await;
    let tied_node = create(h, &json!({"NodeChecks": ["guard-node"], "LockDelay": "0s"})).await;
    let free = create(h, &json!({})).await;
    assert_eq!(
        info(h, &tied_node).await.unwrap()["NodeChecks"],
        json!(["guard-node"])
    );
    assert!(acquire(h, "guarded", &tied, "v").await);
    assert!(acquire(h, "guarded-node", &tied_node, "v").await);

    // A warning is not critical: nothing happens.
    h.put("/v1/agent/check/warn/guard", "").await;
    assert!(info(h, &tied).await.is_some());

    h.put("/v1/agent/check/fail/guard?note=down", "").await;
    assert!(info(h, &tied).await.is_none(), "tied session survived");
    let e = entry(h, "guarded").await.unwrap();
    assert!(e.get("Session").is_none(), "lock released: {e}");
    assert!(
        info(h, &tied_node).await.is_some(),
        "other check still fine"
    );
    assert!(info(h, &free).await.is_some());

    h.put_json(
        "/v1/agent/check/update/guard-node",
        &json!({"Status": "critical", "Output": "gone"}),
    )
    .await;
    assert!(info(h, &tied_node).await.is_none());
    assert!(
        entry(h, "guarded-node")
            .await
            .unwrap()
            .get("Session")
            .is_none()
    );
    assert!(info(h, &free).await.is_some());
}

#[tokio::test]
async fn bad_session_requests_are_refused_and_create_nothing() {
    let c = start().await;
    let h = &c.http;
    for (body, status, needle) in [
        // Consul's texts; its server-side refusals are 500s.
        (
            json!({"TTL": "0.5s"}),
            500,
            "Invalid Session TTL '500000000', must be between [1s=24h0m0s]",
        ),
        (json!({"TTL": "100000s"}), 500, "Invalid Session TTL"),
        (json!({"TTL": "soon"}), 500, "Session TTL 'soon' invalid"),
        (json!({"LockDelay": "forever"}), 400, "invalid duration"),
        (json!({"LockDelay": -1}), 400, "LockDelay"),
        (
            json!({"Behavior": "explode"}),
            500,
            "Invalid Behavior setting 'explode'",
        ),
        (
            json!({"Node": "no-such-node"}),
            500,
            "Missing node registration",
        ),
    ] {
        let r = h.put_json("/v1/session/create", &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(r.text().contains(needle), "{body}: {}", r.text());
    }
    assert_eq!(h.get("/v1/session/list").await.value(), json!([]));
    // The edges of the range are accepted.
    create(h, &json!({"TTL": "1s"})).await;
    create(h, &json!({"TTL": "86400s"})).await;
    assert_eq!(
        h.get("/v1/session/list")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

//! Durability and lifecycle: a restart restores everything with its indexes, every acknowledged
//! write survives `kill -9` in the middle of a write storm, and SIGTERM stops catalogd cleanly
//! even with blocking queries parked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_tests::Catalogd;
use serde_json::json;

#[tokio::test]
async fn restart_restores_state_and_indexes() {
    let mut c = Catalogd::start().await;
    let h = c.http.clone();
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n1", "Address": "10.0.0.1",
        "Service": {"ID": "web-1", "Service": "web", "Port": 80, "Tags": ["a"]},
        "Check": {"CheckID": "c", "Name": "c", "Status": "passing", "ServiceID": "web-1"}}),
    )
    .await;
    h.put("/v1/kv/cfg/x?flags=7", "value").await;
    let session = h
        .put("/v1/session/create", r#"{"Name":"s","LockDelay":"0s"}"#)
        .await
        .value();
    let sid = session["ID"].as_str().unwrap().to_string();
    assert_eq!(
        h.put(&format!("/v1/kv/lock?acquire={sid}"), "me")
            .await
            .text(),
        "true"
    );
    h.delete("/v1/kv/cfg/gone").await;
    let kv_before = h.get("/v1/kv/cfg/x").await;
    let health_before = h.get("/v1/health/service/web").await;
    let lock_before = h.get("/v1/kv/lock").await.value();
    let self_before = h.get("/v1/agent/self").await.value();

    assert!(c.sigterm(Duration::from_secs(10)).success());
    c.restart().await;
    let h = c.http.clone();
    let kv_after = h.get("/v1/kv/cfg/x").await;
    assert_eq!(kv_after.value(), kv_before.value());
    assert_eq!(kv_after.index(), kv_before.index());
    let health_after = h.get("/v1/health/service/web").await;
    assert_eq!(health_after.value(), health_before.value());
    assert_eq!(health_after.index(), health_before.index());
    assert_eq!(h.get("/v1/kv/lock").await.value(), lock_before);
    assert_eq!(
        h.get(&format!("/v1/session/info/{sid}")).await.value()[0]["ID"],
        sid.as_str()
    );
    assert_eq!(
        h.get("/v1/agent/self").await.value()["Config"]["NodeID"],
        self_before["Config"]["NodeID"]
    );
    // New writes continue from the restored index, never below it.
    h.put("/v1/kv/after", "1").await;
    assert!(h.get("/v1/kv/after").await.index() > health_after.index());
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9() {
    let mut c = Catalogd::start().await;
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..16 {
        let h = c.http.clone();
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("storm/{w}/{i}");
                let value = format!("v{w}-{i}");
                match h
                    .try_send(
                        "PUT",
                        &format!("/v1/kv/{key}"),
                        Some(value.clone().into_bytes()),
                    )
                    .await
                {
                    Ok(r) if r.status == 200 && r.body == b"true" => {
                        acked.lock().unwrap().insert(key, value);
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let the storm get going, then pull the plug without warning.
    cairn_tests::wait_for(
        "the storm to acknowledge 500 writes",
        Duration::from_secs(60),
        || c.log_text(),
        async || (acked.lock().unwrap().len() >= 500).then_some(()),
    )
    .await;
    c.kill9();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the storm wrote only {} keys",
        acked.len()
    );
    c.restart().await;
    let stored = c.http.get("/v1/kv/storm/?recurse").await.value();
    let stored: BTreeMap<String, String> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let v = base64_decode(e["Value"].as_str().unwrap());
            (e["Key"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(k, v)| stored.get(*k) != Some(v))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

#[tokio::test]
async fn sigterm_stops_promptly_with_watchers_parked() {
    let mut c = Catalogd::start().await;
    let h = c.http.clone();
    h.put("/v1/kv/w", "1").await;
    let idx = h.get("/v1/kv/w").await.index();
    let parked: Vec<_> = (0..20)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move {
                h.try_send("GET", &format!("/v1/kv/w?index={idx}&wait=5m"), None)
                    .await
            })
        })
        .collect();
    c.wait_parked(20).await;
    let status = tokio::task::spawn_blocking(move || {
        let s = c.sigterm(Duration::from_secs(8));
        (s, c.log_text())
    })
    .await
    .unwrap();
    assert!(
        status.0.success(),
        "exit status {:?}; log:\n{}",
        status.0,
        status.1
    );
    assert!(status.1.contains("catalogd stopped"), "log:\n{}", status.1);
    for p in parked {
        // Parked queries are answered (or their connection closed), never left hanging.
        let _ = tokio::time::timeout(Duration::from_secs(5), p)
            .await
            .expect("watcher released");
    }
}

fn base64_decode(s: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(s).unwrap()).unwrap()
}

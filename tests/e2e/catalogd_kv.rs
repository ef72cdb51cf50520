//! KV endpoints: values in base64, raw reads, flags, check-and-set, key listings with separator,
//! recursive and guarded deletes, limits, and 404s that still carry an index.

use cairn_tests::Catalogd;
use serde_json::{Value, json};

#[tokio::test]
async fn put_get_raw_flags_and_listing() {
    let c = Catalogd::start().await;
    let h = &c.http;
    assert_eq!(
        h.put("/v1/kv/app/config/db?flags=42", "postgres://db")
            .await
            .text(),
        "true"
    );
    h.put("/v1/kv/app/config/cache", "redis").await;
    h.put("/v1/kv/app/name", "shop").await;
    h.put("/v1/kv/other", "x").await;

    let got = h.get("/v1/kv/app/config/db").await;
    assert_eq!(got.status, 200);
    let entry = &got.value()[0];
    assert_eq!(entry["Key"], "app/config/db");
    assert_eq!(entry["Flags"], 42);
    assert_eq!(entry["Value"], "cG9zdGdyZXM6Ly9kYg==");
    assert_eq!(entry["LockIndex"], 0);
    assert!(
        entry.get("Session").is_none(),
        "Session is omitted when unheld"
    );
    assert_eq!(got.index(), entry["ModifyIndex"].as_u64().unwrap());

    let raw = h.get("/v1/kv/app/config/db?raw").await;
    assert_eq!(raw.text(), "postgres://db");

    let all = h.get("/v1/kv/app?recurse").await.value();
    let keys: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["app/config/cache", "app/config/db", "app/name"]);
    assert_eq!(
        h.get("/v1/kv/app/?keys").await.value(),
        json!(["app/config/cache", "app/config/db", "app/name"])
    );
    assert_eq!(
        h.get("/v1/kv/app/?keys&separator=/").await.value(),
        json!(["app/config/", "app/name"])
    );
    assert_eq!(
        h.get("/v1/kv/?keys=True&separator=/").await.value(),
        json!(["app/", "other"])
    );
    // An empty value reads back as null, as Consul sends it.
    h.put("/v1/kv/empty", "").await;
    assert_eq!(h.get("/v1/kv/empty").await.value()[0]["Value"], Value::Null);
}

#[tokio::test]
async fn missing_keys_are_404_with_an_index() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/present", "1").await;
    let missing = h.get("/v1/kv/absent").await;
    assert_eq!(missing.status, 404);
    assert!(missing.index() >= 1);
    assert_eq!(missing.header("x-consul-knownleader"), Some("true"));
    assert_eq!(missing.header("x-consul-lastcontact"), Some("0"));
    let none = h.get("/v1/kv/nothing/here?recurse").await;
    assert_eq!(none.status, 404);
    none.index();
}

#[tokio::test]
async fn check_and_set_and_guarded_deletes() {
    let c = Catalogd::start().await;
    let h = &c.http;
    assert_eq!(h.put("/v1/kv/k?cas=0", "first").await.text(), "true");
    assert_eq!(
        h.put("/v1/kv/k?cas=0", "second").await.text(),
        "false",
        "cas=0 only creates"
    );
    let idx = h.get("/v1/kv/k").await.value()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(
        h.put(&format!("/v1/kv/k?cas={}", idx + 100), "stale")
            .await
            .text(),
        "false"
    );
    assert_eq!(
        h.put(&format!("/v1/kv/k?cas={idx}"), "third").await.text(),
        "true"
    );
    assert_eq!(h.get("/v1/kv/k?raw").await.text(), "third");

    let idx = h.get("/v1/kv/k").await.value()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(
        h.delete(&format!("/v1/kv/k?cas={}", idx - 1)).await.text(),
        "false"
    );
    assert_eq!(h.get("/v1/kv/k").await.status, 200);
    assert_eq!(
        h.delete(&format!("/v1/kv/k?cas={idx}")).await.text(),
        "true"
    );
    assert_eq!(h.get("/v1/kv/k").await.status, 404);

    for k in ["t/a", "t/b/c", "tx"] {
        h.put(&format!("/v1/kv/{k}"), "v").await;
    }
    assert_eq!(h.delete("/v1/kv/t/?recurse").await.text(), "true");
    assert_eq!(h.get("/v1/kv/t/?recurse").await.status, 404);
    assert_eq!(
        h.get("/v1/kv/tx").await.status,
        200,
        "recurse stops at the prefix"
    );
}

#[tokio::test]
async fn limits_and_bad_parameters_change_nothing() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/keep", "v").await;
    let before = h.get("/v1/kv/keep").await.index();

    let big = vec![b'x'; 512 * 1024 + 1];
    let r = h.put("/v1/kv/big", big).await;
    assert_eq!(r.status, 413);
    assert!(
        r.text().contains("512") || r.text().contains("524288"),
        "{}",
        r.text()
    );
    let ok = h.put("/v1/kv/max", vec![b'y'; 512 * 1024]).await;
    assert_eq!(ok.text(), "true", "exactly 512 KiB is allowed");

    // Consul answers unparsable numbers with 500 and Go's parse error.
    let r = h.put("/v1/kv/k?flags=banana", "v").await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("\"banana\""), "{}", r.text());
    let r = h.put("/v1/kv/k?cas=-1", "v").await;
    assert_eq!(r.status, 500);
    let r = h.put("/v1/kv/k?acquire=not-a-session", "v").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.text(),
        "raft apply failed: invalid session \"not-a-session\""
    );
    let r = h.put("/v1/kv/", "v").await;
    assert_eq!(r.status, 400);
    assert_eq!(h.get("/v1/kv/big").await.status, 404);
    assert_eq!(h.get("/v1/kv/k").await.status, 404);
    // The only accepted write in between was the 512 KiB one.
    let after = h.get("/v1/kv/?recurse").await.index();
    assert_eq!(after, before + 1);
}

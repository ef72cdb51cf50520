//! `/v1/txn`: every KV verb in one successful transaction, all-or-nothing failures (409 with the
//! failing `OpIndex`, no write applied, index unmoved), read-only transactions, and refused bodies.

use base64::Engine as _;
use cairn_tests::{Catalogd, Http};
use serde_json::{Value, json};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn kv(verb: &str, key: &str) -> Value {
    json!({"KV": {"Verb": verb, "Key": key}})
}

fn kv_with(verb: &str, key: &str, extra: Value) -> Value {
    let mut op = kv(verb, key);
    for (k, v) in extra.as_object().unwrap() {
        op["KV"][k] = v.clone();
    }
    op
}

async fn modify_index(h: &Http, key: &str) -> u64 {
    h.get(&format!("/v1/kv/{key}")).await.value()[0]["ModifyIndex"]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} has no ModifyIndex"))
}

async fn raw(h: &Http, key: &str) -> Option<String> {
    let r = h.get(&format!("/v1/kv/{key}?raw")).await;
    match r.status {
        200 => Some(r.text()),
        404 => None,
        s => panic!("GET {key}: {s}"),
    }
}

/// The global catalog index (every write moves it).
async fn global_index(h: &Http) -> u64 {
    h.raft_index().await
}

/// Every KV entry, for before/after comparisons.
async fn all_kv(h: &Http) -> Value {
    let r = h.get("/v1/kv/?recurse").await;
    if r.status == 404 {
        json!([])
    } else {
        r.value()
    }
}

async fn txn(h: &Http, ops: &Value) -> cairn_tests::Resp {
    h.put_json("/v1/txn", ops).await
}

#[tokio::test]
async fn every_verb_succeeds_together() {
    let c = Catalogd::start().await;
    let h = &c.http;
    for (k, v) in [
        ("t/existing", "old"),
        ("t/tree/a", "A"),
        ("t/tree/b", "B"),
        ("t/del", "x"),
        ("t/delcas", "x"),
        ("t/deltree/x", "x"),
        ("t/deltree/y", "y"),
    ] {
        h.put(&format!("/v1/kv/{k}"), v).await;
    }
    let session = h.put("/v1/session/create", "").await.value()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let existing = modify_index(h, "t/existing").await;
    let tree_a = modify_index(h, "t/tree/a").await;
    let delcas = modify_index(h, "t/delcas").await;
    let before = global_index(h).await;

    let ops = json!([
        kv_with("set", "t/new", json!({"Value": b64("fresh"), "Flags": 7})),
        kv_with(
            "cas",
            "t/existing",
            json!({"Index": existing, "Value": b64("changed")})
        ),
        kv("get", "t/existing"),
        kv("get-tree", "t/tree/"),
        kv_with("check-index", "t/tree/a", json!({"Index": tree_a})),
        kv("check-not-exists", "t/absent"),
        kv("delete", "t/del"),
        kv("delete-tree", "t/deltree/"),
        kv_with("delete-cas", "t/delcas", json!({"Index": delcas})),
        kv_with(
            "lock",
            "t/lock",
            json!({"Session": session, "Value": b64("held")})
        ),
        kv_with("check-session", "t/lock", json!({"Session": session})),
    ]);
    let r = txn(h, &ops).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.value();
    assert!(
        body.get("Errors").is_some() && body["Errors"].is_null(),
        "{body}"
    );
    let results = body["Results"].as_array().expect("Results");
    let keys: Vec<&str> = results
        .iter()
        .map(|r| r["KV"]["Key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec![
            "t/new",
            "t/existing",
            "t/existing",
            "t/tree/a",
            "t/tree/b",
            "t/tree/a",
            "t/lock",
            "t/lock"
        ]
    );
    assert_eq!(results[0]["KV"]["Flags"], 7);
    // `get` sees the write made earlier in the same transaction.
    assert_eq!(results[2]["KV"]["Value"], b64("changed"));
    assert_eq!(results[3]["KV"]["Value"], b64("A"));
    assert_eq!(results[6]["KV"]["Session"], session.as_str());
    assert!(global_index(h).await > before);

    assert_eq!(raw(h, "t/new").await.as_deref(), Some("fresh"));
    assert_eq!(raw(h, "t/existing").await.as_deref(), Some("changed"));
    assert_eq!(raw(h, "t/del").await, None);
    assert_eq!(raw(h, "t/delcas").await, None);
    assert_eq!(h.get("/v1/kv/t/deltree/?recurse").await.status, 404);
    assert_eq!(raw(h, "t/tree/a").await.as_deref(), Some("A"));
    let lock = h.get("/v1/kv/t/lock").await.value()[0].clone();
    assert_eq!(lock["Session"], session.as_str());
    assert_eq!(lock["LockIndex"], 1);

    let r = txn(
        h,
        &json!([kv_with(
            "unlock",
            "t/lock",
            json!({"Session": session, "Value": b64("free")})
        )]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let lock = h.get("/v1/kv/t/lock").await.value()[0].clone();
    assert!(lock.get("Session").is_none(), "{lock}");
    assert_eq!(raw(h, "t/lock").await.as_deref(), Some("free"));
}

#[tokio::test]
async fn one_transaction_is_one_index() {
    // In Consul a transaction is one Raft entry: every key it writes carries the same
    // ModifyIndex, and catalogd's state model says each successful command advances the index
    // by one.
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/one/old", "x").await;
    let before = global_index(h).await;
    let r = txn(
        h,
        &json!([
            kv_with("set", "one/a", json!({"Value": b64("a")})),
            kv_with("set", "one/b", json!({"Value": b64("b")})),
            kv("delete", "one/old"),
            kv_with("set", "one/c", json!({"Value": b64("c")})),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let written = [
        modify_index(h, "one/a").await,
        modify_index(h, "one/b").await,
        modify_index(h, "one/c").await,
    ];
    let after = global_index(h).await;
    assert!(
        written.iter().all(|i| *i == written[0]),
        "keys written by one transaction have different ModifyIndex values: {written:?}"
    );
    assert_eq!(after, before + 1, "one transaction, one index step");
}

#[tokio::test]
async fn one_failing_op_fails_the_whole_transaction() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/f/keep", "keep").await;
    h.put("/v1/kv/f/stale", "v1").await;
    let stale = modify_index(h, "f/stale").await;
    h.put("/v1/kv/f/stale", "v2").await;
    let session = h.put("/v1/session/create", "").await.value()["ID"]
        .as_str()
        .unwrap()
        .to_string();

    // Each case: writes before and after one failing operation at `bad`.
    let writes = |bad_op: Value| -> Value {
        json!([
            kv_with("set", "f/new", json!({"Value": b64("new")})),
            kv("delete", "f/keep"),
            kv_with("lock", "f/locked", json!({"Session": session})),
            bad_op,
            kv_with("set", "f/after", json!({"Value": b64("after")})),
            kv("delete-tree", "f/"),
        ])
    };
    let cases = [
        (
            kv_with(
                "cas",
                "f/stale",
                json!({"Index": stale, "Value": b64("v3")}),
            ),
            "f/stale",
        ),
        (kv("get", "f/missing"), "f/missing"),
        (kv("check-not-exists", "f/stale"), "f/stale"),
        (
            kv_with("check-index", "f/stale", json!({"Index": stale})),
            "f/stale",
        ),
        (
            kv_with("check-session", "f/stale", json!({"Session": session})),
            "f/stale",
        ),
        (
            kv_with("delete-cas", "f/stale", json!({"Index": stale})),
            "f/stale",
        ),
        (
            kv_with("unlock", "f/stale", json!({"Session": session})),
            "f/stale",
        ),
    ];
    for (bad, key) in cases {
        let before_kv = all_kv(h).await;
        let before = global_index(h).await;
        let ops = writes(bad.clone());
        let r = txn(h, &ops).await;
        assert_eq!(r.status, 409, "{bad}: {}", r.text());
        let body = r.value();
        assert!(
            body.get("Results").is_some() && body["Results"].is_null(),
            "{body}"
        );
        let errors = body["Errors"].as_array().expect("Errors");
        assert_eq!(errors.len(), 1, "{bad}: {body}");
        assert_eq!(errors[0]["OpIndex"], 3, "{bad}: {body}");
        let what = errors[0]["What"].as_str().unwrap();
        assert!(what.contains(key), "{bad}: What names the key: {what}");
        // Nothing written: same entries, same index.
        assert_eq!(all_kv(h).await, before_kv, "{bad} left a write behind");
        assert_eq!(global_index(h).await, before, "{bad} moved the index");
        assert_eq!(raw(h, "f/keep").await.as_deref(), Some("keep"));
        assert_eq!(raw(h, "f/new").await, None);
        assert_eq!(raw(h, "f/locked").await, None);
    }

    // Every failing operation is reported, each with its own index.
    let r = txn(
        h,
        &json!([
            kv("get", "f/nope"),
            kv_with("set", "f/ok", json!({"Value": b64("x")})),
            kv("check-not-exists", "f/keep"),
        ]),
    )
    .await;
    assert_eq!(r.status, 409);
    let idx: Vec<u64> = r.value()["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["OpIndex"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![0, 2]);
    assert_eq!(raw(h, "f/ok").await, None);
}

#[tokio::test]
async fn read_only_transactions_do_not_write() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/ro/a", "1").await;
    h.put("/v1/kv/ro/b", "2").await;
    let a = modify_index(h, "ro/a").await;
    let before = global_index(h).await;
    let r = txn(
        h,
        &json!([
            kv("get", "ro/a"),
            kv("get-tree", "ro/"),
            kv_with("check-index", "ro/a", json!({"Index": a})),
            kv("check-not-exists", "ro/c"),
            kv("get-or-empty", "ro/b"),
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Consul's read path: leader headers, no index, query metadata in the body.
    assert!(r.header("x-consul-index").is_none());
    assert_eq!(r.header("x-consul-knownleader"), Some("true"));
    assert_eq!(r.value()["KnownLeader"], true);
    let results = r.value()["Results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5, "{results:?}");
    assert_eq!(results[0]["KV"]["Value"], b64("1"));
    assert_eq!(results[2]["KV"]["Value"], b64("2"));
    assert_eq!(results[4]["KV"]["Key"], "ro/b");
    assert_eq!(results[4]["KV"]["Value"], b64("2"));
    assert_eq!(global_index(h).await, before);

    let r = txn(h, &json!([kv("get", "ro/missing")])).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.value()["Errors"][0]["OpIndex"], 0);
    assert!(r.value()["Results"].is_null());
    assert_eq!(global_index(h).await, before);
}

#[tokio::test]
async fn refused_bodies_name_the_problem() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/keep", "v").await;
    let before = global_index(h).await;
    let before_kv = all_kv(h).await;

    let node_op = json!([
        kv_with("set", "x/should-not-exist", json!({"Value": b64("v")})),
        {"Node": {"Verb": "set", "Node": {"Node": "n1", "Address": "10.0.0.1"}}},
    ]);
    let r = txn(h, &node_op).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Node"), "{}", r.text());

    let r = txn(
        h,
        &json!([kv_with(
            "set",
            "x/b64",
            json!({"Value": "%%% not base64 %%%"})
        )]),
    )
    .await;
    assert!(r.status == 409 || r.status == 400, "{}", r.text());
    assert!(r.text().contains("base64"), "{}", r.text());
    assert!(r.text().contains("x/b64"), "{}", r.text());

    let r = txn(h, &json!([kv("explode", "x/y")])).await;
    assert!(r.status == 409 || r.status == 400, "{}", r.text());
    assert!(r.text().contains("explode"), "{}", r.text());

    for bad in ["", "{", "{\"KV\": 1}", "[{\"KV\": {\"Verb\": 3}}]"] {
        let r = h.put("/v1/txn", bad).await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text());
    }

    assert_eq!(all_kv(h).await, before_kv);
    assert_eq!(global_index(h).await, before);
}

#[tokio::test]
async fn get_or_empty_answers_a_missing_key_with_an_empty_entry() {
    // Consul (state/txn.go, KVGetOrEmpty) answers a missing key with an entry carrying the key
    // and a null value, so a caller can tell every requested key apart in `Results`.
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/goe/present", "p").await;
    let r = txn(
        h,
        &json!([
            kv("get-or-empty", "goe/missing"),
            kv("get-or-empty", "goe/present")
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let results = r.value()["Results"].as_array().unwrap().clone();
    let keys: Vec<&str> = results
        .iter()
        .map(|r| r["KV"]["Key"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(keys, vec!["goe/missing", "goe/present"], "{results:?}");
    assert!(results[0]["KV"]["Value"].is_null());
    assert_eq!(results[1]["KV"]["Value"], b64("p"));
}

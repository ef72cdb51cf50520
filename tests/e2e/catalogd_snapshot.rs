//! Snapshots of a real catalogd: `catalogd snapshot save` writes a verified archive in Consul's
//! layout (mode 0600), `restore` puts the whole state into a fresh catalogd with every index
//! intact (KV, services, checks, sessions, config entries, prepared queries) while that catalogd
//! keeps its own node; a restore wakes blocking queries, never moves the index backwards,
//! survives `kill -9`; a damaged archive is refused with Consul's text and changes nothing.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use cairn_tests::{Catalogd, Http};
use serde_json::{Value, json};

/// A catalog with something of every kind.
async fn populate(h: &Http) -> String {
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n1", "Address": "10.0.0.1",
            "Service": {"ID": "web-1", "Service": "web", "Port": 80, "Tags": ["prod"]},
            "Check": {"CheckID": "web-1-alive", "Name": "alive", "Status": "passing",
                "ServiceID": "web-1"}}),
    )
    .await;
    for (k, v) in [("app/a", "1"), ("app/b", "2"), ("other", "x")] {
        assert_eq!(
            h.put(&format!("/v1/kv/{k}?flags=7"), v).await.text(),
            "true"
        );
    }
    let session = h
        .put("/v1/session/create", r#"{"Name": "keeper"}"#)
        .await
        .value()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.put(&format!("/v1/kv/lock?acquire={session}"), "held")
            .await
            .text(),
        "true"
    );
    let r = h
        .put_json(
            "/v1/config",
            &json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http"}),
        )
        .await;
    assert_eq!(r.text(), "true");
    let r = h
        .send(
            "POST",
            "/v1/query",
            Some(br#"{"Name": "webq", "Service": {"Service": "web"}}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    session
}

/// What must come back after a restore, indexes included.
async fn contents(h: &Http) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/kv/?recurse",
        "/v1/catalog/service/web",
        "/v1/health/checks/web",
        "/v1/session/list",
        "/v1/config/service-defaults/web",
        "/v1/query",
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        out.push(json!({"path": path, "body": r.value()}));
    }
    out
}

#[tokio::test]
async fn a_snapshot_restores_into_a_fresh_catalogd_with_indexes_intact() {
    let a = Catalogd::start().await;
    let session = populate(&a.http).await;
    let saved = contents(&a.http).await;
    let kv_index = a.http.get("/v1/kv/?recurse").await.index();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap");
    let file_arg = file.display().to_string();
    let out = a.cli(&["snapshot", "save", &file_arg], None);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("Saved and verified snapshot to index "),
        "{stdout}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a snapshot holds every KV value: owner only");
    let archive = std::fs::read(&file).unwrap();
    assert_eq!(&archive[..2], b"\x1f\x8b", "gzip, as Consul's");
    let listing = std::process::Command::new("tar")
        .args(["tzf", &file_arg])
        .output()
        .expect("tar");
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "meta.json\nstate.bin\nSHA256SUMS\n",
        "Consul's archive members"
    );
    let inspect = a.cli(&["snapshot", "inspect", &file_arg, "--json"], None);
    let meta: Value = serde_json::from_slice(&inspect.stdout).expect("inspect --json");
    assert!(meta["Index"].as_u64().unwrap() >= kv_index);

    let mut b = Catalogd::start_with(&["--node", "other-server"]).await;
    let out = b.cli(&["snapshot", "restore", &file_arg], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Restored snapshot\n");
    assert_eq!(
        contents(&b.http).await,
        saved,
        "every record with its indexes"
    );
    assert_eq!(b.http.get("/v1/kv/?recurse").await.index(), kv_index);
    // The lock still belongs to the restored session, which still exists.
    let lock = b.http.get("/v1/kv/lock").await.value();
    assert_eq!(lock[0]["Session"], session.as_str());
    // The restoring catalogd keeps its own node and server records.
    let nodes = b.http.get("/v1/catalog/nodes").await.value();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["Node"].as_str())
        .collect();
    assert!(names.contains(&"other-server"), "{names:?}");
    assert!(names.contains(&"n1"), "{names:?}");
    let serf = b.http.get("/v1/health/node/other-server").await.value();
    assert_eq!(serf[0]["CheckID"], "serfHealth");

    // Durable: a kill -9 right after the restore loses nothing.
    b.kill9();
    b.restart().await;
    assert_eq!(contents(&b.http).await, saved);
}

#[tokio::test]
async fn restoring_over_newer_data_wakes_watchers_and_keeps_indexes_moving_forward() {
    let c = Catalogd::start().await;
    let h = &c.http;
    populate(h).await;
    let r = h.get("/v1/snapshot").await;
    assert_eq!(r.status, 200);
    let at = r.index();
    let archive = r.body.clone();
    for i in 0..5 {
        h.put(&format!("/v1/kv/later/{i}"), "v").await;
    }
    let newest = h.get("/v1/kv/later/4").await.index();
    assert!(newest > at);

    // A watcher parked on the newest index answers as soon as the state is replaced. Its wait
    // (10 min) outlasts the harness client's 120 s timeout: any answer at all is the restore's.
    let watcher = {
        let h = h.clone();
        tokio::spawn(async move {
            h.get(&format!("/v1/kv/later/4?index={newest}&wait=10m"))
                .await
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !h
        .get("/metrics")
        .await
        .text()
        .lines()
        .any(|l| l == "catalogd_blocking_queries_waiting 1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher never parked"
        );
        tokio::task::yield_now().await;
    }
    let r = h.put("/v1/snapshot", archive).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let woken = watcher.await.expect("the watcher task");
    assert_eq!(woken.status, 404, "the key is gone after the restore");
    // It carries the restored state's index, as a read after the restore does.
    let after_restore = h.get("/v1/kv/later/4").await;
    assert_eq!(after_restore.status, 404);
    assert_eq!(woken.index(), after_restore.index());
    assert_eq!(h.get("/v1/kv/later/0").await.status, 404);
    assert_eq!(h.get("/v1/kv/app/a?raw").await.text(), "1");
    // The next write gets an index above everything clients saw before the restore.
    h.put("/v1/kv/after", "v").await;
    let after = h.get("/v1/kv/after").await.value();
    assert!(after[0]["ModifyIndex"].as_u64().unwrap() > newest);
}

#[tokio::test]
async fn a_damaged_archive_is_refused_and_changes_nothing() {
    let c = Catalogd::start().await;
    let h = &c.http;
    populate(h).await;
    let before = contents(h).await;
    let mut archive = h.get("/v1/snapshot").await.body;
    for (body, needle) in [
        (b"".to_vec(), "failed to decompress snapshot: EOF"),
        (
            b"plain text".to_vec(),
            "failed to decompress snapshot: gzip: invalid header",
        ),
    ] {
        let r = h.put("/v1/snapshot", body).await;
        assert_eq!(r.status, 500);
        assert_eq!(r.text(), needle);
    }
    let last = archive.len() - 1;
    archive.truncate(last / 2);
    let r = h.put("/v1/snapshot", archive).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().starts_with("failed to"), "{}", r.text());
    let r = h.put("/v1/snapshot?stale", "x").await;
    assert_eq!(r.text(), "stale not allowed for restore");
    assert_eq!(contents(h).await, before);
}

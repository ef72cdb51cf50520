//! A full disk: catalogd refuses writes with an error and says it has no leader while its store
//! cannot commit, takes writes again once there is space (no restart), and every write it
//! acknowledged, before and after, survives `kill -9`.

use std::time::Duration;

use cairn_tests::tmpfs::SmallDisk;
use cairn_tests::{Catalogd, wait_for};

#[tokio::test]
async fn a_full_disk_stops_writes_and_readiness_until_space_returns() {
    let Some(disk) = SmallDisk::mount(16) else {
        return;
    };
    let mut c = Catalogd::start_in(Some(disk.path().join("data")), &[]).await;
    let h = c.http.clone();
    let leader = h.get("/v1/status/leader").await.value();
    assert_ne!(leader, "", "a healthy catalogd reports itself as leader");
    assert_eq!(h.put("/v1/kv/before", "1").await.status, 200);

    disk.fill();
    // Writes until one fails (redb may still have room in its file for a few).
    let value = "x".repeat(64 * 1024);
    let mut refused = None;
    for i in 0..500 {
        let r = h.put(&format!("/v1/kv/big/{i}"), value.clone()).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("a write on a full disk is refused");
    assert_eq!(refused.status, 500, "{}", refused.text());
    assert!(
        refused.text().contains("not persisted"),
        "the error says the write was not stored: {}",
        refused.text()
    );
    assert_eq!(h.get("/v1/status/leader").await.value(), "");
    // Reads still answer from memory.
    assert_eq!(h.get("/v1/kv/before?raw").await.text(), "1");

    disk.free();
    wait_for(
        "catalogd to report a leader again",
        Duration::from_secs(30),
        || c.log_text(),
        async || (h.get("/v1/status/leader").await.value() != "").then_some(()),
    )
    .await;
    assert_eq!(h.put("/v1/kv/after", "2").await.status, 200);

    c.kill9();
    c.restart().await;
    let h = c.http.clone();
    assert_eq!(h.get("/v1/kv/before?raw").await.text(), "1");
    assert_eq!(h.get("/v1/kv/after?raw").await.text(), "2");
    let log = c.log_text();
    assert!(log.contains("stopped taking writes"), "{log}");
    assert!(log.contains("takes writes again"), "{log}");
}

//! State that holds secrets is readable by its owner only (issue 15): a task's record holds the
//! app's environment, its logs may print it, and the stores hold every app and KV value. Another
//! local user must not read any of it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use cairn_tests::cluster::{Cluster, ClusterOpts};
use serde_json::json;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn task_records_logs_and_stores_are_their_owners_only() {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    })
    .await;
    let app = json!({
        "id": "/secretive", "cmd": "echo \"db=$DB_PASSWORD\"; echo oops >&2; sleep 600",
        "env": {"DB_PASSWORD": "hunter2"}, "cpus": 0.1, "mem": 16, "instances": 1
    });
    assert_eq!(c.post_app(&app).await.status, 201);
    let sandbox = c
        .wait_for("the task to print its secret", 60, || async {
            let tasks = c.tasks("/secretive").await;
            let id = tasks.first()?["id"].as_str()?.to_string();
            let sandbox = c.agent_dirs[0].join("tasks").join(id);
            let out = std::fs::read_to_string(sandbox.join("stdout")).ok()?;
            out.contains("db=hunter2").then_some(sandbox)
        })
        .await;
    let record = std::fs::read_to_string(sandbox.join("task.json")).expect("task.json");
    assert!(
        record.contains("hunter2"),
        "the record holds the env: {record}"
    );

    let cases: [(PathBuf, u32); 7] = [
        (c.agent_dirs[0].join("tasks"), 0o700),
        (sandbox.clone(), 0o700),
        (sandbox.join("task.json"), 0o600),
        (sandbox.join("stdout"), 0o600),
        (sandbox.join("stderr"), 0o600),
        (c.offerd_data.join("offerd.redb"), 0o600),
        (c.catalog.data_dir.join("catalog.redb"), 0o600),
    ];
    for (path, want) in cases {
        assert_eq!(mode(&path), want, "mode of {}", path.display());
    }
}

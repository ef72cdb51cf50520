//! The agent's logs API against a task writing as fast as it can (`yes`): a read of the log as
//! it is ends, with the agent's memory bounded (it streams the file; it once read it whole, and
//! for ever, growing to gigabytes); `length` bounds a read; a follower that leaves has its file
//! closed; and the task's log files stay within the rotation bound.

use std::path::Path;

use cairn_tests::cluster::{Cluster, ClusterOpts};
use serde_json::json;

const MIB: u64 = 1024 * 1024;

/// A process's resident memory, in bytes.
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// How many of a process's open files are under `dir`.
fn open_files_under(pid: u32, dir: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_of_a_continuous_writer_are_streamed_with_bounded_memory() {
    let rotate = 64 * MIB;
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        agent_args: vec!["--log-rotate-bytes".into(), rotate.to_string()],
        ..Default::default()
    })
    .await;
    let app = json!({ "id": "/chatty", "cmd": "yes", "cpus": 0.1, "mem": 64, "instances": 1,
                      "portDefinitions": [] });
    assert_eq!(c.post_app(&app).await.status, 201);
    let id = c.wait_running("/chatty", 1, 60).await.remove(0);
    let sandbox = c.agent_dirs[0].join("tasks").join(&id);
    let base = &c.agents[0].url;
    let agent = c.agents[0].pid();
    c.wait_for("the task's log to pass 16 MiB", 60, || async {
        (file_len(&sandbox.join("stdout")) >= 16 * MIB).then_some(())
    })
    .await;

    // A read of the log as it is: it ends, at the size the file had, and the agent's memory
    // stays far below it.
    let mut resp = reqwest::get(format!("{base}/v1/tasks/{id}/logs?stream=stdout"))
        .await
        .expect("logs");
    assert_eq!(resp.status(), 200);
    let end: u64 = resp
        .headers()
        .get("x-taskrun-offset")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("X-Taskrun-Offset");
    let (mut got, mut peak) = (0u64, vm_rss(agent));
    while let Some(chunk) = resp.chunk().await.expect("body") {
        // `yes`'s lines, whole: the n-th byte of the file is 'y' for even n.
        let aligned = chunk.iter().enumerate().all(|(i, b)| {
            *b == if (got + i as u64).is_multiple_of(2) {
                b'y'
            } else {
                b'\n'
            }
        });
        assert!(aligned, "not yes's output at {got}");
        got += chunk.len() as u64;
        peak = peak.max(vm_rss(agent));
    }
    assert_eq!(got, end, "the read ends where the header said");
    assert!(got <= rotate, "{got} bytes: more than one file holds");
    assert!(
        peak < 200 * MIB,
        "taskrun grew to {peak} bytes while serving a {got}-byte log\n{}",
        c.logs()
    );

    // `length` bounds a read; `offset` + `length` picks a window.
    let r = reqwest::get(format!("{base}/v1/tasks/{id}/logs?length=10"))
        .await
        .expect("logs");
    assert_eq!(r.headers()["x-taskrun-offset"], "10");
    assert_eq!(r.text().await.expect("body"), "y\ny\ny\ny\ny\n");
    let r = reqwest::get(format!("{base}/v1/tasks/{id}/logs?offset=1&length=3"))
        .await
        .expect("logs");
    assert_eq!(r.text().await.expect("body"), "\ny\n");
    let bad = reqwest::get(format!("{base}/v1/tasks/{id}/logs?length=-1"))
        .await
        .expect("logs");
    assert_eq!(bad.status(), 400);

    // A follower reads a while and leaves: the agent closes its file and serves on.
    {
        let mut follow = reqwest::get(format!("{base}/v1/tasks/{id}/logs?follow=true"))
            .await
            .expect("follow");
        let mut read = 0u64;
        while read < 4 * MIB {
            read += follow.chunk().await.expect("body").expect("more").len() as u64;
        }
        assert!(
            open_files_under(agent, &sandbox) > 0,
            "the follower reads the log"
        );
    }
    c.wait_for(
        "the agent to close the departed follower's log",
        30,
        || async { (open_files_under(agent, &sandbox) == 0).then_some(()) },
    )
    .await;
    assert_eq!(c.agents[0].http.get("/health").await.text(), "ok");
    assert!(vm_rss(agent) < 200 * MIB);

    // The agent passed the rotation setting on: the task's stdout stays within its bound.
    let total: u64 = std::fs::read_dir(&sandbox)
        .expect("sandbox")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("stdout"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum();
    assert!(total <= 5 * rotate, "{total} bytes of stdout");
    assert_eq!(c.offerd.http.delete("/v2/apps/chatty").await.status, 200);
}

//! The agent's logs API against a task writing as fast as it can (`yes`): a read of the log as
//! it is ends, with the agent's memory bounded (it streams the file; it once read it whole, and
//! for ever, growing to gigabytes); `length` bounds a read; a follower that leaves has its file
//! closed; and the task's log files stay within the rotation bound. Plus a full disk: a task
//! whose start cannot be recorded is killed and failed, never reported running.

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

/// A tmpfs mounted for the test, lazily unmounted when it ends (the agent may still hold it).
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Nothing more to do if it fails: the mount goes with the container.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's answer")
}

/// The agent's work dir on a tmpfs with one page left: the task's STAGING record fits, its
/// RUNNING record does not. The agent must not report such a task RUNNING (a restarted agent
/// would not know it, and it would outlive its app): it kills it and reports it failed with the
/// reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_whose_start_cannot_be_recorded_is_killed_and_failed() {
    let mut c = Cluster::start(ClusterOpts {
        agents: 0,
        ..Default::default()
    })
    .await;
    let work = c.tmp.path().join("agent-0");
    std::fs::create_dir_all(&work).expect("work dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&work)
        .status()
        .expect("mount");
    assert!(
        mounted.success(),
        "this test mounts a tmpfs: run it as root"
    );
    let _tmpfs = Tmpfs(work.clone());
    c.add_agent(0, "cpus:4;mem:2048;disk:1000", "").await;
    // Fill it up to the last page.
    let page = 4096;
    let fill = free_bytes(&work) - page;
    std::fs::write(work.join("filler"), vec![0u8; fill as usize]).expect("filler");
    assert_eq!(free_bytes(&work), page);

    let app = json!({ "id": "/unrecorded", "cmd": "sleep 600", "cpus": 0.1, "mem": 16,
                      "instances": 1, "portDefinitions": [] });
    assert_eq!(c.post_app(&app).await.status, 201);
    let failed = c
        .wait_for(
            "the agent to fail the task it could not record",
            60,
            || async {
                let tasks = c.agents[0].http.get("/v1/tasks").await.value();
                tasks.as_array()?.iter().find_map(|t| {
                    (t["state"] == "TASK_FAILED"
                        && t["message"]
                            .as_str()?
                            .contains("cannot record the task's state"))
                    .then(|| t.clone())
                })
            },
        )
        .await;
    let message = failed["message"].as_str().unwrap_or_default();
    assert!(message.contains("No space left on device"), "{message}");
    // Its process is gone: nothing runs from this work dir.
    let needle = work.display().to_string();
    c.wait_for("the task's processes to be gone", 30, || async {
        let running = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|p| {
                p.file_name()
                    .to_string_lossy()
                    .parse::<u32>()
                    .is_ok_and(|pid| {
                        pid != c.agents[0].pid()
                            && cairn_tests::cluster::alive(pid as i32)
                            && String::from_utf8_lossy(
                                &std::fs::read(p.path().join("cmdline")).unwrap_or_default(),
                            )
                            .contains(&needle)
                    })
            })
            .count();
        (running == 0).then_some(())
    })
    .await;
    // And offerd never heard it was running: every state the agent announces is logged as
    // "task state".
    let log = c.agents[0].log_text();
    let announced_running = log
        .lines()
        .any(|l| l.contains("task state") && l.contains("state=TASK_RUNNING"));
    assert!(!announced_running, "{log}");
}

//! The README's main-job command: `scripts/demo --once` starts the whole platform on one state
//! directory, deploys examples/apps, shows every result (tasks, catalog health, the app through
//! HAProxy by host name, dnsbridge SRV answers, a tmpl-rendered file, the load balancer's health
//! check), and stops everything cleanly; a second run on the same state works too.

use std::path::Path;
use std::process::Command;

use cairn_tests::{free_port, workspace_root};

fn run_demo(state: &Path, base: u16) -> String {
    let out = Command::new("bash")
        .arg(workspace_root().join("scripts/demo"))
        .arg("--once")
        .env("CAIRN_PROFILE", "debug")
        .env("DEMO_PORT_BASE", base.to_string())
        .env("DEMO_STATE", state)
        .env("NO_COLOR", "1")
        .output()
        .expect("running scripts/demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    stdout
}

/// The output of one shown step (`$ cmd` up to the next step).
fn step<'a>(out: &'a str, starts: &str) -> &'a str {
    let at = out
        .find(&format!("$ {starts}"))
        .unwrap_or_else(|| panic!("no step `{starts}` in:\n{out}"));
    let rest = &out[at..];
    let end = rest[2..].find("\n$ ").map_or(rest.len(), |i| i + 2);
    &rest[..end]
}

/// A base port with the daemons' ports (base..base+5) and the tasks' (base+100..base+199) free.
fn free_base() -> u16 {
    loop {
        let base = free_port().clamp(20000, 60000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if (0..6).chain(100..200).all(|o| free(base + o)) {
            return base;
        }
    }
}

#[test]
fn demo_runs_the_whole_platform_and_stops_cleanly_twice() {
    let state = tempfile::tempdir().expect("state dir");
    let base = free_base();
    for round in 0..2 {
        let out = run_demo(state.path(), base);
        let tasks = step(&out, "offerd tasks /demo/web");
        assert_eq!(
            tasks.matches("TASK_RUNNING").count(),
            2,
            "round {round}:\n{tasks}"
        );
        assert!(
            tasks.contains("demo-1") && tasks.contains("demo-2"),
            "{tasks}"
        );
        let health = step(&out, "catalogd service web-demo");
        assert_eq!(health.matches("\tpassing").count(), 2, "{health}");
        let curl = step(&out, "curl -H 'Host: web.demo'");
        let bodies: std::collections::BTreeSet<&str> = curl
            .lines()
            .filter(|l| l.starts_with("hello from demo_web."))
            .collect();
        assert_eq!(
            bodies.len(),
            2,
            "HAProxy did not reach both instances:\n{curl}"
        );
        let dig = step(&out, "dig @127.0.0.1");
        let srv: Vec<&str> = dig
            .lines()
            .filter(|l| l.ends_with(".node.dc1.consul."))
            .collect();
        assert_eq!(srv.len(), 2, "{dig}");
        // The SRV ports are the tasks' ports.
        for line in &srv {
            let port = line.split_whitespace().nth(2).unwrap_or_default();
            assert!(
                tasks.contains(port),
                "SRV port {port} is no task's:\n{tasks}"
            );
        }
        let rendered = step(&out, "cat ");
        assert_eq!(
            rendered
                .lines()
                .filter(|l| l.starts_with("server demo_web."))
                .count(),
            2,
            "{rendered}"
        );
        let lb = step(&out, "catalogd service haproxy");
        assert!(
            lb.contains("haproxy\tdemo-lb") && lb.contains("passing"),
            "{lb}"
        );
        assert!(out.contains("demo: all steps succeeded"), "{out}");
        assert!(out.contains("demo: everything stopped"), "{out}");
        // Clean shutdown: every daemon logged its stop, no pid file is left, no task survives.
        let logs = state.path().join("log");
        for (piece, line) in [
            ("catalogd", "catalogd stopped"),
            ("offerd", "offerd stopped"),
            ("taskrun-1", "taskrun agent stopped"),
            ("taskrun-2", "taskrun agent stopped"),
            ("lbconf", "lbconf stopped"),
        ] {
            let log =
                std::fs::read_to_string(logs.join(format!("{piece}.log"))).unwrap_or_default();
            assert_eq!(
                log.matches(line).count(),
                round + 1,
                "{piece} did not stop cleanly in round {round}:\n{log}"
            );
        }
        let pids = std::fs::read_dir(state.path().join("run"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(pids, 0, "pid files left behind");
        for dir in ["taskrun-1", "taskrun-2"] {
            for e in std::fs::read_dir(state.path().join(dir).join("tasks"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let rec = std::fs::read_to_string(e.path().join("task.json")).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&rec).unwrap_or_default();
                if let Some(pid) = v["pid"].as_i64() {
                    assert!(
                        !cairn_tests::cluster::alive(pid as i32),
                        "task {} still runs",
                        e.path().display()
                    );
                }
            }
        }
    }
}

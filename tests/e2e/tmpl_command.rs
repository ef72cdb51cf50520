//! The command `tmpl watch` runs after an output changed: through `sh -c` (pipes, `&&`), only
//! once the new file is in place; killed with everything it started when it outlives
//! `command_timeout` (tmpl keeps running and later renders still happen); a failing command is
//! reported in the log with its exit status and stderr, and tmpl carries on.

use std::time::{Duration, Instant};

use cairn_tests::Catalogd;

use crate::tmpl_common::{Watcher, Work, put_kv, running};

fn read_pid(work: &Work, name: &str) -> u32 {
    work.read(name)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} should hold a pid"))
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_with_its_children() {
    let c = Catalogd::start().await;
    put_kv(&c, "t/v", "one").await;
    let work = Work::new();
    work.write("t.tmpl", "v={{ key(path=\"t/v\") }}\n");
    // A JSON config file this time.
    let config = work.write(
        "tmpl.json",
        &serde_json::json!({
            "wait": "0s",
            "template": [{
                "source": "t.tmpl",
                "destination": "t.out",
                "command": "echo $$ > sh.pid; sleep 30 & echo $! > sleep.pid; wait; touch marker",
                "command_timeout": "500ms"
            }]
        })
        .to_string(),
    );
    let mut w = Watcher::start(&c.url, work.root(), &["--config", config.to_str().unwrap()]).await;
    w.wait_file(&work, "t.out", "v=one\n").await;
    let took = w
        .wait_log("command timed out and was killed", Duration::from_secs(5))
        .await;
    println!("the first command was killed {took:?} after the file was written");
    let (sh, sleep) = (read_pid(&work, "sh.pid"), read_pid(&work, "sleep.pid"));
    w.wait_until(
        "the shell and its sleep are gone",
        Duration::from_secs(3),
        || !running(sh) && !running(sleep),
    )
    .await;
    w.assert_alive("after a command timeout");

    // Later changes still render (and the command is tried, and killed, again).
    let put = Instant::now();
    put_kv(&c, "t/v", "two").await;
    w.wait_file(&work, "t.out", "v=two\n").await;
    let rendered = put.elapsed();
    w.wait_until("a second timeout", Duration::from_secs(5), || {
        w.log_count("command timed out and was killed") == 2
    })
    .await;
    let killed = put.elapsed();
    println!("second change: rendered after {rendered:?}, command killed after {killed:?}");
    // It waited for the timeout; that it did not wait for `sleep 30` shows in the second
    // command's shell and sleep being gone and its tail (`touch marker`) never running.
    assert!(
        killed >= Duration::from_millis(500),
        "killed at the 500ms timeout, not before: {killed:?}"
    );
    let (sh, sleep) = (read_pid(&work, "sh.pid"), read_pid(&work, "sleep.pid"));
    w.wait_until(
        "the second shell and its sleep are gone",
        Duration::from_secs(3),
        || !running(sh) && !running(sleep),
    )
    .await;
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !work.path("marker").exists(),
        "the command's tail never ran"
    );
    w.assert_alive("after two command timeouts");
}

#[tokio::test]
async fn a_failing_command_is_reported_and_tmpl_carries_on() {
    let c = Catalogd::start().await;
    put_kv(&c, "f/v", "one").await;
    let work = Work::new();
    let tpl = work.write("f.tmpl", "v={{ key(path=\"f/v\") }}\n");
    let spec = format!(
        "{}:{}:echo boom-on-stderr >&2; exit 3",
        tpl.display(),
        work.p("f.out")
    );
    let mut w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_file(&work, "f.out", "v=one\n").await;
    w.wait_log("command failed", Duration::from_secs(5)).await;
    let log = w.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("command failed"))
        .expect("a failure line");
    assert!(
        line.contains("boom-on-stderr") && line.contains("exit status: 3"),
        "the failure names the status and the command's stderr: {line}"
    );
    assert!(
        log.contains("command after render did not succeed"),
        "and the destination it was for:\n{log}"
    );
    w.assert_alive("after a failing command");

    put_kv(&c, "f/v", "two").await;
    w.wait_file(&work, "f.out", "v=two\n").await;
    w.wait_until("the second failure", Duration::from_secs(5), || {
        w.log_count("command failed") == 2
    })
    .await;
    w.assert_alive("after two failing commands");
}

#[tokio::test]
async fn the_command_runs_through_sh_after_the_file_is_in_place() {
    let c = Catalogd::start().await;
    put_kv(&c, "s/v", "one").await;
    let work = Work::new();
    let tpl = work.write("s.tmpl", "v={{ key(path=\"s/v\") }}\n");
    let spec = format!(
        "{}:{}:test -s s.out && cat s.out | tr a-z A-Z >> seen.log",
        tpl.display(),
        work.p("s.out")
    );
    let w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    w.wait_until("the first command", Duration::from_secs(10), || {
        work.read("seen.log").as_deref() == Some("V=ONE\n")
    })
    .await;
    put_kv(&c, "s/v", "two").await;
    w.wait_until("the second command", Duration::from_secs(10), || {
        work.read("seen.log").as_deref() == Some("V=ONE\nV=TWO\n")
    })
    .await;
    assert!(
        w.log_text().contains("command succeeded"),
        "{}",
        w.log_text()
    );
}

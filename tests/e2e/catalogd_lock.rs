//! `catalogd lock`, `catalogd event` and `catalogd maint` against a real server, as cron and
//! shell users run them: mutual exclusion between concurrent invocations, the cron case with
//! `--try`, semaphores, a child killed (group and all) when its session is destroyed, exit codes
//! passed through, signals forwarded, and Consul's KV layout (flags, session, semaphore record)
//! so `consul lock` and `catalogd lock` exclude each other.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, bin};
use serde_json::{Value, json};

/// Consul's `LockFlagValue` and `SemaphoreFlagValue`.
const LOCK_FLAG: u64 = 0x2ddc_cbc0_58a5_0c18;
const SEMAPHORE_FLAG: u64 = 0xe0f6_9a2b_aa41_4de0;

/// A `catalogd lock` process with its output in files.
struct LockRun {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    args: Vec<String>,
}

/// How a `catalogd lock` run ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl LockRun {
    fn start(c: &Catalogd, dir: &Path, tag: &str, args: &[&str]) -> LockRun {
        let stdout = dir.join(format!("{tag}.out"));
        let stderr = dir.join(format!("{tag}.err"));
        let child = Command::new(bin("catalogd"))
            .arg("lock")
            .args(args)
            .env("CAIRN_CATALOG", &c.url)
            .env("SHELL", "/bin/sh")
            .env_remove("CONSUL_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("starting catalogd lock");
        LockRun {
            child,
            stdout,
            stderr,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the process to exit, failing the test after `within`.
    async fn wait(&mut self, within: Duration) -> Ended {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Ended {
                    code: status.code(),
                    stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
                    stderr: self.stderr(),
                };
            }
            assert!(
                Instant::now() < deadline,
                "catalogd lock {:?} still running after {within:?}; stderr:\n{}",
                self.args,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for LockRun {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.child.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.child.wait();
    }
}

/// Polls `ok` until it holds, failing the test with `what` after `within`.
async fn eventually(what: &str, within: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child script that logs `start ID` / `end ID` around a sleep, to see overlaps.
fn logged_job(log: &Path, id: &str, secs: &str) -> String {
    let log = log.display();
    format!("echo start {id} >> {log}; sleep {secs}; echo end {id} >> {log}")
}

/// The most jobs running at once according to a start/end log, and how many ran.
fn concurrency(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let (mut running, mut most, mut ran) = (0usize, 0usize, 0usize);
    for line in text.lines() {
        if line.starts_with("start ") {
            running += 1;
            ran += 1;
            most = most.max(running);
        } else if line.starts_with("end ") {
            running = running.saturating_sub(1);
        }
    }
    (most, ran)
}

async fn kv_entry(c: &Catalogd, key: &str) -> Option<Value> {
    let resp = c.http.get(&format!("/v1/kv/{key}")).await;
    (resp.status == 200).then(|| resp.value()[0].clone())
}

async fn sessions(c: &Catalogd) -> Vec<Value> {
    c.http
        .get("/v1/session/list")
        .await
        .value()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn create_session(c: &Catalogd, body: Value) -> String {
    let resp = c.http.put_json("/v1/session/create", &body).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.value()["ID"].as_str().expect("session ID").to_string()
}

#[tokio::test]
async fn two_locks_at_once_never_overlap_and_both_run() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    let mut a = LockRun::start(
        &c,
        dir.path(),
        "a",
        &["jobs/x", "--", &logged_job(&log, "a", "1")],
    );
    let mut b = LockRun::start(
        &c,
        dir.path(),
        "b",
        &["jobs/x", "--", &logged_job(&log, "b", "1")],
    );
    let (ea, eb) = (
        a.wait(Duration::from_secs(30)).await,
        b.wait(Duration::from_secs(30)).await,
    );
    assert_eq!(ea.code, Some(0), "{}", ea.stderr);
    assert_eq!(eb.code, Some(0), "{}", eb.stderr);
    assert_eq!(
        concurrency(&log),
        (1, 2),
        "log:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // Both gone: the lock key is cleaned up and the sessions destroyed.
    assert!(kv_entry(&c, "jobs/x/.lock").await.is_none());
    assert!(sessions(&c).await.is_empty());
}

#[tokio::test]
async fn a_short_timeout_gives_up_while_the_lock_is_held() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    let mut a = LockRun::start(
        &c,
        dir.path(),
        "a",
        &["jobs/t", "--", &logged_job(&log, "a", "4")],
    );
    eventually(
        "the first holds the lock",
        Duration::from_secs(10),
        async || {
            kv_entry(&c, "jobs/t/.lock")
                .await
                .is_some_and(|e| e["Session"].is_string())
        },
    )
    .await;
    let started = Instant::now();
    let mut b = LockRun::start(
        &c,
        dir.path(),
        "b",
        &[
            "--timeout",
            "700ms",
            "jobs/t",
            "--",
            &logged_job(&log, "b", "0"),
        ],
    );
    let eb = b.wait(Duration::from_secs(10)).await;
    assert_eq!(eb.code, Some(1), "{}", eb.stderr);
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert!(
        eb.stderr.contains("jobs/t/.lock is held by session"),
        "{}",
        eb.stderr
    );
    assert!(eb.stderr.contains("gave up after 700ms"), "{}", eb.stderr);
    let ea = a.wait(Duration::from_secs(20)).await;
    assert_eq!(ea.code, Some(0), "{}", ea.stderr);
    assert_eq!(concurrency(&log), (1, 1));
}

#[tokio::test]
async fn cron_case_three_hosts_fire_at_once_with_try_and_exactly_one_runs() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("backup.log");
    let mut runs: Vec<LockRun> = ["h1", "h2", "h3"]
        .iter()
        .map(|h| {
            LockRun::start(
                &c,
                dir.path(),
                h,
                &["--try", "jobs/nightly", "--", &logged_job(&log, h, "3")],
            )
        })
        .collect();
    let mut codes = Vec::new();
    for r in &mut runs {
        let e = r.wait(Duration::from_secs(30)).await;
        if e.code == Some(1) {
            assert!(
                e.stderr.contains("jobs/nightly/.lock is held by"),
                "{}",
                e.stderr
            );
        }
        codes.push(e.code);
    }
    codes.sort();
    assert_eq!(codes, [Some(0), Some(1), Some(1)]);
    assert_eq!(concurrency(&log), (1, 1), "exactly one backup ran");
}

#[tokio::test]
async fn semaphore_of_two_lets_at_most_two_run_at_once() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sem.log");
    let mut runs: Vec<LockRun> = ["s1", "s2", "s3", "s4"]
        .iter()
        .map(|id| {
            LockRun::start(
                &c,
                dir.path(),
                id,
                &["-n", "2", "pool/db", "--", &logged_job(&log, id, "1")],
            )
        })
        .collect();
    // While they run, the record is Consul's: limit 2, at most two holders, semaphore flags.
    eventually("two slots taken", Duration::from_secs(15), async || {
        let Some(e) = kv_entry(&c, "pool/db/.lock").await else {
            return false;
        };
        assert_eq!(e["Flags"], SEMAPHORE_FLAG);
        let raw = c.http.get("/v1/kv/pool/db/.lock?raw").await.value();
        assert_eq!(raw["Limit"], 2);
        let holders = raw["Holders"].as_object().map_or(0, |h| h.len());
        assert!(holders <= 2, "{raw}");
        holders == 2
    })
    .await;
    let contenders = c.http.get("/v1/kv/pool/db/?recurse").await.value();
    for e in contenders.as_array().unwrap() {
        if e["Key"] != "pool/db/.lock" {
            // Contender keys: `<prefix>/<session>`, held by that session.
            assert_eq!(
                e["Key"],
                format!("pool/db/{}", e["Session"].as_str().unwrap())
            );
            assert_eq!(e["Flags"], SEMAPHORE_FLAG);
        }
    }
    for r in &mut runs {
        let e = r.wait(Duration::from_secs(30)).await;
        assert_eq!(e.code, Some(0), "{}", e.stderr);
    }
    let (most, ran) = concurrency(&log);
    assert_eq!(ran, 4);
    assert!(
        most <= 2,
        "{most} ran at once:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        c.http.get("/v1/kv/pool/db/?recurse").await.status == 404,
        "cleaned up"
    );

    // Another limit on the same prefix is refused with Consul's message, as is a lock.
    let holder = LockRun::start(
        &c,
        dir.path(),
        "h",
        &["-n", "2", "pool/db", "--", "sleep 30"],
    );
    eventually("a slot taken", Duration::from_secs(10), async || {
        kv_entry(&c, "pool/db/.lock").await.is_some()
    })
    .await;
    let mut other = LockRun::start(
        &c,
        dir.path(),
        "o",
        &["-n", "3", "--try", "pool/db", "--", "true"],
    );
    let e = other.wait(Duration::from_secs(10)).await;
    assert_eq!(e.code, Some(1));
    assert!(
        e.stderr
            .contains("semaphore limit conflict (lock: 2, local: 3)"),
        "{}",
        e.stderr
    );
    let mut lock = LockRun::start(&c, dir.path(), "l", &["--try", "pool/db", "--", "true"]);
    let e = lock.wait(Duration::from_secs(10)).await;
    assert_eq!(e.code, Some(1));
    assert!(
        e.stderr.contains("Existing key does not match lock use"),
        "{}",
        e.stderr
    );
    drop(holder);
}

/// Starts `catalogd lock PREFIX -- "echo $$ > pidfile; REST"` and waits for the command to
/// run; returns the run, the script and the command's process group (the shell's pid).
async fn start_sleeper(
    c: &Catalogd,
    dir: &Path,
    prefix: &str,
    rest: &str,
) -> (LockRun, String, i32) {
    let pidfile = dir.join("child.pid");
    let script = format!("echo $$ > {}; {rest}", pidfile.display());
    let run = LockRun::start(c, dir, "sleeper", &[prefix, "--", &script]);
    eventually("the command started", Duration::from_secs(10), async || {
        std::fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    })
    .await;
    let pgid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .expect("the pid file holds a pid");
    (run, script, pgid)
}

#[tokio::test]
async fn destroying_the_session_kills_the_child_process_group() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The shell is the group leader; it starts a grandchild in the same group.
    let (mut run, script, pgid) = start_sleeper(&c, dir.path(), "jobs/d", "sleep 300 & wait").await;
    // SAFETY: kill(2) with signal 0 only checks for existence.
    assert_eq!(unsafe { libc::kill(-pgid, 0) }, 0, "the group runs");
    assert_ne!(pgid, run.pid(), "the child has its own group");

    let list = sessions(&c).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let id = list[0]["ID"].as_str().unwrap().to_string();
    assert_eq!(
        list[0]["Name"],
        format!("catalogd lock for '{script}' at 'jobs/d'")
    );
    assert_eq!(list[0]["TTL"], "15s");
    let resp = c.http.put(&format!("/v1/session/destroy/{id}"), "").await;
    assert_eq!(resp.status, 200);

    let e = run.wait(Duration::from_secs(20)).await;
    assert_ne!(e.code, Some(0));
    assert_eq!(e.code, Some(1), "{}", e.stderr);
    assert!(e.stderr.contains("lock lost"), "{}", e.stderr);
    assert!(
        e.stderr
            .contains(&format!("session {id} was invalidated or destroyed")),
        "{}",
        e.stderr
    );
    eventually(
        "the child's process group is gone",
        Duration::from_secs(10),
        async || {
            // SAFETY: as above.
            unsafe { libc::kill(-pgid, 0) == -1 }
        },
    )
    .await;
}

#[tokio::test]
async fn the_childs_exit_code_and_output_pass_through() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut run = LockRun::start(
        &c,
        dir.path(),
        "e",
        &["jobs/e", "--", "echo out; echo err >&2; exit 7"],
    );
    let e = run.wait(Duration::from_secs(20)).await;
    assert_eq!(e.code, Some(7), "{}", e.stderr);
    assert_eq!(e.stdout, "out\n");
    assert_eq!(e.stderr, "err\n", "nothing but the child's own stderr");
    // Without a shell the arguments go through untouched; CONSUL_LOCK_HELD is set as consul lock does.
    let mut run = LockRun::start(
        &c,
        dir.path(),
        "f",
        &[
            "--shell=false",
            "jobs/e",
            "--",
            "sh",
            "-c",
            "echo \"$CONSUL_LOCK_HELD\"; exit 9",
        ],
    );
    let e = run.wait(Duration::from_secs(20)).await;
    assert_eq!(e.code, Some(9), "{}", e.stderr);
    assert_eq!(e.stdout, "true\n");
    let mut run = LockRun::start(
        &c,
        dir.path(),
        "g",
        &["--child-exit-code", "jobs/e", "--", "true"],
    );
    assert_eq!(run.wait(Duration::from_secs(20)).await.code, Some(0));
    // Usage errors are clap's 2.
    let mut run = LockRun::start(&c, dir.path(), "h", &["-n", "0", "jobs/e", "--", "true"]);
    assert_eq!(run.wait(Duration::from_secs(20)).await.code, Some(2));
}

#[tokio::test]
async fn sigterm_is_forwarded_to_the_child_then_the_lock_released() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ready");
    let got = dir.path().join("got");
    let script = format!(
        "trap 'echo term > {got}; exit 5' TERM; echo ready > {ready}; sleep 300 & wait",
        got = got.display(),
        ready = marker.display()
    );
    let mut run = LockRun::start(&c, dir.path(), "s", &["jobs/s", "--", &script]);
    eventually("the child started", Duration::from_secs(10), async || {
        marker.exists()
    })
    .await;
    // SAFETY: kill(2) on the process we started.
    unsafe { libc::kill(run.pid(), libc::SIGTERM) };
    let e = run.wait(Duration::from_secs(20)).await;
    assert_eq!(e.code, Some(5), "{}", e.stderr);
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "term\n");
    assert!(
        kv_entry(&c, "jobs/s/.lock").await.is_none(),
        "released and cleaned up"
    );
    assert!(sessions(&c).await.is_empty());
}

#[tokio::test]
async fn consul_layout_interoperates_both_ways() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    // What catalogd lock writes while it holds: Consul's flags, its session, no value.
    let ready = dir.path().join("ready");
    let run = LockRun::start(
        &c,
        dir.path(),
        "a",
        &[
            "--name",
            "nightly",
            "jobs/i",
            "--",
            &format!("echo > {}; sleep 30", ready.display()),
        ],
    );
    eventually("the child started", Duration::from_secs(10), async || {
        ready.exists()
    })
    .await;
    let entry = kv_entry(&c, "jobs/i/.lock").await.expect("the lock key");
    assert_eq!(entry["Flags"], LOCK_FLAG);
    assert_eq!(entry["Value"], Value::Null);
    let list = sessions(&c).await;
    assert_eq!(list[0]["Name"], "nightly");
    assert_eq!(entry["Session"], list[0]["ID"]);
    // A Consul contender (another session acquiring the same key) is refused.
    let other = create_session(&c, json!({"Name": "Consul lock", "TTL": "15s"})).await;
    let resp = c
        .http
        .put(
            &format!("/v1/kv/jobs/i/.lock?acquire={other}&flags={LOCK_FLAG}"),
            "",
        )
        .await;
    assert_eq!(resp.text().trim(), "false");
    drop(run);

    // A lock held by writing Consul's layout directly blocks catalogd lock --try.
    let holder = create_session(
        &c,
        json!({"Name": "Consul lock for 'x' at 'jobs/j'", "TTL": "15s"}),
    )
    .await;
    let resp = c
        .http
        .put(
            &format!("/v1/kv/jobs/j/.lock?acquire={holder}&flags={LOCK_FLAG}"),
            "",
        )
        .await;
    assert_eq!(resp.text().trim(), "true");
    let mut run = LockRun::start(&c, dir.path(), "b", &["--try", "jobs/j", "--", "echo ran"]);
    let e = run.wait(Duration::from_secs(10)).await;
    assert_eq!(e.code, Some(1));
    assert_eq!(e.stdout, "");
    assert!(
        e.stderr.contains(&format!("held by session {holder}")),
        "{}",
        e.stderr
    );
    // Released the way consul lock releases it: catalogd lock gets it.
    let resp = c
        .http
        .put(
            &format!("/v1/kv/jobs/j/.lock?release={holder}&flags={LOCK_FLAG}"),
            "",
        )
        .await;
    assert_eq!(resp.text().trim(), "true");
    let mut run = LockRun::start(&c, dir.path(), "c", &["--try", "jobs/j", "--", "echo ran"]);
    let e = run.wait(Duration::from_secs(10)).await;
    assert_eq!(
        (e.code, e.stdout.as_str()),
        (Some(0), "ran\n"),
        "{}",
        e.stderr
    );

    // A Consul semaphore with both slots taken; a dead holder is pruned.
    let mut slots = Vec::new();
    for name in ["s1", "s2"] {
        let s = create_session(
            &c,
            json!({"Name": name, "TTL": "15s", "Behavior": "delete"}),
        )
        .await;
        let resp = c
            .http
            .put(
                &format!("/v1/kv/pool/c/{s}?acquire={s}&flags={SEMAPHORE_FLAG}"),
                "",
            )
            .await;
        assert_eq!(resp.text().trim(), "true");
        slots.push(s);
    }
    let record = json!({"Limit": 2, "Holders": {slots[0].clone(): true, slots[1].clone(): true}});
    let resp = c
        .http
        .put(
            &format!("/v1/kv/pool/c/.lock?cas=0&flags={SEMAPHORE_FLAG}"),
            record.to_string(),
        )
        .await;
    assert_eq!(resp.text().trim(), "true");
    let mut run = LockRun::start(
        &c,
        dir.path(),
        "d",
        &["-n", "2", "--try", "pool/c", "--", "echo ran"],
    );
    let e = run.wait(Duration::from_secs(10)).await;
    assert_eq!(e.code, Some(1), "{}", e.stderr);
    assert!(
        e.stderr
            .contains("all 2 slots of the semaphore pool/c/.lock are held"),
        "{}",
        e.stderr
    );
    c.http
        .put(&format!("/v1/session/destroy/{}", slots[0]), "")
        .await;
    let mut run = LockRun::start(
        &c,
        dir.path(),
        "e",
        &["-n", "2", "--try", "pool/c", "--", "echo ran"],
    );
    let e = run.wait(Duration::from_secs(10)).await;
    assert_eq!(
        (e.code, e.stdout.as_str()),
        (Some(0), "ran\n"),
        "{}",
        e.stderr
    );
    // Released as Consul releases a slot: the live holder stays, ours is gone.
    let raw = c.http.get("/v1/kv/pool/c/.lock?raw").await.value();
    assert_eq!(
        raw,
        json!({"Limit": 2, "Holders": {slots[1].clone(): true}})
    );
}

fn cli_ok(c: &Catalogd, args: &[&str]) -> String {
    let out = c.cli(args, None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "catalogd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn events_fire_list_and_follow() {
    let c = Catalogd::start().await;
    let out = cli_ok(&c, &["event", "fire", "deploy", "v1.2"]);
    let id = out
        .strip_prefix("Event ID: ")
        .expect(&out)
        .trim()
        .to_string();
    let out = cli_ok(&c, &["event", "list"]);
    assert!(out.starts_with(&format!("{id}\tdeploy\t")), "{out}");
    assert!(out.ends_with("\tv1.2\n"), "{out}");
    let list: Value = serde_json::from_str(&cli_ok(&c, &["event", "list", "--json"])).unwrap();
    assert_eq!(list[0]["ID"], id.as_str());
    assert_eq!(list[0]["Payload"], "djEuMg==");
    let fired: Value =
        serde_json::from_str(&cli_ok(&c, &["event", "fire", "other", "--json"])).unwrap();
    assert_eq!(fired["Name"], "other");
    assert_eq!(fired["Payload"], Value::Null);
    assert_eq!(
        cli_ok(&c, &["event", "list", "--name", "other"])
            .lines()
            .count(),
        1
    );

    // A filter the server refuses: exit 1 with its message.
    let out = c.cli(&["event", "fire", "x", "--node", "("], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid node filter"));
    // --tag needs --service (usage error).
    assert_eq!(
        c.cli(&["event", "fire", "x", "--tag", "a"], None)
            .status
            .code(),
        Some(2)
    );

    // --wait prints what is there, then each new event once.
    let mut follow = Command::new(bin("catalogd"))
        .args(["event", "list", "--wait", "--json", "--name", "deploy"])
        .env("CAIRN_CATALOG", &c.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The test stopped listening: the lines are not needed any more.
            let _ = tx.send(line);
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("{what}: no line"))
    };
    let first: Value = serde_json::from_str(&next("the existing event")).unwrap();
    assert_eq!(first["ID"], id.as_str());
    let out = cli_ok(&c, &["event", "fire", "deploy", "v1.3"]);
    let second_id = out.strip_prefix("Event ID: ").unwrap().trim().to_string();
    let second: Value = serde_json::from_str(&next("the new event")).unwrap();
    assert_eq!(second["ID"], second_id.as_str());
    assert!(
        lines.recv_timeout(Duration::from_millis(500)).is_err(),
        "printed once"
    );
    // The process may have exited already; the wait below reaps it either way.
    let _ = follow.kill();
    // Only reaps it; how a killed process exited says nothing here.
    let _ = follow.wait();
}

#[tokio::test]
async fn maintenance_enable_list_disable() {
    let c = Catalogd::start().await;
    assert_eq!(cli_ok(&c, &["maint"]), "", "nothing in maintenance");
    let out = cli_ok(&c, &["maint", "--enable", "--reason", "disk swap"]);
    assert_eq!(out, "Node maintenance is now enabled\n");
    let checks = c
        .http
        .get(&format!("/v1/health/node/{}", c.node))
        .await
        .value();
    let maint = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|ch| ch["CheckID"] == "_node_maintenance")
        .expect("the maintenance check");
    assert_eq!(maint["Status"], "critical");
    assert_eq!(maint["Notes"], "disk swap");
    assert_eq!(
        cli_ok(&c, &["maint"]),
        format!("Node:\n  Name:   {}\n  Reason: disk swap\n\n", c.node)
    );

    let reg = json!({"Name": "web", "ID": "web-1", "Port": 80});
    assert_eq!(
        c.http
            .put_json("/v1/agent/service/register", &reg)
            .await
            .status,
        200
    );
    let out = cli_ok(&c, &["maint", "--enable", "--service", "web-1"]);
    assert_eq!(out, "Service maintenance is now enabled for \"web-1\"\n");
    let listed: Value = serde_json::from_str(&cli_ok(&c, &["maint", "--json"])).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let out = cli_ok(&c, &["maint", "--disable", "--service", "web-1"]);
    assert_eq!(out, "Service maintenance is now disabled for \"web-1\"\n");

    assert_eq!(
        cli_ok(&c, &["maint", "--disable"]),
        "Node maintenance is now disabled\n"
    );
    let checks = c
        .http
        .get(&format!("/v1/health/node/{}", c.node))
        .await
        .value();
    assert!(
        !checks
            .as_array()
            .unwrap()
            .iter()
            .any(|ch| ch["CheckID"] == "_node_maintenance"),
        "{checks}"
    );
    assert_eq!(cli_ok(&c, &["maint"]), "");

    let out = c.cli(&["maint", "--enable", "--service", "nope"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Error enabling service maintenance"), "{err}");
    assert!(err.contains("Unknown service ID \"nope\""), "{err}");
    // consul maint's refused combinations are usage errors here.
    assert_eq!(
        c.cli(&["maint", "--enable", "--disable"], None)
            .status
            .code(),
        Some(2)
    );
}

#[tokio::test]
async fn lock_delay_after_a_lost_holder_is_waited_out() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let holder = create_session(&c, json!({"Name": "gone", "TTL": "15s", "LockDelay": "3s"})).await;
    let resp = c
        .http
        .put(
            &format!("/v1/kv/jobs/ld/.lock?acquire={holder}&flags={LOCK_FLAG}"),
            "",
        )
        .await;
    assert_eq!(resp.text().trim(), "true");
    // The holder's session ends: the key is free, but the server refuses it for the lock-delay.
    c.http
        .put(&format!("/v1/session/destroy/{holder}"), "")
        .await;
    let mut run = LockRun::start(&c, dir.path(), "a", &["--try", "jobs/ld", "--", "echo ran"]);
    let e = run.wait(Duration::from_secs(10)).await;
    assert_eq!(e.code, Some(1), "{}", e.stderr);
    assert!(e.stderr.contains("lock-delay"), "{}", e.stderr);
    // Waiting retries after consul's 5s pause and gets it once the delay has passed.
    let mut run = LockRun::start(
        &c,
        dir.path(),
        "b",
        &["--timeout", "20s", "jobs/ld", "--", "echo ran"],
    );
    let e = run.wait(Duration::from_secs(30)).await;
    assert_eq!(
        (e.code, e.stdout.as_str()),
        (Some(0), "ran\n"),
        "{}",
        e.stderr
    );
}

#[tokio::test]
async fn a_server_that_stops_answering_loses_the_lock_after_the_ttl() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut run, _, pgid) = start_sleeper(&c, dir.path(), "jobs/f", "exec sleep 300").await;
    // Frozen, the server still accepts connections but answers nothing: renewals time out.
    let server = c.pid() as i32;
    // SAFETY: kill(2) on the server process this test started.
    unsafe { libc::kill(server, libc::SIGSTOP) };
    let started = Instant::now();
    let e = run.wait(Duration::from_secs(60)).await;
    // SAFETY: as above.
    unsafe { libc::kill(server, libc::SIGCONT) };
    assert_eq!(e.code, Some(1), "{}", e.stderr);
    assert!(
        e.stderr
            .contains("could not be renewed within its TTL of 15s"),
        "{}",
        e.stderr
    );
    assert!(
        started.elapsed() >= Duration::from_secs(7),
        "not before the TTL ran out"
    );
    // SAFETY: signal 0 only checks for existence.
    assert_eq!(
        unsafe { libc::kill(-pgid, 0) },
        -1,
        "the child's group is gone"
    );
}

#[tokio::test]
async fn the_command_does_not_outlive_a_killed_catalogd_lock() {
    let c = Catalogd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut run, _, pgid) = start_sleeper(&c, dir.path(), "jobs/k", "exec sleep 300").await;
    run.child.kill().expect("SIGKILL to catalogd lock");
    run.child.wait().expect("reaped");
    eventually("the command is gone", Duration::from_secs(10), async || {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(-pgid, 0) == -1 }
    })
    .await;
}

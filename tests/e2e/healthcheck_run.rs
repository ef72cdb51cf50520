//! `healthcheck run`: a batch of checks of every kind from a file or stdin, one JSON line per
//! check with the worst status as the exit code; invalid checks reported without stopping the
//! others; malformed files UNKNOWN; `--table`; and 2,000 HTTP checks in one process.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::atomic::Ordering;

use cairn_tests::free_port;
use serde_json::{Value, json};

use crate::healthcheck_common::{HttpServer, Run, healthcheck, healthcheck_with};

/// The batch's JSON lines keyed by `index`, each asserted to have every field.
fn lines_by_index(run: &Run) -> BTreeMap<u64, Value> {
    let mut out = BTreeMap::new();
    for line in run.stdout.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}\nall:\n{}", run.stdout));
        for field in [
            "index",
            "name",
            "status",
            "exit_code",
            "message",
            "perfdata",
        ] {
            assert!(v.get(field).is_some(), "no {field:?} in {line}");
        }
        assert!(v["perfdata"].is_array(), "{line}");
        let i = v["index"].as_u64().expect("index is a number");
        assert!(out.insert(i, v).is_none(), "index {i} printed twice");
    }
    out
}

fn perf_strings(v: &Value) -> Vec<String> {
    v["perfdata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().expect("perfdata items are strings").to_string())
        .collect()
}

/// Five checks of four kinds: OK, CRITICAL (503), CRITICAL (refused), CRITICAL (missing file),
/// WARNING (script exit 1).
fn mixed_batch(srv: &HttpServer, dir: &Path) -> Value {
    let script = dir.join("warn.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'QUEUE WARNING - 12 waiting | queue=12;10;20;0'\nexit 1\n",
    )
    .expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    json!([
        {"name": "web", "kind": "http", "target": srv.url("/ok"), "contains": "hello"},
        {"name": "api", "kind": "http", "target": srv.url("/status/503"), "timeout": "5s"},
        {"name": "db", "kind": "tcp", "target": format!("127.0.0.1:{}", free_port())},
        {"name": "heartbeat", "kind": "file", "target": dir.join("missing").to_str().unwrap(),
         "max_age": "10m"},
        {"name": "queue", "kind": "exec", "args": [script.to_str().unwrap()]},
    ])
}

fn assert_mixed(run: &Run) {
    run.assert_code(2);
    let lines = lines_by_index(run);
    assert_eq!(
        lines.keys().copied().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4],
        "one line per check:\n{}",
        run.stdout
    );
    let expect = [
        ("web", "ok", 0, "200 OK"),
        ("api", "critical", 2, "503"),
        ("db", "critical", 2, "connection refused"),
        ("heartbeat", "critical", 2, "no such file"),
        ("queue", "warning", 1, "QUEUE WARNING - 12 waiting"),
    ];
    for (i, (name, status, code, text)) in expect.into_iter().enumerate() {
        let v = &lines[&(i as u64)];
        assert_eq!(v["name"], name, "{v}");
        assert_eq!(v["status"], status, "{v}");
        assert_eq!(v["exit_code"], code, "{v}");
        assert!(
            v["message"].as_str().unwrap().contains(text),
            "{name}: {text:?} in {v}"
        );
        assert!(v["duration"].as_f64().is_some_and(|d| d >= 0.0), "{v}");
    }
    let web = perf_strings(&lines[&0]);
    assert!(
        web[0].starts_with("time=") && web[0].ends_with("s;;;0"),
        "{web:?}"
    );
    assert_eq!(web[1], "size=11B;;;0");
    assert!(perf_strings(&lines[&2])[0].starts_with("time="));
    assert!(perf_strings(&lines[&3]).is_empty());
    assert_eq!(perf_strings(&lines[&4])[0], "queue=12;10;20;0");
}

#[test]
fn mixed_batch_from_a_file_and_from_stdin() {
    let srv = HttpServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let batch = mixed_batch(&srv, dir.path());
    let file = dir.path().join("checks.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&batch).unwrap()).expect("write");

    assert_mixed(&healthcheck(&["run", file.to_str().unwrap()]));
    let body = serde_json::to_vec(&batch).unwrap();
    assert_mixed(&healthcheck_with(&["run", "-"], Some(&body)));

    // One object per line works as well.
    let jsonl: String = batch
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{c}\n\n"))
        .collect();
    assert_mixed(&healthcheck_with(&["run", "-"], Some(jsonl.as_bytes())));
}

#[test]
fn exit_code_is_the_worst_status() {
    let srv = HttpServer::start();
    let ok = json!({"kind": "http", "target": srv.url("/ok")});
    let slow_warn = json!({"kind": "http", "target": srv.url("/slow?ms=150"), "warning": "50ms"});
    let run = healthcheck_with(&["run", "-"], Some(json!([ok, ok]).to_string().as_bytes()));
    run.assert_code(0);
    let lines = lines_by_index(&run);
    assert_eq!(lines.len(), 2);
    // Unnamed checks are labelled by their kind.
    assert_eq!(lines[&0]["name"], "HTTP");

    let run = healthcheck_with(
        &["run", "-"],
        Some(json!([ok, slow_warn]).to_string().as_bytes()),
    );
    run.assert_code(1);
    assert_eq!(lines_by_index(&run)[&1]["status"], "warning");
}

#[test]
fn an_invalid_check_is_unknown_and_the_others_still_run() {
    let srv = HttpServer::start();
    let batch = json!([
        {"name": "good", "kind": "http", "target": srv.url("/ok")},
        {"name": "bad", "kind": "http", "target": "notaurl"},
        {"name": "also-good", "kind": "tcp", "target": srv.addr.to_string()},
    ]);
    let run = healthcheck_with(&["run", "-"], Some(batch.to_string().as_bytes()));
    // UNKNOWN is the worst of OK, UNKNOWN, OK.
    run.assert_code(3);
    let lines = lines_by_index(&run);
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(lines[&0]["status"], "ok");
    assert_eq!(lines[&2]["status"], "ok");
    let bad = &lines[&1];
    assert_eq!(bad["name"], "bad");
    assert_eq!(bad["status"], "unknown");
    assert_eq!(bad["exit_code"], 3);
    let msg = bad["message"].as_str().unwrap();
    assert!(msg.contains("notaurl") && msg.contains("URL"), "{msg}");
    assert_eq!(srv.ok_hits.load(Ordering::Relaxed), 1, "the good check ran");

    // A CRITICAL outranks the UNKNOWN (Nagios order).
    let batch = json!([
        {"name": "bad", "kind": "dns", "target": "x.test", "record_type": "BOGUS",
         "server": "127.0.0.1:53"},
        {"name": "down", "kind": "http", "target": srv.url("/status/500")},
        {"kind": "file"},
    ]);
    let run = healthcheck_with(&["run", "-"], Some(batch.to_string().as_bytes()));
    run.assert_code(2);
    let lines = lines_by_index(&run);
    assert_eq!(lines[&0]["status"], "unknown");
    assert!(lines[&0]["message"].as_str().unwrap().contains("BOGUS"));
    assert_eq!(lines[&1]["status"], "critical");
    assert_eq!(lines[&2]["status"], "unknown");
    assert!(
        lines[&2]["message"].as_str().unwrap().contains("target"),
        "{}",
        lines[&2]
    );
}

#[test]
fn malformed_or_missing_files_are_unknown_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: [(&str, &str, &str); 4] = [
        ("truncated.json", r#"[{"kind": "http", "#, "checks file"),
        ("notjson.json", "this is not json\n", "line 1"),
        (
            "unknownfield.json",
            r#"[{"kind": "http", "target": "http://127.0.0.1:1/", "colour": "red"}]"#,
            "colour",
        ),
        ("empty.json", "[]", "no checks"),
    ];
    for (name, text, why) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let run = healthcheck(&["run", path.to_str().unwrap()]);
        run.expect(3, "HEALTHCHECK UNKNOWN - ");
        assert!(
            run.line().contains(why),
            "{name}: {why:?} in {:?}",
            run.line()
        );
    }
    let missing = dir.path().join("nope.json");
    let run = healthcheck(&["run", missing.to_str().unwrap()]);
    run.expect(3, "HEALTHCHECK UNKNOWN - ")
        .contains_all(&["nope.json"]);
    // Nothing on stdin.
    healthcheck_with(&["run", "-"], Some(b"")).expect(3, "HEALTHCHECK UNKNOWN - ");
}

#[test]
fn table_output() {
    let srv = HttpServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let batch = mixed_batch(&srv, dir.path());
    let run = healthcheck_with(&["run", "--table", "-"], Some(batch.to_string().as_bytes()));
    run.assert_code(2);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "a header and five rows:\n{}", run.stdout);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "SECONDS", "MESSAGE"]);
    let expect = [
        ("web", "OK"),
        ("api", "CRITICAL"),
        ("db", "CRITICAL"),
        ("heartbeat", "CRITICAL"),
        ("queue", "WARNING"),
    ];
    for (row, (name, status)) in lines[1..].iter().zip(expect) {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[0], name, "{row}");
        assert_eq!(cols[1], status, "{row}");
        assert!(cols[2].parse::<f64>().is_ok(), "seconds column: {row}");
        // Columns line up under the header.
        assert_eq!(
            row.find(status),
            lines[0].find("STATUS"),
            "{row}\n{}",
            lines[0]
        );
    }
    assert!(
        lines[5].contains("QUEUE WARNING - 12 waiting"),
        "{}",
        lines[5]
    );
}

#[test]
fn two_thousand_http_checks_in_one_batch() {
    const N: usize = 2000;
    let srv = HttpServer::start();
    let checks: Vec<Value> = (0..N)
        .map(|i| {
            json!({"name": format!("web-{i}"), "kind": "http", "target": srv.url("/ok"),
                   "contains": "hello", "timeout": "60s"})
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("many.json");
    std::fs::write(&file, serde_json::to_vec(&checks).unwrap()).expect("write");
    let run = healthcheck(&["run", "--concurrency", "64", file.to_str().unwrap()]);
    let lines = lines_by_index(&run);
    let not_ok: Vec<&Value> = lines.values().filter(|v| v["status"] != "ok").collect();
    assert!(
        not_ok.is_empty(),
        "{} checks not OK, e.g. {}",
        not_ok.len(),
        not_ok[0]
    );
    run.assert_code(0);
    assert_eq!(run.stdout.lines().count(), N);
    assert_eq!(lines.len(), N);
    assert_eq!(lines.keys().copied().max(), Some(N as u64 - 1));
    for (i, v) in &lines {
        assert_eq!(v["name"], format!("web-{i}"), "index and name agree");
    }
    assert_eq!(
        srv.ok_hits.load(Ordering::Relaxed),
        N,
        "every check hit the server"
    );
}

/// `run --forever` repeats each check on its own interval until SIGTERM.
#[test]
fn forever_repeats_each_check_on_its_interval() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("stamp");
    std::fs::write(&present, "x").unwrap();
    let checks = json!([
        {"name": "fast", "kind": "file", "target": present.display().to_string(), "interval": "100ms"},
        {"name": "slow", "kind": "file", "target": dir.path().join("missing").display().to_string(), "interval": "1h"}
    ]);
    let file = dir.path().join("checks.json");
    std::fs::write(&file, checks.to_string()).unwrap();
    let mut child = std::process::Command::new(cairn_tests::bin("healthcheck"))
        .args(["run", "--forever"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while by_name.get("fast").copied().unwrap_or(0) < 5 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("run --forever stopped printing");
        let v: Value = serde_json::from_str(&line).unwrap();
        *by_name
            .entry(v["name"].as_str().unwrap().to_string())
            .or_default() += 1;
        if v["name"] == "slow" {
            assert_eq!(v["status"], "critical", "{v}");
        }
    }
    assert_eq!(
        by_name.get("slow"),
        Some(&1),
        "the 1h check ran once so far: {by_name:?}"
    );
    // If kill cannot run, the wait below never sees the exit and the test times out.
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(
        status.code().is_some(),
        "exited by itself on SIGTERM, not killed: {status:?}"
    );
}

//! The `catalogd` client subcommands against a real server, as scripts use them: KV get/put/ls/
//! delete, register from stdin, services/service/nodes in text and JSON, deregister, exit codes
//! (0 ok, 1 missing or refused, 2 usage), and `watch` printing one JSON line per change.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cairn_tests::{Catalogd, bin};
use serde_json::{Value, json};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a CLI command, asserting its exit code; returns its output.
fn run(c: &Catalogd, args: &[&str], stdin: Option<&[u8]>, code: i32) -> Output {
    let out = c.cli(args, stdin);
    assert_eq!(
        out.status.code(),
        Some(code),
        "catalogd {args:?}: stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    out
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn kv_subcommands_round_trip() {
    let c = Catalogd::start().await;
    let out = run(&c, &["kv", "put", "app/name", "shop"], None, 0);
    assert!(stderr(&out).contains("app/name"), "{}", stderr(&out));
    let out = run(&c, &["kv", "get", "app/name"], None, 0);
    assert_eq!(stdout(&out), "shop\n");
    // What the CLI wrote is what the API serves.
    assert_eq!(c.http.get("/v1/kv/app/name?raw").await.text(), "shop");

    let out = run(&c, &["kv", "get", "app/missing"], None, 1);
    assert_eq!(stdout(&out), "", "nothing on stdout for a missing key");
    assert!(stderr(&out).contains("app/missing"), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));

    // `-` reads the value from stdin, byte for byte.
    run(
        &c,
        &["kv", "put", "app/config/db", "-"],
        Some(b"postgres://db\nline two"),
        0,
    );
    assert_eq!(
        c.http.get("/v1/kv/app/config/db?raw").await.text(),
        "postgres://db\nline two"
    );
    run(&c, &["kv", "put", "app/config/cache", "redis"], None, 0);
    run(&c, &["kv", "put", "other", "x"], None, 0);

    let out = run(&c, &["kv", "ls", "app/"], None, 0);
    assert_eq!(
        stdout(&out),
        "app/config/cache\napp/config/db\napp/name\n",
        "one key per line"
    );
    let out = run(&c, &["kv", "ls", "app/", "--separator", "/"], None, 0);
    assert_eq!(stdout(&out), "app/config/\napp/name\n");
    let out = run(&c, &["kv", "ls", "app/", "--json"], None, 0);
    let entries: Value = serde_json::from_slice(&out.stdout).expect("kv ls --json is JSON");
    let entries = entries.as_array().expect("a list");
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[2]["Key"], "app/name");
    assert_eq!(entries[2]["Value"], b64("shop"));
    let out = run(&c, &["kv", "get", "app/name", "--json"], None, 0);
    let entry: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entry["Key"], "app/name");

    // Check-and-set refusals exit 1 and change nothing.
    run(
        &c,
        &["kv", "put", "app/name", "other", "--cas", "1"],
        None,
        1,
    );
    assert_eq!(c.http.get("/v1/kv/app/name?raw").await.text(), "shop");

    run(&c, &["kv", "delete", "app/name"], None, 0);
    run(&c, &["kv", "get", "app/name"], None, 1);
    run(&c, &["kv", "delete", "app", "--recurse"], None, 0);
    let out = run(&c, &["kv", "ls", "app/"], None, 1);
    assert!(stderr(&out).contains("no keys"), "{}", stderr(&out));
    assert_eq!(c.http.get("/v1/kv/other?raw").await.text(), "x");
}

#[tokio::test]
async fn register_list_and_deregister_from_the_command_line() {
    let c = Catalogd::start().await;
    let catalog_reg = json!({"Node": "n1", "Address": "10.0.0.1",
        "Service": {"ID": "web-1", "Service": "web", "Port": 8080, "Tags": ["prod"]},
        "Check": {"CheckID": "web-1-http", "Name": "http", "Status": "passing", "ServiceID": "web-1"}});
    run(
        &c,
        &["register", "-f", "-"],
        Some(catalog_reg.to_string().as_bytes()),
        0,
    );
    let agent_reg = json!({"Name": "api", "ID": "api-1", "Port": 9000, "Tags": ["v2"]});
    run(
        &c,
        &["register", "-f", "-"],
        Some(agent_reg.to_string().as_bytes()),
        0,
    );
    let agent_services = c.http.get("/v1/agent/services").await.value();
    assert_eq!(
        agent_services["api-1"]["Port"], 9000,
        "a definition without Node registers on catalogd's own node"
    );

    let out = run(&c, &["services"], None, 0);
    let text = stdout(&out);
    assert!(text.lines().any(|l| l == "web\tprod"), "{text}");
    assert!(text.lines().any(|l| l == "api\tv2"), "{text}");
    let out = run(&c, &["services", "--json"], None, 0);
    let services: Value = serde_json::from_slice(&out.stdout).expect("services --json");
    assert_eq!(services["web"], json!(["prod"]));
    assert_eq!(services["api"], json!(["v2"]));

    let out = run(&c, &["service", "web"], None, 0);
    let text = stdout(&out);
    let line = text.lines().next().unwrap_or_default();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(line.contains("web-1"), "{line}");
    assert!(line.contains("n1"), "{line}");
    assert!(line.contains("10.0.0.1:8080"), "{line}");
    assert!(line.contains("passing"), "{line}");
    let out = run(&c, &["service", "web", "--json"], None, 0);
    let entries: Value = serde_json::from_slice(&out.stdout).expect("service --json");
    assert_eq!(entries[0]["Service"]["Port"], 8080);
    assert_eq!(entries[0]["Node"]["Node"], "n1");
    let out = run(&c, &["service", "nothing"], None, 1);
    assert!(stderr(&out).contains("nothing"), "{}", stderr(&out));

    let out = run(&c, &["nodes"], None, 0);
    let text = stdout(&out);
    assert!(text.lines().any(|l| l == "n1\t10.0.0.1"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("cairn-test\t")),
        "{text}"
    );
    let out = run(&c, &["nodes", "--json"], None, 0);
    let nodes: Value = serde_json::from_slice(&out.stdout).expect("nodes --json");
    assert!(
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["Node"] == "n1" && n["Address"] == "10.0.0.1")
    );

    run(&c, &["deregister", "--service", "api-1"], None, 0);
    assert_eq!(
        c.http.get("/v1/catalog/service/api").await.value(),
        json!([])
    );
    run(&c, &["deregister", "--node", "n1"], None, 0);
    assert_eq!(c.http.get("/v1/catalog/node/n1").await.text(), "null");
    assert_eq!(
        c.http.get("/v1/catalog/service/web").await.value(),
        json!([])
    );
    run(&c, &["service", "web"], None, 1);
}

#[tokio::test]
async fn refused_and_malformed_input_exit_non_zero() {
    let c = Catalogd::start().await;
    // Usage errors are clap's exit 2.
    let out = run(&c, &["kv"], None, 2);
    assert!(!stderr(&out).is_empty());
    run(&c, &["kv", "get", "k", "--bogus"], None, 2);
    run(&c, &["services", "--nope"], None, 2);
    run(&c, &["frobnicate"], None, 2);

    // Bad files and refused registrations are failures (1), with the reason on stderr.
    let out = run(&c, &["register", "-f", "-"], Some(b"{not json"), 1);
    assert!(stderr(&out).contains("JSON"), "{}", stderr(&out));
    let out = run(
        &c,
        &["register", "-f", "-"],
        Some(br#"{"Node": "n1", "Service": {"Service": "web"}}"#),
        1,
    );
    assert!(stderr(&out).contains("Address"), "{}", stderr(&out));
    let out = run(&c, &["deregister"], None, 1);
    assert!(stderr(&out).contains("--service"), "{}", stderr(&out));
    assert_eq!(
        c.http.get("/v1/catalog/node/n1").await.text(),
        "null",
        "nothing registered"
    );
}

/// A `catalogd watch ...` child whose stdout lines arrive on a channel.
struct Watcher {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Watcher {
    fn spawn(c: &Catalogd, args: &[&str]) -> Watcher {
        let mut child = Command::new(bin("catalogd"))
            .args(args)
            .env("CAIRN_CATALOG", &c.url)
            .env_remove("CONSUL_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting catalogd watch");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next line, waiting up to 20 s without blocking the runtime.
    async fn next_line(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.lines.try_recv() {
                Ok(line) => return line,
                Err(mpsc::TryRecvError::Disconnected) => panic!("watch exited"),
                Err(mpsc::TryRecvError::Empty) => {}
            }
            assert!(Instant::now() < deadline, "no line from watch within 20s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asserts no line arrives for `quiet`.
    async fn assert_quiet(&self, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        if let Ok(line) = self.lines.try_recv() {
            panic!("unexpected watch line: {line}");
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.child.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.child.wait();
    }
}

fn value_of(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    v["Value"].as_str().map(|b| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("base64"),
        )
        .expect("utf-8")
    })
}

#[tokio::test]
async fn watch_key_prints_one_json_line_per_change() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put("/v1/kv/cfg/k", "v1").await;
    let w = Watcher::spawn(&c, &["watch", "key", "cfg/k"]);
    let first = w.next_line().await;
    assert_eq!(value_of(&first).as_deref(), Some("v1"), "{first}");
    let parsed: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(parsed["Key"], "cfg/k");

    // Unrelated writes print nothing.
    h.put("/v1/kv/cfg/other", "x").await;
    w.assert_quiet(Duration::from_millis(500)).await;

    h.put("/v1/kv/cfg/k", "v2").await;
    assert_eq!(value_of(&w.next_line().await).as_deref(), Some("v2"));
    h.put("/v1/kv/cfg/k", "v3").await;
    assert_eq!(value_of(&w.next_line().await).as_deref(), Some("v3"));

    // Deleting the key prints null.
    h.delete("/v1/kv/cfg/k").await;
    assert_eq!(w.next_line().await, "null");
}

#[tokio::test]
async fn watch_once_prints_the_current_answer_and_exits() {
    let c = Catalogd::start().await;
    c.http
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "n1", "Address": "10.0.0.1",
                    "Service": {"ID": "web-1", "Service": "web", "Port": 8080}}),
        )
        .await;
    let mut child = Command::new(bin("catalogd"))
        .args(["watch", "service", "web", "--once"])
        .env("CAIRN_CATALOG", &c.url)
        .env_remove("CONSUL_HTTP_ADDR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting catalogd watch --once");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for watch --once") {
            break status;
        }
        if Instant::now() > deadline {
            // The process may have exited already: nothing to report.
            let _ = child.kill();
            panic!("watch --once did not exit within 20s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let out = child.wait_with_output().expect("output");
    assert!(status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "exactly one line: {text}");
    let entries: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(entries[0]["Service"]["ID"], "web-1");
    assert_eq!(entries[0]["Node"]["Node"], "n1");
}

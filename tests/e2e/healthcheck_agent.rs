//! `healthcheck agent` against a real catalogd: it runs the HTTP and TCP checks registered for its
//! node, writes their status back when the target goes down and comes back, picks up checks
//! registered later, leaves TTL and (by default) script checks alone, and keeps working across
//! a catalogd restart.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, bin};
use serde_json::{Value, json};

/// A tiny HTTP target whose answer status the test sets; every connection gets one answer.
struct Target {
    port: u16,
    status: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Target {
    fn start() -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (status.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        // A failed option only makes the exchange below fail, which the test sees.
                        let _ = conn.set_nonblocking(false);
                        // A failed option only makes the exchange below fail, which the test sees.
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 4096];
                        // The request is not inspected; a client that left gets no answer.
                        let _ = conn.read(&mut buf);
                        let code = s.load(Ordering::SeqCst);
                        let body = format!("status {code}");
                        // A client that left needs no answer.
                        let _ = write!(
                            conn,
                            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Target { port, status, stop }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.0.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.0.wait();
    }
}

fn start_agent(catalog: &str, node: &str, log: &std::path::Path) -> Agent {
    let log = std::fs::File::create(log).unwrap();
    Agent(
        Command::new(bin("healthcheck"))
            .args(["agent", "--node", node, "--catalog", catalog])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting healthcheck agent"),
    )
}

/// The registered check `id` on `node`, as the catalog has it now.
async fn check(c: &Catalogd, node: &str, id: &str) -> Option<Value> {
    let r = c
        .http
        .try_send("GET", &format!("/v1/health/node/{node}"), None)
        .await
        .ok()?;
    let all: Value = serde_json::from_slice(&r.body).ok()?;
    all.as_array()?
        .iter()
        .find(|ch| ch["CheckID"] == id)
        .cloned()
}

async fn wait_status(
    c: &Catalogd,
    node: &str,
    id: &str,
    want: &str,
    log: &std::path::Path,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(ch) = check(c, node, id).await
            && ch["Status"] == want
        {
            return ch;
        }
        assert!(
            Instant::now() < deadline,
            "check {id} never became {want}: {:?}\nagent log:\n{}",
            check(c, node, id).await,
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn agent_runs_registered_checks_and_follows_their_targets() {
    let mut c = Catalogd::start().await;
    let http = Target::start();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let node = "node-a";
    let reg = json!({
        "Node": node, "Address": "127.0.0.1",
        "Service": {"ID": "web-1", "Service": "web", "Port": http.port},
        "Checks": [
            {"CheckID": "web-http", "Name": "web answers", "ServiceID": "web-1", "Status": "critical",
             "Definition": {"HTTP": format!("http://127.0.0.1:{}/health", http.port), "Interval": "300ms", "Timeout": "1s"}},
            {"CheckID": "web-tcp", "Name": "web port", "ServiceID": "web-1", "Status": "critical",
             "Definition": {"TCP": format!("127.0.0.1:{tcp_port}"), "Interval": "300ms", "Timeout": "1s"}},
        ]
    });
    assert_eq!(
        c.http.put_json("/v1/catalog/register", &reg).await.status,
        200
    );
    // Checks the agent must leave alone, on another service of the same node.
    let other = json!({
        "Node": node, "Address": "127.0.0.1",
        "Service": {"ID": "cron-1", "Service": "cron"},
        "Checks": [
            {"CheckID": "heartbeat", "Name": "app heartbeat", "ServiceID": "cron-1", "Status": "warning",
             "Definition": {"TTL": "1h"}},
            {"CheckID": "script", "Name": "script", "ServiceID": "cron-1", "Status": "warning",
             "Definition": {"ScriptArgs": ["/bin/true"], "Interval": "300ms"}}
        ]
    });
    assert_eq!(
        c.http.put_json("/v1/catalog/register", &other).await.status,
        200
    );
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let mut agent = start_agent(&c.url, node, &log);

    let ok = wait_status(&c, node, "web-http", "passing", &log).await;
    assert!(
        ok["Output"].as_str().unwrap().starts_with("web-http OK - "),
        "{ok}"
    );
    assert!(
        ok["Output"].as_str().unwrap().contains("time="),
        "perfdata in the output: {ok}"
    );
    wait_status(&c, node, "web-tcp", "passing", &log).await;
    assert_eq!(
        c.http
            .get("/v1/health/service/web?passing")
            .await
            .value()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // The target fails, then recovers.
    http.status.store(503, Ordering::SeqCst);
    let bad = wait_status(&c, node, "web-http", "critical", &log).await;
    assert!(bad["Output"].as_str().unwrap().contains("503"), "{bad}");
    assert_eq!(
        c.http.get("/v1/health/service/web?passing").await.value(),
        json!([])
    );
    http.status.store(200, Ordering::SeqCst);
    wait_status(&c, node, "web-http", "passing", &log).await;
    drop(tcp);
    let down = wait_status(&c, node, "web-tcp", "critical", &log).await;
    assert!(
        down["Output"].as_str().unwrap().contains("refused"),
        "{down}"
    );
    let _tcp_again = TcpListener::bind(("127.0.0.1", tcp_port)).unwrap();
    wait_status(&c, node, "web-tcp", "passing", &log).await;

    // TTL and disabled script checks are left as registered.
    assert_eq!(
        check(&c, node, "heartbeat").await.unwrap()["Status"],
        "warning"
    );
    assert_eq!(
        check(&c, node, "script").await.unwrap()["Status"],
        "warning"
    );

    // A check registered later is picked up through the blocking query.
    let later = json!({"Node": node, "Address": "127.0.0.1", "SkipNodeUpdate": true,
        "Check": {"CheckID": "later", "Name": "later", "Status": "critical",
                  "Definition": {"HTTP": format!("http://127.0.0.1:{}/later", http.port), "Interval": "300ms"}}});
    c.http.put_json("/v1/catalog/register", &later).await;
    wait_status(&c, node, "later", "passing", &log).await;

    // catalogd goes away; the target changes meanwhile; catalogd comes back: the agent catches up.
    c.kill9();
    http.status.store(500, Ordering::SeqCst);
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        agent.0.try_wait().unwrap().is_none(),
        "the agent exited while catalogd was down"
    );
    c.restart().await;
    wait_status(&c, node, "web-http", "critical", &log).await;
    http.status.store(200, Ordering::SeqCst);
    wait_status(&c, node, "web-http", "passing", &log).await;

    // SIGTERM stops it cleanly.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(agent.0.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = agent.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "agent did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "agent exit status {status:?}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("healthcheck agent stopped")
    );
}

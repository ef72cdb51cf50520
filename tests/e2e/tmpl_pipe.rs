//! The pipe use: `tmpl render haproxy.tmpl | haproxy -c -f /dev/stdin`. An HAProxy config
//! generated from catalog services (global/defaults/frontend/backend, one `server` line per
//! healthy instance, the listen port from KV) goes through a real pipe into the real HAProxy's
//! config check, which accepts it; a rendering HAProxy cannot accept is refused the same way.
//! `haproxy -c` only checks the configuration: nothing binds.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_tests::{Catalogd, bin};
use serde_json::json;

use crate::tmpl_common::{Work, instance, put_kv, register};

const HAPROXY_TMPL: &str = r#"global
    maxconn 256

defaults
    mode {{ key_or_default(path="lb/mode", default="http") }}
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend http-in
    bind 127.0.0.1:{{ key(path="lb/port") }}
    default_backend web

backend web
    balance roundrobin
{% for s in service(name="web") %}    server {{ s.ID }} {{ s.Address }}:{{ s.Port }} check
{% endfor %}"#;

/// What `tmpl render | haproxy -c -f /dev/stdin` did.
struct Piped {
    tmpl_code: Option<i32>,
    tmpl_stderr: String,
    haproxy_code: Option<i32>,
    haproxy_output: String,
}

/// Runs `tmpl --catalog URL render TEMPLATE | haproxy -c -f /dev/stdin` with a real pipe between
/// the two processes.
fn pipe(catalog: &str, template: &str) -> Piped {
    let mut tmpl = Command::new(bin("tmpl"))
        .args(["--catalog", catalog, "render", template])
        .env_remove("CAIRN_CATALOG")
        .env_remove("CONSUL_HTTP_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tmpl render");
    let haproxy = Command::new("haproxy")
        .args(["-c", "-f", "/dev/stdin"])
        .stdin(Stdio::from(tmpl.stdout.take().expect("tmpl stdout")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let haproxy = match haproxy {
        Ok(h) => h,
        Err(e) => {
            // The process may have exited already; the wait below reaps it either way.
            let _ = tmpl.kill();
            // Only reaps it; how a killed process exited says nothing here.
            let _ = tmpl.wait();
            panic!(
                "haproxy is not installed ({e}): run scripts/test, which installs it \
                 (apt-get install haproxy)"
            );
        }
    };
    // Liveness only (the test fails instead of hanging): haproxy finishes once tmpl closes the
    // pipe, which their exit codes below show.
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The receiver is gone only when the test already failed.
        let _ = done.send(haproxy.wait_with_output());
    });
    let out = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the pipe hung: haproxy did not finish")
        .expect("haproxy output");
    let mut tmpl_stderr = String::new();
    if let Some(mut e) = tmpl.stderr.take() {
        // Only shown in a failure message: what could be read is enough.
        let _ = e.read_to_string(&mut tmpl_stderr);
    }
    let status = tmpl.wait().expect("tmpl status");
    Piped {
        tmpl_code: status.code(),
        tmpl_stderr,
        haproxy_code: out.status.code(),
        haproxy_output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test]
async fn tmpl_render_piped_into_haproxy_check() {
    let c = Catalogd::start().await;
    instance(&c, "n1", "127.0.0.11", "web", "web-1", 8001, "passing").await;
    instance(&c, "n2", "127.0.0.12", "web", "web-2", 8002, "passing").await;
    // Its own address wins over the node's.
    register(
        &c,
        &json!({"Node": "n3", "Address": "127.0.0.13",
                "Service": {"ID": "web-3", "Service": "web", "Port": 8003, "Address": "127.0.0.33"},
                "Check": {"CheckID": "c-web-3", "Name": "svc", "Status": "passing", "ServiceID": "web-3"}}),
    )
    .await;
    // Not healthy: not routed.
    instance(&c, "n4", "127.0.0.14", "web", "web-4", 8004, "critical").await;
    put_kv(&c, "lb/port", "18080").await;
    let work = Work::new();
    let tpl = work.write("haproxy.tmpl", HAPROXY_TMPL);
    let tpl = tpl.to_str().unwrap();

    // What goes down the pipe.
    let r = crate::tmpl_common::run(&c.url, work.root(), &["render", tpl]);
    r.assert_code(0);
    let servers: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("server "))
        .collect();
    assert_eq!(
        servers,
        [
            "    server web-1 127.0.0.11:8001 check",
            "    server web-2 127.0.0.12:8002 check",
            "    server web-3 127.0.0.33:8003 check",
        ],
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("bind 127.0.0.1:18080"), "{}", r.stdout);

    let p = pipe(&c.url, tpl);
    println!("haproxy -c: {}", p.haproxy_output.trim());
    assert_eq!(p.tmpl_code, Some(0), "tmpl: {}", p.tmpl_stderr);
    assert_eq!(
        p.haproxy_code,
        Some(0),
        "haproxy accepts the generated config: {}",
        p.haproxy_output
    );
    assert!(
        p.haproxy_output.contains("Configuration file is valid"),
        "{}",
        p.haproxy_output
    );

    // A rendering HAProxy cannot accept is refused through the same pipe.
    put_kv(&c, "lb/mode", "carrier-pigeon").await;
    let p = pipe(&c.url, tpl);
    println!("haproxy -c on a bad mode: {}", p.haproxy_output.trim());
    assert_eq!(p.tmpl_code, Some(0), "tmpl: {}", p.tmpl_stderr);
    assert_ne!(
        p.haproxy_code,
        Some(0),
        "haproxy refuses mode carrier-pigeon: {}",
        p.haproxy_output
    );
    assert!(
        p.haproxy_output.contains("carrier-pigeon"),
        "{}",
        p.haproxy_output
    );
}

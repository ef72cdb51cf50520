//! `lbconf render` against a real catalogd, checked by a real HAProxy: the config passes
//! `haproxy -c`, and HAProxy started on it (master-worker) routes by host and path to real HTTP
//! backends, serves TCP services on their own port, skips unhealthy instances, answers 503 for
//! unknown hosts, and hostile ServiceMeta never reaches the config.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, bin, free_port};
use serde_json::json;

/// A Python HTTP server whose `/` and `/api/` answer with its own name.
struct Backend {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Backend {
    fn start(name: &str) -> Backend {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), name).unwrap();
        std::fs::create_dir(dir.path().join("api")).unwrap();
        std::fs::write(dir.path().join("api/index.html"), format!("{name} api")).unwrap();
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 http.server");
        // Listening before HAProxy is pointed at it: an earlier request is HAProxy's 503.
        cairn_tests::wait_listening(port, &format!("backend {name} (python3 -m http.server)"));
        Backend {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.child.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.child.wait();
    }
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.0.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.0.wait();
    }
}

async fn get(url: &str, host: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let r = client.get(url).header("Host", host).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

#[tokio::test]
async fn haproxy_routes_what_lbconf_renders() {
    let web = Backend::start("web");
    let api = Backend::start("api");
    let dead = free_port();
    let c = Catalogd::start().await;
    let reg = |node: &str,
               addr: &str,
               id: &str,
               svc: &str,
               port: u16,
               meta: serde_json::Value,
               status: &str| {
        json!({"Node": node, "Address": addr,
               "Service": {"ID": id, "Service": svc, "Port": port, "Meta": meta},
               "Check": {"CheckID": format!("{id}-c"), "Name": "c", "Status": status, "ServiceID": id}})
    };
    let tcp_port = free_port();
    let http_port = free_port();
    for body in [
        reg(
            "n1",
            "127.0.0.1",
            "web-1",
            "web",
            web.port,
            json!({"lb_vhost": "Web.Test,www.web.test"}),
            "passing",
        ),
        // Unhealthy: must never be routed (it would fail every request sent to it).
        reg(
            "n2",
            "127.0.0.1",
            "web-2",
            "web",
            dead,
            json!({"lb_vhost": "web.test"}),
            "critical",
        ),
        reg(
            "n3",
            "127.0.0.1",
            "api-1",
            "api",
            api.port,
            json!({"lb_vhost": "web.test", "lb_path": "/api/"}),
            "passing",
        ),
        // A service whose only instance is unhealthy: its host answers 503.
        reg(
            "n7",
            "127.0.0.1",
            "down-1",
            "down",
            web.port,
            json!({"lb_vhost": "down.test"}),
            "critical",
        ),
        reg(
            "n4",
            "127.0.0.1",
            "raw-1",
            "raw",
            web.port,
            json!({"lb_mode": "tcp", "lb_port": tcp_port.to_string()}),
            "passing",
        ),
        reg(
            "n5",
            "127.0.0.1",
            "evil-1",
            "evil\nsvc",
            web.port,
            json!({"lb_vhost": "evil.test\n    server pwn 6.6.6.6:80", "lb_balance": "roundrobin\n    bind :1"}),
            "passing",
        ),
        reg(
            "n6",
            "127.0.0.1",
            "evil-2",
            "evil2",
            web.port,
            json!({"lb_vhost": "ok.test", "lb_path": "/x\" || true"}),
            "passing",
        ),
    ] {
        assert_eq!(
            c.http.put_json("/v1/catalog/register", &body).await.status,
            200
        );
    }
    let out = Command::new(bin("lbconf"))
        .args([
            "render",
            "--bind",
            "127.0.0.1",
            "--http-port",
            &http_port.to_string(),
        ])
        .env("CAIRN_CATALOG", &c.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = String::from_utf8(out.stdout).unwrap();
    for hostile in ["6.6.6.6", "pwn", "bind :1", "|| true", "evil.test"] {
        assert!(
            !cfg.contains(hostile),
            "hostile meta {hostile:?} reached the config:\n{cfg}"
        );
    }
    assert!(
        !cfg.contains(&format!(":{dead}")),
        "the critical instance is not a server:\n{cfg}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, &cfg).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy is not installed: run scripts/test");
    assert!(
        check.status.success(),
        "haproxy -c refused it: {}\n{cfg}",
        String::from_utf8_lossy(&check.stderr)
    );

    let _haproxy = Haproxy(
        Command::new("haproxy")
            .args(["-W", "-db", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting haproxy"),
    );
    let front = format!("http://127.0.0.1:{http_port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&format!("{front}/"), "web.test").await.is_none() {
        assert!(
            Instant::now() < deadline,
            "haproxy never answered on {front}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Host routing (case and port in Host don't matter), every time: the dead instance is absent.
    for _ in 0..10 {
        assert_eq!(
            get(&format!("{front}/"), "web.test").await,
            Some((200, "web".into()))
        );
    }
    assert_eq!(
        get(&format!("{front}/"), &format!("WWW.web.test:{http_port}")).await,
        Some((200, "web".into()))
    );
    // Path prefix routing takes precedence on the same host.
    assert_eq!(
        get(&format!("{front}/api/"), "web.test").await,
        Some((200, "api api".into()))
    );
    // A service with no passing instance answers 503 (no server to try).
    assert_eq!(
        get(&format!("{front}/"), "down.test").await.map(|r| r.0),
        Some(503)
    );
    // Unknown hosts get a quick 503.
    assert_eq!(
        get(&format!("{front}/"), "nobody.test").await.map(|r| r.0),
        Some(503)
    );
    // The TCP service has its own frontend.
    assert_eq!(
        get(&format!("http://127.0.0.1:{tcp_port}/"), "anything").await,
        Some((200, "web".into()))
    );
    // The service with the hostile path is not routed at all; the catalog is still consistent.
    assert_eq!(
        get(&format!("{front}/x"), "ok.test").await.map(|r| r.0),
        Some(503)
    );
}

/// `--template`: operators' own global/defaults and per-backend lines; unsafe meta never reaches it.
#[tokio::test]
async fn operators_template_shapes_global_and_backends() {
    let c = Catalogd::start().await;
    let body = json!({"Node": "n1", "Address": "127.0.0.1",
        "Service": {"ID": "web-1", "Service": "web", "Port": 8080,
                    "Meta": {"lb_vhost": "web.test", "team": "shop", "note": "x\n    bind :1"}}});
    assert_eq!(
        c.http.put_json("/v1/catalog/register", &body).await.status,
        200
    );
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("lb.tera");
    std::fs::write(
        &template,
        "{% if section == \"global\" %}global\n    maxconn 1000\n\ndefaults\n    mode http\n    timeout connect 3s\n    timeout client 30s\n    timeout server 30s\n\
         {% else %}http-response set-header X-Backend {{ backend }}\n\
         {% if meta.team %}http-response set-header X-Team {{ meta.team }}{% endif %}\n\
         {% if meta.note %}# {{ meta.note }}{% endif %}{% endif %}\n",
    )
    .unwrap();
    let out = Command::new(bin("lbconf"))
        .args([
            "render",
            "--bind",
            "127.0.0.1",
            "--http-port",
            &free_port().to_string(),
            "--template",
        ])
        .arg(&template)
        .env("CAIRN_CATALOG", &c.url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = String::from_utf8(out.stdout).unwrap();
    assert!(cfg.contains("    maxconn 1000"), "{cfg}");
    assert!(cfg.contains("timeout connect 3s"), "{cfg}");
    assert!(
        cfg.contains("    http-response set-header X-Backend be_web"),
        "{cfg}"
    );
    assert!(
        cfg.contains("    http-response set-header X-Team shop"),
        "{cfg}"
    );
    assert!(
        !cfg.contains("bind :1"),
        "meta with control characters stays out:\n{cfg}"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, &cfg).unwrap();
    let check = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("haproxy");
    assert!(
        check.status.success(),
        "{}\n{cfg}",
        String::from_utf8_lossy(&check.stderr)
    );

    // A broken template is a clear error, not a half config.
    std::fs::write(&template, "{% if section == %}").unwrap();
    let out = Command::new(bin("lbconf"))
        .args(["render", "--template"])
        .arg(&template)
        .env("CAIRN_CATALOG", &c.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--template"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

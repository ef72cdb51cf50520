//! The edge (issue 21): `lbconf watch --tls-certs` with a real HAProxy and real certificates
//! made by openssl under a private CA, checked by curl as a client sees it. Two virtual hosts
//! are served over HTTPS each with its own certificate (curl verifies the name against the
//! CA), HTTP/2 is negotiated, an `lb_redirect_https` host answers plain HTTP with a 301 and
//! HTTPS with HSTS, `lb_sticky` keeps a client on one instance, a `lb_tls_passthrough` host
//! reaches a backend that terminates TLS itself, HAProxy's own Prometheus exporter answers;
//! certificates renewed under `wrk` load are served without a failed request and without a
//! reload, a broken PEM leaves the old certificate serving, and a new name is picked up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::lb::{Balancer, BalancerOpts, Proc};
use cairn_tests::{Catalogd, free_port};
use serde_json::{Value, json};

use crate::lbconf_watch::backend;

/// Runs a command, failing the test with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private CA in `dir` (ca.pem, ca.key).
fn make_ca(dir: &Path) -> PathBuf {
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=cairn test CA"])
        .arg("-keyout")
        .arg(dir.join("ca.key"))
        .arg("-out")
        .arg(dir.join("ca.pem")));
    dir.join("ca.pem")
}

/// A certificate for `names` signed by the CA in `ca_dir`, with serial `serial`: the
/// certificate followed by its key, as HAProxy reads a PEM.
fn make_cert(ca_dir: &Path, names: &[&str], serial: u32) -> String {
    let work = tempfile::tempdir().expect("temp dir");
    let w = work.path();
    run(Command::new("openssl")
        .args([
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args(["-subj", &format!("/CN={}", names[0])])
        .arg("-keyout")
        .arg(w.join("leaf.key"))
        .arg("-out")
        .arg(w.join("leaf.csr")));
    let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        w.join("ext.cnf"),
        format!("subjectAltName={}\n", san.join(",")),
    )
    .unwrap();
    run(Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-days",
            "2",
            "-set_serial",
            &serial.to_string(),
        ])
        .arg("-in")
        .arg(w.join("leaf.csr"))
        .arg("-CA")
        .arg(ca_dir.join("ca.pem"))
        .arg("-CAkey")
        .arg(ca_dir.join("ca.key"))
        .arg("-extfile")
        .arg(w.join("ext.cnf"))
        .arg("-out")
        .arg(w.join("leaf.crt")));
    let crt = std::fs::read_to_string(w.join("leaf.crt")).unwrap();
    let key = std::fs::read_to_string(w.join("leaf.key")).unwrap();
    format!("{crt}{key}")
}

/// Writes a PEM into the certificate directory as a renewal tool would: a temporary file
/// renamed over the old one.
fn install(dir: &Path, file: &str, pem: &str) {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

/// What curl gets for `url` with `host` resolved to 127.0.0.1 and the CA trusted: (exit code,
/// HTTP status, HTTP version, body, headers, certificates' text).
struct Curl {
    code: i32,
    status: String,
    version: String,
    body: String,
    headers: String,
    serials: String,
}

fn curl(ca: &Path, host: &str, port: u16, scheme: &str, extra: &[&str]) -> Curl {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--noproxy", "*"])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
        .args([
            "-D",
            "-",
            "-w",
            "\n@@curl@@%{http_code} %{http_version}\n%{certs}",
        ])
        .args(extra)
        .arg(format!("{scheme}://{host}:{port}/"))
        .stderr(Stdio::piped())
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (answer, written) = text.split_once("\n@@curl@@").unwrap_or((&text, ""));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or(("", answer));
    let (status_line, certs) = written.split_once('\n').unwrap_or((written, ""));
    let (status, version) = status_line.split_once(' ').unwrap_or(("", ""));
    Curl {
        code: out.status.code().unwrap_or(-1),
        status: status.to_string(),
        version: version.to_string(),
        body: body.to_string(),
        headers: head.to_ascii_lowercase(),
        serials: certs.to_string(),
    }
}

fn register(name: &str, node: &str, port: u16, meta: Value) -> Value {
    json!({
        "Node": node, "Address": "127.0.0.1",
        "Service": {"Service": name, "ID": format!("{name}-{port}"), "Port": port, "Meta": meta},
        "Check": {"CheckID": format!("{name}-{port}-ok"), "Name": "ok", "Status": "passing",
                  "ServiceID": format!("{name}-{port}")}
    })
}

async fn eventually<T>(what: &str, lb: &Balancer, mut ok: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = ok() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened; lbconf log:\n{}\nhaproxy log:\n{}",
            lb.lbconf_log(),
            lb.haproxy_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_by_sni_with_h2_redirects_hsts_stickiness_and_passthrough() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = make_ca(dir);
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    install(&certs, "a.test.pem", &make_cert(dir, &["a.test"], 1));
    install(&certs, "b.test.pem", &make_cert(dir, &["b.test"], 2));
    install(&certs, "wild.pem", &make_cert(dir, &["*.wild.test"], 3));

    let c = Catalogd::start().await;
    let (_a, port_a) = backend(dir, "alpha");
    let (_b, port_b) = backend(dir, "beta");
    let (_s1, port_s1) = backend(dir, "sticky-1");
    let (_s2, port_s2) = backend(dir, "sticky-2");
    // A backend that terminates TLS itself, with its own certificate for p.test.
    let p_pem = dir.join("p.pem");
    std::fs::write(&p_pem, make_cert(dir, &["p.test"], 4)).unwrap();
    let port_p = free_port();
    let _p = Proc(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &port_p.to_string()])
            .arg("-cert")
            .arg(&p_pem)
            .arg("-key")
            .arg(&p_pem)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl s_server"),
    );
    cairn_tests::wait_listening(port_p, "openssl s_server");
    let registrations = [
        register(
            "alpha",
            "n1",
            port_a,
            json!({"lb_vhost": "a.test", "lb_tls": "true", "lb_timeout": "2s", "lb_maxconn": "50"}),
        ),
        register(
            "beta",
            "n1",
            port_b,
            json!({"lb_vhost": "b.test", "lb_redirect_https": "true", "lb_hsts": "true"}),
        ),
        register(
            "sticky",
            "n1",
            port_s1,
            json!({"lb_vhost": "s.wild.test", "lb_tls": "true", "lb_sticky": "true"}),
        ),
        register(
            "sticky",
            "n2",
            port_s2,
            json!({"lb_vhost": "s.wild.test", "lb_tls": "true", "lb_sticky": "true"}),
        ),
        register(
            "secure",
            "n1",
            port_p,
            json!({"lb_vhost": "p.test", "lb_tls_passthrough": "true"}),
        ),
    ];
    for r in &registrations {
        assert_eq!(c.http.put_json("/v1/catalog/register", r).await.status, 200);
    }
    let metrics_port = free_port();
    let lb = Balancer::start(
        dir,
        &c.url,
        BalancerOpts {
            tls_certs: Some(certs.clone()),
            extra_args: vec![
                "--haproxy-metrics".into(),
                format!("127.0.0.1:{metrics_port}"),
            ],
            ..Default::default()
        },
    )
    .await;
    let https = lb.https_port.expect("https port");

    // Each name gets its own certificate: curl checks it against the name and the CA.
    let a = eventually("a.test over HTTPS", &lb, || {
        let r = curl(&ca, "a.test", https, "https", &[]);
        (r.status == "200").then_some(r)
    })
    .await;
    assert_eq!((a.code, a.body.as_str()), (0, "alpha"));
    assert_eq!(a.version, "2", "HTTP/2 by ALPN");
    let a1 = curl(&ca, "a.test", https, "https", &["--http1.1"]);
    assert_eq!(a1.status, "200");
    assert!(a1.version.starts_with('1'), "{}", a1.version);
    // beta: plain HTTP is redirected, HTTPS answers with HSTS.
    let plain = curl(&ca, "b.test", lb.http_port, "http", &[]);
    assert_eq!(plain.status, "301", "{}", plain.headers);
    assert!(
        plain
            .headers
            .contains(&format!("location: https://b.test:{}/", lb.http_port))
            || plain.headers.contains("location: https://b.test"),
        "{}",
        plain.headers
    );
    let b = curl(&ca, "b.test", https, "https", &[]);
    assert_eq!((b.status.as_str(), b.body.as_str()), ("200", "beta"));
    assert!(
        b.headers
            .contains("strict-transport-security: max-age=31536000"),
        "{}",
        b.headers
    );
    // alpha is not redirected (it did not ask) and its HTTPS answers carry no HSTS.
    let alpha_plain = curl(&ca, "a.test", lb.http_port, "http", &[]);
    assert_eq!(alpha_plain.body, "alpha");
    assert!(!a.headers.contains("strict-transport-security"));

    // A wildcard certificate, and stickiness: a client with the cookie keeps its instance.
    let cookie_jar = dir.join("cookies.txt");
    let jar = cookie_jar.display().to_string();
    let first = curl(&ca, "s.wild.test", https, "https", &["-c", &jar]);
    assert_eq!(first.code, 0, "the wildcard certificate covers s.wild.test");
    assert!(
        first.headers.contains("set-cookie: lbconf_srv="),
        "{}",
        first.headers
    );
    for _ in 0..10 {
        let again = curl(&ca, "s.wild.test", https, "https", &["-b", &jar]);
        assert_eq!(again.body, first.body, "a sticky client changed instance");
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(curl(&ca, "s.wild.test", https, "https", &[]).body);
    }
    assert_eq!(
        seen.len(),
        2,
        "without the cookie both instances serve: {seen:?}"
    );

    // Passed through: the backend's own certificate for p.test, not HAProxy's.
    let p = curl(&ca, "p.test", https, "https", &["--http1.1"]);
    assert_eq!((p.code, p.status.as_str()), (0, "200"), "{}", p.headers);
    assert!(p.serials.contains(&serial_line(4)), "{}", p.serials);

    // The per-service limits are in the config HAProxy runs.
    let cfg = std::fs::read_to_string(&lb.cfg).unwrap();
    assert!(cfg.contains("timeout server 2000ms"), "{cfg}");
    assert!(cfg.contains("maxconn 50"), "{cfg}");

    // HAProxy's own exporter and stats.
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .expect("exporter")
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("haproxy_frontend_http_requests_total"),
        "{metrics}"
    );
    let stats = reqwest::get(format!("http://127.0.0.1:{metrics_port}/stats"))
        .await
        .expect("stats")
        .status();
    assert_eq!(stats, 200);
}

/// How curl's `%{certs}` shows a certificate's serial number (hex).
fn serial_line(serial: u32) -> String {
    format!("Serial Number:{serial:02x}\n")
}

/// The serial numbers of the certificates curl was shown for `host`.
fn serving(ca: &Path, host: &str, port: u16) -> Option<String> {
    let r = curl(ca, host, port, "https", &["--http1.1"]);
    (r.code == 0 && r.status == "200").then_some(r.serials)
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_rotate_under_load_without_a_failed_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = make_ca(dir);
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    install(
        &certs,
        "localhost.pem",
        &make_cert(dir, &["localhost"], 100),
    );
    let c = Catalogd::start().await;
    let (_web, port) = backend(dir, "web");
    let (_other, other_port) = backend(dir, "other");
    let r = register(
        "web",
        "n1",
        port,
        json!({"lb_vhost": "localhost", "lb_tls": "true"}),
    );
    assert_eq!(
        c.http.put_json("/v1/catalog/register", &r).await.status,
        200
    );
    let lb = Balancer::start(
        dir,
        &c.url,
        BalancerOpts {
            tls_certs: Some(certs.clone()),
            ..Default::default()
        },
    )
    .await;
    let https = lb.https_port.expect("https port");
    eventually("localhost over HTTPS", &lb, || {
        serving(&ca, "localhost", https)
    })
    .await;
    let reloads = |lb: &Balancer| lb.lbconf_log().matches("HAProxy reloaded").count();
    let reloads_before = reloads(&lb);

    // wrk keeps 8 connections busy over HTTPS while the certificate is renewed 5 times.
    let wrk = Command::new("wrk")
        .args(["-t", "1", "-c", "8", "-d", "25s", "--latency"])
        .arg(format!("https://localhost:{https}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk is not installed: run scripts/test");
    for serial in 101..106 {
        install(
            &certs,
            "localhost.pem",
            &make_cert(dir, &["localhost"], serial),
        );
        let want = serial_line(serial);
        eventually(&format!("certificate {serial} served"), &lb, || {
            serving(&ca, "localhost", https).filter(|s| s.contains(&want))
        })
        .await;
    }

    // A broken PEM is refused and the last good certificate keeps serving.
    install(
        &certs,
        "localhost.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    eventually("the broken PEM refused in the log", &lb, || {
        lb.lbconf_log().contains("localhost.pem").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let still = serving(&ca, "localhost", https).expect("HTTPS still served");
    assert!(still.contains(&serial_line(105)), "{still}");

    // A new name appears: served once its PEM is there, with no reload either.
    let r = register(
        "other",
        "n1",
        other_port,
        json!({"lb_vhost": "other.test", "lb_tls": "true"}),
    );
    assert_eq!(
        c.http.put_json("/v1/catalog/register", &r).await.status,
        200
    );
    install(
        &certs,
        "other.test.pem",
        &make_cert(dir, &["other.test"], 200),
    );
    eventually(
        "other.test over HTTPS with its own certificate",
        &lb,
        || {
            let r = curl(&ca, "other.test", https, "https", &[]);
            (r.code == 0 && r.body == "other").then_some(())
        },
    )
    .await;

    let out = wrk.wait_with_output().expect("wrk");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests: u64 = report
        .lines()
        .find_map(|l| {
            l.trim()
                .split_once(" requests in ")
                .map(|(n, _)| n.trim().to_string())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(requests > 100, "{report}");
    assert!(
        !report.contains("Non-2xx"),
        "failed requests during rotation:\n{report}"
    );
    assert!(
        !report.contains("Socket errors"),
        "failed requests during rotation:\n{report}"
    );
    // Renewals went through the runtime API (the new service alone reloaded once).
    assert!(
        reloads(&lb) <= reloads_before + 1,
        "certificate changes reloaded HAProxy:\n{}",
        lb.lbconf_log()
    );
}

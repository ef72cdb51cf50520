//! `healthcheck http` against a real HTTP server on loopback (and a real HTTPS one in Python):
//! status ranges, body matching, response-time thresholds, timeouts, redirects, method/headers/
//! body, refused connections, JSON output and TLS verification, each asserted on the exit code,
//! the Nagios line and its perfdata.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use cairn_tests::free_port;
use regex::Regex;
use serde_json::Value;

use crate::healthcheck_common::{HttpServer, assert_nagios_shape, data_file, healthcheck};

#[test]
fn ok_answer_gives_the_standard_line_and_perfdata() {
    let srv = HttpServer::start();
    let run = healthcheck(&["http", &srv.url("/ok")]);
    let line = run.expect(0, "HTTP OK - ").line();
    assert_nagios_shape(line);
    let re = Regex::new(
        r"^HTTP OK - HTTP/1\.1 200 OK, 11 bytes in \d+\.\d{3} s \| time=\d+\.\d{6}s;;;0 size=11B;;;0$",
    )
    .unwrap();
    assert!(re.is_match(line), "{line:?}");
    let time = run.perf_item("time");
    assert_eq!(time.uom, "s");
    assert!(time.value >= 0.0 && time.value < 5.0, "{line}");
    assert_eq!(run.perf_item("size").value, 11.0);
    assert_eq!(srv.ok_hits.load(std::sync::atomic::Ordering::Relaxed), 1);

    // --name relabels the line.
    healthcheck(&["http", "--name", "shop_web", &srv.url("/ok")]).expect(0, "shop_web OK - ");
}

#[test]
fn unexpected_status_is_critical_and_names_status_and_range() {
    let srv = HttpServer::start();
    let run = healthcheck(&["http", &srv.url("/status/503")]);
    let line = run.expect(2, "HTTP CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["unexpected status", "503", "expected 200-399"]);
    // The answer's time and size are still reported.
    assert!(run.perf_item("time").raw.ends_with(";;;0"), "{line}");
    assert_eq!(run.perf_item("size").raw, "size=10B;;;0");

    // 503 accepted explicitly.
    let run = healthcheck(&["http", "--expect-status", "503", &srv.url("/status/503")]);
    run.expect(0, "HTTP OK - ").contains_all(&["503"]);
    // Ranges and lists.
    healthcheck(&["http", "-e", "200-299,404", &srv.url("/status/404")]).expect(0, "HTTP OK - ");
    let run = healthcheck(&["http", "-e", "200-299,404", &srv.url("/status/500")]);
    run.expect(2, "HTTP CRITICAL - ")
        .contains_all(&["500", "expected 200-299,404"]);
    // 4xx outside the default range.
    healthcheck(&["http", &srv.url("/status/404")])
        .expect(2, "HTTP CRITICAL - ")
        .contains_all(&["404", "expected 200-399"]);
}

#[test]
fn body_contains_and_regex() {
    let srv = HttpServer::start();
    healthcheck(&["http", "--contains", "lo wor", &srv.url("/ok")]).expect(0, "HTTP OK - ");
    let run = healthcheck(&["http", "--contains", "goodbye", &srv.url("/ok")]);
    run.expect(2, "HTTP CRITICAL - ")
        .contains_all(&["does not contain", "goodbye"]);
    assert_eq!(run.perf_item("size").value, 11.0);

    healthcheck(&["http", "--regex", r"^hello\s+w.rld$", &srv.url("/ok")]).expect(0, "HTTP OK - ");
    healthcheck(&["http", "-s", "hello", "-r", "w[aeiou]rld", &srv.url("/ok")])
        .expect(0, "HTTP OK - ");
    healthcheck(&["http", "--regex", r"xyz\d+", &srv.url("/ok")])
        .expect(2, "HTTP CRITICAL - ")
        .contains_all(&["does not match", r"xyz\d+"]);
    // Both given: either failing is CRITICAL.
    healthcheck(&["http", "-s", "hello", "-r", "^nope", &srv.url("/ok")])
        .expect(2, "HTTP CRITICAL - ");
}

#[test]
fn response_time_thresholds_warn_and_crit_with_thresholds_in_perfdata() {
    let srv = HttpServer::start();
    let url = srv.url("/slow?ms=200");
    let run = healthcheck(&["http", "-w", "0.05", "-c", "5", &url]);
    let line = run.expect(1, "HTTP WARNING - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["200 OK", "warning threshold", "0.050"]);
    let time = run.perf_item("time");
    assert_eq!(time.fields, ["0.050", "5.000", "0"], "{line}");
    assert!(
        time.value >= 0.2 && time.value < 5.0,
        "took {}: {line}",
        time.value
    );
    assert!(
        Regex::new(r"^time=\d+\.\d{6}s;0\.050;5\.000;0$")
            .unwrap()
            .is_match(&time.raw),
        "{}",
        time.raw
    );

    let run = healthcheck(&["http", "-c", "0.05", &url]);
    let line = run.expect(2, "HTTP CRITICAL - ").line();
    run.contains_all(&["critical threshold", "0.050"]);
    assert_eq!(run.perf_item("time").fields, ["", "0.050", "0"], "{line}");

    // Both exceeded: CRITICAL wins. Durations like 50ms are accepted too.
    let run = healthcheck(&["http", "-w", "50ms", "-c", "100ms", &url]);
    run.expect(2, "HTTP CRITICAL - ");
    assert_eq!(run.perf_item("time").fields, ["0.050", "0.100", "0"]);

    // A fast answer under both thresholds is OK and still carries them.
    let run = healthcheck(&["http", "-w", "4", "-c", "5", &srv.url("/ok")]);
    run.expect(0, "HTTP OK - ");
    assert_eq!(run.perf_item("time").fields, ["4.000", "5.000", "0"]);
}

#[test]
fn slow_endpoint_times_out_as_critical() {
    let srv = HttpServer::start();
    let run = healthcheck(&["http", "-t", "0.3", &srv.url("/slow?ms=3000")]);
    let line = run.expect(2, "HTTP CRITICAL - ").line();
    assert_nagios_shape(line);
    // It gave up at its timeout (it says so) after waiting for it.
    run.contains_all(&["timed out", "0.300"]);
    let t = run.perf_item("time");
    assert!(t.value >= 0.29, "{line}");
}

#[test]
fn redirects_are_judged_unless_followed() {
    let srv = HttpServer::start();
    let run = healthcheck(&["http", &srv.url("/redirect")]);
    run.expect(0, "HTTP OK - ").contains_all(&["302"]);
    assert_eq!(srv.ok_hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Not followed: the redirect itself is judged against the expected range.
    healthcheck(&["http", "-e", "200", &srv.url("/redirect")])
        .expect(2, "HTTP CRITICAL - ")
        .contains_all(&["302", "expected 200"]);

    let run = healthcheck(&["http", "-L", "--contains", "hello", &srv.url("/redirect")]);
    run.expect(0, "HTTP OK - ").contains_all(&["200 OK"]);
    assert_eq!(run.perf_item("size").value, 11.0);
    assert_eq!(srv.ok_hits.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[test]
fn method_headers_and_body_reach_the_server() {
    let srv = HttpServer::start();
    let run = healthcheck(&[
        "http",
        "-X",
        "POST",
        "-H",
        "X-Test: yes",
        "-d",
        "payload-42",
        "--contains",
        "POST x-test=yes body=payload-42",
        &srv.url("/echo"),
    ]);
    run.expect(0, "HTTP OK - ");
    assert_eq!(
        run.perf_item("size").value,
        "POST x-test=yes body=payload-42".len() as f64
    );
    // Defaults: GET, no header, no body; a lowercase method is accepted.
    healthcheck(&["http", "-s", "GET x-test=- body=", &srv.url("/echo")]).expect(0, "HTTP OK - ");
    healthcheck(&[
        "http",
        "-X",
        "put",
        "--header",
        "x-test:  spaced ",
        "-s",
        "PUT x-test=spaced body=",
        &srv.url("/echo"),
    ])
    .expect(0, "HTTP OK - ");
}

#[test]
fn refused_connection_is_critical_and_says_so() {
    let port = free_port();
    let run = healthcheck(&["http", &format!("http://127.0.0.1:{port}/")]);
    let line = run.expect(2, "HTTP CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["connection refused", &format!("127.0.0.1:{port}")]);
    assert!(run.perf_item("time").raw.ends_with("s;;;0"), "{line}");
}

#[test]
fn json_output_is_structured() {
    let srv = HttpServer::start();
    let run = healthcheck(&["--json", "http", &srv.url("/ok")]);
    run.assert_code(0);
    let v: Value = serde_json::from_str(run.line()).expect("--json prints JSON");
    assert_eq!(v["label"], "HTTP");
    assert_eq!(v["status"], "ok");
    assert!(v["message"].as_str().unwrap().contains("200 OK"), "{v}");
    assert!(v["duration"].as_f64().unwrap() >= 0.0);
    let perf = v["perfdata"].as_array().expect("perfdata is a list");
    assert_eq!(perf.len(), 2, "{v}");
    assert_eq!(perf[0]["label"], "time");
    assert_eq!(perf[0]["uom"], "s");
    assert_eq!(perf[0]["min"], 0.0);
    assert_eq!(perf[1]["label"], "size");
    assert_eq!(perf[1]["value"], 11.0);
    assert_eq!(perf[1]["uom"], "B");

    // The flag also works after the subcommand; the exit code is still the status.
    let run = healthcheck(&["http", &srv.url("/status/503"), "--json", "-w", "4"]);
    run.assert_code(2);
    let v: Value = serde_json::from_str(run.line()).expect("--json prints JSON");
    assert_eq!(v["status"], "critical");
    assert!(v["message"].as_str().unwrap().contains("503"), "{v}");
    assert_eq!(v["perfdata"][0]["warn"], 4.0);
}

/// A Python HTTPS server with a fresh self-signed certificate, on 127.0.0.1.
struct HttpsServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl HttpsServer {
    fn start() -> HttpsServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, cert) = (dir.path().join("k"), dir.path().join("c"));
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .args([
                "-subj",
                "/CN=localhost",
                "-days",
                "1",
                "-addext",
                "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ])
            .output()
            .expect("running openssl (install it: scripts/test)");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(data_file("https_server.py"))
            .arg(port.to_string())
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 https_server.py");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("reading the server's ready line");
        assert_eq!(first.trim(), "ready", "https_server.py did not start");
        HttpsServer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.child.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.child.wait();
    }
}

#[test]
fn tls_self_signed_fails_verification_unless_insecure() {
    let srv = HttpsServer::start();
    let url = format!("https://127.0.0.1:{}/", srv.port);
    let run = healthcheck(&["http", "-t", "5", &url]);
    let line = run.expect(2, "HTTP CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["TLS", "certificate"]);

    let run = healthcheck(&["http", "-k", "-t", "5", "--contains", "secure", &url]);
    run.expect(0, "HTTP OK - ").contains_all(&["200 OK"]);
    assert_eq!(run.perf_item("size").raw, "size=6B;;;0");
}

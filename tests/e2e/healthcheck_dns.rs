//! `healthcheck dns` against a real DNS server (dnsmasq) on a loopback port: A, SRV and TXT
//! answers, expected values present or missing, NXDOMAIN and REFUSED, a 40-record answer that
//! is truncated over UDP and must be fetched again over TCP, no server at all, and bad
//! arguments. Every check names the server explicitly; nothing uses the system resolver.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::free_port;

use crate::healthcheck_common::{Run, assert_nagios_shape, healthcheck};

/// Records in `many.test`: more than fit in a 512-byte UDP answer.
const MANY: usize = 40;

/// A dnsmasq in the foreground on 127.0.0.1:PORT, authoritative for a few test names only.
struct Dnsmasq {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Dnsmasq {
    fn start() -> Dnsmasq {
        let exe = which("dnsmasq").unwrap_or_else(|| {
            panic!(
                "dnsmasq is not installed (package dnsmasq-base); run scripts/test to set up the \
                 test dependencies"
            )
        });
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-poll".into(),
            "--bind-interfaces".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={port}"),
            "--pid-file=".into(),
            "--log-facility=-".into(),
            // Unknown names under .test are NXDOMAIN; anything else is REFUSED (no upstream).
            "--local=/test/".into(),
            "--address=/web.test/127.0.0.7".into(),
            "--srv-host=_web._tcp.web.test,node1.test,8080".into(),
            "--host-record=node1.test,127.0.0.9".into(),
            "--txt-record=txt.test,hello".into(),
        ];
        for i in 1..=MANY {
            args.push(format!("--host-record=many.test,127.0.1.{i}"));
        }
        let child = Command::new(exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("starting dnsmasq");
        let mut d = Dnsmasq { child, port, log };
        d.wait_ready();
        d
    }

    /// dnsmasq listens on TCP and UDP together; once TCP accepts, it answers.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dnsmasq exited with {status}; log:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not listen within 10 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `healthcheck dns NAME --server THIS ARGS...`.
    fn check(&self, name: &str, args: &[&str]) -> Run {
        let server = self.server();
        let mut all = vec!["dns", name, "--server", server.as_str(), "-t", "5"];
        all.extend_from_slice(args);
        healthcheck(&all)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.child.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[test]
fn a_record_with_expected_answer() {
    let dns = Dnsmasq::start();
    let run = dns.check("web.test", &["--expect", "127.0.0.7"]);
    let line = run.expect(0, "DNS OK - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["web.test", "127.0.0.7"]);
    let time = run.perf_item("time");
    assert_eq!(time.uom, "s");
    assert!(time.raw.ends_with("s;;;0"), "{line}");
    assert!(time.value < 5.0, "{line}");

    // Without --expect any answer is fine; a trailing dot and capitals are the same name.
    dns.check("Web.Test.", &[]).expect(0, "DNS OK - ");
    // A host record; --name relabels the line.
    dns.check("node1.test", &["-a", "127.0.0.9", "--name", "node1"])
        .expect(0, "node1 OK - ");
}

#[test]
fn missing_expected_answer_is_critical() {
    let dns = Dnsmasq::start();
    let run = dns.check("web.test", &["--expect", "10.9.9.9"]);
    let line = run.expect(2, "DNS CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["expected 10.9.9.9 not in the answer", "127.0.0.7"]);
    // One present and one missing: still CRITICAL, naming the missing one only.
    let run = dns.check("web.test", &["-a", "127.0.0.7", "-a", "10.9.9.8"]);
    run.expect(2, "DNS CRITICAL - ")
        .contains_all(&["expected 10.9.9.8 not in the answer"]);
}

#[test]
fn nxdomain_and_refused_name_the_response_code() {
    let dns = Dnsmasq::start();
    let run = dns.check("missing.test", &[]);
    let line = run.expect(2, "DNS CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["missing.test"]);
    let lower = line.to_ascii_lowercase();
    assert!(
        lower.contains("nxdomain") || lower.contains("non-existent domain"),
        "the message names NXDOMAIN: {line:?}"
    );

    // No upstream for names outside .test: dnsmasq refuses.
    let run = dns.check("elsewhere.example", &[]);
    let line = run.expect(2, "DNS CRITICAL - ").line();
    run.contains_all(&["elsewhere.example"]);
    assert!(
        line.contains("Query Refused") || line.contains("REFUSED"),
        "the message names REFUSED: {line:?}"
    );

    // A name with records but none of the asked type: CRITICAL, saying the answer is empty.
    let run = dns.check("node1.test", &["--type", "AAAA"]);
    run.expect(2, "DNS CRITICAL - ")
        .contains_all(&["no AAAA records", "node1.test"]);
}

#[test]
fn srv_and_txt_records() {
    let dns = Dnsmasq::start();
    let run = dns.check(
        "_web._tcp.web.test",
        &["--type", "SRV", "--expect", "0 0 8080 node1.test."],
    );
    let line = run.expect(0, "DNS OK - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["SRV", "8080", "node1.test"]);
    // The root dot is optional in an expected value.
    dns.check(
        "_web._tcp.web.test",
        &["-q", "srv", "-a", "0 0 8080 node1.test"],
    )
    .expect(0, "DNS OK - ");

    let run = dns.check("txt.test", &["--type", "TXT"]);
    run.expect(0, "DNS OK - ").contains_all(&["TXT", "hello"]);
    dns.check("txt.test", &["--type", "TXT", "--expect", "hello"])
        .expect(0, "DNS OK - ");
    dns.check("txt.test", &["--type", "TXT", "--expect", "goodbye"])
        .expect(2, "DNS CRITICAL - ")
        .contains_all(&["goodbye"]);
}

#[test]
fn truncated_udp_answer_is_fetched_over_tcp() {
    let dns = Dnsmasq::start();
    // Proof the UDP answer alone would not do: dnsmasq sets TC and sends fewer than 40.
    let udp = udp_answer_count(dns.port, "many.test");
    assert!(
        udp.0 && udp.1 < MANY,
        "dnsmasq should truncate the UDP answer: TC={} answers={}",
        udp.0,
        udp.1
    );

    let first = "127.0.1.1".to_string();
    let last = format!("127.0.1.{MANY}");
    let run = dns.check("many.test", &["-a", &first, "-a", &last]);
    let line = run.expect(0, "DNS OK - ").line();
    assert_nagios_shape(line);
    let text = run.text();
    for i in 1..=MANY {
        let ip = format!("127.0.1.{i}");
        assert!(
            text.split([' ', ',']).any(|w| w == ip),
            "{ip} missing from {line:?}"
        );
    }
    assert_eq!(text.matches("127.0.1.").count(), MANY, "{line}");
}

/// Asks `name` A over UDP by hand (no EDNS): (TC flag, answer count).
fn udp_answer_count(port: u16, name: &str) -> (bool, usize) {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(&q, ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("an answer from dnsmasq");
    assert!((12..=512).contains(&n), "a classic UDP answer: {n} bytes");
    let tc = buf[2] & 0x02 != 0;
    let ancount = usize::from(u16::from_be_bytes([buf[6], buf[7]]));
    (tc, ancount)
}

#[test]
fn no_server_listening_is_critical() {
    let port = free_port();
    let server = format!("127.0.0.1:{port}");
    let run = healthcheck(&["dns", "web.test", "--server", &server, "-t", "1"]);
    let line = run.expect(2, "DNS CRITICAL - ").line();
    assert_nagios_shape(line);
    assert!(
        line.contains("connection refused") || line.contains("no answer"),
        "says refused or no answer: {line:?}"
    );
    run.contains_all(&[&server]);
}

#[test]
fn bad_arguments_are_unknown() {
    let dns = Dnsmasq::start();
    let run = dns.check("web.test", &["--type", "BOGUS"]);
    run.expect(3, "HEALTHCHECK UNKNOWN - ")
        .contains_all(&["BOGUS"]);
    // A server must be an IP (a name would need the system resolver).
    let run = healthcheck(&["dns", "web.test", "--server", "dns.example"]);
    run.expect(3, "HEALTHCHECK UNKNOWN - ")
        .contains_all(&["dns.example"]);
    let run = healthcheck(&["dns", "web.test", "--server", "127.0.0.1:99999"]);
    run.expect(3, "HEALTHCHECK UNKNOWN - ");
    let run = dns.check("web.test", &["-t", "0"]);
    run.expect(3, "HEALTHCHECK UNKNOWN - ")
        .contains_all(&["timeout"]);
}

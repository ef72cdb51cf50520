//! dnsbridge's process life: SIGTERM (and SIGINT) stop it promptly with exit 0 and
//! "dnsbridge stopped" in the log — while answering, with an idle TCP client connected, and
//! with catalogd gone — and a DNS port already in use is a clear startup error.

use std::io::Read as _;
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, bin};
use hickory_proto::rr::RecordType;

use crate::dnsbridge_common::{Bridge, Inst};

/// "Promptly".
const STOP_WITHIN: Duration = Duration::from_secs(5);

async fn running() -> (Catalogd, Bridge) {
    let c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", "127.0.0.71", 80)
        .register(&c)
        .await;
    let b = Bridge::start(&c.url, &[]);
    b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.71"]);
    (c, b)
}

fn assert_clean_stop(b: &mut Bridge, signal: &str, label: &str) {
    let (status, took) = b.signal_and_wait(signal, STOP_WITHIN);
    println!("{label}: stopped {took:?} after kill {signal}");
    assert_eq!(
        status.code(),
        Some(0),
        "{label}: exit 0 after kill {signal}; log:\n{}",
        b.log_text()
    );
    let log = b.log_text();
    assert!(
        log.contains("dnsbridge stopped"),
        "{label}: the log says it stopped:\n{log}"
    );
    assert!(!log.contains("panicked"), "{label}: {log}");
    assert!(
        TcpStream::connect(b.addr()).is_err(),
        "{label}: the DNS port is closed after exit"
    );
}

#[tokio::test]
async fn sigterm_stops_it_cleanly() {
    let (_c, mut b) = running().await;
    assert_clean_stop(&mut b, "-TERM", "SIGTERM");
}

#[tokio::test]
async fn sigint_stops_it_cleanly() {
    let (_c, mut b) = running().await;
    assert_clean_stop(&mut b, "-INT", "SIGINT");
}

#[tokio::test]
async fn sigterm_with_an_idle_tcp_client_stops_promptly() {
    let (_c, mut b) = running().await;
    // A client that connected, asked nothing and keeps the connection open.
    let idle = TcpStream::connect(b.addr()).expect("connect");
    // And one that asked once and keeps the connection open.
    let mut asked = TcpStream::connect(b.addr()).expect("connect");
    {
        use std::io::Write as _;
        let q = crate::dnsbridge_common::query("web.service.consul", RecordType::A, None);
        let bytes = q.to_vec().expect("encode");
        let mut f = (bytes.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(&bytes);
        asked.write_all(&f).expect("write");
        asked
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        crate::dnsbridge_common::read_frame(&mut asked).expect("an answer");
    }
    assert_clean_stop(&mut b, "-TERM", "SIGTERM with idle TCP clients");
    drop((idle, asked));
}

#[tokio::test]
async fn sigterm_while_catalogd_is_gone() {
    let (mut c, mut b) = running().await;
    c.kill9();
    // The watch notices and enters its reconnect backoff.
    b.wait_log("catalog watch failed");
    let r = b.udp("web.service.consul", RecordType::A);
    assert_eq!(r.msg.answers.len(), 1, "{}", r.summary());
    assert_clean_stop(&mut b, "-TERM", "SIGTERM with catalogd down");
}

#[tokio::test]
async fn dns_port_in_use_is_a_startup_error() {
    let c = Catalogd::start().await;
    let taken = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let addr = taken.local_addr().expect("addr");
    let mut child = Command::new(bin("dnsbridge"))
        .args([
            "serve",
            "--catalog",
            &c.url,
            "--dns-addr",
            &addr.to_string(),
        ])
        .env_remove("CAIRN_CATALOG")
        .env_remove("CONSUL_HTTP_ADDR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting dnsbridge");
    // It gives up rather than serving without DNS: it exits (exit 1 and the error below). The
    // deadline is liveness only: a dnsbridge that kept running fails the test instead of
    // hanging it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for dnsbridge") {
            break status;
        }
        if Instant::now() > deadline {
            // The process may have exited already; the wait below reaps it either way.
            let _ = child.kill();
            // Only reaps it; how a killed process exited says nothing here.
            let _ = child.wait();
            panic!("dnsbridge kept running with its DNS address taken");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("reading dnsbridge's stderr");
    assert_eq!(status.code(), Some(1), "exit 1: {stderr}");
    assert!(
        stderr.contains("dnsbridge: error:") && stderr.contains(&addr.to_string()),
        "one error line naming the address: {stderr}"
    );
}

/// A dnsbridge (re)started while catalogd does not answer yet denies nothing: `dig` sees
/// SERVFAIL (which resolvers retry elsewhere and do not cache as a denial) until the first view,
/// then the real answer; never an NXDOMAIN for a name that exists.
#[tokio::test]
async fn before_its_first_view_it_answers_servfail_not_nxdomain() {
    let c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", "127.0.0.72", 80)
        .register(&c)
        .await;
    // catalogd frozen: dnsbridge's first catalog read waits.
    // SAFETY: kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(c.pid() as i32, libc::SIGSTOP) }, 0);
    let b = Bridge::start_unsynced(&c.url, &[]);
    for name in [
        "web.service.consul",
        "nope.service.consul",
        "n1.node.consul",
    ] {
        let d = b.dig(&[name, "A"]);
        assert_eq!(
            d.status, "SERVFAIL",
            "{name} before the first view:\n{}",
            d.out
        );
        assert!(d.answer.is_empty() && d.authority.is_empty(), "{}", d.out);
    }
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(c.pid() as i32, libc::SIGCONT) }, 0);
    b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.72"]);
    let d = b.dig(&["nope.service.consul", "A"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.out);
}

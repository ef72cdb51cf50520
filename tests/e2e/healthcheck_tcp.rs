//! `healthcheck tcp` against real TCP listeners on loopback: a plain connect, a PING/PONG
//! exchange, a reply without the expected text, a refused port, a listener that never answers
//! (timeout), a slow answer against thresholds, and bad addresses (UNKNOWN).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use cairn_tests::free_port;

use crate::healthcheck_common::{assert_nagios_shape, healthcheck};

/// How a test listener treats each connection.
#[derive(Clone, Copy)]
enum Mode {
    /// Answers "+PONG\r\n" to "PING\r\n" (after `delay`), then closes.
    Pong { delay: Duration },
    /// Accepts and keeps the connection open without ever writing.
    Silent,
}

/// A listener on 127.0.0.1:0 serving connections on background threads; returns its port.
fn listener(mode: Mode) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding a listener");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            match mode {
                Mode::Silent => held.push(conn),
                Mode::Pong { delay } => {
                    std::thread::spawn(move || {
                        // A fake server: a socket option that fails only makes the exchange below fail, which the test sees.
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                        let mut got = Vec::new();
                        let mut buf = [0u8; 256];
                        while !got.ends_with(b"PING\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        std::thread::sleep(delay);
                        // A client that left needs no answer.
                        let _ = conn.write_all(b"+PONG\r\n");
                    });
                }
            }
        }
    });
    port
}

#[test]
fn plain_connect_is_ok() {
    let port = listener(Mode::Pong {
        delay: Duration::ZERO,
    });
    let run = healthcheck(&["tcp", &format!("127.0.0.1:{port}")]);
    let line = run.expect(0, "TCP OK - ").line();
    assert_nagios_shape(line);
    run.contains_all(&[&format!("connected to 127.0.0.1:{port}")]);
    let time = run.perf_item("time");
    assert_eq!(time.uom, "s");
    assert!(time.raw.ends_with("s;;;0"), "{line}");
    assert!(time.value < 5.0, "{line}");

    // localhost is resolved (loopback) and --name relabels.
    healthcheck(&["tcp", "--name", "redis", &format!("localhost:{port}")]).expect(0, "redis OK - ");
}

#[test]
fn send_and_expect_a_reply() {
    let port = listener(Mode::Pong {
        delay: Duration::ZERO,
    });
    let addr = format!("127.0.0.1:{port}");
    let run = healthcheck(&["tcp", &addr, "--send", r"PING\r\n", "--expect", "PONG"]);
    let line = run.expect(0, "TCP OK - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["PONG", &addr]);
    assert!(run.perf_item("time").raw.ends_with("s;;;0"), "{line}");
    // The whole reply was read: 7 bytes.
    assert_eq!(run.perf_item("size").value, 7.0, "{line}");
    assert_eq!(run.perf_item("size").uom, "B", "{line}");

    // The server answers +PONG and closes: a missing expected string says it closed.
    let run = healthcheck(&["tcp", &addr, "--send", r"PING\r\n", "--expect", "NOPE"]);
    let line = run.expect(2, "TCP CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["closed without", "NOPE", "PONG"]);
}

#[test]
fn refused_port_is_critical() {
    let port = free_port();
    let run = healthcheck(&["tcp", &format!("127.0.0.1:{port}")]);
    let line = run.expect(2, "TCP CRITICAL - ").line();
    assert_nagios_shape(line);
    run.contains_all(&["connection refused", &format!("127.0.0.1:{port}")]);
    assert!(run.perf_item("time").raw.ends_with("s;;;0"), "{line}");
}

#[test]
fn silent_server_times_out_waiting_for_the_reply() {
    let port = listener(Mode::Silent);
    let addr = format!("127.0.0.1:{port}");
    // Connecting alone succeeds.
    healthcheck(&["tcp", &addr, "-t", "2"]).expect(0, "TCP OK - ");
    let run = healthcheck(&["tcp", &addr, "--expect", "X", "-t", "0.3"]);
    let line = run.expect(2, "TCP CRITICAL - ").line();
    assert_nagios_shape(line);
    // It gave up at its timeout (it says so) after waiting for it.
    run.contains_all(&["timed out", "0.300", "no expected reply", &addr]);
    let t = run.perf_item("time");
    assert!(t.value >= 0.29, "{line}");
}

#[test]
fn slow_reply_against_thresholds() {
    let port = listener(Mode::Pong {
        delay: Duration::from_millis(200),
    });
    let addr = format!("127.0.0.1:{port}");
    let ping = ["--send", r"PING\r\n", "--expect", "PONG"];
    let mut args = vec!["tcp", addr.as_str()];
    args.extend(ping);
    args.extend(["-w", "0.05", "-c", "5"]);
    let run = healthcheck(&args);
    let line = run.expect(1, "TCP WARNING - ").line();
    run.contains_all(&["warning threshold"]);
    let t = run.perf_item("time");
    assert_eq!(t.fields, ["0.050", "5.000", "0"], "{line}");
    assert!(t.value >= 0.2, "{line}");

    let mut args = vec!["tcp", addr.as_str()];
    args.extend(ping);
    args.extend(["-c", "0.05"]);
    let run = healthcheck(&args);
    run.expect(2, "TCP CRITICAL - ")
        .contains_all(&["critical threshold"]);
    assert_eq!(run.perf_item("time").fields, ["", "0.050", "0"]);
}

#[test]
fn bad_addresses_are_unknown() {
    for (addr, why) in [
        ("nohostport", "nohostport"),
        ("127.0.0.1:0", "not a port"),
        ("127.0.0.1:99999", "not a port"),
        ("127.0.0.1:http", "not a port"),
        (":8080", "missing host"),
    ] {
        let run = healthcheck(&["tcp", addr]);
        let line = run.expect(3, "HEALTHCHECK UNKNOWN - ").line();
        assert!(line.contains(why), "tcp {addr:?}: {line:?}");
    }
}

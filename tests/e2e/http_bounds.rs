//! Bounded HTTP serving (cairn-http) in catalogd, offerd and taskrun, driven by raw sockets as
//! misbehaving clients would: bodies too big or too slow (413/408, memory stays bounded),
//! connections past the cap, idle and slow-header clients, and catalogd's bounded write queue
//! (503 with `Retry-After`, nothing changed; every acknowledged write survives `kill -9`).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn_tests::Catalogd;
use cairn_tests::daemon::{ANY_PORT, Daemon};

/// A bound on reads from a socket, so that a server that never answers fails the test instead
/// of hanging it (the servers under test close within seconds).
const READ_BOUND: Duration = Duration::from_secs(30);
const MIB: usize = 1024 * 1024;

/// How a raw client sends its request body.
#[derive(Clone, Copy, Debug)]
enum BodyPlan {
    /// `len` bytes as fast as the socket takes them.
    Fast(usize),
    /// Chunked transfer encoding, `len` bytes as fast as the socket takes them, then nothing
    /// more (the body is never terminated).
    ChunkedFast(usize),
    /// `chunk` bytes every `every`, until the server closes the connection.
    Trickle { chunk: usize, every: Duration },
    /// `len` bytes, then nothing more while the connection stays open.
    Stall(usize),
}

/// What the server did with one raw request: the status line's code, or None when it closed
/// the connection without answering.
fn exchange(port: u16, head: String, send: BodyPlan) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
    stream.set_read_timeout(Some(READ_BOUND)).expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        // The server may answer and close before the body is all sent: write errors end it.
        let _ = writer.write_all(head.as_bytes());
        let block = vec![b'x'; 64 * 1024];
        match send {
            BodyPlan::Fast(len) => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(block.len());
                    if writer.write_all(&block[..n]).is_err() {
                        return;
                    }
                    left -= n;
                }
            }
            BodyPlan::ChunkedFast(len) => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(block.len());
                    let framed = [format!("{n:x}\r\n").as_bytes(), &block[..n], b"\r\n"].concat();
                    if writer.write_all(&framed).is_err() {
                        return;
                    }
                    left -= n;
                }
            }
            BodyPlan::Trickle { chunk, every } => {
                // A slow client's pace, not a wait for a state.
                while writer.write_all(&block[..chunk]).is_ok() {
                    std::thread::sleep(every);
                }
            }
            BodyPlan::Stall(len) => {
                // As above: the server may have closed already.
                let _ = writer.write_all(&block[..len]);
            }
        }
    });
    let status = read_status(&mut stream);
    // Unblocks a stalled or trickling sender; the server may have closed the socket already.
    let _ = stream.shutdown(std::net::Shutdown::Both);
    // The sender only writes and ignores its errors: a panic there is not this test's subject.
    let _ = sender.join();
    status
}

/// The status code of the first response on `stream`, or None if it closes first.
fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
}

/// Whether the server closed `stream` (EOF or reset) before READ_BOUND, having sent nothing.
fn closed_by_server(stream: &mut TcpStream) -> Result<(), String> {
    stream.set_read_timeout(Some(READ_BOUND)).expect("timeout");
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => Ok(()),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
        Ok(_) => Err("the server sent bytes on a connection with no request".into()),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(format!("still open after {READ_BOUND:?}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A field of /proc/PID/status in KiB (VmRSS: resident now; VmHWM: the peak).
fn mem_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn put_head(path: &str, extra: &str) -> String {
    format!("PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n")
}

/// Opens `n` connections that send nothing and checks that the server closes every one: past
/// the cap at once, the others at the idle timeout. Returns them, still open on our side.
async fn idle_sockets_all_closed(port: u16, n: usize) -> Vec<TcpStream> {
    tokio::task::spawn_blocking(move || {
        let mut socks: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connecting"))
            .collect();
        for (i, s) in socks.iter_mut().enumerate() {
            if let Err(e) = closed_by_server(s) {
                panic!("idle connection {i} of {n}: {e}");
            }
        }
        socks
    })
    .await
    .expect("idle sockets")
}

/// Polls `GET path` until it answers 200 (the server may still be closing idle connections).
async fn served(http: &cairn_tests::Http, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.try_send("GET", path, None).await
            && r.status == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "GET {path} never answered 200");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn catalogd_refuses_big_and_slow_bodies_and_memory_stays_bounded() {
    let c = Catalogd::start_with(&["--http-body-stall", "1s", "--http-body-timeout", "3s"]).await;
    let (port, pid) = (c.port, c.pid());
    let before = mem_kib(pid, "VmRSS");
    let mut jobs = Vec::new();
    let mut job = |head: String, send: BodyPlan, want: u16| {
        jobs.push((
            format!("{} {send:?}", head.lines().next().unwrap_or_default()),
            want,
            tokio::task::spawn_blocking(move || exchange(port, head, send)),
        ));
    };
    for i in 0..20 {
        // Declared 60 MB: refused before a byte of it is read (Consul's KV limit).
        job(
            put_head(&format!("/v1/kv/big-{i}"), "Content-Length: 62914560\r\n"),
            BodyPlan::Fast(60 * MIB),
            413,
        );
        // Undeclared length: cut once past 512 KiB.
        job(
            put_head(
                &format!("/v1/kv/chunked-{i}"),
                "Transfer-Encoding: chunked\r\n",
            ),
            BodyPlan::ChunkedFast(60 * MIB),
            413,
        );
    }
    for _ in 0..10 {
        // A snapshot restore may be big, but not slow: 4 KiB per 50 ms never finishes 60 MB.
        job(
            put_head("/v1/snapshot", "Content-Length: 62914560\r\n"),
            BodyPlan::Trickle {
                chunk: 4096,
                every: Duration::from_millis(50),
            },
            408,
        );
        // A body that stops coming.
        job(
            put_head("/v1/catalog/register", "Content-Length: 1000\r\n"),
            BodyPlan::Stall(10),
            408,
        );
    }
    let mut wrong = Vec::new();
    for (what, want, handle) in jobs {
        let got = handle.await.expect("raw client");
        if got != Some(want) {
            wrong.push(format!("{what}: {got:?}, want {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{}\nlog:\n{}",
        wrong.join("\n"),
        c.log_text()
    );
    // 20 x 60 MB were offered: the peak stays far below what holding them would take.
    let peak = mem_kib(pid, "VmHWM");
    assert!(
        peak < before + 200 * 1024,
        "catalogd grew from {before} KiB to a peak of {peak} KiB"
    );
    // Still serving, nothing stored by the refused requests.
    assert_eq!(c.http.put("/v1/kv/after", "ok").await.text(), "true");
    assert_eq!(c.http.get("/v1/kv/big-0").await.status, 404);
    assert_eq!(c.http.get("/v1/kv/chunked-0").await.status, 404);
}

#[tokio::test]
async fn catalogd_closes_connections_past_the_cap_and_idle_ones() {
    let c = Catalogd::start_with(&["--max-connections", "50", "--http-idle-timeout", "1s"]).await;
    let socks = idle_sockets_all_closed(c.port, 200).await;
    // Our side of those 200 is still open: the server's slots are free all the same.
    served(&c.http, "/v1/status/leader").await;
    assert!(
        c.log_text().contains("connection cap reached"),
        "the refusals are logged:\n{}",
        c.log_text()
    );
    drop(socks);
}

#[tokio::test]
async fn catalogd_cuts_slow_header_and_idle_keep_alive_clients() {
    let c = Catalogd::start_with(&["--http-idle-timeout", "1s"]).await;
    let port = c.port;
    tokio::task::spawn_blocking(move || {
        // Half a request head, then nothing.
        let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        slow.write_all(b"GET /v1/kv/x HTTP/1.1\r\nHo")
            .expect("writing");
        closed_by_server(&mut slow).expect("a slow request head is cut");
        // One answered request, then an idle keep-alive connection.
        let mut idle = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        idle.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("writing");
        idle.set_read_timeout(Some(READ_BOUND)).expect("timeout");
        let mut answer = [0u8; 4096];
        let n = idle.read(&mut answer).expect("an answer");
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            &answer[..n]
        );
        // The answer may have come in two reads: read until the server closes.
        loop {
            match idle.read(&mut answer) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("an idle keep-alive connection is closed: {e}"),
            }
        }
    })
    .await
    .expect("raw clients");
}

/// Reads one whole answer (head and a Content-Length body) from a kept-alive connection.
fn read_answer(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(READ_BOUND)).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("reading an answer");
        assert!(
            n > 0,
            "closed before a whole answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length");
        if body.len() >= len {
            return text;
        }
    }
}

#[tokio::test]
async fn catalogd_idle_timeout_spares_a_blocking_query_and_counts_from_its_answer() {
    let c = Catalogd::start_with(&["--http-idle-timeout", "1s"]).await;
    assert_eq!(c.http.put("/v1/kv/parked", "v1").await.text(), "true");
    let index = c
        .http
        .get("/v1/kv/parked")
        .await
        .header("x-consul-index")
        .expect("an index")
        .to_owned();
    let port = c.port;
    tokio::task::spawn_blocking(move || {
        let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        // A blocking query that waits three idle timeouts with nothing changing: answered at
        // its wait, not cut at the idle timeout.
        let asked = Instant::now();
        conn.write_all(
            format!("GET /v1/kv/parked?index={index}&wait=3s HTTP/1.1\r\nHost: x\r\n\r\n")
                .as_bytes(),
        )
        .expect("writing");
        let answer = read_answer(&mut conn);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            asked.elapsed() >= Duration::from_secs(3),
            "the query waited its 3s: {:?}",
            asked.elapsed()
        );
        // Idle time counts from that answer: the same connection takes the next request.
        conn.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("writing");
        let answer = read_answer(&mut conn);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // And once idle for the timeout it is closed.
        let answered = Instant::now();
        closed_by_server(&mut conn).expect("an idle keep-alive connection is closed");
        assert!(
            answered.elapsed() >= Duration::from_millis(900),
            "closed only once idle for the timeout: {:?}",
            answered.elapsed()
        );
    })
    .await
    .expect("raw client");
}

#[tokio::test]
async fn catalogd_full_write_queue_answers_503_and_changes_nothing() {
    let mut c = Catalogd::start_with(&["--max-pending-writes", "1"]).await;
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    // Rounds of 64 concurrent writers until the queue was seen full (the first round almost
    // always does: one command waits while the writer syncs the previous one).
    for round in 0..50 {
        let mut writers = Vec::new();
        for i in 0..64 {
            let http = c.http.clone();
            let key = format!("q/{round}-{i}");
            writers.push(tokio::spawn(async move {
                let r = http.put(&format!("/v1/kv/{key}"), key.clone()).await;
                (key, r)
            }));
        }
        for w in writers {
            let (key, r) = w.await.expect("writer");
            match r.status {
                200 => {
                    assert_eq!(r.text(), "true", "{key}");
                    acknowledged.push(key);
                }
                503 => {
                    assert_eq!(r.header("retry-after"), Some("1"), "{key}: {r:?}");
                    assert!(
                        r.text().contains("--max-pending-writes"),
                        "{key}: the refusal names the limit: {}",
                        r.text()
                    );
                    refused.push(key);
                }
                s => panic!("{key}: {s} {}", r.text()),
            }
        }
        if !refused.is_empty() {
            break;
        }
    }
    assert!(!refused.is_empty(), "the write queue was never full");
    c.kill9();
    c.restart().await;
    for key in &acknowledged {
        let r = c.http.get(&format!("/v1/kv/{key}?raw")).await;
        assert_eq!(r.text(), *key, "acknowledged {key} survives kill -9");
    }
    for key in &refused {
        let r = c.http.get(&format!("/v1/kv/{key}")).await;
        assert_eq!(r.status, 404, "refused {key} changed nothing");
    }
}

/// Flags that make every bound small enough to hit in a test.
const SMALL_BOUNDS: [&str; 8] = [
    "--max-connections",
    "20",
    "--http-idle-timeout",
    "1s",
    "--http-body-stall",
    "1s",
    "--http-body-timeout",
    "3s",
];

async fn start_offerd(dir: &Path) -> Daemon {
    let mut args: Vec<String> = [
        "serve",
        "--http-addr",
        ANY_PORT,
        "--no-catalog",
        "--data-dir",
        &dir.join("data").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(SMALL_BOUNDS.iter().map(|s| s.to_string()));
    Daemon::start_any_port("offerd", args, "/ping", dir.join("offerd.log")).await
}

#[tokio::test]
async fn offerd_bounds_connections_and_bodies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let offerd = start_offerd(dir.path()).await;
    let port = offerd.port();
    let socks = idle_sockets_all_closed(port, 60).await;
    served(&offerd.http, "/ping").await;
    drop(socks);
    let post = |extra: &str| format!("POST /v2/apps HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
    let cases = [
        (
            post("Content-Length: 2097152\r\nExpect: 100-continue\r\n"),
            BodyPlan::Fast(2 * MIB),
            413,
        ),
        (
            post("Transfer-Encoding: chunked\r\n"),
            BodyPlan::ChunkedFast(2 * MIB),
            413,
        ),
        (post("Content-Length: 1000\r\n"), BodyPlan::Stall(10), 408),
        (
            post("Content-Length: 1000000\r\n"),
            BodyPlan::Trickle {
                chunk: 16,
                every: Duration::from_millis(100),
            },
            408,
        ),
    ];
    for (head, send, want) in cases {
        let what = format!("{send:?}");
        let got = tokio::task::spawn_blocking(move || exchange(port, head, send))
            .await
            .expect("raw client");
        assert_eq!(got, Some(want), "{what}\nlog:\n{}", offerd.log_text());
    }
    assert_eq!(offerd.http.get("/v2/apps").await.status, 200);
}

#[tokio::test]
async fn taskrun_bounds_connections_and_bodies() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Nothing listens there: the agent's API serves all the same.
    let nowhere = "http://127.0.0.1:9";
    let mut args: Vec<String> = [
        "agent",
        "--offerd",
        nowhere,
        "--catalog",
        nowhere,
        "--node",
        "bounds",
        "--http-addr",
        ANY_PORT,
        "--work-dir",
        &dir.path().join("work").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(SMALL_BOUNDS.iter().map(|s| s.to_string()));
    let agent =
        Daemon::start_any_port("taskrun", args, "/health", dir.path().join("taskrun.log")).await;
    let port = agent.port();
    let socks = idle_sockets_all_closed(port, 60).await;
    served(&agent.http, "/health").await;
    drop(socks);
    let get = |extra: &str| format!("GET /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n");
    // Past the 64 KiB default cap, declared.
    let head = get("Content-Length: 1048576\r\nExpect: 100-continue\r\n");
    let got = tokio::task::spawn_blocking(move || exchange(port, head, BodyPlan::Fast(MIB)))
        .await
        .expect("raw client");
    assert_eq!(got, Some(413), "log:\n{}", agent.log_text());
    // A stalled body the handler never reads: answered, and the connection does not stay.
    let got = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connecting");
        s.write_all(get("Content-Length: 1000\r\n").as_bytes())
            .expect("writing");
        s.write_all(b"0123456789").expect("writing");
        s.set_read_timeout(Some(READ_BOUND)).expect("timeout");
        let mut all = Vec::new();
        match s.read_to_end(&mut all) {
            Ok(_) => Ok(String::from_utf8_lossy(&all).into_owned()),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                Ok(String::from_utf8_lossy(&all).into_owned())
            }
            Err(e) => Err(format!("{e}; got {:?}", String::from_utf8_lossy(&all))),
        }
    })
    .await
    .expect("raw client");
    let text = got.expect("the connection is closed");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

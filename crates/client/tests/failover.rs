//! Failover between replicas (issue 16) over real sockets: scripted HTTP servers (hyper on
//! loopback) that record what they received and can be closed mid-request, addresses nobody
//! listens on (a listener bound and dropped), and a server that takes a request whole and hangs
//! up without answering. What is proven: a read moves on after any connection failure, a write
//! only when it was never sent; the endpoint that answered is kept; an answer (a 5xx too) is
//! not a failover; a Watch parked on a replica that goes away resumes on the next one with the
//! index it held, and waits for a replica that is behind instead of resetting.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_client::{CatalogClient, ClientError, KvPutOptions, QueryOptions, Watch, WatchConfig};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// What a scripted server does with the next request.
#[derive(Clone, Debug)]
enum Reply {
    /// 200 with this `X-Consul-Index` and body.
    Ok(u64, String),
    /// This status, index 1, a text body.
    Status(u16),
    /// Never answers (a blocking query held open, or a hung server).
    Park,
}

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

/// A scripted server. Closing it drops the listener and every open connection at once, as a
/// replica that dies does (the accept loop owns the connections' tasks).
struct Server {
    addr: SocketAddr,
    script: Arc<Script>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, replies)
    }

    fn on(listener: TcpListener, replies: Vec<Reply>) -> Server {
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Script {
            replies: Mutex::new(replies.into()),
            ..Default::default()
        });
        let shared = script.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let script = shared.clone();
                let service = hyper::service::service_fn(move |req| answer(script.clone(), req));
                connections.spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Server { addr, script, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }

    fn queries(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.query).collect()
    }

    /// Stops accepting and closes every connection, and returns once they are closed.
    async fn close(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    script: Arc<Script>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    script.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        body,
    });
    let reply = script.replies.lock().unwrap().pop_front();
    let (status, index, body) = match reply {
        Some(Reply::Ok(index, body)) => (200, index, body),
        Some(Reply::Status(status)) => (status, 1, format!("scripted {status}")),
        Some(Reply::Park) => std::future::pending().await,
        None => (500, 1, "script exhausted".to_string()),
    };
    let resp = Response::builder()
        .status(status)
        .header("X-Consul-Index", index)
        .header("X-Consul-KnownLeader", "true")
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    Ok(resp)
}

/// An address nothing listens on: a listener bound, then dropped (connections are refused).
fn dead() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A server that reads each request whole (head and `Content-Length` body), counts it, and
/// closes the connection without answering: a replica that died right after a write arrived.
async fn hang_up_after_reading() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let complete = loop {
                let Ok(n) = stream.read(&mut chunk).await else {
                    break false;
                };
                if n == 0 {
                    break false;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + length {
                        break true;
                    }
                }
            };
            if complete {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            let _ = stream.shutdown().await;
        }
    });
    (addr, count, task)
}

fn kv_body(key: &str, value: &str, index: u64) -> String {
    let b64 = cairn_wire::b64_encode(value.as_bytes());
    format!(
        r#"[{{"LockIndex":0,"Key":"{key}","Flags":0,"Value":"{b64}","CreateIndex":1,"ModifyIndex":{index}}}]"#
    )
}

fn kv(index: u64, value: &str) -> Reply {
    Reply::Ok(index, kv_body("k", value, index))
}

fn value(pair: Option<cairn_wire::KvPair>) -> String {
    String::from_utf8(pair.expect("the key exists").value_bytes()).unwrap()
}

fn client(urls: &[String]) -> CatalogClient {
    CatalogClient::new(&urls.join(","), None).unwrap()
}

fn fast() -> WatchConfig {
    WatchConfig {
        wait: Duration::from_secs(60),
        min_interval: Duration::ZERO,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
    }
}

/// Waits (up to 10 s) for `done`, polling every 10 ms.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_read_fails_over_from_a_refusing_endpoint_and_sticks() {
    let down = dead();
    let live = Server::start(vec![kv(4, "live"), kv(4, "live"), kv(4, "live")]).await;
    let c = client(&[format!("http://{down}"), live.url()]);
    let (pair, meta) = c.kv_get("k", &QueryOptions::default()).await.unwrap();
    assert_eq!(value(pair), "live");
    assert_eq!((meta.index, meta.endpoint), (4, 1));
    assert_eq!(
        c.endpoints().current(),
        1,
        "the endpoint that answered is kept"
    );
    assert_eq!(
        c.with_timeout(Duration::from_secs(5)).endpoints().current(),
        1,
        "by every clone"
    );

    // The first address comes back: requests stay where they are.
    let mut back = Server::on(TcpListener::bind(down).await.unwrap(), vec![kv(9, "back")]);
    for _ in 0..2 {
        let (pair, _) = c.kv_get("k", &QueryOptions::default()).await.unwrap();
        assert_eq!(value(pair), "live");
    }
    assert!(back.seen().is_empty(), "sticky: {:?}", back.seen());
    assert_eq!(live.seen().len(), 3);
    back.close().await;
}

#[tokio::test]
async fn a_write_to_a_refusing_endpoint_fails_over() {
    let live = Server::start(vec![Reply::Ok(1, "true".into())]).await;
    let c = client(&[format!("http://{}", dead()), live.url()]);
    let written = c
        .kv_put("k", b"v1", &KvPutOptions::default())
        .await
        .unwrap();
    assert!(written);
    let seen = live.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("PUT", "/v1/kv/k")
    );
    assert_eq!(seen[0].body, b"v1");
}

#[tokio::test]
async fn a_write_whose_connection_died_after_sending_is_not_sent_again() {
    let (cut, received, task) = hang_up_after_reading().await;
    let live = Server::start(vec![kv(3, "live")]).await;
    let c = client(&[format!("http://{cut}"), live.url()]);
    let err = c
        .kv_put("k", b"once", &KvPutOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Http { .. }), "{err}");
    assert!(err.to_string().contains(&cut.to_string()), "{err}");
    assert_eq!(received.load(Ordering::SeqCst), 1, "the write arrived");
    assert!(live.seen().is_empty(), "and was not sent again");
    assert_eq!(c.endpoints().current(), 0);

    // A read in the same situation may be sent twice: it moves on.
    let (pair, _) = c.kv_get("k", &QueryOptions::default()).await.unwrap();
    assert_eq!(value(pair), "live");
    assert_eq!(received.load(Ordering::SeqCst), 2);
    task.abort();
}

#[tokio::test]
async fn a_timeout_before_the_answer_moves_a_read_on_but_not_a_write() {
    let hung = Server::start(vec![Reply::Park, Reply::Park]).await;
    let live = Server::start(vec![kv(5, "live")]).await;
    let c = client(&[hung.url(), live.url()]).with_timeout(Duration::from_millis(300));
    let err = c
        .kv_put("k", b"v", &KvPutOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        live.seen().is_empty(),
        "a write that may have landed is not repeated"
    );
    let (pair, _) = c.kv_get("k", &QueryOptions::default()).await.unwrap();
    assert_eq!(value(pair), "live");
    assert_eq!(hung.seen().len(), 2);
}

#[tokio::test]
async fn a_server_error_is_an_answer_not_a_failover() {
    let failing = Server::start(vec![Reply::Status(500), Reply::Status(503)]).await;
    let live = Server::start(vec![kv(5, "live")]).await;
    let c = client(&[failing.url(), live.url()]);
    for want in [500, 503] {
        let err = c.kv_get("k", &QueryOptions::default()).await.unwrap_err();
        assert_eq!(err.status(), Some(want), "{err}");
    }
    assert!(live.seen().is_empty());
    assert_eq!(c.endpoints().current(), 0);
}

#[tokio::test]
async fn every_endpoint_down_is_one_error_naming_them() {
    let (a, b) = (dead(), dead());
    let c = client(&[format!("http://{a}"), format!("http://{b}")]);
    let err = c.kv_get("k", &QueryOptions::default()).await.unwrap_err();
    assert!(matches!(err, ClientError::Http { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("http://{b}/v1/kv/k")), "{text}");
    assert!(text.contains("every other address"), "{text}");
    assert!(text.contains(&a.to_string()), "{text}");
}

/// A watch parked on A (a blocking query with index 10) resumes on B when A goes away, with
/// index 10: B answers 11 and the watch yields it, having never asked for everything again.
#[tokio::test]
async fn a_parked_watch_resumes_on_the_next_replica_with_its_index() {
    let mut a = Server::start(vec![kv(10, "ten"), Reply::Park]).await;
    let b = Server::start(vec![kv(11, "eleven")]).await;
    let mut w = Watch::kv(client(&[a.url(), b.url()]), "k").with_config(fast());
    assert_eq!(value(w.next().await.unwrap()), "ten");
    let task = tokio::spawn(async move {
        let next = w.next().await;
        (next, w)
    });
    until("the watch to park on A", || a.seen().len() == 2).await;
    a.close().await;
    let (next, w) = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("resumed within 10 s")
        .unwrap();
    assert_eq!(value(next.unwrap()), "eleven");
    assert_eq!(w.index(), 11);
    assert_eq!(a.queries(), ["", "index=10&wait=60000ms"]);
    assert_eq!(
        b.queries(),
        ["index=10&wait=60000ms"],
        "the same index on B"
    );
}

/// After the failover B is behind (index 7 < the 10 held): the watch does not reset and refetch
/// (Consul's rule for an index going backwards) but asks B again with index 10 until B has
/// caught up, then yields B's newer data only.
#[tokio::test]
async fn a_replica_behind_after_failover_is_waited_for() {
    let mut a = Server::start(vec![kv(10, "ten"), Reply::Park]).await;
    let b = Server::start(vec![kv(7, "seven"), kv(8, "eight"), kv(12, "twelve")]).await;
    let mut w = Watch::kv(client(&[a.url(), b.url()]), "k").with_config(fast());
    let status = w.status();
    assert_eq!(value(w.next().await.unwrap()), "ten");
    let task = tokio::spawn(async move {
        let next = w.next().await;
        (next, w)
    });
    until("the watch to park on A", || a.seen().len() == 2).await;
    a.close().await;
    let (next, w) = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("caught up within 10 s")
        .unwrap();
    assert_eq!(value(next.unwrap()), "twelve", "7 and 8 were not yielded");
    assert_eq!(w.index(), 12);
    assert_eq!(
        b.queries(),
        ["index=10&wait=60000ms"; 3],
        "never index 0: nothing refetched"
    );
    let s = status.borrow().clone();
    assert_eq!((s.updates, s.failures, s.index), (2, 0, 12));
}

/// With one address nothing changes: an index going backwards still resets (Consul's rule).
#[tokio::test]
async fn one_address_keeps_consuls_reset() {
    let only = Server::start(vec![kv(10, "ten"), kv(7, "seven"), kv(8, "eight")]).await;
    let mut w = Watch::kv(client(&[only.url()]), "k").with_config(fast());
    assert_eq!(value(w.next().await.unwrap()), "ten");
    assert_eq!(value(w.next().await.unwrap()), "seven");
    assert_eq!(w.index(), 0);
    assert_eq!(value(w.next().await.unwrap()), "eight");
    assert_eq!(only.queries(), ["", "index=10&wait=60000ms", ""]);
}

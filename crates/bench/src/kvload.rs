//! `cairn-bench kv-load`: closed-loop KV load over keep-alive connections spread over several
//! servers (connection i goes to server i mod n), either catalogd's KV API or etcd's JSON gRPC
//! gateway, so that the two are driven by the same client, at the same concurrency and with the
//! same values:
//!
//! - `--api catalogd --op put`: `PUT /v1/kv/<prefix><conn>/<n>` (a new key every request),
//!   answered `true`
//! - `--api etcd --op put`: `POST /v3/kv/put` `{"key","value"}` (base64) with the same keys
//! - `--api catalogd --op get`: `GET /v1/kv/<key>` (default consistency: the replica's state)
//! - `--api etcd --op get`: `POST /v3/kv/range` `{"key"}` (etcd's default: linearizable)
//!
//! Each connection sends a request, reads the whole answer, and sends the next. After
//! `--warmup-s` the measured window of `--duration-s` starts: requests sent in it and answered
//! before it ends count. Output: one `result key=value ...` line on stdout (throughput, latency
//! percentiles, errors, and the CPU time of this process and of the `--cpu-pid` processes in
//! the window).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::task::JoinSet;

use crate::common::{self, Target};
use crate::http::{Conn, Response};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// catalogd's (Consul's) /v1/kv
    Catalogd,
    /// etcd's JSON gRPC gateway, /v3/kv/put and /v3/kv/range
    Etcd,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
}

/// Flags of `cairn-bench kv-load`.
#[derive(clap::Args, Debug)]
pub struct KvLoadArgs {
    /// Servers, comma-separated http://127.0.0.1:PORT (loopback only); connections are spread
    /// over them in turn
    #[arg(long, value_delimiter = ',', required = true)]
    url: Vec<String>,
    /// Which API the servers speak
    #[arg(long, value_enum, default_value = "catalogd")]
    api: Api,
    /// Writes (a new key each) or reads (of one key, written first)
    #[arg(long, value_enum)]
    op: Op,
    /// Concurrent connections (each one request at a time)
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Seconds of load before the measured window
    #[arg(long, default_value_t = 2.0)]
    warmup_s: f64,
    /// Value size in bytes
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Key prefix of the writes (letters, digits, `/_.-`)
    #[arg(long, default_value = "bench/put/")]
    prefix: String,
    /// The key the reads ask for (written once before they start)
    #[arg(long, default_value = "bench/get")]
    get_key: String,
    /// A request not answered within this many ms fails (and its connection is replaced)
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// NAME:PID of a process whose CPU time in the measured window is reported
    /// (`cpu_NAME_s=`); repeatable
    #[arg(long = "cpu-pid", value_name = "NAME:PID")]
    cpu_pids: Vec<String>,
}

/// What one connection saw in the measured window.
#[derive(Default)]
struct ConnStats {
    /// Latencies (µs) of successful requests.
    micros: Vec<u32>,
    /// Answers that were not the expected success.
    bad: u64,
    /// Send/read failures and timeouts.
    errors: u64,
    /// The first unexpected answer or error, for the diagnostics.
    first_problem: Option<String>,
}

/// The bytes of one request (keep-alive; `Content-Type: application/json` for etcd).
fn request(method: &str, host: &str, path: &str, body: &[u8], json: bool) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cairn-bench\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if json {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Builds the requests of one run.
struct Workload {
    api: Api,
    op: Op,
    prefix: String,
    value: Vec<u8>,
    value_b64: String,
    /// A read's request bytes per server (the same every time).
    get: Vec<Arc<[u8]>>,
}

impl Workload {
    fn new(args: &KvLoadArgs, targets: &[Target]) -> Workload {
        let value = vec![b'v'; args.value_size];
        let get = targets
            .iter()
            .map(|t| {
                match args.api {
                    Api::Catalogd => request(
                        "GET",
                        &t.host,
                        &format!("/v1/kv/{}", args.get_key),
                        b"",
                        false,
                    ),
                    Api::Etcd => request(
                        "POST",
                        &t.host,
                        "/v3/kv/range",
                        format!(r#"{{"key":"{}"}}"#, common::base64(args.get_key.as_bytes()))
                            .as_bytes(),
                        true,
                    ),
                }
                .into()
            })
            .collect();
        Workload {
            api: args.api,
            op: args.op,
            prefix: args.prefix.clone(),
            value_b64: common::base64(&value),
            value,
            get,
        }
    }

    /// Request `n` of connection `conn` (to server `server`).
    fn request(&self, server: usize, host: &str, conn: usize, n: u64) -> Arc<[u8]> {
        match (self.op, self.api) {
            (Op::Get, _) => self.get[server].clone(),
            (Op::Put, Api::Catalogd) => request(
                "PUT",
                host,
                &format!("/v1/kv/{}{conn}/{n}", self.prefix),
                &self.value,
                false,
            )
            .into(),
            (Op::Put, Api::Etcd) => {
                let key = common::base64(format!("{}{conn}/{n}", self.prefix).as_bytes());
                let body = format!(r#"{{"key":"{key}","value":"{}"}}"#, self.value_b64);
                request("POST", host, "/v3/kv/put", body.as_bytes(), true).into()
            }
        }
    }

    /// Whether `resp` is the success this request expects.
    fn ok(&self, resp: &Response) -> bool {
        if resp.status != 200 {
            return false;
        }
        match (self.op, self.api) {
            (Op::Put, Api::Catalogd) => resp.body == b"true",
            (Op::Put, Api::Etcd) => true,
            (Op::Get, Api::Catalogd) => resp.body.starts_with(b"["),
            (Op::Get, Api::Etcd) => resp.body.windows(6).any(|w| w == br#""kvs":"#),
        }
    }
}

/// One request/answer with a deadline.
async fn exchange(conn: &mut Conn, req: &[u8], timeout: Duration) -> anyhow::Result<Response> {
    tokio::time::timeout(timeout, async {
        conn.send(req).await?;
        conn.read_response().await
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))?
}

/// One connection's closed loop until `end`; counts what was sent at or after `start`.
async fn drive(
    work: Arc<Workload>,
    target: Target,
    server: usize,
    conn_id: usize,
    start: Instant,
    end: Instant,
    timeout: Duration,
) -> ConnStats {
    let mut stats = ConnStats::default();
    let mut conn: Option<Conn> = None;
    let mut n = 0u64;
    while Instant::now() < end {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match Conn::connect(target.addr).await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    if Instant::now() >= start {
                        stats.errors += 1;
                    }
                    stats
                        .first_problem
                        .get_or_insert_with(|| format!("connecting to {}: {e}", target.url));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        n += 1;
        let req = work.request(server, &target.host, conn_id, n);
        let sent = Instant::now();
        let result = exchange(c, &req, timeout).await;
        let done = Instant::now();
        let counted = sent >= start && done <= end;
        match result {
            Ok(resp) if work.ok(&resp) => {
                if counted {
                    let us = (done - sent).as_micros();
                    stats.micros.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
            }
            Ok(resp) => {
                if counted {
                    stats.bad += 1;
                }
                stats.first_problem.get_or_insert_with(|| {
                    format!(
                        "{}: status {}: {}",
                        target.url,
                        resp.status,
                        String::from_utf8_lossy(&resp.body[..resp.body.len().min(200)])
                    )
                });
                if resp
                    .header("Connection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                {
                    conn = None;
                }
            }
            Err(e) => {
                if sent >= start {
                    stats.errors += 1;
                }
                stats
                    .first_problem
                    .get_or_insert_with(|| format!("{}: {e:#}", target.url));
                conn = None;
            }
        }
    }
    stats
}

/// Writes the key the reads ask for, through the first server.
async fn prepare_get(args: &KvLoadArgs, work: &Workload, targets: &[Target]) -> anyhow::Result<()> {
    let t = &targets[0];
    let req = match args.api {
        Api::Catalogd => request(
            "PUT",
            &t.host,
            &format!("/v1/kv/{}", args.get_key),
            &work.value,
            false,
        ),
        Api::Etcd => {
            let body = format!(
                r#"{{"key":"{}","value":"{}"}}"#,
                common::base64(args.get_key.as_bytes()),
                work.value_b64
            );
            request("POST", &t.host, "/v3/kv/put", body.as_bytes(), true)
        }
    };
    let mut conn = Conn::connect(t.addr)
        .await
        .with_context(|| format!("connecting to {}", t.url))?;
    let resp = exchange(&mut conn, &req, Duration::from_secs(10)).await?;
    if resp.status != 200 {
        bail!(
            "writing {} through {}: status {}: {}",
            args.get_key,
            t.url,
            resp.status,
            String::from_utf8_lossy(&resp.body)
        );
    }
    // Every server must answer the read before the run starts (a replica applies the write
    // when etcd's watch brings it).
    let deadline = Instant::now() + Duration::from_secs(10);
    for (i, t) in targets.iter().enumerate() {
        let mut conn = Conn::connect(t.addr)
            .await
            .with_context(|| format!("connecting to {}", t.url))?;
        loop {
            let resp = exchange(&mut conn, &work.get[i], Duration::from_secs(10)).await?;
            if work.ok(&resp) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not answer the read of {} (status {})",
                    t.url,
                    args.get_key,
                    resp.status
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

pub async fn run(args: KvLoadArgs) -> anyhow::Result<()> {
    let targets = common::targets(&args.url)?;
    let key_ok = |k: &str| {
        k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
    };
    if !key_ok(&args.prefix) || args.get_key.is_empty() || !key_ok(&args.get_key) {
        bail!("--prefix and --get-key: use letters, digits and /_.- only");
    }
    if args.connections == 0
        || args.duration_s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    {
        bail!("--connections and --duration-s must be positive");
    }
    let pids = common::parse_pids(&args.cpu_pids)?;
    let work = Arc::new(Workload::new(&args, &targets));
    if args.op == Op::Get {
        prepare_get(&args, &work, &targets).await?;
    }
    let timeout = Duration::from_millis(args.timeout_ms);
    let start = Instant::now() + Duration::from_secs_f64(args.warmup_s.max(0.0));
    let end = start + Duration::from_secs_f64(args.duration_s);
    let mut set = JoinSet::new();
    for conn_id in 0..args.connections {
        let server = conn_id % targets.len();
        set.spawn(drive(
            work.clone(),
            targets[server].clone(),
            server,
            conn_id,
            start,
            end,
            timeout,
        ));
    }
    // CPU samples at the window's edges.
    tokio::time::sleep_until(start.into()).await;
    let own_before = common::cpu_time("self")?;
    let before = common::cpu_sample(&pids)?;
    tokio::time::sleep_until(end.into()).await;
    let own_after = common::cpu_time("self")?;
    let after = common::cpu_sample(&pids)?;

    let mut micros = Vec::new();
    let (mut bad, mut errors, mut problem) = (0, 0, None);
    while let Some(joined) = set.join_next().await {
        let s = joined.context("a connection's task")?;
        micros.extend(s.micros);
        bad += s.bad;
        errors += s.errors;
        problem = problem.or(s.first_problem);
    }
    if let Some(p) = &problem {
        eprintln!("cairn-bench kv-load: first problem: {p}");
    }
    let mut lat: Vec<f64> = micros.iter().map(|&us| f64::from(us) / 1000.0).collect();
    lat.sort_by(f64::total_cmp);
    let ok = lat.len();
    if ok == 0 {
        bail!(
            "no request succeeded in the measured window ({bad} unexpected answers, {errors} \
             errors{})",
            problem.map(|p| format!("; first: {p}")).unwrap_or_default()
        );
    }
    println!(
        "result api={:?} op={:?} servers={} connections={} duration_s={} value_size={} \
         requests={ok} rps={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2} \
         bad={bad} errors={errors} cpu_self_s={:.2}{}",
        args.api,
        args.op,
        targets.len(),
        args.connections,
        args.duration_s,
        args.value_size,
        ok as f64 / args.duration_s,
        common::percentile(&lat, 50.0),
        common::percentile(&lat, 90.0),
        common::percentile(&lat, 99.0),
        common::percentile(&lat, 100.0),
        own_after.saturating_sub(own_before).as_secs_f64(),
        common::cpu_fields(&pids, &before, &after),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(api: Api, op: Op) -> KvLoadArgs {
        KvLoadArgs {
            url: vec!["http://127.0.0.1:1".into()],
            api,
            op,
            connections: 1,
            duration_s: 1.0,
            warmup_s: 0.0,
            value_size: 4,
            prefix: "p/".into(),
            get_key: "g".into(),
            timeout_ms: 1,
            cpu_pids: Vec::new(),
        }
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn catalogd_and_etcd_requests() {
        let a = args(Api::Catalogd, Op::Put);
        let t = common::targets(&a.url).unwrap();
        let w = Workload::new(&a, &t);
        let put = text(&w.request(0, "h:1", 3, 7));
        assert!(put.starts_with("PUT /v1/kv/p/3/7 HTTP/1.1\r\n"), "{put}");
        assert!(put.ends_with("Content-Length: 4\r\n\r\nvvvv"), "{put}");

        let a = args(Api::Etcd, Op::Put);
        let w = Workload::new(&a, &t);
        let put = text(&w.request(0, "h:1", 3, 7));
        assert!(put.starts_with("POST /v3/kv/put HTTP/1.1\r\n"), "{put}");
        // base64("p/3/7"), base64("vvvv")
        assert!(
            put.ends_with(r#"{"key":"cC8zLzc=","value":"dnZ2dg=="}"#),
            "{put}"
        );
        assert!(put.contains("Content-Type: application/json\r\n"), "{put}");

        let a = args(Api::Etcd, Op::Get);
        let w = Workload::new(&a, &t);
        let get = text(&w.request(0, "h:1", 0, 1));
        assert!(get.ends_with(r#"{"key":"Zw=="}"#), "{get}");
    }

    #[test]
    fn what_counts_as_success() {
        let resp = |status, body: &[u8]| Response {
            status,
            headers: Vec::new(),
            body: body.to_vec(),
        };
        let t = common::targets(&["http://127.0.0.1:1".into()]).unwrap();
        let cat_put = Workload::new(&args(Api::Catalogd, Op::Put), &t);
        assert!(cat_put.ok(&resp(200, b"true")));
        assert!(!cat_put.ok(&resp(200, b"false")));
        assert!(!cat_put.ok(&resp(500, b"true")));
        let etcd_get = Workload::new(&args(Api::Etcd, Op::Get), &t);
        assert!(etcd_get.ok(&resp(200, br#"{"header":{},"kvs":[{}],"count":"1"}"#)));
        assert!(!etcd_get.ok(&resp(200, br#"{"header":{}}"#)));
    }
}

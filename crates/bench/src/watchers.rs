//! `cairn-bench watchers`: opens N keep-alive connections, parks one blocking query
//! (`GET /v1/kv/<key>?index=<idx>&wait=..`) on each, samples the server's RSS while they are
//! parked, writes the key from a separate connection and times every watcher's answer; repeated
//! for several rounds on the same connections.
//!
//! Latencies are measured twice: from the moment the write was sent (`p50_ms`, `p99_ms`,
//! `max_ms`: includes the write's own durable commit, so it is the stricter figure) and from the
//! write's acknowledgement (`ack_*`; a server that wakes watchers before answering the writer has
//! most answers arrive before the acknowledgement, counted as 0).
//!
//! Each connection is opened with a cheap probe request (`--probe-path`) answered before the
//! connection counts as open, so at most `--connect-parallel` connections wait in the server's
//! accept queue at any time (a burst beyond the listen backlog makes the kernel drop SYNs, which
//! clients retry only after 1 s).
//!
//! Output on stdout is one `key=value` line per event for scripts: `parked ...` once the
//! queries are held (the moment to sample the server), `round ...` per round and a final
//! `result ...`. Progress and diagnostics go to stderr.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::task::JoinSet;

use crate::http::{self, Conn, Response, SyncConn};

/// Flags of `cairn-bench watchers`.
#[derive(clap::Args, Debug)]
pub struct WatchersArgs {
    /// Server to load: http://127.0.0.1:PORT (loopback only)
    #[arg(long)]
    url: String,
    /// KV key the watchers block on (letters, digits, `/_.-`)
    #[arg(long, default_value = "bench/watch")]
    key: String,
    /// Number of concurrent blocking queries (one connection each)
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Write/wake-up rounds
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `wait` parameter of the blocking queries
    #[arg(long, default_value = "60s")]
    wait: String,
    /// Pause after every query is parked before writing (ms)
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Give up on answers this long after the write (s)
    #[arg(long, default_value_t = 15)]
    answer_timeout_s: u64,
    /// Report how many answers arrived within this many ms of the write being sent
    #[arg(long, default_value_t = 200)]
    deadline_ms: u64,
    /// Pid of the server, to sample its VmRSS from /proc while the queries are parked
    #[arg(long)]
    server_pid: Option<u32>,
    /// ACL token every request presents (X-Consul-Token); the server's /metrics is read
    /// without it
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Size of the value written each round (bytes)
    #[arg(long, default_value_t = 128)]
    value_size: usize,
    /// Connections being opened at once (keep it below the server's listen backlog)
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Request answered once on every new connection before it counts as open
    #[arg(long, default_value = "/v1/status/leader")]
    probe_path: String,
}

/// When and what one watcher was answered.
struct Answer {
    at: Instant,
    status: u16,
    index: Option<u64>,
}

/// What became of one round (or of all rounds together).
#[derive(Default)]
struct RoundStats {
    /// Answered after the write with a newer index, in ms from the moment the write was sent.
    from_send: Vec<f64>,
    /// Same answers, in ms from the write's acknowledgement (answers that beat it count as 0).
    from_ack: Vec<f64>,
    /// Answers that arrived before the write's acknowledgement.
    before_ack: usize,
    /// Answers that arrived but not because of the write (status not 200, index not newer).
    wrong: usize,
    /// Requests that failed (send or read error).
    errors: usize,
    /// No answer before the answer timeout.
    unanswered: usize,
    /// Server VmRSS (KiB) sampled while the queries were parked.
    rss_parked: Option<u64>,
}

impl RoundStats {
    fn add(&mut self, other: RoundStats) {
        self.from_send.extend(other.from_send);
        self.from_ack.extend(other.from_ack);
        self.before_ack += other.before_ack;
        self.wrong += other.wrong;
        self.errors += other.errors;
        self.unanswered += other.unanswered;
        self.rss_parked = self.rss_parked.max(other.rss_parked);
    }

    /// The `key=value` fields shared by `round` and `result` lines.
    fn summary(&mut self, deadline_ms: u64) -> String {
        self.from_send.sort_by(f64::total_cmp);
        self.from_ack.sort_by(f64::total_cmp);
        let (s, a) = (&self.from_send, &self.from_ack);
        let within = s.iter().filter(|&&x| x <= deadline_ms as f64).count();
        format!(
            "answered={} within_deadline={within} deadline_ms={deadline_ms} p50_ms={:.1} \
             p99_ms={:.1} max_ms={:.1} ack_p50_ms={:.1} ack_p99_ms={:.1} ack_max_ms={:.1} \
             before_ack={} wrong={} errors={} unanswered={}",
            s.len(),
            percentile(s, 50.0),
            percentile(s, 99.0),
            percentile(s, 100.0),
            percentile(a, 50.0),
            percentile(a, 99.0),
            percentile(a, 100.0),
            self.before_ack,
            self.wrong,
            self.errors,
            self.unanswered,
        )
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "na".to_string(), |v| v.to_string())
}

/// VmRSS of `pid` in KiB.
pub(crate) fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))?;
    let kb = line.trim().trim_end_matches("kB").trim();
    kb.parse().with_context(|| format!("VmRSS {line:?}"))
}

/// One control request on a fresh blocking connection.
pub(crate) async fn control(addr: SocketAddr, req: Vec<u8>) -> anyhow::Result<Response> {
    tokio::task::spawn_blocking(move || {
        let mut c = SyncConn::connect(addr)?;
        c.send(&req)?;
        c.read_response()
    })
    .await
    .context("control request task")?
}

/// `catalogd_blocking_queries_waiting` from `/metrics`, if the server exports it.
pub(crate) async fn server_waiting(addr: SocketAddr, host: &str) -> Option<u64> {
    let resp = control(addr, http::request("GET", host, "/metrics", b"", None))
        .await
        .ok()?;
    if resp.status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&resp.body);
    text.lines()
        .find_map(|l| l.strip_prefix("catalogd_blocking_queries_waiting "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Opens one connection and has the server answer `probe` on it.
async fn open(addr: SocketAddr, probe: &[u8]) -> anyhow::Result<Conn> {
    let mut conn = match Conn::connect(addr).await {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(24) => {
            bail!("{e}: raise the open-files limit (ulimit -n)")
        }
        Err(e) => return Err(e.into()),
    };
    conn.send(probe).await?;
    let resp = conn.read_response().await?;
    if resp.status != 200 {
        bail!("probe request answered {}", resp.status);
    }
    Ok(conn)
}

/// How new connections are opened: the probe each must answer, how many at once.
pub(crate) struct Opening<'a> {
    pub host: &'a str,
    pub probe_path: &'a str,
    pub token: Option<&'a str>,
    pub parallel: usize,
}

impl<'a> Opening<'a> {
    fn of(args: &'a WatchersArgs, host: &'a str) -> Opening<'a> {
        Opening {
            host,
            probe_path: &args.probe_path,
            token: args.token.as_deref(),
            parallel: args.connect_parallel,
        }
    }
}

/// Opens a connection for every empty slot, `parallel` at a time, each attempted up to 5 times.
pub(crate) async fn connect_missing(
    opening: &Opening<'_>,
    addr: SocketAddr,
    slots: &mut [Option<Conn>],
) -> anyhow::Result<()> {
    let probe: Arc<[u8]> =
        http::request("GET", opening.host, opening.probe_path, b"", opening.token).into();
    let missing: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].is_none()).collect();
    let mut set = JoinSet::new();
    let mut next = missing.into_iter();
    loop {
        while set.len() < opening.parallel.max(1) {
            let Some(i) = next.next() else { break };
            let probe = probe.clone();
            set.spawn(async move {
                let mut last = anyhow!("not attempted");
                for _ in 0..5 {
                    match tokio::time::timeout(Duration::from_secs(5), open(addr, &probe)).await {
                        Ok(Ok(c)) => return (i, Ok(c)),
                        Ok(Err(e)) if e.to_string().contains("ulimit") => return (i, Err(e)),
                        Ok(Err(e)) => last = e,
                        Err(_) => last = anyhow!("connect and probe timed out after 5 s"),
                    }
                }
                (i, Err(last))
            });
        }
        let Some(joined) = set.join_next().await else {
            break;
        };
        let (i, conn) = joined.context("connect task")?;
        slots[i] = Some(conn.with_context(|| format!("opening connection {i} to {addr}"))?);
    }
    Ok(())
}

/// One round: park every watcher, sample, write, collect.
async fn round(
    args: &WatchersArgs,
    addr: SocketAddr,
    host: &str,
    slots: &mut [Option<Conn>],
    n: usize,
) -> anyhow::Result<RoundStats> {
    connect_missing(&Opening::of(args, host), addr, slots).await?;
    let path = format!("/v1/kv/{}", args.key);
    let before = control(
        addr,
        http::request("GET", host, &path, b"", args.token.as_deref()),
    )
    .await?;
    if before.status != 200 && before.status != 404 {
        bail!("GET {path}: status {}", before.status);
    }
    let idx = before.consul_index()?;
    let query = format!("{path}?index={idx}&wait={}", args.wait);
    let req: Arc<[u8]> = http::request("GET", host, &query, b"", args.token.as_deref()).into();

    let sent = Arc::new(AtomicUsize::new(0));
    let settled = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for (i, slot) in slots.iter_mut().enumerate() {
        let mut conn = slot
            .take()
            .ok_or_else(|| anyhow!("connection {i} missing"))?;
        let (req, sent, settled) = (req.clone(), sent.clone(), settled.clone());
        set.spawn(async move {
            let sent_ok = conn.send(&req).await;
            settled.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = sent_ok {
                return (i, None, Err(e));
            }
            sent.fetch_add(1, Ordering::SeqCst);
            match conn.read_response().await {
                Ok(resp) => {
                    let at = Instant::now();
                    let answer = Answer {
                        at,
                        status: resp.status,
                        index: resp.consul_index().ok(),
                    };
                    (i, Some(conn), Ok(answer))
                }
                Err(e) => (i, None, Err(e)),
            }
        });
    }
    let until = Instant::now() + Duration::from_secs(30);
    while settled.load(Ordering::SeqCst) < slots.len() {
        if Instant::now() > until {
            bail!("sending the blocking queries took more than 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent_ok = sent.load(Ordering::SeqCst);
    // Wait until the server says they are all parked (if it says), then let things settle.
    let until = Instant::now() + Duration::from_secs(15);
    let mut waiting = server_waiting(addr, host).await;
    while waiting.is_some_and(|w| (w as usize) < sent_ok) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waiting = server_waiting(addr, host).await;
    }
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    let waiting = server_waiting(addr, host).await.or(waiting);
    let rss = args.server_pid.map(rss_kb).transpose()?;
    println!(
        "parked round={n} sent={sent_ok} server_waiting={} rss_kb={}",
        fmt_opt(waiting),
        fmt_opt(rss)
    );
    std::io::stdout().flush()?;

    // The write: a blocking socket on its own thread, so its timestamps are not delayed by the
    // runtime being busy with answers.
    let mut value = format!("round-{n}-").into_bytes();
    value.resize(args.value_size.max(value.len()), b'x');
    let put = http::request("PUT", host, &path, &value, args.token.as_deref());
    let write = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let mut c = SyncConn::connect(addr)?;
        let sent_at = Instant::now();
        c.send(&put)?;
        let resp = c.read_response()?;
        Ok((sent_at, Instant::now(), resp))
    });
    let (sent_at, acked_at, put_resp) = write.await.context("write task")??;
    if put_resp.status != 200 {
        let body = String::from_utf8_lossy(&put_resp.body);
        bail!("PUT {path}: status {}: {body}", put_resp.status);
    }
    let write_ms = ms(acked_at - sent_at);

    let mut stats = RoundStats {
        rss_parked: rss,
        ..RoundStats::default()
    };
    let deadline =
        tokio::time::Instant::from_std(acked_at + Duration::from_secs(args.answer_timeout_s));
    let mut collected = 0;
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        collected += 1;
        let (i, conn, answer) = joined.context("watcher task")?;
        slots[i] = conn;
        match answer {
            Err(e) => {
                if stats.errors == 0 {
                    eprintln!("cairn-bench: watcher {i}: {e:#}");
                }
                stats.errors += 1;
            }
            Ok(a) if a.status != 200 || a.index.is_none_or(|x| x <= idx) => stats.wrong += 1,
            Ok(a) => {
                if a.at < acked_at {
                    stats.before_ack += 1;
                }
                stats
                    .from_send
                    .push(ms(a.at.saturating_duration_since(sent_at)));
                stats
                    .from_ack
                    .push(ms(a.at.saturating_duration_since(acked_at)));
            }
        }
    }
    stats.unanswered = slots.len() - collected;
    // Watchers still waiting lose their connection; the next round opens new ones.
    set.abort_all();
    println!(
        "round n={n} watchers={} {} write_ms={write_ms:.1} rss_kb={}",
        slots.len(),
        stats.summary(args.deadline_ms),
        fmt_opt(rss),
    );
    std::io::stdout().flush()?;
    Ok(stats)
}

pub async fn run(args: WatchersArgs) -> anyhow::Result<()> {
    let (addr, host) = http::loopback_addr(&args.url)?;
    let key_ok = |b: u8| b.is_ascii_alphanumeric() || b"/_.-".contains(&b);
    if args.key.is_empty() || !args.key.bytes().all(key_ok) {
        bail!("--key {:?}: use letters, digits and /_.- only", args.key);
    }
    if args.count == 0 || args.rounds == 0 {
        bail!("--count and --rounds must be at least 1");
    }
    let rss_idle = args.server_pid.map(rss_kb).transpose()?;
    let mut slots: Vec<Option<Conn>> = (0..args.count).map(|_| None).collect();
    let started = Instant::now();
    connect_missing(&Opening::of(&args, &host), addr, &mut slots).await?;
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "cairn-bench: {} connections open in {took:.1} s",
        args.count
    );
    let rss_connected = args.server_pid.map(rss_kb).transpose()?;

    let mut all = RoundStats::default();
    for n in 1..=args.rounds {
        all.add(round(&args, addr, &host, &mut slots, n).await?);
    }
    println!(
        "result watchers={} rounds={} expected={} {} connect_s={took:.1} rss_idle_kb={} \
         rss_connected_kb={} rss_parked_max_kb={}",
        args.count,
        args.rounds,
        args.count * args.rounds,
        all.summary(args.deadline_ms),
        fmt_opt(rss_idle),
        fmt_opt(rss_connected),
        fmt_opt(all.rss_parked),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn summary_counts_answers_within_the_deadline() {
        let mut s = RoundStats {
            from_send: vec![250.0, 10.0, 20.0],
            from_ack: vec![0.0, 0.0, 150.0],
            ..RoundStats::default()
        };
        let line = s.summary(200);
        assert!(line.contains("answered=3 within_deadline=2 "), "{line}");
        assert!(line.contains(" max_ms=250.0 "), "{line}");
        assert!(line.contains(" ack_max_ms=150.0 "), "{line}");
    }
}

//! `cairn-bench watch-keys`: many blocking queries, each on its own KV key, and writes to a few
//! of those keys: the server's memory per parked query, and how fast a write wakes the one
//! watcher of its key while every other watcher stays parked.
//!
//! The keys (`<prefix>/<n>`) are created first. Each watcher then reads its key for the index
//! and parks `GET <prefix>/<n>?index=..&wait=..` on its own keep-alive connection. Once the
//! server reports them all waiting, the server's VmRSS is sampled and `--writes` keys (a
//! deterministic walk, each written once) are written at `--rate` per second from a separate
//! connection; each write's wake-up is timed from the moment the write was sent. A watcher
//! answered although its key was not written counts as `spurious`.
//!
//! Output on stdout: `parked ...` once every query is held, then `result ...`.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::task::JoinSet;

use crate::common::{ms, percentile};
use crate::http::{self, Conn};
use crate::watchers::{Opening, connect_missing, fmt_opt, rss_kb, server_waiting};

/// Flags of `cairn-bench watch-keys`.
#[derive(clap::Args, Debug)]
pub struct WatchKeysArgs {
    /// Server to load: http://127.0.0.1:PORT (loopback only)
    #[arg(long)]
    url: String,
    /// Keys are `<prefix>/<n>` (letters, digits, `/_.-`)
    #[arg(long, default_value = "bench/keys")]
    prefix: String,
    /// Watchers, one key and one connection each
    #[arg(long, default_value_t = 50_000)]
    count: usize,
    /// Keys written once all are parked, each waking its watcher
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// Writes per second
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// `wait` parameter of the blocking queries
    #[arg(long, default_value = "600s")]
    wait: String,
    /// Pid of the server, to sample its VmRSS
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections being opened at once (keep it below the server's listen backlog)
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Connections creating the keys
    #[arg(long, default_value_t = 32)]
    create_concurrency: usize,
    /// Give up on a wake-up this long after its write (s)
    #[arg(long, default_value_t = 15)]
    answer_timeout_s: u64,
}

/// `PUT <path>` of `value` on a keep-alive connection; anything but 200 is an error.
async fn put(conn: &mut Conn, host: &str, path: &str, value: &[u8]) -> anyhow::Result<()> {
    conn.send(&http::request("PUT", host, path, value, None))
        .await?;
    let resp = conn.read_response().await?;
    if resp.status != 200 {
        bail!("PUT {path}: status {}", resp.status);
    }
    Ok(())
}

/// Creates `<prefix>/0..count` over `concurrency` connections.
async fn create_keys(
    addr: SocketAddr,
    host: &str,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count) {
        let (next, host, prefix) = (next.clone(), host.to_string(), prefix.to_string());
        set.spawn(async move {
            let mut conn = Conn::connect(addr).await.context("connecting")?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return anyhow::Ok(());
                }
                put(&mut conn, &host, &format!("/v1/kv/{prefix}/{n}"), b"v0").await?;
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.context("key creation task")??;
    }
    Ok(())
}

/// Reads the key's index, then parks a blocking query on it; returns the answer's time.
async fn watch(
    mut conn: Conn,
    host: &str,
    path: &str,
    wait: &str,
    parked: &AtomicUsize,
) -> anyhow::Result<Instant> {
    conn.send(&http::request("GET", host, path, b"", None))
        .await?;
    let first = conn.read_response().await?;
    if first.status != 200 {
        bail!("GET {path}: status {}", first.status);
    }
    let index = first.consul_index()?;
    let query = format!("{path}?index={index}&wait={wait}");
    conn.send(&http::request("GET", host, &query, b"", None))
        .await?;
    parked.fetch_add(1, Ordering::SeqCst);
    let answer = conn.read_response().await?;
    let at = Instant::now();
    if answer.status != 200 {
        bail!("GET {query}: status {}", answer.status);
    }
    Ok(at)
}

/// A deterministic walk over the keys (a fixed stride coprime with most counts).
fn pick(j: usize, count: usize) -> usize {
    (j.wrapping_mul(7919) + 13) % count
}

pub async fn run(args: WatchKeysArgs) -> anyhow::Result<()> {
    let (addr, host) = http::loopback_addr(&args.url)?;
    let key_ok = |b: u8| b.is_ascii_alphanumeric() || b"/_.-".contains(&b);
    if args.prefix.is_empty() || !args.prefix.bytes().all(key_ok) {
        bail!(
            "--prefix {:?}: use letters, digits and /_.- only",
            args.prefix
        );
    }
    if args.count == 0 || args.writes == 0 || args.writes > args.count {
        bail!("--count must be at least 1 and --writes between 1 and --count");
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        bail!("--rate must be a positive number");
    }
    let rss_idle = args.server_pid.map(rss_kb).transpose()?;

    let started = Instant::now();
    create_keys(
        addr,
        &host,
        &args.prefix,
        args.count,
        args.create_concurrency,
    )
    .await?;
    let create_s = started.elapsed().as_secs_f64();
    eprintln!(
        "cairn-bench: {} keys created in {create_s:.1} s",
        args.count
    );

    let started = Instant::now();
    let mut slots: Vec<Option<Conn>> = (0..args.count).map(|_| None).collect();
    let opening = Opening {
        host: &host,
        probe_path: "/v1/status/leader",
        token: None,
        parallel: args.connect_parallel,
    };
    connect_missing(&opening, addr, &mut slots).await?;
    let connect_s = started.elapsed().as_secs_f64();
    let rss_connected = args.server_pid.map(rss_kb).transpose()?;

    let parked = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for (n, slot) in slots.iter_mut().enumerate() {
        let conn = slot
            .take()
            .ok_or_else(|| anyhow!("connection {n} missing"))?;
        let (host, parked) = (host.clone(), parked.clone());
        let (path, wait) = (format!("/v1/kv/{}/{n}", args.prefix), args.wait.clone());
        set.spawn(async move { (n, watch(conn, &host, &path, &wait, &parked).await) });
    }
    let until = Instant::now() + Duration::from_secs(120);
    while parked.load(Ordering::SeqCst) < args.count {
        if Instant::now() > until {
            bail!(
                "only {} of {} queries parked after 120 s",
                parked.load(Ordering::SeqCst),
                args.count
            );
        }
        if let Some(Ok((n, Err(e)))) = set.try_join_next() {
            return Err(e.context(format!("watcher {n}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server's own count, when it reports one, is what "parked" means.
    let until = Instant::now() + Duration::from_secs(30);
    let mut waiting = server_waiting(addr, &host).await;
    while waiting.is_some_and(|w| (w as usize) < args.count) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waiting = server_waiting(addr, &host).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_parked = args.server_pid.map(rss_kb).transpose()?;
    println!(
        "parked watchers={} server_waiting={} rss_kb={}",
        args.count,
        fmt_opt(waiting),
        fmt_opt(rss_parked)
    );
    std::io::stdout().flush()?;

    // The writes, from their own task and connection, each recording when it was sent.
    let sent: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let writer = {
        let (sent, host, prefix) = (sent.clone(), host.clone(), args.prefix.clone());
        let (writes, count, rate) = (args.writes, args.count, args.rate);
        tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await.context("connecting the writer")?;
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut acks = Vec::with_capacity(writes);
            for j in 0..writes {
                ticker.tick().await;
                let n = pick(j, count);
                let at = Instant::now();
                sent.lock()
                    .map_err(|_| anyhow!("sent-times lock poisoned"))?
                    .insert(n, at);
                put(&mut conn, &host, &format!("/v1/kv/{prefix}/{n}"), b"v1").await?;
                acks.push(ms(at.elapsed()));
            }
            anyhow::Ok(acks)
        })
    };

    let mut woken = Vec::with_capacity(args.writes);
    let mut spurious = 0;
    let mut errors = 0;
    let deadline = Duration::from_secs(args.answer_timeout_s);
    let mut last_write: Option<Instant> = None;
    loop {
        if woken.len() >= args.writes {
            break;
        }
        if writer.is_finished() && last_write.is_none() {
            last_write = Some(Instant::now());
        }
        if last_write.is_some_and(|t| t.elapsed() > deadline) {
            break;
        }
        let joined = match tokio::time::timeout(Duration::from_millis(100), set.join_next()).await {
            Ok(Some(joined)) => joined.context("watcher task")?,
            Ok(None) => break,
            Err(_) => continue,
        };
        match joined {
            (n, Ok(at)) => {
                let sent_at = sent
                    .lock()
                    .map_err(|_| anyhow!("sent-times lock poisoned"))?
                    .get(&n)
                    .copied();
                match sent_at {
                    Some(s) => woken.push(ms(at.saturating_duration_since(s))),
                    None => spurious += 1,
                }
            }
            (n, Err(e)) => {
                if errors == 0 {
                    eprintln!("cairn-bench: watcher {n}: {e:#}");
                }
                errors += 1;
            }
        }
    }
    let mut acks = writer.await.context("writer task")??;
    set.abort_all();
    woken.sort_by(f64::total_cmp);
    acks.sort_by(f64::total_cmp);
    let per_parked = match (rss_connected, rss_parked) {
        (Some(c), Some(p)) => format!(
            "{:.0}",
            p.saturating_sub(c) as f64 * 1024.0 / args.count as f64
        ),
        _ => "na".to_string(),
    };
    println!(
        "result watchers={} writes={} woken={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} \
         write_ack_p50_ms={:.1} write_ack_p99_ms={:.1} spurious={spurious} errors={errors} \
         unanswered={} create_s={create_s:.1} connect_s={connect_s:.1} rss_idle_kb={} \
         rss_connected_kb={} rss_parked_kb={} bytes_per_parked_query={per_parked}",
        args.count,
        args.writes,
        woken.len(),
        percentile(&woken, 50.0),
        percentile(&woken, 99.0),
        percentile(&woken, 100.0),
        percentile(&acks, 50.0),
        percentile(&acks, 99.0),
        args.writes - woken.len(),
        fmt_opt(rss_idle),
        fmt_opt(rss_connected),
        fmt_opt(rss_parked),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_writes_distinct_keys() {
        let picked: std::collections::HashSet<usize> = (0..200).map(|j| pick(j, 50_000)).collect();
        assert_eq!(picked.len(), 200);
    }
}

//! `cairn-bench wake`: blocking queries parked on some catalogd replicas, woken by writes made
//! through another. Each round every watcher (`--watchers-per-replica` on each `--watch-url`)
//! sends `GET /v1/kv/<key>?index=<its last index>&wait=..`; once each replica reports them
//! parked (`catalogd_blocking_queries_waiting`), the key is written through `--write-url` and
//! every answer is timed from the moment the write was sent (so the figure includes the write's
//! commit in etcd, etcd's watch bringing it to the other replica, and the wake-up there).
//!
//! Output on stdout: a final `result key=value ...` line.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use tokio::task::JoinSet;

use crate::common::{self, Target};
use crate::http::{self, Conn, Response, SyncConn};

/// Flags of `cairn-bench wake`.
#[derive(clap::Args, Debug)]
pub struct WakeArgs {
    /// The replica the writes go through: http://127.0.0.1:PORT
    #[arg(long)]
    write_url: String,
    /// The replicas the watchers are parked on, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    watch_url: Vec<String>,
    /// Blocking queries on each watched replica (one connection each)
    #[arg(long, default_value_t = 2)]
    watchers_per_replica: usize,
    /// Writes (rounds)
    #[arg(long, default_value_t = 200)]
    writes: usize,
    /// The key written and watched (letters, digits, `/_.-`)
    #[arg(long, default_value = "bench/wake")]
    key: String,
    /// Value size in bytes
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Report how many answers arrived within this many ms of the write being sent
    #[arg(long, default_value_t = 100)]
    deadline_ms: u64,
    /// Give up on a round's answers this long after its write (s)
    #[arg(long, default_value_t = 10)]
    answer_timeout_s: u64,
}

/// One request on a fresh blocking connection.
async fn control(addr: SocketAddr, req: Vec<u8>) -> anyhow::Result<Response> {
    tokio::task::spawn_blocking(move || {
        let mut c = SyncConn::connect(addr)?;
        c.send(&req)?;
        c.read_response()
    })
    .await
    .context("control request task")?
}

/// `catalogd_blocking_queries_waiting` of a replica.
async fn waiting(t: &Target) -> Option<u64> {
    let resp = control(t.addr, http::request("GET", &t.host, "/metrics", b"", None))
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&resp.body);
    text.lines()
        .find_map(|l| l.strip_prefix("catalogd_blocking_queries_waiting "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

/// A parked watcher: its connection, replica and the index it last saw.
struct Watcher {
    conn: Conn,
    replica: usize,
    index: u64,
}

pub async fn run(args: WakeArgs) -> anyhow::Result<()> {
    let writer = common::targets(std::slice::from_ref(&args.write_url))?.remove(0);
    let watched = common::targets(&args.watch_url)?;
    if args.key.is_empty()
        || !args
            .key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
    {
        bail!("--key {:?}: use letters, digits and /_.- only", args.key);
    }
    if args.writes == 0 || args.watchers_per_replica == 0 {
        bail!("--writes and --watchers-per-replica must be at least 1");
    }
    let path = format!("/v1/kv/{}", args.key);
    let mut value = vec![b'w'; args.value_size];

    // The key exists and every watched replica has it, at the writer's index.
    let put = http::request("PUT", &writer.host, &path, &value, None);
    let resp = control(writer.addr, put).await?;
    if resp.status != 200 {
        bail!("PUT {path} through {}: status {}", writer.url, resp.status);
    }
    let idx0 = control(
        writer.addr,
        http::request("GET", &writer.host, &path, b"", None),
    )
    .await?
    .consul_index()?;
    let mut watchers = Vec::new();
    for (r, t) in watched.iter().enumerate() {
        let until = Instant::now() + Duration::from_secs(10);
        let index = loop {
            let got = control(t.addr, http::request("GET", &t.host, &path, b"", None)).await?;
            let index = got.consul_index()?;
            if got.status == 200 && index >= idx0 {
                break index;
            }
            if Instant::now() > until {
                bail!(
                    "{} has not seen the write made through {}",
                    t.url,
                    writer.url
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        for _ in 0..args.watchers_per_replica {
            let conn = Conn::connect(t.addr)
                .await
                .with_context(|| format!("connecting to {}", t.url))?;
            watchers.push(Watcher {
                conn,
                replica: r,
                index,
            });
        }
    }
    let baseline: Vec<u64> = {
        let mut v = Vec::new();
        for t in &watched {
            v.push(waiting(t).await.unwrap_or(0));
        }
        v
    };

    let mut write_conn = Some(SyncConn::connect(writer.addr)?);
    let (mut from_send, mut from_ack, mut write_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wrong, mut errors, mut unanswered, mut before_ack, mut unparked) = (0, 0, 0, 0, 0);
    for n in 1..=args.writes {
        // Park every watcher.
        let mut set = JoinSet::new();
        for mut w in watchers.drain(..) {
            let t = &watched[w.replica];
            let req = http::request(
                "GET",
                &t.host,
                &format!("{path}?index={}&wait=60s", w.index),
                b"",
                None,
            );
            set.spawn(async move {
                let res = async {
                    w.conn.send(&req).await?;
                    w.conn.read_response().await
                }
                .await;
                (Instant::now(), w, res)
            });
        }
        let until = Instant::now() + Duration::from_secs(5);
        for (r, t) in watched.iter().enumerate() {
            let want = baseline[r] + args.watchers_per_replica as u64;
            loop {
                match waiting(t).await {
                    Some(w) if w >= want => break,
                    Some(_) if Instant::now() < until => {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Some(_) => {
                        unparked += 1;
                        break;
                    }
                    None => {
                        // No metric: give the queries a moment.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        break;
                    }
                }
            }
        }

        // The write, from a blocking socket on its own thread.
        let stamp = format!("{n:08}");
        let k = value.len().min(stamp.len());
        value[..k].copy_from_slice(&stamp.as_bytes()[..k]);
        let put = http::request("PUT", &writer.host, &path, &value, None);
        let mut conn = write_conn
            .take()
            .ok_or_else(|| anyhow!("no write connection"))?;
        let (conn, sent_at, acked_at, resp) =
            tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
                let sent_at = Instant::now();
                conn.send(&put)?;
                let resp = conn.read_response()?;
                Ok((conn, sent_at, Instant::now(), resp))
            })
            .await
            .context("write task")??;
        write_conn = Some(conn);
        if resp.status != 200 || resp.body != b"true" {
            bail!(
                "write {n}: status {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            );
        }
        write_ms.push(common::ms(acked_at - sent_at));

        let deadline =
            tokio::time::Instant::from_std(acked_at + Duration::from_secs(args.answer_timeout_s));
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, set.join_next()).await {
            let (at, mut w, res) = joined.context("watcher task")?;
            match res {
                Ok(resp) => {
                    let index = resp.consul_index().unwrap_or(0);
                    if resp.status != 200 || index <= w.index {
                        wrong += 1;
                    } else {
                        from_send.push(common::ms(at.saturating_duration_since(sent_at)));
                        from_ack.push(common::ms(at.saturating_duration_since(acked_at)));
                        if at < acked_at {
                            before_ack += 1;
                        }
                    }
                    w.index = index.max(w.index);
                    watchers.push(w);
                }
                Err(e) => {
                    if errors == 0 {
                        eprintln!(
                            "cairn-bench wake: a watcher on {}: {e:#}",
                            watched[w.replica].url
                        );
                    }
                    errors += 1;
                    // A new connection for it.
                    let t = &watched[w.replica];
                    w.conn = Conn::connect(t.addr)
                        .await
                        .with_context(|| format!("connecting to {}", t.url))?;
                    watchers.push(w);
                }
            }
        }
        if !set.is_empty() {
            // Those still waiting lose their connection; new ones take their place, at the
            // index the others were answered with.
            unanswered += set.len();
            eprintln!(
                "cairn-bench wake: write {n}: {} watcher(s) not answered within {} s",
                set.len(),
                args.answer_timeout_s
            );
            set.abort_all();
            let mut counts = vec![0; watched.len()];
            for w in &watchers {
                counts[w.replica] += 1;
            }
            let index = watchers.iter().map(|w| w.index).max().unwrap_or(idx0);
            for (r, t) in watched.iter().enumerate() {
                for _ in counts[r]..args.watchers_per_replica {
                    let conn = Conn::connect(t.addr)
                        .await
                        .with_context(|| format!("connecting to {}", t.url))?;
                    watchers.push(Watcher {
                        conn,
                        replica: r,
                        index,
                    });
                }
            }
        }
    }

    from_send.sort_by(f64::total_cmp);
    from_ack.sort_by(f64::total_cmp);
    write_ms.sort_by(f64::total_cmp);
    let within = from_send
        .iter()
        .filter(|&&x| x <= args.deadline_ms as f64)
        .count();
    let p = common::percentile;
    println!(
        "result writes={} watchers={} answered={} expected={} within_deadline={within} \
         deadline_ms={} p50_ms={:.1} p90_ms={:.1} p99_ms={:.1} max_ms={:.1} ack_p50_ms={:.1} \
         ack_p99_ms={:.1} before_ack={before_ack} write_p50_ms={:.1} write_p99_ms={:.1} \
         wrong={wrong} errors={errors} unanswered={unanswered} unparked={unparked}",
        args.writes,
        watched.len() * args.watchers_per_replica,
        from_send.len(),
        args.writes * watched.len() * args.watchers_per_replica,
        args.deadline_ms,
        p(&from_send, 50.0),
        p(&from_send, 90.0),
        p(&from_send, 99.0),
        p(&from_send, 100.0),
        p(&from_ack, 50.0),
        p(&from_ack, 99.0),
        p(&write_ms, 50.0),
        p(&write_ms, 99.0),
    );
    Ok(())
}

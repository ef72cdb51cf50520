//! `cairn-bench failover`: started right after the script `kill -9`s the catalogd replica that
//! `/v1/status/leader` named, it measures from that moment (`--since-unix-ns`, the wall clock
//! read just before the kill):
//!
//! - `write_ms`: until a KV PUT is accepted. The PUT goes through `--url` in turn as a client
//!   configured with every replica would (the killed one may be listed first: a refused
//!   connection moves on to the next at once); a failed attempt is retried after `--retry-ms`.
//! - `leader_ms`: until every `--survivor` answers `/v1/status/leader` with the same new
//!   leader (not `--old-leader`, not empty), polled every `--poll-ms`.
//!
//! Output on stdout: one `result key=value ...` line.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};

use crate::common::{self, Target};
use crate::http::{self, Conn, Response};

/// Flags of `cairn-bench failover`.
#[derive(clap::Args, Debug)]
pub struct FailoverArgs {
    /// Replicas the PUT is tried through, in turn, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    url: Vec<String>,
    /// Replicas that must name the new leader, comma-separated
    #[arg(long, value_delimiter = ',', required = true)]
    survivor: Vec<String>,
    /// What /v1/status/leader answered before the kill (e.g. 127.0.0.1:18601)
    #[arg(long)]
    old_leader: String,
    /// The kill's moment: nanoseconds since the Unix epoch (`date +%s%N`)
    #[arg(long)]
    since_unix_ns: u128,
    /// The key written
    #[arg(long, default_value = "bench/failover")]
    key: String,
    /// Pause after a failed write attempt (ms)
    #[arg(long, default_value_t = 10)]
    retry_ms: u64,
    /// Interval of the leader polls (ms)
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// A single attempt's deadline (ms)
    #[arg(long, default_value_t = 1000)]
    attempt_timeout_ms: u64,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

/// Milliseconds since `since_ns` (Unix epoch ns) on the wall clock.
fn ms_since(since_ns: u128) -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    now.saturating_sub(since_ns) as f64 / 1e6
}

/// One request on a fresh connection, within `timeout`.
async fn once(t: &Target, req: &[u8], timeout: Duration) -> anyhow::Result<Response> {
    tokio::time::timeout(timeout, async {
        let mut c = Conn::connect(t.addr)
            .await
            .with_context(|| format!("connecting to {}", t.url))?;
        c.send(req).await?;
        c.read_response().await
    })
    .await
    .map_err(|_| anyhow!("{}: no answer within {timeout:?}", t.url))?
}

/// Until a PUT is accepted: (ms since the kill, attempts, the replica that took it).
async fn first_write(args: &FailoverArgs, urls: &[Target]) -> anyhow::Result<(f64, u32, String)> {
    let timeout = Duration::from_millis(args.attempt_timeout_ms);
    let path = format!("/v1/kv/{}", args.key);
    let mut attempts = 0u32;
    let mut i = 0;
    loop {
        let t = &urls[i % urls.len()];
        attempts += 1;
        let req = http::request(
            "PUT",
            &t.host,
            &path,
            format!("{attempts}").as_bytes(),
            None,
        );
        match once(t, &req, timeout).await {
            Ok(r) if r.status == 200 && r.body == b"true" => {
                return Ok((ms_since(args.since_unix_ns), attempts, t.url.clone()));
            }
            Ok(_) | Err(_) => {
                i += 1;
                // A refused connection moves on at once; after a full turn, a pause.
                if i % urls.len() == 0 {
                    tokio::time::sleep(Duration::from_millis(args.retry_ms)).await;
                }
            }
        }
    }
}

/// Until every survivor names the same new leader: (ms since the kill, its name).
async fn new_leader(args: &FailoverArgs, survivors: &[Target]) -> anyhow::Result<(f64, String)> {
    let timeout = Duration::from_millis(args.attempt_timeout_ms);
    loop {
        let mut names = Vec::new();
        for t in survivors {
            let req = http::request("GET", &t.host, "/v1/status/leader", b"", None);
            match once(t, &req, timeout).await {
                Ok(r) if r.status == 200 => {
                    names.push(
                        String::from_utf8_lossy(&r.body)
                            .trim()
                            .trim_matches('"')
                            .to_string(),
                    );
                }
                _ => names.push(String::new()),
            }
        }
        let first = &names[0];
        if !first.is_empty() && *first != args.old_leader && names.iter().all(|n| n == first) {
            return Ok((ms_since(args.since_unix_ns), first.clone()));
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
    }
}

pub async fn run(args: FailoverArgs) -> anyhow::Result<()> {
    let urls = common::targets(&args.url)?;
    let survivors = common::targets(&args.survivor)?;
    let started = Instant::now();
    let limit = Duration::from_secs(args.timeout_s);
    let (write, leader) = tokio::join!(
        tokio::time::timeout(limit, first_write(&args, &urls)),
        tokio::time::timeout(limit, new_leader(&args, &survivors)),
    );
    let (write_ms, attempts, through) =
        write.map_err(|_| anyhow!("no write accepted within {limit:?}"))??;
    let (leader_ms, leader) = leader
        .map_err(|_| anyhow!("the survivors did not agree on a new leader within {limit:?}"))??;
    if started.elapsed() > limit {
        bail!("ran past {limit:?}");
    }
    println!(
        "result write_ms={write_ms:.1} write_attempts={attempts} write_through={through} \
         leader_ms={leader_ms:.1} new_leader={leader} old_leader={}",
        args.old_leader
    );
    Ok(())
}

//! TCP checks: connect (every resolved address in turn), optionally send a string and expect one
//! in the reply, within the timeout and thresholds.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::spec::{CheckError, CheckSpec, bad};
use crate::status::{CheckResult, Perf, Status};
use crate::thresholds::Thresholds;

/// Most bytes read while looking for `expect`.
const MAX_REPLY: usize = 64 * 1024;

/// A validated TCP check.
#[derive(Clone, Debug)]
pub struct TcpCheck {
    pub label: String,
    /// `host:port`.
    pub addr: String,
    pub send: Option<String>,
    pub expect: Option<String>,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

impl TcpCheck {
    pub(crate) fn from_spec(
        spec: &CheckSpec,
        label: String,
        timeout: Duration,
        thresholds: Thresholds,
    ) -> Result<TcpCheck, CheckError> {
        let addr = spec.target.trim().to_string();
        let Some((host, port)) = addr.rsplit_once(':') else {
            return bad(format!("address {addr:?}: expected HOST:PORT"));
        };
        if host.trim_matches(['[', ']']).is_empty() {
            return bad(format!("address {addr:?}: missing host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => {
                return bad(format!(
                    "address {addr:?}: {port:?} is not a port (1-65535)"
                ));
            }
        }
        Ok(TcpCheck {
            label,
            addr,
            send: spec.send.clone(),
            expect: spec.expect.clone(),
            timeout,
            thresholds,
        })
    }

    async fn converse(&self) -> Result<(String, usize), String> {
        let addrs: Vec<_> = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|e| format!("cannot resolve {:?}: {e}", self.addr))?
            .collect();
        let mut last = format!("no address for {:?}", self.addr);
        let mut stream = None;
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => {
                    stream = Some((s, a));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = format!("connection refused by {a}");
                }
                Err(e) => last = format!("cannot connect to {a}: {e}"),
            }
        }
        let Some((mut stream, peer)) = stream else {
            return Err(last);
        };
        if let Some(send) = &self.send {
            stream
                .write_all(send.as_bytes())
                .await
                .map_err(|e| format!("sending to {peer}: {e}"))?;
        }
        let Some(expect) = &self.expect else {
            return Ok((format!("connected to {peer}"), 0));
        };
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| format!("reading from {peer}: {e}"))?;
            if n == 0 {
                let got = String::from_utf8_lossy(&reply);
                return Err(format!(
                    "{peer} closed without sending {expect:?} (got {:?})",
                    truncate(&got)
                ));
            }
            reply.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&reply).contains(expect.as_str()) {
                return Ok((format!("{peer} answered {expect:?}"), reply.len()));
            }
            if reply.len() > MAX_REPLY {
                return Err(format!(
                    "{peer} sent {} bytes without {expect:?}",
                    reply.len()
                ));
            }
        }
    }

    pub(crate) async fn run(&self) -> CheckResult {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.converse()).await;
        let elapsed = started.elapsed();
        let time = self.thresholds.time_perf(elapsed);
        match outcome {
            Err(_) => {
                let what = if self.expect.is_some() {
                    "no expected reply"
                } else {
                    "no connection"
                };
                CheckResult::new(
                    &self.label,
                    Status::Critical,
                    format!(
                        "timed out after {:.3} s ({what} from {})",
                        self.timeout.as_secs_f64(),
                        self.addr
                    ),
                )
                .with_perf(time)
            }
            Ok(Err(e)) => CheckResult::new(&self.label, Status::Critical, e).with_perf(time),
            Ok(Ok((what, bytes))) => {
                let summary = format!("{what} in {:.3} s", elapsed.as_secs_f64());
                let (status, why) = self.thresholds.judge(elapsed);
                let msg = match why {
                    Some(w) => format!("{summary}, {w}"),
                    None => summary,
                };
                let mut r = CheckResult::new(&self.label, status, msg).with_perf(time);
                if self.expect.is_some() {
                    r = r.with_perf(Perf::new("size", bytes as f64, "B"));
                }
                r
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

//! Small pieces shared by the replicated-catalogd subcommands (`kv-load`, `wake`, `failover`):
//! lists of loopback servers, percentiles, base64 for etcd's JSON gateway, CPU time from /proc.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, anyhow};

use crate::http;

/// One server of a `--url A,B,C` list.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
    pub host: String,
}

/// Parses a list of `http://127.0.0.1:PORT` (loopback only, see [`http::loopback_addr`]).
pub fn targets(urls: &[String]) -> anyhow::Result<Vec<Target>> {
    if urls.is_empty() {
        anyhow::bail!("no server given");
    }
    urls.iter()
        .map(|u| {
            let (addr, host) = http::loopback_addr(u)?;
            Ok(Target {
                url: u.trim_end_matches('/').to_string(),
                addr,
                host,
            })
        })
        .collect()
}

/// Nearest-rank percentile of sorted values (NaN when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Standard base64 with padding (etcd's gateway carries keys and values so).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// User + system CPU time of process `pid` (`self` for this one), from /proc/PID/stat.
pub fn cpu_time(pid: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("/proc/{pid}/stat: no command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5) (utime, stime), here at 11 and 12 (field 3 is at 0).
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("/proc/{pid}/stat: too few fields"))?
            .parse()
            .with_context(|| format!("/proc/{pid}/stat field {}", i + 3))
    };
    // USER_HZ is 100 on every Linux ABI.
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// `NAME:PID` pairs whose CPU time a run reports (`cpu_NAME_s=`).
pub fn parse_pids(list: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    list.iter()
        .map(|item| {
            let (name, pid) = item
                .split_once(':')
                .ok_or_else(|| anyhow!("--cpu-pid {item:?}: expected NAME:PID"))?;
            pid.parse::<u32>()
                .with_context(|| format!("--cpu-pid {item:?}: not a pid"))?;
            Ok((name.to_string(), pid.to_string()))
        })
        .collect()
}

/// CPU time of each named process now.
pub fn cpu_sample(pids: &[(String, String)]) -> anyhow::Result<Vec<Duration>> {
    pids.iter().map(|(_, pid)| cpu_time(pid)).collect()
}

/// `cpu_NAME_s=` fields for the CPU used between two samples.
pub fn cpu_fields(pids: &[(String, String)], before: &[Duration], after: &[Duration]) -> String {
    pids.iter()
        .zip(before.iter().zip(after))
        .map(|((name, _), (b, a))| {
            format!(" cpu_{name}_s={:.2}", a.saturating_sub(*b).as_secs_f64())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"bench/1"), "YmVuY2gvMQ==");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 100.0);
        assert_eq!(percentile(&v, 99.0), 198.0);
        assert!(percentile(&[], 99.0).is_nan());
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(cpu_time("self").is_ok());
        assert!(parse_pids(&["a:12".into()]).is_ok());
        assert!(parse_pids(&["a".into()]).is_err());
    }

    #[test]
    fn only_loopback_targets() {
        let t = targets(&["http://127.0.0.1:1/".into(), "http://127.0.0.1:2".into()]).unwrap();
        assert_eq!(t[0].url, "http://127.0.0.1:1");
        assert_eq!(t[1].addr.port(), 2);
        assert!(targets(&["http://10.0.0.1:1".into()]).is_err());
        assert!(targets(&[]).is_err());
    }
}

//! DNS checks: ask one server (`--server`, else the first `nameserver` of /etc/resolv.conf) for a
//! name and record type, over UDP with a TCP retry when the answer is truncated, and optionally
//! require given answers. NXDOMAIN, SERVFAIL, an empty answer, a missing expected value and a
//! timeout are CRITICAL and say so.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::spec::{CheckError, CheckSpec, bad};
use crate::status::{CheckResult, Status};
use crate::thresholds::Thresholds;

/// A validated DNS check.
#[derive(Clone, Debug)]
pub struct DnsCheck {
    pub label: String,
    pub name: Name,
    pub server: SocketAddr,
    pub record_type: RecordType,
    /// Values that must all be in the answer (e.g. `10.0.0.1`, `0 1 8080 node1.`).
    pub answers: Vec<String>,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

/// `IP`, `IP:PORT` or `[IPv6]:PORT`; the port defaults to 53.
fn parse_server(s: &str) -> Result<SocketAddr, CheckError> {
    if let Ok(sa) = SocketAddr::from_str(s) {
        return Ok(sa);
    }
    match IpAddr::from_str(s.trim_start_matches('[').trim_end_matches(']')) {
        Ok(ip) => Ok(SocketAddr::new(ip, 53)),
        Err(_) => bad(format!("server {s:?}: expected IP or IP:PORT")),
    }
}

/// The first nameserver of /etc/resolv.conf, as the system resolver would ask.
fn system_server() -> SocketAddr {
    std::fs::read_to_string("/etc/resolv.conf")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next() == Some("nameserver"))
                    .then(|| parts.next())
                    .flatten()
                    .and_then(|ip| ip.parse().ok())
            })
        })
        .map_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53), |ip| {
            SocketAddr::new(ip, 53)
        })
}

/// Comparable form of an answer: lowercase, without the root dot.
fn normalize(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl DnsCheck {
    pub(crate) fn from_spec(
        spec: &CheckSpec,
        label: String,
        timeout: Duration,
        thresholds: Thresholds,
    ) -> Result<DnsCheck, CheckError> {
        let target = spec.target.trim();
        let fqdn = if target.ends_with('.') {
            target.to_string()
        } else {
            format!("{target}.")
        };
        let name =
            Name::from_ascii(&fqdn).map_err(|e| CheckError(format!("name {target:?}: {e}")))?;
        let rtype = spec
            .record_type
            .as_deref()
            .unwrap_or("A")
            .to_ascii_uppercase();
        let record_type = RecordType::from_str(&rtype)
            .map_err(|_| CheckError(format!("record type {rtype:?}: unknown")))?;
        let server = match spec.server.as_deref() {
            Some(s) => parse_server(s)?,
            None => system_server(),
        };
        Ok(DnsCheck {
            label,
            name,
            server,
            record_type,
            answers: spec.answers.clone(),
            timeout,
            thresholds,
        })
    }

    fn query_bytes(&self) -> Result<(u16, Vec<u8>), String> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(self.name.clone(), self.record_type));
        let id = msg.metadata.id;
        msg.to_vec()
            .map(|b| (id, b))
            .map_err(|e| format!("cannot encode the query: {e}"))
    }

    async fn ask_udp(&self, id: u16, query: &[u8]) -> Result<Message, String> {
        let bind: SocketAddr = if self.server.is_ipv4() {
            "0.0.0.0:0".parse()
        } else {
            "[::]:0".parse()
        }
        .map_err(|e| format!("{e}"))?;
        let sock = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| format!("UDP socket: {e}"))?;
        sock.connect(self.server)
            .await
            .map_err(|e| format!("UDP to {}: {e}", self.server))?;
        sock.send(query)
            .await
            .map_err(|e| format!("sending to {}: {e}", self.server))?;
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock
                .recv(&mut buf)
                .await
                .map_err(|e| describe_io(&e, self.server))?;
            let msg = Message::from_vec(&buf[..n])
                .map_err(|e| format!("undecodable answer from {}: {e}", self.server))?;
            // A stray or spoofed packet with another ID is ignored, as resolvers do.
            if msg.metadata.id == id {
                return Ok(msg);
            }
        }
    }

    async fn ask_tcp(&self, query: &[u8]) -> Result<Message, String> {
        let mut stream = tokio::net::TcpStream::connect(self.server)
            .await
            .map_err(|e| describe_io(&e, self.server))?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        stream
            .write_all(&framed)
            .await
            .map_err(|e| describe_io(&e, self.server))?;
        let len = stream
            .read_u16()
            .await
            .map_err(|e| describe_io(&e, self.server))?;
        let mut buf = vec![0u8; usize::from(len)];
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| describe_io(&e, self.server))?;
        Message::from_vec(&buf).map_err(|e| format!("undecodable answer from {}: {e}", self.server))
    }

    pub(crate) async fn run(&self) -> CheckResult {
        let started = Instant::now();
        let asked = async {
            let (id, query) = self.query_bytes()?;
            let answer = self.ask_udp(id, &query).await?;
            if answer.metadata.truncation {
                self.ask_tcp(&query).await
            } else {
                Ok(answer)
            }
        };
        let outcome = tokio::time::timeout(self.timeout, asked).await;
        let elapsed = started.elapsed();
        let time = self.thresholds.time_perf(elapsed);
        let critical = |msg: String| {
            CheckResult::new(&self.label, Status::Critical, msg).with_perf(time.clone())
        };
        let msg = match outcome {
            Err(_) => {
                return critical(format!(
                    "no answer from {} within {:.3} s",
                    self.server,
                    self.timeout.as_secs_f64()
                ));
            }
            Ok(Err(e)) => return critical(e),
            Ok(Ok(m)) => m,
        };
        let code = msg.metadata.response_code;
        if code != ResponseCode::NoError {
            // The RFC mnemonic (NXDOMAIN, SERVFAIL, REFUSED) first: that is what operators grep for.
            let mnemonic = format!("{code:?}").to_ascii_uppercase();
            return critical(format!(
                "{} {} from {}: {mnemonic} ({code})",
                self.name, self.record_type, self.server
            ));
        }
        let found: Vec<String> = msg
            .answers
            .iter()
            .filter(|r| r.record_type() == self.record_type)
            .map(|r| r.data.to_string())
            .collect();
        if found.is_empty() {
            return critical(format!(
                "no {} records for {} from {}",
                self.record_type, self.name, self.server
            ));
        }
        let have: Vec<String> = found.iter().map(|s| normalize(s)).collect();
        let missing: Vec<&String> = self
            .answers
            .iter()
            .filter(|want| !have.contains(&normalize(want)))
            .collect();
        let summary = format!(
            "{} {} {} in {:.3} s",
            self.name,
            self.record_type,
            found.join(", "),
            elapsed.as_secs_f64()
        );
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return critical(format!(
                "expected {} not in the answer: {summary}",
                missing.join(", ")
            ));
        }
        match self.thresholds.judge(elapsed) {
            (s, Some(why)) => {
                CheckResult::new(&self.label, s, format!("{summary}, {why}")).with_perf(time)
            }
            (s, None) => CheckResult::new(&self.label, s, summary).with_perf(time),
        }
    }
}

fn describe_io(e: &std::io::Error, server: SocketAddr) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("connection refused by {server}"),
        _ => format!("talking to {server}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_and_names() {
        assert_eq!(parse_server("127.0.0.1").unwrap().port(), 53);
        assert_eq!(parse_server("127.0.0.1:8600").unwrap().port(), 8600);
        assert_eq!(parse_server("[::1]:5353").unwrap().port(), 5353);
        assert!(parse_server("dns.example").is_err());
        assert_eq!(normalize("Node1.Example."), "node1.example");
    }
}

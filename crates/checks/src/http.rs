//! HTTP checks: method, headers, body, expected status ranges (default 200-399, as Consul and
//! Marathon count), body `contains`/`regex`, TLS with optional `insecure`, redirects on or off,
//! response-time thresholds and a timeout. Failures say which: refused, timed out, DNS, TLS,
//! unexpected status, missing text.

use std::time::{Duration, Instant};

use regex::Regex;

use crate::context::Context;
use crate::spec::{CheckError, CheckSpec, bad};
use crate::status::{CheckResult, Perf, Status};
use crate::thresholds::Thresholds;

/// Most body bytes read for `contains`/`regex` and the size figure.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Accepted status codes: inclusive ranges such as `200-399,404`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRanges(Vec<(u16, u16)>);

impl Default for StatusRanges {
    fn default() -> Self {
        StatusRanges(vec![(200, 399)])
    }
}

impl StatusRanges {
    pub fn parse(s: &str) -> Result<StatusRanges, CheckError> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let code = |v: &str| -> Result<u16, CheckError> {
                match v.trim().parse::<u16>() {
                    Ok(c) if (100..=599).contains(&c) => Ok(c),
                    _ => bad(format!(
                        "expected status: {v:?} is not an HTTP status code (100-599)"
                    )),
                }
            };
            let (lo, hi) = (code(lo)?, code(hi)?);
            if lo > hi {
                return bad(format!("expected status: range {part:?} is backwards"));
            }
            ranges.push((lo, hi));
        }
        if ranges.is_empty() {
            return bad("expected status: empty");
        }
        Ok(StatusRanges(ranges))
    }

    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&code))
    }
}

impl std::fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// A validated HTTP check.
#[derive(Clone, Debug)]
pub struct HttpCheck {
    pub label: String,
    pub url: reqwest::Url,
    pub method: reqwest::Method,
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    pub body: Option<String>,
    pub expect_status: StatusRanges,
    pub contains: Option<String>,
    pub regex: Option<Regex>,
    pub insecure: bool,
    pub follow_redirects: bool,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

impl HttpCheck {
    pub(crate) fn from_spec(
        spec: &CheckSpec,
        label: String,
        timeout: Duration,
        thresholds: Thresholds,
    ) -> Result<HttpCheck, CheckError> {
        let url = reqwest::Url::parse(&spec.target)
            .map_err(|e| CheckError(format!("URL {:?}: {e}", spec.target)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return bad(format!(
                "URL {:?}: scheme must be http or https",
                spec.target
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return bad(format!("URL {:?}: missing host", spec.target));
        }
        let method_name = spec.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
        let method = reqwest::Method::from_bytes(method_name.as_bytes())
            .map_err(|_| CheckError(format!("method {method_name:?}: not an HTTP method")))?;
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| CheckError(format!("header {k:?}: not a valid header name")))?;
            let value = reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| CheckError(format!("header {k:?}: value is not valid in a header")))?;
            headers.push((name, value));
        }
        let regex = match spec.regex.as_deref() {
            None => None,
            Some(r) => Some(Regex::new(r).map_err(|e| CheckError(format!("regex {r:?}: {e}")))?),
        };
        let expect_status = match &spec.expect_status {
            Some(s) => StatusRanges::parse(s)?,
            None => StatusRanges::default(),
        };
        Ok(HttpCheck {
            label,
            url,
            method,
            headers,
            body: spec.body.clone(),
            expect_status,
            contains: spec.contains.clone(),
            regex,
            insecure: spec.insecure,
            follow_redirects: spec.follow_redirects,
            timeout,
            thresholds,
        })
    }

    pub(crate) async fn run(&self, ctx: &Context) -> CheckResult {
        let critical = |msg: String| CheckResult::new(&self.label, Status::Critical, msg);
        let client = match ctx.http_client(self.insecure, self.follow_redirects) {
            Ok(c) => c,
            Err(e) => return CheckResult::new(&self.label, Status::Unknown, e),
        };
        let mut req = client
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, async {
            let mut resp = req.send().await?;
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await? {
                if body.len() < MAX_BODY {
                    body.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - body.len())]);
                }
            }
            Ok::<_, reqwest::Error>((resp.status(), resp.version(), body))
        })
        .await;
        let elapsed = started.elapsed();
        let time = self.thresholds.time_perf(elapsed);
        let (status, version, body) = match outcome {
            Err(_) => {
                return critical(format!(
                    "timed out after {:.3} s",
                    self.timeout.as_secs_f64()
                ))
                .with_perf(time);
            }
            Ok(Err(e)) => return critical(self.describe_error(&e)).with_perf(time),
            Ok(Ok(r)) => r,
        };
        let mut size = Perf::new("size", body.len() as f64, "B");
        size.min = Some(0.0);
        let summary = format!(
            "{:?} {}, {} bytes in {:.3} s",
            version,
            status,
            body.len(),
            elapsed.as_secs_f64()
        );
        let result = |s: Status, msg: String| {
            CheckResult::new(&self.label, s, msg)
                .with_perf(time.clone())
                .with_perf(size.clone())
        };
        if !self.expect_status.contains(status.as_u16()) {
            return result(
                Status::Critical,
                format!(
                    "unexpected status: {summary} (expected {})",
                    self.expect_status
                ),
            );
        }
        let text = String::from_utf8_lossy(&body);
        if let Some(needle) = &self.contains
            && !text.contains(needle.as_str())
        {
            return result(
                Status::Critical,
                format!("body does not contain {needle:?}: {summary}"),
            );
        }
        if let Some(re) = &self.regex
            && !re.is_match(&text)
        {
            return result(
                Status::Critical,
                format!("body does not match /{}/: {summary}", re.as_str()),
            );
        }
        match self.thresholds.judge(elapsed) {
            (Status::Ok, _) => result(Status::Ok, summary),
            (s, Some(why)) => result(s, format!("{summary}, {why}")),
            (s, None) => result(s, summary),
        }
    }

    /// Names the failure: refused, DNS, TLS, timeout, or the underlying message.
    fn describe_error(&self, e: &reqwest::Error) -> String {
        let host = self.url.host_str().unwrap_or_default();
        let port = self.url.port_or_known_default().unwrap_or(0);
        if e.is_timeout() {
            return format!("timed out after {:.3} s", self.timeout.as_secs_f64());
        }
        let mut chain = Vec::new();
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        return format!("connection refused by {host}:{port}");
                    }
                    std::io::ErrorKind::ConnectionReset => {
                        return format!("connection reset by {host}:{port}");
                    }
                    std::io::ErrorKind::TimedOut => {
                        return format!("timed out after {:.3} s", self.timeout.as_secs_f64());
                    }
                    _ => {}
                }
            }
            chain.push(err.to_string());
            source = err.source();
        }
        let joined = chain.join(": ");
        let lower = joined.to_ascii_lowercase();
        if lower.contains("dns error") || lower.contains("failed to lookup address") {
            format!(
                "cannot resolve host {host:?}: {}",
                chain.last().cloned().unwrap_or_default()
            )
        } else if lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
        {
            format!(
                "TLS failure with {host}:{port}: {}",
                chain.last().cloned().unwrap_or_default()
            )
        } else {
            format!(
                "request to {} failed: {}",
                self.url,
                chain.last().cloned().unwrap_or(joined)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        let r = StatusRanges::parse("200-299, 404").unwrap();
        assert!(r.contains(204) && r.contains(404) && !r.contains(301));
        assert_eq!(r.to_string(), "200-299,404");
        assert!(StatusRanges::default().contains(302));
        assert!(StatusRanges::parse("299-200").is_err());
        assert!(StatusRanges::parse("abc").is_err());
        assert!(StatusRanges::parse("700").is_err());
    }
}

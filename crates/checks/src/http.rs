//! HTTP checks: method, headers, body, expected status ranges (default 200-399, as Consul and
//! Marathon count), body `contains`/`regex`, TLS with optional `insecure`, redirects on or off,
//! response-time thresholds and a timeout. Failures say which: refused, timed out, DNS, TLS,
//! unexpected status, missing text.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use regex::Regex;
use url::Url;

use crate::context::Context;
use crate::spec::{CheckError, CheckSpec, bad};
use crate::status::{CheckResult, Perf, Status};
use crate::thresholds::Thresholds;

/// Most body bytes read for `contains`/`regex` and the size figure.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Most redirects followed, as curl's and Go's defaults.
const MAX_REDIRECTS: usize = 10;
const USER_AGENT: &str = concat!("cairn-healthcheck/", env!("CARGO_PKG_VERSION"));

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
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<String>,
    pub expect_status: StatusRanges,
    pub contains: Option<String>,
    pub regex: Option<Regex>,
    pub insecure: bool,
    pub follow_redirects: bool,
    pub timeout: Duration,
    pub thresholds: Thresholds,
}

/// What came back from the (last) request.
struct Answer {
    status: StatusCode,
    version: Version,
    body: Vec<u8>,
}

impl HttpCheck {
    pub(crate) fn from_spec(
        spec: &CheckSpec,
        label: String,
        timeout: Duration,
        thresholds: Thresholds,
    ) -> Result<HttpCheck, CheckError> {
        let url = Url::parse(&spec.target)
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
        let method = Method::from_bytes(method_name.as_bytes())
            .map_err(|_| CheckError(format!("method {method_name:?}: not an HTTP method")))?;
        let mut headers = Vec::new();
        for (k, v) in &spec.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| CheckError(format!("header {k:?}: not a valid header name")))?;
            let value = HeaderValue::from_str(v)
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

    /// One request to `url`; the body is read up to [`MAX_BODY`].
    async fn request(
        &self,
        ctx: &Context,
        url: &Url,
        method: &Method,
        body: Option<&str>,
    ) -> Result<(Answer, Option<String>), String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .header(http::header::USER_AGENT, USER_AGENT);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default().to_string())))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let resp = if url.scheme() == "https" {
            ctx.tls(self.insecure)?.request(req).await
        } else {
            ctx.plain().request(req).await
        }
        .map_err(|e| self.describe_error(&e, url))?;
        let status = resp.status();
        let version = resp.version();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut incoming = resp.into_body();
        let mut bytes = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| format!("reading the body from {url}: {e}"))?;
            if let Some(chunk) = frame.data_ref()
                && bytes.len() < MAX_BODY
            {
                bytes.extend_from_slice(&chunk[..chunk.len().min(MAX_BODY - bytes.len())]);
            }
        }
        Ok((
            Answer {
                status,
                version,
                body: bytes,
            },
            location,
        ))
    }

    /// The request, following redirects when asked.
    async fn fetch(&self, ctx: &Context) -> Result<Answer, String> {
        let mut url = self.url.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        for _ in 0..=MAX_REDIRECTS {
            let (answer, location) = self.request(ctx, &url, &method, body.as_deref()).await?;
            let redirect = self.follow_redirects && answer.status.is_redirection();
            let Some(location) = location.filter(|_| redirect) else {
                return Ok(answer);
            };
            url = url
                .join(&location)
                .map_err(|e| format!("bad redirect Location {location:?}: {e}"))?;
            // 301/302/303 turn into GET without a body, as browsers and curl -L do; 307/308 keep both.
            if !matches!(answer.status.as_u16(), 307 | 308) {
                method = Method::GET;
                body = None;
            }
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }

    pub(crate) async fn run(&self, ctx: &Context) -> CheckResult {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.timeout, self.fetch(ctx)).await;
        let elapsed = started.elapsed();
        let time = self.thresholds.time_perf(elapsed);
        let critical = |msg: String| {
            CheckResult::new(&self.label, Status::Critical, msg).with_perf(time.clone())
        };
        let answer = match outcome {
            Err(_) => {
                return critical(format!(
                    "timed out after {:.3} s",
                    self.timeout.as_secs_f64()
                ));
            }
            Ok(Err(e)) => return critical(e),
            Ok(Ok(a)) => a,
        };
        let mut size = Perf::new("size", answer.body.len() as f64, "B");
        size.min = Some(0.0);
        let summary = format!(
            "{:?} {}, {} bytes in {:.3} s",
            answer.version,
            answer.status,
            answer.body.len(),
            elapsed.as_secs_f64()
        );
        let result = |s: Status, msg: String| {
            CheckResult::new(&self.label, s, msg)
                .with_perf(time.clone())
                .with_perf(size.clone())
        };
        if !self.expect_status.contains(answer.status.as_u16()) {
            return result(
                Status::Critical,
                format!(
                    "unexpected status: {summary} (expected {})",
                    self.expect_status
                ),
            );
        }
        let text = String::from_utf8_lossy(&answer.body);
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
            (s, Some(why)) => result(s, format!("{summary}, {why}")),
            (s, None) => result(s, summary),
        }
    }

    /// Names the failure: refused, DNS, TLS, or the underlying message.
    fn describe_error(&self, e: &hyper_util::client::legacy::Error, url: &Url) -> String {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        let mut chain = Vec::new();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                // rustls errors arrive wrapped in io::Error, whose source() skips the wrapped value.
                if let Some(tls) = io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    return format!("TLS failure with {host}:{port}: {tls}");
                }
                match io.kind() {
                    std::io::ErrorKind::ConnectionRefused => {
                        return format!("connection refused by {host}:{port}");
                    }
                    std::io::ErrorKind::ConnectionReset => {
                        return format!("connection reset by {host}:{port}");
                    }
                    _ => {}
                }
            }
            if let Some(tls) = err.downcast_ref::<rustls::Error>() {
                return format!("TLS failure with {host}:{port}: {tls}");
            }
            chain.push(err.to_string());
            source = err.source();
        }
        let last = chain.last().cloned().unwrap_or_default();
        let lower = chain.join(": ").to_ascii_lowercase();
        if lower.contains("dns error") || lower.contains("failed to lookup address") {
            format!("cannot resolve host {host:?}: {last}")
        } else if lower.contains("certificate") || lower.contains("tls") {
            format!("TLS failure with {host}:{port}: {last}")
        } else {
            format!("request to {url} failed: {last}")
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

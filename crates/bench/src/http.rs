//! Hand-written HTTP/1.1 for the load generator: request bytes, response parsing (bodies framed by
//! `Content-Length` only, which is what catalogd sends), an async keep-alive connection for the many
//! parked watchers, and a blocking connection for the few control requests whose timing matters.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Longest response head accepted before giving up on a peer.
const MAX_HEAD: usize = 64 * 1024;

/// A complete response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `X-Consul-Index` header as a number.
    pub fn consul_index(&self) -> anyhow::Result<u64> {
        let v = self
            .header("X-Consul-Index")
            .ok_or_else(|| anyhow!("no X-Consul-Index header"))?;
        v.trim()
            .parse()
            .with_context(|| format!("X-Consul-Index {v:?}"))
    }
}

/// Turns `http://HOST:PORT[/]` into a loopback socket address; anything else is refused, since
/// this tool must never put load on another machine.
pub fn loopback_addr(url: &str) -> anyhow::Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--url must start with http:// (got {url:?})"))?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        bail!("--url must be http://HOST:PORT without a path (got {url:?})");
    }
    let addr = authority
        .to_socket_addrs()
        .with_context(|| format!("resolving {authority:?}"))?
        .next()
        .ok_or_else(|| anyhow!("{authority:?} resolves to nothing"))?;
    if !addr.ip().is_loopback() {
        bail!("refusing to load {addr}: cairn-bench only targets loopback addresses");
    }
    Ok((addr, authority.to_string()))
}

/// The bytes of one request, with an ACL token when given; `Content-Length` is sent whenever
/// there is a body or the method is not GET.
pub fn request(method: &str, host: &str, path: &str, body: &[u8], token: Option<&str>) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cairn-bench\r\n");
    if let Some(token) = token {
        out.push_str(&format!("X-Consul-Token: {token}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Takes one complete response off the front of `buf`, or `None` if more bytes are needed.
fn take_response(buf: &mut Vec<u8>) -> anyhow::Result<Option<Response>> {
    let Some(head_len) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
        if buf.len() > MAX_HEAD {
            bail!("response head longer than {MAX_HEAD} bytes");
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_len - 4]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (proto, code) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !proto.starts_with("HTTP/1.") {
        bail!("not an HTTP/1 response: {status_line:?}");
    }
    let status: u16 = code
        .parse()
        .with_context(|| format!("status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        bail!("chunked responses are not supported");
    }
    let len: usize = match resp.header("Content-Length") {
        Some(v) => v.parse().with_context(|| format!("Content-Length {v:?}"))?,
        None if status == 204 || status == 304 || (100..200).contains(&status) => 0,
        None => bail!("response without Content-Length (status {status})"),
    };
    if buf.len() < head_len + len {
        return Ok(None);
    }
    resp.body = buf[head_len..head_len + len].to_vec();
    buf.drain(..head_len + len);
    Ok(Some(resp))
}

/// An async keep-alive connection (one parked watcher).
pub struct Conn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    pub async fn send(&mut self, req: &[u8]) -> anyhow::Result<()> {
        self.stream
            .write_all(req)
            .await
            .context("sending the request")
    }

    pub async fn read_response(&mut self) -> anyhow::Result<Response> {
        loop {
            if let Some(resp) = take_response(&mut self.buf)? {
                return Ok(resp);
            }
            self.buf.reserve(1024);
            if self
                .stream
                .read_buf(&mut self.buf)
                .await
                .context("reading the response")?
                == 0
            {
                bail!("connection closed before a complete response");
            }
        }
    }
}

/// A blocking connection for control requests (reading the index, the write whose completion
/// time is the reference, scraping `/metrics`).
pub struct SyncConn {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl SyncConn {
    pub fn connect(addr: SocketAddr) -> anyhow::Result<SyncConn> {
        let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(SyncConn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, req: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(req).context("sending the request")
    }

    pub fn read_response(&mut self) -> anyhow::Result<Response> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(resp) = take_response(&mut self.buf)? {
                return Ok(resp);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .context("reading the response")?;
            if n == 0 {
                bail!("connection closed before a complete response");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_responses_and_waits_for_bodies() {
        let mut buf =
            b"HTTP/1.1 200 OK\r\nx-consul-index: 42\r\ncontent-length: 4\r\n\r\ntrue".to_vec();
        buf.extend_from_slice(
            b"HTTP/1.1 404 Not Found\r\nX-Consul-Index: 7\r\nContent-Length: 3\r\n\r\nab",
        );
        let first = take_response(&mut buf).unwrap().unwrap();
        assert_eq!((first.status, first.consul_index().unwrap()), (200, 42));
        assert_eq!(first.body, b"true");
        assert!(take_response(&mut buf).unwrap().is_none());
        buf.push(b'c');
        let second = take_response(&mut buf).unwrap().unwrap();
        assert_eq!((second.status, second.consul_index().unwrap()), (404, 7));
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_chunked_and_unframed_bodies() {
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        assert!(take_response(&mut chunked).is_err());
        let mut unframed = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        assert!(take_response(&mut unframed).is_err());
    }

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            loopback_addr("http://127.0.0.1:8500/").unwrap().0.port(),
            8500
        );
        assert!(loopback_addr("http://10.1.2.3:8500").is_err());
        assert!(loopback_addr("https://127.0.0.1:8500").is_err());
        assert!(loopback_addr("http://127.0.0.1:8500/v1").is_err());
    }

    #[test]
    fn request_bytes() {
        let r = request("PUT", "h:1", "/v1/kv/a", b"xy", None);
        assert_eq!(r, b"PUT /v1/kv/a HTTP/1.1\r\nHost: h:1\r\nUser-Agent: cairn-bench\r\nContent-Length: 2\r\n\r\nxy");
    }
}

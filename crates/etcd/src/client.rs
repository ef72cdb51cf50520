//! [`EtcdClient`]: the endpoints, the failover loop every call goes through, and the KV calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cairn_client::TlsOptions;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::error::{CODE_UNAVAILABLE, EtcdError};
use crate::json::{self, ErrorBody, StreamItem};
use crate::types::{
    DeleteResponse, KeyValue, Op, OpResponse, PutResponse, RangeRequest, RangeResponse, Txn,
    TxnResponse,
};

/// The largest response body read by default (64 MiB); see [`EtcdClient::with_max_body`].
pub const DEFAULT_MAX_BODY: usize = 64 << 20;

/// The longest a TCP connect may take (shorter when the request timeout is short).
pub const CONNECT_TIMEOUT: Duration = cairn_client::CONNECT_TIMEOUT;

/// The header grpc-gateway turns into the gRPC metadata `hasleader: true`: etcd then refuses the
/// call at once with "etcdserver: no leader" (code 14) when the member has no leader, instead
/// of serving a stale watch or letting a request wait for its timeout.
const REQUIRE_LEADER: (&str, &str) = ("Grpc-Metadata-Hasleader", "true");

/// etcd's code-14 answers that are given before a request is proposed to raft: a write refused
/// with one of them was not applied, and is retried on the next endpoint.
const NOT_APPLIED: &[&str] = &[
    "etcdserver: no leader",
    "etcdserver: not capable",
    "etcdserver: rpc not supported for learner",
];

/// An etcd v3 client over the JSON gateway. Cheap to clone (an `Arc`); clones share the
/// connection pool and the remembered endpoint.
#[derive(Clone)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoints: Vec<Url>,
    /// Index of the endpoint that answered last: where the next call starts.
    current: AtomicUsize,
    timeout: Duration,
    max_body: usize,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("endpoints", &self.inner.endpoints)
            .field("current", &self.current_endpoint())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether a call may be sent again to another endpoint after it was sent to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and idempotent calls: on a connection error, a timeout or code 14.
    Read,
    /// Writes: only when the request certainly was not applied (it never left: a connect
    /// error; or etcd refused it before proposing it: "no leader").
    Write,
}

/// One way a call to one endpoint failed.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The connection could not be made: the request never left.
    Connect(String),
    /// Sent, and no (whole) answer came back: timeout, reset, cut short.
    Lost(String),
    /// The gateway answered an error.
    Status { code: i32, message: String },
    /// Anything else: not retried.
    Error(EtcdError),
}

/// How [`EtcdClient::failover`] sends a call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallOpts {
    pub(crate) retry: Retry,
    pub(crate) require_leader: bool,
    /// The endpoint to start with, instead of the remembered one.
    pub(crate) start: Option<usize>,
}

impl CallOpts {
    pub(crate) fn read() -> Self {
        CallOpts {
            retry: Retry::Read,
            require_leader: true,
            start: None,
        }
    }

    pub(crate) fn write() -> Self {
        CallOpts {
            retry: Retry::Write,
            ..CallOpts::read()
        }
    }
}

impl EtcdClient {
    /// A client of the cluster behind `endpoints` (client URLs, `http://` or `https://`; any
    /// path is ignored), each call limited to `request_timeout`. `tls`: the CA, client
    /// certificate and server name for https endpoints (`None`: the system's CAs); the files
    /// are read now, and an unusable one is an error naming it. Nothing is sent yet.
    pub fn new(
        endpoints: Vec<Url>,
        tls: Option<TlsOptions>,
        request_timeout: Duration,
    ) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Config {
                reason: "no etcd endpoint given".into(),
            });
        }
        for url in &endpoints {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(EtcdError::Config {
                    reason: format!("etcd endpoint {url} is not an http:// or https:// URL"),
                });
            }
        }
        if request_timeout.is_zero() {
            return Err(EtcdError::Config {
                reason: "the request timeout must be more than 0".into(),
            });
        }
        let https = endpoints.iter().any(|u| u.scheme() == "https");
        // The one rustls configuration of every cairn client (ring provider): reqwest has TLS
        // but no crypto provider of its own, so it is always preconfigured, http too.
        let tls_config =
            tls.unwrap_or_default()
                .client_config(https)
                .map_err(|e| EtcdError::Config {
                    reason: e.to_string(),
                })?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config)
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout / 2))
            .tcp_keepalive(Duration::from_secs(15))
            .user_agent(concat!("cairn-etcd/", env!("CARGO_PKG_VERSION")));
        if endpoints.iter().all(is_loopback) {
            // As cairn_client: loopback traffic never goes through an HTTP proxy.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| EtcdError::Config {
            reason: format!("cannot build the HTTP client: {}", error_chain(&e)),
        })?;
        Ok(EtcdClient {
            inner: Arc::new(Inner {
                http,
                endpoints,
                current: AtomicUsize::new(0),
                timeout: request_timeout,
                max_body: DEFAULT_MAX_BODY,
            }),
        })
    }

    /// The same client (endpoints, connections) with another limit on the size of a response
    /// body, or of one message of a watch (default [`DEFAULT_MAX_BODY`]). A larger one is
    /// [`EtcdError::TooLarge`], never read into memory.
    pub fn with_max_body(&self, limit: usize) -> Self {
        let inner = &self.inner;
        EtcdClient {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                endpoints: inner.endpoints.clone(),
                current: AtomicUsize::new(inner.current.load(Ordering::Relaxed)),
                timeout: inner.timeout,
                max_body: limit,
            }),
        }
    }

    /// The endpoints, in the order given.
    pub fn endpoints(&self) -> &[Url] {
        &self.inner.endpoints
    }

    /// The endpoint the next call starts with: the one that answered last.
    pub fn current_endpoint(&self) -> &Url {
        &self.inner.endpoints[self.current_index()]
    }

    /// The timeout of each request.
    pub fn request_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The limit on a response body.
    pub fn max_body(&self) -> usize {
        self.inner.max_body
    }

    pub(crate) fn current_index(&self) -> usize {
        self.inner.current.load(Ordering::Relaxed) % self.inner.endpoints.len()
    }

    /// Sends `body` to `path` on one endpoint after the other, starting with the current one,
    /// until one answers; `read` turns its answer (a 2xx response) into the result, within the
    /// request timeout too. Returns the result and the index of the endpoint that gave it, which
    /// becomes the current one.
    pub(crate) async fn failover<R, F>(
        &self,
        path: &str,
        body: &Value,
        opts: CallOpts,
        read: impl Fn(reqwest::Response, Url) -> F,
    ) -> Result<(R, usize), EtcdError>
    where
        F: Future<Output = Result<R, Fail>>,
    {
        let inner = &self.inner;
        let body = serde_json::to_vec(body).expect("a JSON value serializes");
        let n = inner.endpoints.len();
        let start = opts.start.unwrap_or_else(|| self.current_index()) % n;
        let mut attempts = Vec::new();
        for i in 0..n {
            let idx = (start + i) % n;
            let endpoint = &inner.endpoints[idx];
            let attempt = async {
                let resp = self
                    .send(endpoint, path, body.clone(), opts.require_leader)
                    .await?;
                read(resp, endpoint.clone()).await
            };
            let outcome = match tokio::time::timeout(inner.timeout, attempt).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Fail::Lost(format!("no answer within {:?}", inner.timeout))),
            };
            let (retry, reason) = match outcome {
                Ok(r) => {
                    inner.current.store(idx, Ordering::Relaxed);
                    return Ok((r, idx));
                }
                Err(Fail::Connect(reason)) => (true, reason),
                Err(Fail::Lost(reason)) => (opts.retry == Retry::Read, reason),
                Err(Fail::Status { code, message }) if code == CODE_UNAVAILABLE => {
                    let safe = opts.retry == Retry::Read || NOT_APPLIED.contains(&&*message);
                    (safe, message)
                }
                Err(Fail::Status { code, message }) => {
                    inner.current.store(idx, Ordering::Relaxed);
                    return Err(EtcdError::Server { code, message });
                }
                Err(Fail::Error(e)) => return Err(e),
            };
            if !retry {
                return Err(EtcdError::Indeterminate {
                    endpoint: endpoint.to_string(),
                    reason,
                });
            }
            tracing::debug!(%endpoint, path, %reason, "etcd endpoint failed; trying the next");
            attempts.push(format!("{endpoint}: {reason}"));
        }
        Err(EtcdError::Unavailable { attempts })
    }

    /// One POST; a non-2xx answer is read (bounded) and becomes [`Fail::Status`].
    async fn send(
        &self,
        endpoint: &Url,
        path: &str,
        body: Vec<u8>,
        require_leader: bool,
    ) -> Result<reqwest::Response, Fail> {
        let url = endpoint_url(endpoint, path);
        tracing::trace!(%url, "etcd request");
        let mut req = self
            .inner
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if require_leader {
            req = req.header(REQUIRE_LEADER.0, REQUIRE_LEADER.1);
        }
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                Fail::Connect(error_chain(&e))
            } else {
                Fail::Lost(error_chain(&e))
            }
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = read_body(resp, endpoint, self.inner.max_body.min(1 << 20)).await?;
        if let Ok(err) = serde_json::from_slice::<ErrorBody>(&body)
            && let Some((code, message)) = err.status()
        {
            return Err(Fail::Status { code, message });
        }
        // Not the gateway's error body (a proxy, not etcd, a wrong URL).
        let code = match status.as_u16() {
            404 => 12,
            502..=504 => CODE_UNAVAILABLE,
            _ => 2,
        };
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        Err(Fail::Status {
            code,
            message: format!("{endpoint}: HTTP {status}: {}", text.trim()),
        })
    }

    /// A unary call: the whole body, decoded as `T`.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        opts: CallOpts,
    ) -> Result<T, EtcdError> {
        Ok(self.call_from(path, body, opts).await?.0)
    }

    /// [`EtcdClient::call`], and the endpoint that answered.
    pub(crate) async fn call_from<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        opts: CallOpts,
    ) -> Result<(T, Url), EtcdError> {
        let limit = self.inner.max_body;
        let (value, idx) = self
            .failover(path, body, opts, move |resp, endpoint| async move {
                let bytes = read_body(resp, &endpoint, limit).await?;
                serde_json::from_slice::<T>(&bytes).map_err(|e| {
                    Fail::Error(EtcdError::Decode {
                        endpoint: endpoint.to_string(),
                        reason: e.to_string(),
                    })
                })
            })
            .await?;
        Ok((value, self.inner.endpoints[idx].clone()))
    }

    /// A call to a streaming method (lease keep-alive) that wants its first message only.
    pub(crate) async fn call_first<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        opts: CallOpts,
    ) -> Result<T, EtcdError> {
        let limit = self.inner.max_body;
        let (value, _) = self
            .failover(path, body, opts, move |resp, endpoint| async move {
                let mut stream = StreamReader::new(resp, endpoint, limit);
                match stream.next::<T>().await? {
                    None => Err(Fail::Lost("the stream ended without a message".into())),
                    Some(item) => item_result(item),
                }
            })
            .await?;
        Ok(value)
    }

    /// Reads `request`: one key, or a range.
    pub async fn range(&self, request: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        let resp: json::RangeResponse = self
            .call("/v3/kv/range", &request.to_json(), CallOpts::read())
            .await?;
        Ok(range_response(resp))
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<KeyValue>, EtcdError> {
        let resp = self.range(&RangeRequest::key(key.as_ref())).await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// Every key starting with `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<RangeResponse, EtcdError> {
        self.range(&RangeRequest::prefix(prefix.as_ref())).await
    }

    /// Sets `key` to `value` (no lease).
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<PutResponse, EtcdError> {
        match self.request(Op::put(key.as_ref(), value.as_ref())).await? {
            OpResponse::Put(put) => Ok(put),
            _ => unreachable!("a put answers a put"),
        }
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<i64, EtcdError> {
        match self.request(Op::delete(key.as_ref())).await? {
            OpResponse::Delete(del) => Ok(del.deleted),
            _ => unreachable!("a delete answers a delete"),
        }
    }

    /// Deletes every key starting with `prefix` (every key at all for an empty prefix);
    /// returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<i64, EtcdError> {
        let range = RangeRequest::prefix(prefix.as_ref());
        let op = Op::Delete {
            key: range.key,
            range_end: range.range_end,
            prev_kv: false,
        };
        match self.request(op).await? {
            OpResponse::Delete(del) => Ok(del.deleted),
            _ => unreachable!("a delete answers a delete"),
        }
    }

    /// One operation on its own (`/v3/kv/put`, `/v3/kv/deleterange`, `/v3/kv/range`).
    pub async fn request(&self, op: Op) -> Result<OpResponse, EtcdError> {
        let (path, body) = op.path_and_body();
        let opts = if op.is_write() {
            CallOpts::write()
        } else {
            CallOpts::read()
        };
        Ok(match op {
            Op::Put { .. } => OpResponse::Put(put_response(self.call(path, &body, opts).await?)),
            Op::Delete { .. } => {
                OpResponse::Delete(delete_response(self.call(path, &body, opts).await?))
            }
            Op::Range(_) => OpResponse::Range(range_response(self.call(path, &body, opts).await?)),
        })
    }

    /// A transaction. One without writes is retried like a read.
    pub async fn txn(&self, txn: &Txn) -> Result<TxnResponse, EtcdError> {
        let opts = if txn.writes() {
            CallOpts::write()
        } else {
            CallOpts::read()
        };
        let resp: json::TxnResponse = self.call("/v3/kv/txn", &txn.to_json(), opts).await?;
        let mut responses = Vec::with_capacity(resp.responses.len());
        for op in resp.responses {
            responses.push(if let Some(r) = op.response_range {
                OpResponse::Range(range_response(r))
            } else if let Some(p) = op.response_put {
                OpResponse::Put(put_response(p))
            } else if let Some(d) = op.response_delete_range {
                OpResponse::Delete(delete_response(d))
            } else {
                return Err(EtcdError::Decode {
                    endpoint: self.current_endpoint().to_string(),
                    reason: "a txn response holds an operation this client did not send".into(),
                });
            });
        }
        Ok(TxnResponse {
            succeeded: resp.succeeded,
            revision: resp.header.revision,
            responses,
        })
    }

    /// Compacts the history up to `revision` (`/v3/kv/compaction`): older revisions can no
    /// longer be read or watched from. `physical`: wait until the space is reclaimed. Returns
    /// the store's revision.
    pub async fn compact(&self, revision: i64, physical: bool) -> Result<i64, EtcdError> {
        let body = json::Obj::default()
            .int("revision", revision)
            .flag("physical", physical)
            .done();
        let resp: json::HeaderOnly = self
            .call("/v3/kv/compaction", &body, CallOpts::write())
            .await?;
        Ok(resp.header.revision)
    }
}

/// The result of one stream message: its `result`, or its error.
pub(crate) fn item_result<T>(item: StreamItem<T>) -> Result<T, Fail> {
    if let Some((code, message)) = item.error.status() {
        return Err(Fail::Status { code, message });
    }
    item.result
        .ok_or_else(|| Fail::Lost("a stream message with neither result nor error".into()))
}

pub(crate) fn range_response(r: json::RangeResponse) -> RangeResponse {
    RangeResponse {
        revision: r.header.revision,
        kvs: json::kvs(r.kvs),
        more: r.more,
        count: r.count,
    }
}

fn put_response(r: json::PutResponse) -> PutResponse {
    PutResponse {
        revision: r.header.revision,
        prev_kv: r.prev_kv.map(KeyValue::from),
    }
}

fn delete_response(r: json::DeleteResponse) -> DeleteResponse {
    DeleteResponse {
        revision: r.header.revision,
        deleted: r.deleted,
        prev_kvs: json::kvs(r.prev_kvs),
    }
}

/// A whole body, at most `limit` bytes.
async fn read_body(
    mut resp: reqwest::Response,
    endpoint: &Url,
    limit: usize,
) -> Result<Vec<u8>, Fail> {
    let too_large = || {
        Fail::Error(EtcdError::TooLarge {
            endpoint: endpoint.to_string(),
            limit,
        })
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| Fail::Lost(error_chain(&e)))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The messages of a gateway stream (watch, lease keep-alive): JSON objects one after the other,
/// each followed by a newline in etcd 3.4, cut into chunks anywhere. Read incrementally; one
/// message may be at most `limit` bytes.
pub(crate) struct StreamReader {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// Whether `buf` may hold a whole message not yet parsed.
    ready: bool,
    endpoint: Url,
    limit: usize,
}

impl StreamReader {
    pub(crate) fn new(resp: reqwest::Response, endpoint: Url, limit: usize) -> Self {
        StreamReader {
            resp,
            buf: Vec::new(),
            ready: false,
            endpoint,
            limit,
        }
    }

    pub(crate) fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The next message; `None` when the stream ended cleanly between messages.
    pub(crate) async fn next<T: DeserializeOwned>(
        &mut self,
    ) -> Result<Option<StreamItem<T>>, Fail> {
        loop {
            if self.ready {
                if let Some(item) = self.parse()? {
                    return Ok(Some(item));
                }
                self.ready = false;
            }
            if self.buf.len() > self.limit {
                return Err(self.too_large());
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    // A message ends with '}' and, from etcd, a newline: only then can the
                    // buffer hold a whole one (JSON strings hold no raw newline).
                    self.ready = chunk.contains(&b'\n') || chunk.last() == Some(&b'}');
                    self.buf.extend_from_slice(&chunk);
                }
                Ok(None) => {
                    if let Some(item) = self.parse()? {
                        return Ok(Some(item));
                    }
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        return Ok(None);
                    }
                    return Err(Fail::Lost("the stream ended inside a message".into()));
                }
                Err(e) => return Err(Fail::Lost(error_chain(&e))),
            }
        }
    }

    fn too_large(&self) -> Fail {
        Fail::Error(EtcdError::TooLarge {
            endpoint: self.endpoint.to_string(),
            limit: self.limit,
        })
    }

    /// The first whole message in the buffer, removed from it; one longer than the limit is
    /// refused even when it came in one chunk.
    fn parse<T: DeserializeOwned>(&mut self) -> Result<Option<StreamItem<T>>, Fail> {
        let mut items =
            serde_json::Deserializer::from_slice(&self.buf).into_iter::<StreamItem<T>>();
        match items.next() {
            None => {
                self.buf.clear();
                Ok(None)
            }
            Some(Ok(item)) => {
                let used = items.byte_offset();
                if used > self.limit {
                    return Err(self.too_large());
                }
                self.buf.drain(..used);
                Ok(Some(item))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(Fail::Error(EtcdError::Decode {
                endpoint: self.endpoint.to_string(),
                reason: e.to_string(),
            })),
        }
    }
}

/// `endpoint`'s scheme and authority with `path`.
fn endpoint_url(endpoint: &Url, path: &str) -> Url {
    let mut url = endpoint.clone();
    url.set_path(path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// An error and its causes on one line (reqwest's own Display says only "error sending
/// request").
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server that answers each connection with one chunked response: these chunks.
    async fn chunked_server(responses: Vec<Vec<&'static str>>) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v3/watch", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for chunks in responses {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 4096];
                let _ = sock.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                sock.write_all(head.as_bytes()).await.unwrap();
                for chunk in chunks {
                    let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                    sock.write_all(framed.as_bytes()).await.unwrap();
                    sock.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                sock.write_all(b"0\r\n\r\n").await.unwrap();
            }
        });
        url.parse().unwrap()
    }

    async fn open(url: &Url, limit: usize) -> StreamReader {
        let tls = TlsOptions::default().client_config(false).unwrap();
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .build()
            .unwrap();
        let resp = http.post(url.clone()).body("{}").send().await.unwrap();
        StreamReader::new(resp, url.clone(), limit)
    }

    async fn n(reader: &mut StreamReader) -> Option<i64> {
        let item = reader.next::<Value>().await.unwrap()?;
        Some(item.result.unwrap()["n"].as_i64().unwrap())
    }

    #[tokio::test]
    async fn stream_messages_split_across_and_joined_in_chunks() {
        let url = chunked_server(vec![
            vec![
                "{\"result\":{\"n\":",
                "1}}\n{\"result\":{\"n\":2}}\n{\"res",
                "ult\":{\"n\":3}}\n",
                "{\"result\":{\"n\":4}}",
            ],
            vec![
                "{\"result\":{\"n\":1}}\n{\"result\":{\"n\":\"",
                "0123456789",
                "0123456789",
            ],
            vec![
                "{\"error\":\"etcdserver: no leader\",\"code\":14}\n{\"result\":",
                "{\"n\"",
            ],
            vec!["{\"result\":{\"n\":1}}\n{\"result\":{\"n\":2,\"pad\":\"0123456789\"}}\n"],
        ])
        .await;
        let mut reader = open(&url, 1 << 20).await;
        for expected in 1..=4 {
            assert_eq!(n(&mut reader).await, Some(expected));
        }
        assert_eq!(n(&mut reader).await, None, "a clean end");

        // One message over the limit: refused once the buffer passes it.
        let mut reader = open(&url, 32).await;
        assert_eq!(n(&mut reader).await, Some(1));
        let err = reader.next::<Value>().await.unwrap_err();
        assert!(
            matches!(err, Fail::Error(EtcdError::TooLarge { limit: 32, .. })),
            "{err:?}"
        );

        // An error message, then a stream cut inside a message.
        let mut reader = open(&url, 1 << 20).await;
        let item = reader.next::<Value>().await.unwrap().unwrap();
        let err = item_result(item).unwrap_err();
        assert!(
            matches!(&err, Fail::Status { code: 14, message } if message == "etcdserver: no leader"),
            "{err:?}"
        );
        let err = reader.next::<Value>().await.unwrap_err();
        assert!(matches!(err, Fail::Lost(_)), "{err:?}");

        // A message over the limit that came whole, in one chunk with a small one.
        let mut reader = open(&url, 32).await;
        assert_eq!(n(&mut reader).await, Some(1));
        let err = reader.next::<Value>().await.unwrap_err();
        assert!(
            matches!(err, Fail::Error(EtcdError::TooLarge { limit: 32, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn endpoints_are_checked() {
        let t = Duration::from_secs(1);
        let err = EtcdClient::new(vec![], None, t).unwrap_err();
        assert!(err.to_string().contains("no etcd endpoint"), "{err}");
        let err = EtcdClient::new(vec!["unix:/x".parse().unwrap()], None, t).unwrap_err();
        assert!(err.to_string().contains("not an http"), "{err}");
        let tls = TlsOptions {
            ca_cert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err =
            EtcdClient::new(vec!["https://e:2379".parse().unwrap()], Some(tls), t).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let ok = EtcdClient::new(
            vec!["http://127.0.0.1:2379/base/".parse().unwrap()],
            None,
            t,
        )
        .unwrap();
        assert_eq!(
            endpoint_url(ok.current_endpoint(), "/v3/kv/range").as_str(),
            "http://127.0.0.1:2379/v3/kv/range"
        );
    }
}

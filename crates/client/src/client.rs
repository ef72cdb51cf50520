//! [`CatalogClient`]: the base URLs, token and pooled HTTP clients shared by every endpoint, plus the
//! one place where requests are built, sent and their responses checked. The endpoint methods in
//! `kv.rs`, `catalog.rs`, `agent.rs` and `session.rs` are thin wrappers over the helpers here, so
//! status handling, `X-Consul-*` parsing, timeouts and failover between replicas
//! ([`Endpoints`]) behave the same on every endpoint.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::endpoints::{Endpoints, may_fail_over};
use crate::error::ClientError;
use crate::options::{QueryMeta, QueryOptions};
use crate::tls::TlsOptions;

/// Timeout of a non-blocking request (writes and reads without `index`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for establishing a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Header carrying the ACL token.
pub const TOKEN_HEADER: &str = "X-Consul-Token";

/// Query parameters: a `None` value is a flag sent by presence alone (`?recurse`).
pub(crate) type Query<'a> = [(&'a str, Option<String>)];

/// Async client of catalogd's (Consul's) HTTP API, at one address or several replicas
/// ([`Endpoints`]: a request fails over to the next replica on a connection error). Cloning is
/// cheap and clones share the connection pools and the current replica, so hand a clone to
/// every task and watch.
#[derive(Clone)]
pub struct CatalogClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// One per endpoint, in the same order: whether a proxy is used is decided per address.
    http: Arc<[reqwest::Client]>,
    endpoints: Endpoints,
    token: Option<HeaderValue>,
    timeout: Duration,
}

impl fmt::Debug for CatalogClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the token.
        f.debug_struct("CatalogClient")
            .field("endpoints", &self.inner.endpoints.to_string())
            .field("token", &self.inner.token.as_ref().map(|_| "<set>"))
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

/// A response with its body read (its status checked where the method says so).
pub struct Response {
    /// The URL that answered (on the endpoint that answered).
    pub url: Url,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The position of the answering endpoint in the client's [`Endpoints`].
    pub endpoint: usize,
}

impl Response {
    pub fn meta(&self) -> Result<QueryMeta, ClientError> {
        let mut meta = QueryMeta::from_headers(&self.url, &self.headers)?;
        meta.endpoint = self.endpoint;
        Ok(meta)
    }

    /// Decodes the JSON body; a `null` body reads as `T::default()` (Go clients do the same with
    /// nil slices and maps).
    pub fn json<T: DeserializeOwned + Default>(&self) -> Result<T, ClientError> {
        serde_json::from_slice::<Option<T>>(&self.body)
            .map(Option::unwrap_or_default)
            .map_err(|e| ClientError::decode(&self.url, e))
    }
}

impl CatalogClient {
    /// A client for the API at `base_url` (`http://127.0.0.1:8500`; a bare `host:port`, the usual
    /// `CONSUL_HTTP_ADDR` form, means `http://host:port`; several replicas comma-separated, see
    /// [`Endpoints::parse`]). An empty token means none. An `https://` URL trusts the system's
    /// CAs; see [`CatalogClient::with_tls`].
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_tls(base_url, token, &TlsOptions::default())
    }

    /// [`CatalogClient::new`] with TLS settings (CA, client certificate, server name), read
    /// now: a file that cannot be used is an error naming it.
    pub fn with_tls(
        base_url: &str,
        token: Option<String>,
        tls: &TlsOptions,
    ) -> Result<Self, ClientError> {
        Self::with_endpoints(Endpoints::parse(base_url)?, token, tls)
    }

    /// A client of the replicas `endpoints`, with a token and TLS settings.
    pub fn with_endpoints(
        endpoints: Endpoints,
        token: Option<String>,
        tls: &TlsOptions,
    ) -> Result<Self, ClientError> {
        let token = match token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => {
                let mut value =
                    HeaderValue::from_str(&t).map_err(|_| ClientError::InvalidToken {
                        reason: "it contains characters not allowed in an HTTP header".into(),
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        // Always preconfigured, http too: reqwest has TLS but no crypto provider of its own.
        let https = endpoints.urls().iter().any(|u| u.scheme() == "https");
        let tls_config = tls.client_config(https)?;
        let mut http = Vec::with_capacity(endpoints.len());
        for base in endpoints.urls() {
            let mut builder = reqwest::Client::builder()
                .tls_backend_preconfigured(tls_config.clone())
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("cairn-client/", env!("CARGO_PKG_VERSION")));
            if is_loopback(base) {
                // As Go's ProxyFromEnvironment: never send loopback traffic through an HTTP_PROXY.
                builder = builder.no_proxy();
            }
            http.push(builder.build().map_err(|e| ClientError::InvalidUrl {
                url: base.to_string(),
                reason: format!("cannot build HTTP client: {e}"),
            })?);
        }
        Ok(CatalogClient {
            inner: Arc::new(Inner {
                http: http.into(),
                endpoints,
                token,
                timeout: DEFAULT_TIMEOUT,
            }),
        })
    }

    /// The same client with another timeout for non-blocking requests (default 30 s). Blocking
    /// reads always get `wait + wait/16 + 10s`, and never less than this. The two share their
    /// connections and their current endpoint.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let inner = &self.inner;
        CatalogClient {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                endpoints: inner.endpoints.clone(),
                token: inner.token.clone(),
                timeout,
            }),
        }
    }

    /// The normalized base URL of the first endpoint (the only one, given one address).
    pub fn base_url(&self) -> &Url {
        &self.inner.endpoints.urls()[0]
    }

    /// The replicas this client talks to, and which one is current.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// The timeout of non-blocking requests.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The first endpoint's base + path segments (each percent-encoded on its own) + query;
    /// [`CatalogClient::send`] moves it to the endpoint it sends to.
    pub(crate) fn url<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
        query: &Query<'_>,
    ) -> Url {
        build_url(self.base_url(), segments, query)
    }

    /// Sends a request (to the current endpoint, failing over as [`Endpoints`] says) and reads
    /// the whole body. `url` is built on the first endpoint ([`CatalogClient::url`]). Statuses
    /// are not checked here.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        timeout: Duration,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let endpoints = &self.inner.endpoints;
        // Shared by every attempt: a retried write body is not copied.
        let body = body.map(bytes::Bytes::from);
        let on = |i: usize| rebase(&url, self.base_url(), &endpoints.urls()[i]);
        let sent = endpoints
            .run(
                |e: &ClientError| {
                    matches!(e, ClientError::Http { cause, .. } if may_fail_over(&method, cause))
                },
                |i| {
                    let url = on(i);
                    tracing::trace!(%method, %url, "catalog request");
                    let mut req = self.inner.http[i]
                        .request(method.clone(), url.clone())
                        .timeout(timeout);
                    if let Some(token) = &self.inner.token {
                        req = req.header(TOKEN_HEADER, token.clone());
                    }
                    if let Some(body) = &body {
                        req = req.body(body.clone());
                    }
                    async move { req.send().await.map_err(|e| ClientError::http(&url, e)) }
                },
            )
            .await;
        let (endpoint, resp) = match sent {
            Ok(answered) => answered,
            Err(mut failed) => {
                if failed.tried > 1
                    && let ClientError::Http { message, .. } = &mut failed.error
                {
                    message.push_str(&format!(" (every other address of {endpoints} failed too)"));
                }
                return Err(failed.error);
            }
        };
        let url = on(endpoint);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body: Vec<u8> = resp
            .bytes()
            .await
            .map_err(|e| ClientError::http(&url, e))?
            .into();
        Ok(Response {
            url,
            status,
            headers,
            body,
            endpoint,
        })
    }

    /// Sends someone else's request on: `path` (already percent-encoded, below the base, e.g.
    /// `v1/kv/a%20b`) with its raw `query`, carrying the *caller's* `token` and never this
    /// client's own, so the catalog judges the caller (offerd's UI relay). Fails over between
    /// replicas as every request does; the answer comes back unread, to be streamed on.
    pub async fn relay(
        &self,
        method: Method,
        path: &str,
        query: Option<&str>,
        token: Option<HeaderValue>,
        body: bytes::Bytes,
        timeout: Duration,
    ) -> Result<reqwest::Response, ClientError> {
        let endpoints = &self.inner.endpoints;
        let url_on = |i: usize| {
            let base = endpoints.urls()[i].as_str().trim_end_matches('/');
            let text = match query {
                Some(q) => format!("{base}/{path}?{q}"),
                None => format!("{base}/{path}"),
            };
            Url::parse(&text).map_err(|e| ClientError::InvalidUrl {
                url: text,
                reason: e.to_string(),
            })
        };
        let sent = endpoints
            .run(
                |e: &ClientError| {
                    matches!(e, ClientError::Http { cause, .. } if may_fail_over(&method, cause))
                },
                |i| {
                    let built = url_on(i).map(|url| {
                        let mut req = self.inner.http[i]
                            .request(method.clone(), url.clone())
                            .timeout(timeout)
                            .body(body.clone());
                        if let Some(token) = &token {
                            req = req.header(TOKEN_HEADER, token.clone());
                        }
                        (url, req)
                    });
                    async move {
                        let (url, req) = built?;
                        req.send().await.map_err(|e| ClientError::http(&url, e))
                    }
                },
            )
            .await;
        sent.map(|(_, resp)| resp).map_err(|failed| failed.error)
    }

    /// A read: 2xx → response with meta; 404 → `None` with meta (KV misses, unknown sessions);
    /// anything else → [`ClientError::Status`].
    pub(crate) async fn read_or_404<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
        extra: &Query<'_>,
        opts: &QueryOptions,
    ) -> Result<(Option<Response>, QueryMeta), ClientError> {
        let mut query = opts.query_pairs();
        query.extend(extra.iter().cloned());
        let url = self.url(segments, &query);
        let resp = self
            .send(
                Method::GET,
                url,
                opts.request_timeout(self.inner.timeout),
                None,
            )
            .await?;
        match resp.status {
            200..=299 => {
                let meta = resp.meta()?;
                Ok((Some(resp), meta))
            }
            404 => {
                let meta = resp.meta()?;
                Ok((None, meta))
            }
            status => Err(ClientError::status_from(&resp.url, status, &resp.body)),
        }
    }

    /// A read where 404 is an error.
    pub(crate) async fn read<'a>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
        extra: &Query<'_>,
        opts: &QueryOptions,
    ) -> Result<(Response, QueryMeta), ClientError> {
        let mut query = opts.query_pairs();
        query.extend(extra.iter().cloned());
        let url = self.url(segments, &query);
        let resp = self
            .send(
                Method::GET,
                url,
                opts.request_timeout(self.inner.timeout),
                None,
            )
            .await?;
        let resp = check_status(resp)?;
        let meta = resp.meta()?;
        Ok((resp, meta))
    }

    /// A JSON read where 404 is an error.
    pub(crate) async fn read_json<'a, T: DeserializeOwned + Default>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
        extra: &Query<'_>,
        opts: &QueryOptions,
    ) -> Result<(T, QueryMeta), ClientError> {
        let (resp, meta) = self.read(segments, extra, opts).await?;
        Ok((resp.json()?, meta))
    }

    /// A JSON read of any path under the base URL with the blocking-query protocol, for servers
    /// other than catalogd that speak it (offerd's agent endpoints). 404 is an error.
    pub async fn get_json<T: DeserializeOwned + Default>(
        &self,
        segments: &[&str],
        opts: &QueryOptions,
    ) -> Result<(T, QueryMeta), ClientError> {
        self.read_json(segments.iter().copied(), &[], opts).await
    }

    /// `method` with an optional JSON body to any path under the base URL; non-2xx is an error.
    pub async fn send_json<B: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&B>,
    ) -> Result<Response, ClientError> {
        let url = self.url(segments.iter().copied(), &Vec::new());
        let bytes = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|e| ClientError::decode(&url, e))?),
            None => None,
        };
        let resp = self.send(method, url, self.inner.timeout, bytes).await?;
        check_status(resp)
    }

    /// A non-blocking request without index headers (agent endpoints, writes); non-2xx is an error.
    pub(crate) async fn call<'a>(
        &self,
        method: Method,
        segments: impl IntoIterator<Item = &'a str>,
        query: &Query<'_>,
        body: Option<Vec<u8>>,
    ) -> Result<Response, ClientError> {
        let url = self.url(segments, query);
        let resp = self.send(method, url, self.inner.timeout, body).await?;
        check_status(resp)
    }

    /// `PUT` with a JSON body; returns the checked response.
    pub(crate) async fn put_json<'a, B: Serialize + ?Sized>(
        &self,
        segments: impl IntoIterator<Item = &'a str>,
        query: &Query<'_>,
        body: &B,
    ) -> Result<Response, ClientError> {
        let url = self.url(segments, query);
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::decode(&url, e))?;
        let resp = self
            .send(Method::PUT, url, self.inner.timeout, Some(bytes))
            .await?;
        check_status(resp)
    }
}

/// Non-2xx → [`ClientError::Status`] with the server's message.
pub(crate) fn check_status(resp: Response) -> Result<Response, ClientError> {
    if (200..300).contains(&resp.status) {
        Ok(resp)
    } else {
        Err(ClientError::status_from(&resp.url, resp.status, &resp.body))
    }
}

/// Reads a `true`/`false` body (KV writes, deletes).
pub(crate) fn parse_bool(resp: &Response) -> Result<bool, ClientError> {
    serde_json::from_slice::<bool>(&resp.body).map_err(|e| ClientError::decode(&resp.url, e))
}

/// Validates and normalizes a base URL.
pub fn parse_base_url(input: &str) -> Result<Url, ClientError> {
    let bad = |reason: &str| ClientError::InvalidUrl {
        url: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(bad("empty"));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(bad(&format!(
                "unsupported scheme {other:?}, expected http:// or https://"
            )));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a base URL takes no query string or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials in the URL are not supported; use a token"));
    }
    // Normalize `http://h:1/prefix/` and `http://h:1/prefix` to the same base.
    if let Ok(mut segs) = url.path_segments_mut() {
        segs.pop_if_empty();
    }
    Ok(url)
}

/// `url`, built on the base `from`, on the base `to` instead: the same path below the base and
/// the same query.
fn rebase(url: &Url, from: &Url, to: &Url) -> Url {
    if from == to {
        return url.clone();
    }
    // build_url only appends to the base's path and sets the query: the text after the base
    // (less its trailing slash) is the request's own.
    let base = from.as_str().trim_end_matches('/');
    debug_assert!(url.as_str().starts_with(base), "{url} is not under {from}");
    let rest = url.as_str().strip_prefix(base).unwrap_or("");
    // Both parts come from serialized URLs: the whole parses.
    Url::parse(&format!("{}{rest}", to.as_str().trim_end_matches('/')))
        .unwrap_or_else(|_| to.clone())
}

fn build_url<'a>(
    base: &Url,
    segments: impl IntoIterator<Item = &'a str>,
    query: &Query<'_>,
) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    if !query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            match v {
                Some(v) => pairs.append_pair(k, v),
                None => pairs.append_key_only(k),
            };
        }
    }
    url
}

/// The segments of a KV key under `/v1/kv/`: a leading `/` is dropped (as the Go client does),
/// other slashes separate segments; each segment is percent-encoded on its own.
pub(crate) fn key_segments(key: &str) -> std::str::Split<'_, char> {
    // An empty key yields one empty segment: `/v1/kv/`, the KV root, as Consul routes it.
    key.strip_prefix('/').unwrap_or(key).split('/')
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_validated_and_normalized() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:8500").unwrap().as_str(),
            "http://127.0.0.1:8500/"
        );
        assert_eq!(
            parse_base_url("127.0.0.1:8500").unwrap().as_str(),
            "http://127.0.0.1:8500/"
        );
        assert_eq!(
            parse_base_url(" localhost:8500/ ").unwrap().as_str(),
            "http://localhost:8500/"
        );
        assert_eq!(
            parse_base_url("http://h/consul/").unwrap().as_str(),
            "http://h/consul"
        );
        assert_eq!(
            parse_base_url("https://h:8501").unwrap().as_str(),
            "https://h:8501/"
        );
        for bad in [
            "",
            "http://",
            "ftp://h",
            "http://h/?x=1",
            "http://u:p@h",
            "http://a b",
        ] {
            let err = parse_base_url(bad).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidUrl { .. }),
                "{bad}: {err}"
            );
            assert!(
                err.to_string().contains(&format!("{bad:?}")),
                "error names the URL: {err}"
            );
        }
    }

    #[test]
    fn urls_encode_each_segment() {
        let base = parse_base_url("http://h:1").unwrap();
        let u = build_url(
            &base,
            ["v1", "kv"].into_iter().chain(key_segments("/a b/c?d#e")),
            &[],
        );
        assert_eq!(u.as_str(), "http://h:1/v1/kv/a%20b/c%3Fd%23e");
        let u = build_url(
            &base,
            ["v1", "kv"].into_iter().chain(key_segments("")),
            &[("recurse", None)],
        );
        assert_eq!(u.as_str(), "http://h:1/v1/kv/?recurse");
        let u = build_url(
            &base,
            ["v1", "kv"].into_iter().chain(key_segments("dir/")),
            &[("keys", None)],
        );
        assert_eq!(u.as_str(), "http://h:1/v1/kv/dir/?keys");
        let prefixed = parse_base_url("http://h/consul").unwrap();
        let u = build_url(
            &prefixed,
            ["v1", "health", "service", "web/x"],
            &[("tag", Some("a&b".into())), ("passing", None)],
        );
        assert_eq!(
            u.as_str(),
            "http://h/consul/v1/health/service/web%2Fx?tag=a%26b&passing"
        );
    }

    /// A request built on the first endpoint keeps its path and query on any other, whatever
    /// prefix either base has.
    #[test]
    fn requests_move_between_bases() {
        let first = parse_base_url("http://a:1").unwrap();
        let url = build_url(
            &first,
            ["v1", "kv"].into_iter().chain(key_segments("a b/c")),
            &[("index", Some("7".into())), ("recurse", None)],
        );
        for (to, want) in [
            ("http://a:1", "http://a:1/v1/kv/a%20b/c?index=7&recurse"),
            ("https://b:2/", "https://b:2/v1/kv/a%20b/c?index=7&recurse"),
            (
                "http://c/consul/",
                "http://c/consul/v1/kv/a%20b/c?index=7&recurse",
            ),
        ] {
            let to = parse_base_url(to).unwrap();
            assert_eq!(rebase(&url, &first, &to).as_str(), want);
        }
        let prefixed = parse_base_url("http://p/consul").unwrap();
        let url = build_url(&prefixed, ["v1", "status", "leader"], &[]);
        let plain = parse_base_url("q:9").unwrap();
        assert_eq!(
            rebase(&url, &prefixed, &plain).as_str(),
            "http://q:9/v1/status/leader"
        );
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback(&parse_base_url("localhost:1").unwrap()));
        assert!(is_loopback(&parse_base_url("127.0.0.2:1").unwrap()));
        assert!(is_loopback(&parse_base_url("http://[::1]:1").unwrap()));
        assert!(!is_loopback(
            &parse_base_url("consul.internal:8500").unwrap()
        ));
    }

    #[test]
    fn token_must_be_a_header_value() {
        assert!(matches!(
            CatalogClient::new("127.0.0.1:8500", Some("bad\ntoken".into())),
            Err(ClientError::InvalidToken { .. })
        ));
        let c = CatalogClient::new("127.0.0.1:8500", Some("secret".into())).unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }
}

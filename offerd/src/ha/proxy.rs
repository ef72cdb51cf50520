//! A standby's reverse proxy to the leader, as Marathon's standbys forward to theirs: clients
//! and agents may talk to any replica, and only the leader schedules and writes.
//!
//! A request is sent on to `<scheme>://<leader>` (the election names the leader by the
//! address it advertises) with its method, path, query, body and headers (credentials
//! included: the leader authenticates and authorizes), less the hop-by-hop ones; the answer
//! comes back with its status, headers and body, streamed (event streams and long polls pass
//! through), with Marathon's `X-Marathon-Leader`. As Marathon's forwarder does, each hop adds
//! `Via: 1.1 <replica>` and `X-Forwarded-For`, and a request that already passed this replica
//! is refused (502) rather than sent around a loop while replicas disagree on the leader.
//!
//! Bounds: the request body is read whole under the server's own body limits before it is
//! sent; the leader's answer head must come within [`HEAD_TIMEOUT`] (longer than any agent
//! long poll); and a forwarded request is cut (503) as soon as the election names another
//! leader, so no client hangs on a leader that is gone. A leader that refuses connections (it
//! died and its lease still runs) is waited out: the request is held until the election names
//! another (at most [`HOLD_FOR_ELECTION`]) and then answered 503, so clients and agents retry
//! when a leader is there instead of backing off further with every refusal.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_etcd::ElectionView;
use serde_json::json;
use tokio::sync::watch;

/// Marathon's header naming the leader (`http://host:port`) on every answer.
pub const LEADER_HEADER: &str = "x-marathon-leader";
/// The header each forwarding hop appends (`1.1 host:port`), as Marathon's forwarder does.
const VIA: HeaderName = header::VIA;
/// Who the request came from, appended at each hop.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// Longest wait for the leader's answer head: past the longest an agent's desired-set poll is
/// held (10 minutes), so a parked poll is never cut by the proxy.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(630);
/// Longest wait to connect to the leader.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a request is held when the leader refuses connections (it died; its lease has not
/// run out yet), waiting for the election to name another: longer than the default lease TTL,
/// shorter than the usual client timeouts.
pub const HOLD_FOR_ELECTION: Duration = Duration::from_secs(8);

/// Why a proxy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("TLS settings of the connection to the leader: {0}")]
    Tls(#[from] cairn_client::ClientError),
    #[error("building the HTTP client of the proxy: {0}")]
    Client(#[from] reqwest::Error),
}

/// Forwards requests to whichever replica the election names.
pub struct Proxy {
    client: reqwest::Client,
    scheme: &'static str,
    /// This replica's name (`host:port`).
    me: String,
    /// Its `Via` value.
    via: HeaderValue,
    view: watch::Receiver<ElectionView>,
    /// Largest request body forwarded (the server's own limit).
    max_body: usize,
}

impl Proxy {
    /// A proxy for replica `me`; `https`: the replicas serve HTTPS (this one does), reached
    /// with `tls` (CA, client certificate).
    pub fn new(
        me: &str,
        https: bool,
        tls: &cairn_client::TlsOptions,
        view: watch::Receiver<ElectionView>,
        max_body: u64,
    ) -> Result<Proxy, ProxyError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.client_config(https)?)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            // Replica to replica: never through an HTTP_PROXY of the environment.
            .no_proxy()
            .build()?;
        Ok(Proxy {
            client,
            scheme: if https { "https" } else { "http" },
            via: via_value(me),
            me: me.to_string(),
            view,
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
        })
    }

    /// `<scheme>://<name>`: the `X-Marathon-Leader` value of replica `name`.
    pub fn url_of(&self, name: &str) -> String {
        format!("{}://{name}", self.scheme)
    }

    /// Sends `req` to the leader and its answer back; 503 while there is none (or this
    /// replica was just elected and is loading the state), 502/504 when it cannot be reached.
    pub async fn forward(&self, req: Request) -> Response {
        let leader = self.view.borrow().leader.clone();
        if leader.is_empty() {
            return unavailable(
                "There is no leader: the offerd replicas are electing one; retry in a moment",
            );
        }
        if leader == self.me {
            return unavailable(
                "this replica was elected leader and is loading the state; retry in a moment",
            );
        }
        if has_loop(req.headers(), &self.via) {
            tracing::warn!(%leader, path = %req.uri().path(), "refused: a forwarding loop (the replicas disagree on the leader)");
            return message(StatusCode::BAD_GATEWAY, "Detected proxying loop.");
        }
        let peer = cairn_http::peer_of(&req).map(|p| p.ip());
        let (parts, body) = req.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let url = format!("{}{path}", self.url_of(&leader));
        let body = match axum::body::to_bytes(body, self.max_body).await {
            Ok(b) => b,
            // The server answers a body past its bounds 413/408 itself; this is what is left.
            Err(e) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request body: {e}"),
                );
            }
        };
        let mut out = self
            .client
            .request(parts.method.clone(), &url)
            .headers(request_headers(&parts.headers, &self.via, peer));
        if !body.is_empty() || !matches!(parts.method, Method::GET | Method::HEAD) {
            out = out.body(body);
        }
        let changed = leader_changed(self.view.clone(), leader.clone());
        let resp = tokio::select! {
            r = tokio::time::timeout(HEAD_TIMEOUT, out.send()) => r,
            () = changed => {
                return unavailable(
                    "the leader changed while the request was forwarded to it (it may or may not have been applied); retry",
                );
            }
        };
        let resp = match resp {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_connect() => {
                // Nothing was sent: hold the request until the election moves on.
                if tokio::time::timeout(
                    HOLD_FOR_ELECTION,
                    another_leader(self.view.clone(), &leader),
                )
                .await
                .is_ok()
                {
                    return unavailable(
                        "the leader went away and the election has named another; retry",
                    );
                }
                tracing::warn!(%leader, error = %e, "the leader refuses connections and no other was elected");
                return message(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot reach the leader at {leader}: {e}"),
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(%leader, error = %e, "forwarding a request to the leader failed");
                return message(
                    StatusCode::BAD_GATEWAY,
                    &format!("cannot reach the leader at {leader}: {e}"),
                );
            }
            Err(_) => {
                tracing::warn!(%leader, "the leader did not answer a forwarded request in time");
                return message(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the leader at {leader} did not answer within {}s",
                        HEAD_TIMEOUT.as_secs()
                    ),
                );
            }
        };
        let status = resp.status();
        let headers = response_headers(resp.headers(), &self.url_of(&leader), &self.via);
        let body = Body::from_stream(stream_body(resp, leader_changed(self.view.clone(), leader)));
        let mut answer = (status, body).into_response();
        *answer.headers_mut() = headers;
        answer
    }
}

/// Resolves once the election names a leader other than `leader` (not merely none), or ends.
async fn another_leader(mut view: watch::Receiver<ElectionView>, leader: &str) {
    // Err: the election is over (shutdown); the request is answered at once.
    let _ = view
        .wait_for(|v| !v.leader.is_empty() && v.leader != leader)
        .await;
}

/// Resolves once the election names someone other than `leader` (or ends).
async fn leader_changed(mut view: watch::Receiver<ElectionView>, leader: String) {
    // Err: the election is over (shutdown); the request is cut as well.
    let _ = view.wait_for(|v| v.leader != leader).await;
}

/// The leader's answer body, chunk by chunk, cut when `cut` resolves.
fn stream_body(
    resp: reqwest::Response,
    cut: impl std::future::Future<Output = ()> + Send + 'static,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let cut = Box::pin(cut);
    futures::stream::unfold(Some((resp, cut)), |state| async move {
        let (mut resp, mut cut) = state?;
        tokio::select! {
            chunk = resp.chunk() => match chunk {
                Ok(Some(bytes)) => Some((Ok(bytes), Some((resp, cut)))),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            },
            () = &mut cut => Some((
                Err(std::io::Error::other("the leader changed; the forwarded answer is cut")),
                None,
            )),
        }
    })
}

/// `{"message": text}` with `status`.
fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

/// 503 with `Retry-After: 1`: clients ask again once a leader is there.
fn unavailable(text: &str) -> Response {
    let mut r = message(StatusCode::SERVICE_UNAVAILABLE, text);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// `1.1 <me>`; a name that is no header value (it is an address: it always is one) is
/// replaced rather than refused.
fn via_value(me: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("1.1 {me}"))
        .unwrap_or_else(|_| HeaderValue::from_static("1.1 offerd"))
}

/// Headers that concern one connection, not the request: never forwarded (RFC 9110 7.6.1),
/// nor those the `Connection` header lists.
fn is_hop_by_hop(name: &HeaderName, listed: &[String]) -> bool {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ];
    HOP.contains(&name.as_str()) || listed.iter().any(|l| l == name.as_str())
}

/// The header names a `Connection` header lists, lowercase.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Whether a request already passed the replica whose `Via` value is `via`.
pub fn has_loop(headers: &HeaderMap, via: &HeaderValue) -> bool {
    headers
        .get_all(VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|hop| Some(hop.trim()) == via.to_str().ok())
}

/// The headers sent to the leader: the client's, credentials included, less the hop-by-hop
/// ones, `Host` (the leader's, set by the client library), `Content-Length` (set from the body
/// sent) and `Expect` (the body is read already); plus this hop's `Via` and the client's
/// address appended to `X-Forwarded-For`.
pub fn request_headers(incoming: &HeaderMap, via: &HeaderValue, peer: Option<IpAddr>) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 2);
    for (name, value) in incoming {
        if is_hop_by_hop(name, &listed)
            || name == header::HOST
            || name == header::CONTENT_LENGTH
            || name == header::EXPECT
            || name.as_str() == FORWARDED_FOR
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.append(VIA, via.clone());
    let earlier: Vec<&str> = incoming
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut chain = earlier.join(", ");
    if let Some(ip) = peer {
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(&ip.to_string());
    }
    if let Ok(v) = HeaderValue::from_str(&chain)
        && !chain.is_empty()
    {
        out.insert(HeaderName::from_static(FORWARDED_FOR), v);
    }
    out
}

/// The headers of the answer to the client: the leader's less the hop-by-hop ones and
/// `Content-Length` (the body is streamed on), with `X-Marathon-Leader` (the leader's own, or
/// `leader_url`) and this hop's `Via` appended.
pub fn response_headers(from_leader: &HeaderMap, leader_url: &str, via: &HeaderValue) -> HeaderMap {
    let listed = connection_listed(from_leader);
    let mut out = HeaderMap::with_capacity(from_leader.len() + 2);
    for (name, value) in from_leader {
        if is_hop_by_hop(name, &listed) || name == header::CONTENT_LENGTH {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if !out.contains_key(LEADER_HEADER)
        && let Ok(v) = HeaderValue::from_str(leader_url)
    {
        out.insert(HeaderName::from_static(LEADER_HEADER), v);
    }
    out.append(VIA, via.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        h.get_all(name)
            .iter()
            .map(|v| v.to_str().expect("text"))
            .collect()
    }

    #[test]
    fn credentials_and_content_headers_go_to_the_leader_unchanged() {
        let via = via_value("10.0.0.2:5050");
        let out = request_headers(
            &headers(&[
                ("authorization", "Bearer s3cret"),
                ("x-cairn-agent-token", "agent-secret"),
                ("content-type", "application/json"),
                ("accept", "application/json"),
                ("accept", "text/plain"),
                ("user-agent", "marathon-python/0.13"),
            ]),
            &via,
            None,
        );
        assert_eq!(values(&out, "authorization"), ["Bearer s3cret"]);
        assert_eq!(values(&out, "x-cairn-agent-token"), ["agent-secret"]);
        assert_eq!(values(&out, "content-type"), ["application/json"]);
        assert_eq!(
            values(&out, "accept"),
            ["application/json", "text/plain"],
            "repeated headers keep every value, in order"
        );
        assert_eq!(values(&out, "user-agent"), ["marathon-python/0.13"]);
    }

    #[test]
    fn hop_by_hop_host_and_length_headers_stay_behind() {
        let via = via_value("10.0.0.2:5050");
        let out = request_headers(
            &headers(&[
                ("host", "10.0.0.2:5050"),
                ("connection", "keep-alive, x-private-hop"),
                ("keep-alive", "timeout=5"),
                ("x-private-hop", "1"),
                ("transfer-encoding", "chunked"),
                ("te", "trailers"),
                ("upgrade", "websocket"),
                ("proxy-authorization", "Basic eDp5"),
                ("content-length", "12"),
                ("expect", "100-continue"),
                ("x-request-id", "r1"),
            ]),
            &via,
            None,
        );
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-request-id", "via"], "{out:?}");
    }

    #[test]
    fn each_hop_adds_its_via_and_the_client_address() {
        let via = via_value("10.0.0.2:5050");
        let out = request_headers(
            &headers(&[("via", "1.1 lb.example"), ("x-forwarded-for", "192.0.2.7")]),
            &via,
            Some("198.51.100.4".parse().expect("ip")),
        );
        assert_eq!(values(&out, "via"), ["1.1 lb.example", "1.1 10.0.0.2:5050"]);
        assert_eq!(values(&out, "x-forwarded-for"), ["192.0.2.7, 198.51.100.4"]);
        let direct = request_headers(
            &HeaderMap::new(),
            &via,
            Some("198.51.100.4".parse().expect("ip")),
        );
        assert_eq!(values(&direct, "x-forwarded-for"), ["198.51.100.4"]);
    }

    #[test]
    fn a_request_that_passed_this_replica_is_a_loop() {
        let me = via_value("10.0.0.2:5050");
        assert!(!has_loop(&HeaderMap::new(), &me));
        assert!(!has_loop(&headers(&[("via", "1.1 10.0.0.3:5050")]), &me));
        assert!(has_loop(
            &headers(&[("via", "1.1 lb.example, 1.1 10.0.0.2:5050")]),
            &me
        ));
        assert!(has_loop(
            &headers(&[("via", "1.1 lb.example"), ("via", "1.1 10.0.0.2:5050")]),
            &me
        ));
        assert!(
            !has_loop(&headers(&[("via", "1.1 10.0.0.2:50501")]), &me),
            "another port is another replica"
        );
    }

    #[test]
    fn answers_carry_the_leader_and_this_hop_but_no_hop_headers() {
        let via = via_value("10.0.0.2:5050");
        let out = response_headers(
            &headers(&[
                ("content-type", "application/json"),
                ("content-length", "42"),
                ("connection", "close"),
                ("transfer-encoding", "chunked"),
                ("x-consul-index", "17"),
                ("retry-after", "1"),
            ]),
            "http://10.0.0.1:5050",
            &via,
        );
        assert_eq!(values(&out, "x-marathon-leader"), ["http://10.0.0.1:5050"]);
        assert_eq!(
            values(&out, "x-consul-index"),
            ["17"],
            "the agents' index passes"
        );
        assert_eq!(values(&out, "retry-after"), ["1"]);
        assert_eq!(values(&out, "via"), ["1.1 10.0.0.2:5050"]);
        for gone in ["content-length", "connection", "transfer-encoding"] {
            assert!(!out.contains_key(gone), "{gone} in {out:?}");
        }
        // The leader's own X-Marathon-Leader is kept, never doubled.
        let out = response_headers(
            &headers(&[("x-marathon-leader", "https://leader.example:5050")]),
            "http://10.0.0.1:5050",
            &via,
        );
        assert_eq!(
            values(&out, "x-marathon-leader"),
            ["https://leader.example:5050"]
        );
    }
}

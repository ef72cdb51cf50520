//! Building read responses: the blocking-query loop and the headers Consul clients require
//! (`X-Consul-Index` never 0, `X-Consul-KnownLeader`, `X-Consul-LastContact`), and filtering.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use rand::Rng;
use serde::Serialize;

use super::query::ReadOpts;
use crate::core::Core;
use crate::state::State;
use crate::watch::Topic;

/// Runs `read` against the current snapshot; with `?index=N` waits (up to `wait` plus jitter of
/// up to wait/16) until the index `read` reports exceeds N or the wait ends.
///
/// Not an `async fn`: that would hold its own copy of the arguments beside `park`'s future for
/// as long as the query waits.
pub fn blocking<'a, T: 'a>(
    core: &'a Core,
    opts: &'a ReadOpts,
    topic: Topic,
    read: impl Fn(&State) -> (u64, T) + 'a,
) -> impl Future<Output = (u64, T)> + 'a {
    park(core, opts, topic, move |st, last| {
        let (idx, value) = read(st);
        (last || idx > opts.index).then_some((idx, value))
    })
}

/// The snapshot a costly read (the whole catalog) answers from: with `?index=N`, the first one
/// whose `index_of` exceeds N, or the current one when the wait ends. Nothing is built while it
/// waits: the answer is built once, from what this returns.
pub async fn snapshot_past(
    core: &Core,
    opts: &ReadOpts,
    topic: Topic,
    index_of: impl Fn(&State) -> u64,
) -> Arc<State> {
    if opts.index == 0 {
        return core.current.load_full();
    }
    park(core, opts, topic, |st, last| {
        (last || index_of(st) > opts.index).then_some(())
    })
    .await;
    core.current.load_full()
}

/// The loop of a blocking query: `attempt` runs on the current snapshot at once and after each
/// wake, until it gives an answer; it must give one when told this is the `last` attempt (the
/// wait ended, catalogd is stopping, or the state was replaced).
async fn park<T>(
    core: &Core,
    opts: &ReadOpts,
    topic: Topic,
    mut attempt: impl FnMut(&State, bool) -> Option<T>,
) -> T {
    if opts.index == 0 {
        // Not a blocking query: answered at once, nothing registered.
        if let Some(answer) = attempt(&core.current.load(), true) {
            return answer;
        }
    }
    core.metrics.blocking_queries.fetch_add(1, Relaxed);
    let jitter = opts.wait.as_millis() as u64 / 16;
    let jitter = if jitter > 0 {
        rand::rng().random_range(0..=jitter)
    } else {
        0
    };
    let deadline = tokio::time::Instant::now() + opts.wait + Duration::from_millis(jitter);
    let sub = core.registry.subscribe(topic);
    let _waiting = Waiting::new(core);
    let generation = core.registry.generation();
    loop {
        // Register interest before reading so a write between the read and the wait still wakes us.
        let notified = sub.notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let last = core.registry.closing() || core.registry.generation() != generation;
        if let Some(answer) = attempt(&core.current.load(), last) {
            return answer;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err()
            && let Some(answer) = attempt(&core.current.load(), true)
        {
            return answer;
        }
    }
}

/// Counts waiting queries for `/metrics`.
struct Waiting<'a>(&'a Core);

impl<'a> Waiting<'a> {
    fn new(core: &'a Core) -> Self {
        core.metrics.blocking_waiting.fetch_add(1, Relaxed);
        Waiting(core)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.metrics.blocking_waiting.fetch_sub(1, Relaxed);
    }
}

/// Consul's header names, built once (a name given as a string is parsed and allocated on every
/// insert, which the hot read path would pay for on every answer).
pub mod names {
    use axum::http::HeaderName;

    pub const INDEX: HeaderName = HeaderName::from_static("x-consul-index");
    pub const KNOWN_LEADER: HeaderName = HeaderName::from_static("x-consul-knownleader");
    pub const LAST_CONTACT: HeaderName = HeaderName::from_static("x-consul-lastcontact");
    pub const CONSISTENCY: HeaderName = HeaderName::from_static("x-consul-effective-consistency");
    pub const QUERY_BACKEND: HeaderName = HeaderName::from_static("x-consul-query-backend");
    pub const DEFAULT_ACL_POLICY: HeaderName =
        HeaderName::from_static("x-consul-default-acl-policy");
    pub const CONTENT_HASH: HeaderName = HeaderName::from_static("x-consul-contenthash");
    pub const TOKEN: HeaderName = HeaderName::from_static("x-consul-token");
    /// Set on a read some of whose results the caller's token may not see.
    pub const RESULTS_FILTERED: HeaderName =
        HeaderName::from_static("x-consul-results-filtered-by-acls");
    pub const NAMESPACE: HeaderName = HeaderName::from_static("x-consul-namespace");
    pub const PARTITION: HeaderName = HeaderName::from_static("x-consul-partition");
}

/// Adds the Consul read headers (`setMeta`): the index (never 0), a known leader with no lag,
/// and the consistency and backend a Consul server reports for a leader read.
pub fn with_index(mut resp: Response, index: u64) -> Response {
    let h = resp.headers_mut();
    h.insert(names::INDEX, HeaderValue::from(index.max(1)));
    h.insert(names::KNOWN_LEADER, HeaderValue::from_static("true"));
    h.insert(names::LAST_CONTACT, HeaderValue::from_static("0"));
    h.insert(names::CONSISTENCY, HeaderValue::from_static("leader"));
    h.insert(
        names::QUERY_BACKEND,
        HeaderValue::from_static("blocking-query"),
    );
    resp
}

/// Marks an answer some of whose results the caller's token could not see (Consul's
/// `X-Consul-Results-Filtered-By-ACLs`).
pub fn filtered_by_acls(hidden: bool, mut resp: Response) -> Response {
    if hidden {
        resp.headers_mut()
            .insert(names::RESULTS_FILTERED, HeaderValue::from_static("true"));
    }
    resp
}

/// A JSON body without read headers (agent endpoints, writes that answer a value).
pub fn json_plain<T: Serialize>(body: &T) -> Response {
    json_bytes(StatusCode::OK, serde_json::to_vec(body).unwrap_or_default())
}

/// A JSON body with the read headers.
pub fn json_read<T: Serialize>(index: u64, body: &T) -> Response {
    json_read_bytes(index, serde_json::to_vec(body).unwrap_or_default())
}

/// [`json_read`] of a body serialized already (shared, not copied, between answers).
pub fn json_read_bytes(index: u64, bytes: impl Into<axum::body::Bytes>) -> Response {
    with_index(json_with_room(StatusCode::OK, bytes, READ_HEADERS), index)
}

/// Headers a read answer carries: the type, Consul's five read headers and the ACL policy.
/// Reserved up front so filling them never regrows the map.
const READ_HEADERS: usize = 7;
/// Headers any other answer carries: the type and the ACL policy. hyper keeps each
/// connection's last answer's header map to parse the next request into, so room reserved
/// beyond what an answer needs stays allocated on every idle keep-alive connection.
const PLAIN_HEADERS: usize = 2;

pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    json_with_room(status, bytes, PLAIN_HEADERS)
}

fn json_with_room(
    status: StatusCode,
    bytes: impl Into<axum::body::Bytes>,
    headers: usize,
) -> Response {
    let mut resp = Response::new(axum::body::Body::from(bytes.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.reserve(headers);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A JSON list, keeping only the items the filter matches (serialized forms are what it sees).
pub fn json_list<T: Serialize>(index: u64, items: &[T], opts: &ReadOpts) -> Response {
    match &opts.filter {
        None => json_read(index, &items),
        Some(f) => {
            let kept: Vec<serde_json::Value> = items
                .iter()
                .filter_map(|i| serde_json::to_value(i).ok())
                .filter(|v| f.matches(v))
                .collect();
            json_read(index, &kept)
        }
    }
}

/// A JSON map (agent services/checks), filtered on its values, without read headers.
pub fn json_map_plain<T: Serialize>(
    items: &std::collections::BTreeMap<String, T>,
    opts: &ReadOpts,
) -> Response {
    match &opts.filter {
        None => json_plain(items),
        Some(f) => {
            let kept: serde_json::Map<String, serde_json::Value> = items
                .iter()
                .filter_map(|(k, i)| Some((k.clone(), serde_json::to_value(i).ok()?)))
                .filter(|(_, v)| f.matches(v))
                .collect();
            json_plain(&kept)
        }
    }
}

//! The common read options (`index`, `wait`, `filter`, `node-meta`) parsed and validated once
//! for every read endpoint. The query string itself is a [`QueryParams`] (cairn-http), read by
//! Consul's rules: a flag counts when present whatever its value (`QueryParams::present`), a
//! value is the first one given (`QueryParams::first`, Go's `url.Values.Get`).

use std::time::Duration;

use cairn_filter::Filter;
use cairn_http::{ParamError, QueryParams};
use cairn_wire::parse_go_duration;

use super::error::HttpError;

/// Default and maximum blocking wait, as Consul's.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// A read request's query: the raw parameters and the validated read options, extracted once
/// for every read handler.
pub struct Read {
    pub query: QueryParams,
    pub opts: ReadOpts,
    /// Who asks: what the answer may show.
    pub caller: std::sync::Arc<crate::acl::Caller>,
}

impl axum::extract::FromRequestParts<std::sync::Arc<crate::core::Core>> for Read {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        core: &std::sync::Arc<crate::core::Core>,
    ) -> Result<Self, HttpError> {
        let query = QueryParams::parse(parts.uri.query());
        let opts = ReadOpts::parse(&query)?;
        let caller = caller_of(parts)?;
        if query.present("consistent") {
            // Consul's consistent mode: the answer includes every write acknowledged before
            // the read arrived, whichever replica took it.
            core.catch_up().await.map_err(HttpError::internal)?;
        }
        Ok(Read {
            query,
            opts,
            caller,
        })
    }
}

/// The caller `authenticate` resolved for this request.
pub fn caller_of(
    parts: &axum::http::request::Parts,
) -> Result<std::sync::Arc<crate::acl::Caller>, HttpError> {
    parts
        .extensions
        .get::<std::sync::Arc<crate::acl::Caller>>()
        .cloned()
        .ok_or_else(|| HttpError::internal("request reached a handler without its ACL caller"))
}

/// The caller of a request, as an extractor for handlers that are not reads.
pub struct Who(pub std::sync::Arc<crate::acl::Caller>);

impl<S: Sync> axum::extract::FromRequestParts<S> for Who {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, HttpError> {
        caller_of(parts).map(Who)
    }
}

/// Options shared by every read.
#[derive(Debug)]
pub struct ReadOpts {
    pub index: u64,
    pub wait: Duration,
    pub filter: Option<Filter>,
    pub node_meta: Vec<(String, String)>,
}

impl ReadOpts {
    /// Parses and validates the read options (`dc` was checked before routing).
    pub fn parse(q: &QueryParams) -> Result<Self, HttpError> {
        let index = q.u64("index")?.unwrap_or(0);
        let wait = match q.first("wait") {
            None | Some("") => DEFAULT_WAIT,
            Some(w) => parse_go_duration(w)
                .map_err(|e| HttpError::bad_request(format!("query parameter wait: {e}")))?
                .min(MAX_WAIT),
        };
        let filter = match q.first("filter") {
            None | Some("") => None,
            Some(f) => Some(Filter::parse(f).map_err(|e| {
                HttpError::bad_request(format!(
                    "Failed to create boolean expression evaluator: {e}"
                ))
            })?),
        };
        let mut node_meta = Vec::new();
        for nm in q.all("node-meta") {
            let (k, v) = nm.split_once(':').ok_or_else(|| {
                HttpError::bad_request(format!(
                    "query parameter node-meta: {nm:?} is not key:value"
                ))
            })?;
            node_meta.push((k.to_string(), v.to_string()));
        }
        Ok(ReadOpts {
            index,
            wait,
            filter,
            node_meta,
        })
    }

    /// Whether a node's metadata matches every `node-meta` pair.
    pub fn node_matches(&self, meta: &cairn_wire::StringMap) -> bool {
        self.node_meta.iter().all(|(k, v)| meta.get(k) == Some(v))
    }
}

/// A query parameter that does not parse is the client's mistake.
impl From<ParamError> for HttpError {
    fn from(e: ParamError) -> Self {
        HttpError::bad_request(e.to_string())
    }
}

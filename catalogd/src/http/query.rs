//! Query parameters as Consul reads them: a flag counts when present whatever its value
//! (`?recurse`, `?recurse=1`, `?keys=True`), and the common read options (`index`, `wait`,
//! `filter`, `node-meta`, `dc`) are parsed and validated once for every read endpoint.

use std::time::Duration;

use cairn_filter::Filter;
use cairn_wire::parse_go_duration;

use super::error::HttpError;

/// Default and maximum blocking wait, as Consul's.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Decoded query string.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|r| {
                url::form_urlencoded::parse(r.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        Query { pairs }
    }

    /// True when the parameter is present, whatever its value.
    pub fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An unsigned integer parameter; present but not a number is an error naming it.
    pub fn u64(&self, name: &str) -> Result<Option<u64>, HttpError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                HttpError::bad_request(format!(
                    "query parameter {name}: {v:?} is not an unsigned integer"
                ))
            }),
        }
    }

    /// A boolean parameter given as `?enable=true|false`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, HttpError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "" => Ok(Some(true)),
                "false" | "0" => Ok(Some(false)),
                _ => Err(HttpError::bad_request(format!(
                    "query parameter {name}: {v:?} is not a boolean"
                ))),
            },
        }
    }
}

/// A read request's query: the raw parameters and the validated read options, extracted once
/// for every read handler.
pub struct Read {
    pub query: Query,
    pub opts: ReadOpts,
}

impl axum::extract::FromRequestParts<std::sync::Arc<crate::core::Core>> for Read {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &std::sync::Arc<crate::core::Core>,
    ) -> Result<Self, HttpError> {
        let query = Query::parse(parts.uri.query());
        let opts = ReadOpts::parse(&query)?;
        Ok(Read { query, opts })
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
    pub fn parse(q: &Query) -> Result<Self, HttpError> {
        let index = q.u64("index")?.unwrap_or(0);
        let wait = match q.get("wait") {
            None | Some("") => DEFAULT_WAIT,
            Some(w) => parse_go_duration(w)
                .map_err(|e| HttpError::bad_request(format!("query parameter wait: {e}")))?
                .min(MAX_WAIT),
        };
        let filter = match q.get("filter") {
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

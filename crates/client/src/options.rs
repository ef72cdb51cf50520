//! Per-request options and response metadata of Consul's read endpoints: [`QueryOptions`] become
//! query parameters (`index`, `wait`, `filter`, `tag`, `passing`, `node-meta`), and [`QueryMeta`]
//! is read back from the `X-Consul-*` headers. Kept apart from the HTTP code so the exact wire
//! forms are unit-tested without a server.

use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::error::ClientError;

/// Consul's default blocking wait when a request carries `index` but no `wait`.
pub const DEFAULT_BLOCKING_WAIT: Duration = Duration::from_secs(300);
/// Consul's cap on `wait`.
pub const MAX_BLOCKING_WAIT: Duration = Duration::from_secs(600);
/// Margin added to a blocking request's timeout on top of `wait + wait/16` (the server's jitter).
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// Options of a read. `Default` is a plain, non-blocking read with no filters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Block until the index moves past this one (0 = do not block).
    pub index: u64,
    /// How long the server may block; sent only with a non-zero `index`. `None` = server default.
    pub wait: Option<Duration>,
    /// A Consul filter expression (`?filter=`).
    pub filter: Option<String>,
    /// Only instances carrying these tags (`?tag=` repeated).
    pub tag: Vec<String>,
    /// Only instances whose checks all pass (`?passing`).
    pub passing: bool,
    /// Only nodes with these metadata pairs (`?node-meta=key:value` repeated).
    pub node_meta: Vec<(String, String)>,
}

impl QueryOptions {
    /// Options with only tags set, the common health/catalog service filter.
    pub fn with_tags<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        QueryOptions {
            tag: tags.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Whether the server will hold this request open.
    pub fn is_blocking(&self) -> bool {
        self.index > 0
    }

    /// The query parameters these options stand for, in a stable order. A `None` value is a
    /// flag sent by presence alone (`?passing`).
    pub fn query_pairs(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        if self.index > 0 {
            out.push(("index", Some(self.index.to_string())));
            if let Some(wait) = self.wait {
                out.push(("wait", Some(format_wait(wait))));
            }
        }
        if let Some(filter) = &self.filter {
            out.push(("filter", Some(filter.clone())));
        }
        for tag in &self.tag {
            out.push(("tag", Some(tag.clone())));
        }
        if self.passing {
            out.push(("passing", None));
        }
        for (k, v) in &self.node_meta {
            out.push(("node-meta", Some(format!("{k}:{v}"))));
        }
        out
    }

    /// The client-side timeout for this read: longer than the longest the server may legitimately
    /// hold it (`wait` capped at 10m, plus the server's jitter of up to wait/16, plus a margin),
    /// or `default` for a non-blocking read.
    pub fn request_timeout(&self, default: Duration) -> Duration {
        if !self.is_blocking() {
            return default;
        }
        let wait = self
            .wait
            .unwrap_or(DEFAULT_BLOCKING_WAIT)
            .min(MAX_BLOCKING_WAIT);
        (wait + wait / 16 + TIMEOUT_MARGIN).max(default)
    }
}

/// A `wait` value the way the Go client sends it: whole milliseconds, `60000ms`. Sub-millisecond
/// waits round up to `1ms` so a tiny wait never reads as "no wait".
pub fn format_wait(wait: Duration) -> String {
    let ms = wait.as_millis().max(1);
    format!("{ms}ms")
}

/// What a read's response headers say about the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryMeta {
    /// `X-Consul-Index`: pass it back as [`QueryOptions::index`] to block for a change.
    pub index: u64,
    /// `X-Consul-KnownLeader`.
    pub known_leader: bool,
    /// `X-Consul-LastContact`, milliseconds since the server last heard from the leader.
    pub last_contact_ms: u64,
    /// Which of the client's [`Endpoints`](crate::Endpoints) answered (its position; 0 with
    /// one address): a [`Watch`](crate::Watch) tells a replica that is behind after a failover
    /// from an index that went backwards by it.
    pub endpoint: usize,
}

impl QueryMeta {
    /// Reads the `X-Consul-*` headers. A missing or non-numeric `X-Consul-Index` is an error
    /// (every read endpoint sends it, 404s included); the other two are informational and
    /// default to `false` / `0` when absent or malformed. `endpoint` is 0: the client sets it.
    pub fn from_headers(url: &url::Url, headers: &HeaderMap) -> Result<QueryMeta, ClientError> {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let raw_index = headers.get("x-consul-index");
        let index = raw_index
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| ClientError::MissingIndex {
                url: url.to_string(),
                value: raw_index.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            })?;
        let known_leader =
            text("x-consul-knownleader").is_some_and(|s| s.eq_ignore_ascii_case("true"));
        let last_contact_ms = text("x-consul-lastcontact")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(QueryMeta {
            index,
            known_leader,
            last_contact_ms,
            endpoint: 0,
        })
    }
}

/// Options of `PUT /v1/kv/:key`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvPutOptions {
    /// Opaque flags stored with the value (`?flags=`).
    pub flags: Option<u64>,
    /// Check-and-set: write only if the key's ModifyIndex is this (`0` = only if absent).
    pub cas: Option<u64>,
    /// Take the key's lock for this session (`?acquire=`); the write fails if another holds it.
    pub acquire: Option<String>,
    /// Release the key's lock held by this session (`?release=`).
    pub release: Option<String>,
}

impl KvPutOptions {
    pub(crate) fn query_pairs(&self) -> Vec<(&'static str, Option<String>)> {
        let mut out = Vec::new();
        if let Some(flags) = self.flags {
            out.push(("flags", Some(flags.to_string())));
        }
        if let Some(cas) = self.cas {
            out.push(("cas", Some(cas.to_string())));
        }
        if let Some(session) = &self.acquire {
            out.push(("acquire", Some(session.clone())));
        }
        if let Some(session) = &self.release {
            out.push(("release", Some(session.clone())));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn pairs(opts: &QueryOptions) -> Vec<(&'static str, Option<String>)> {
        opts.query_pairs()
    }

    #[test]
    fn default_options_send_nothing() {
        assert!(pairs(&QueryOptions::default()).is_empty());
    }

    #[test]
    fn blocking_options_send_index_and_wait_in_ms() {
        let opts = QueryOptions {
            index: 42,
            wait: Some(Duration::from_secs(60)),
            ..Default::default()
        };
        assert_eq!(
            pairs(&opts),
            vec![
                ("index", Some("42".to_string())),
                ("wait", Some("60000ms".to_string()))
            ]
        );
    }

    #[test]
    fn wait_without_index_is_not_sent() {
        let opts = QueryOptions {
            wait: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        assert!(pairs(&opts).is_empty());
    }

    #[test]
    fn filters_are_sent_in_consul_form() {
        let opts = QueryOptions {
            filter: Some("Service.Port == 80".into()),
            tag: vec!["prod".into(), "v2".into()],
            passing: true,
            node_meta: vec![("rack".into(), "r1".into())],
            ..Default::default()
        };
        assert_eq!(
            pairs(&opts),
            vec![
                ("filter", Some("Service.Port == 80".to_string())),
                ("tag", Some("prod".to_string())),
                ("tag", Some("v2".to_string())),
                ("passing", None),
                ("node-meta", Some("rack:r1".to_string())),
            ]
        );
    }

    #[test]
    fn wait_formatting() {
        assert_eq!(format_wait(Duration::from_secs(300)), "300000ms");
        assert_eq!(format_wait(Duration::from_millis(250)), "250ms");
        assert_eq!(format_wait(Duration::from_micros(10)), "1ms");
    }

    #[test]
    fn timeout_outlasts_the_blocking_wait() {
        let default = Duration::from_secs(30);
        assert_eq!(QueryOptions::default().request_timeout(default), default);
        let five_min = QueryOptions {
            index: 1,
            ..Default::default()
        };
        assert_eq!(
            five_min.request_timeout(default),
            Duration::from_secs(300) + Duration::from_millis(18_750) + TIMEOUT_MARGIN
        );
        let short = QueryOptions {
            index: 1,
            wait: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        assert_eq!(
            short.request_timeout(default),
            default,
            "never below the default"
        );
        let huge = QueryOptions {
            index: 1,
            wait: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        assert_eq!(
            huge.request_timeout(default),
            Duration::from_secs(600) + Duration::from_millis(37_500) + TIMEOUT_MARGIN,
            "the server caps wait at 10m"
        );
    }

    fn headers(items: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in items {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn meta_is_read_from_headers() {
        let url = url::Url::parse("http://x/v1/kv/a").unwrap();
        let h = headers(&[
            ("X-Consul-Index", "17"),
            ("X-Consul-KnownLeader", "true"),
            ("X-Consul-LastContact", "3"),
        ]);
        assert_eq!(
            QueryMeta::from_headers(&url, &h).unwrap(),
            QueryMeta {
                index: 17,
                known_leader: true,
                last_contact_ms: 3,
                endpoint: 0,
            }
        );
        let minimal = QueryMeta::from_headers(&url, &headers(&[("X-Consul-Index", "1")])).unwrap();
        assert_eq!(
            minimal,
            QueryMeta {
                index: 1,
                known_leader: false,
                last_contact_ms: 0,
                endpoint: 0,
            }
        );
    }

    #[test]
    fn missing_or_bad_index_is_an_error() {
        let url = url::Url::parse("http://x/v1/kv/a").unwrap();
        for h in [
            headers(&[]),
            headers(&[("X-Consul-Index", "abc")]),
            headers(&[("X-Consul-Index", "-1")]),
        ] {
            let err = QueryMeta::from_headers(&url, &h).unwrap_err();
            assert!(matches!(err, ClientError::MissingIndex { .. }), "{err}");
        }
    }

    #[test]
    fn kv_put_options() {
        let opts = KvPutOptions {
            flags: Some(7),
            cas: Some(0),
            acquire: Some("s1".into()),
            release: None,
        };
        assert_eq!(
            opts.query_pairs(),
            vec![
                ("flags", Some("7".to_string())),
                ("cas", Some("0".to_string())),
                ("acquire", Some("s1".to_string())),
            ]
        );
    }
}

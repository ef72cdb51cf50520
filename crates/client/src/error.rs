//! The client's error type. Every variant names the URL (or the input) it is about, because the
//! first reader is an operator looking at one log line; and errors are `Clone` so a watch can both
//! keep its last error for inspection and hand it to the caller.

use std::sync::Arc;

/// Longest server message kept in [`ClientError::Status`]; the rest is cut.
pub(crate) const MAX_ERROR_BODY: usize = 4096;

/// What went wrong talking to catalogd (or Consul).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The base URL given to [`CatalogClient::new`](crate::CatalogClient::new) is unusable.
    #[error("invalid catalog URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// The ACL token cannot be sent as an HTTP header value.
    #[error("invalid token: {reason}")]
    InvalidToken { reason: String },

    /// The TLS settings cannot be used: a file missing or not PEM, a key that does not go with
    /// its certificate, no CA to trust (`reason` names the file).
    #[error("TLS: {reason}")]
    Tls { reason: String },

    /// The request did not complete: connection refused, reset, timed out, body cut short.
    /// `message` is the whole cause chain in one line (reqwest's own Display says only "error
    /// sending request"); `cause` is the original error for callers that inspect it.
    #[error("request to {url} failed: {message}")]
    Http {
        url: String,
        message: String,
        cause: Arc<reqwest::Error>,
    },

    /// The server answered with a non-2xx status; `body` is its message.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        status: u16,
        url: String,
        body: String,
    },

    /// A read answered without a usable `X-Consul-Index` header (missing or not a number).
    #[error("{url}: response has no valid X-Consul-Index header (got {value:?})")]
    MissingIndex { url: String, value: Option<String> },

    /// The body is not the JSON this endpoint returns.
    #[error("{url}: unexpected response body: {cause}")]
    Decode {
        url: String,
        cause: Arc<serde_json::Error>,
    },
}

impl ClientError {
    /// Whether retrying the same request later may succeed without anyone changing anything:
    /// transport failures, 5xx, 429 and 408. A 4xx, a missing index or an undecodable body are
    /// answers that repeat until someone fixes the request, the token or the server.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Http { .. } => true,
            ClientError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            ClientError::InvalidUrl { .. }
            | ClientError::InvalidToken { .. }
            | ClientError::Tls { .. }
            | ClientError::MissingIndex { .. }
            | ClientError::Decode { .. } => false,
        }
    }

    /// The HTTP status of a [`ClientError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether this is a request that ran out of time (the client-side timeout).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Http { cause, .. } if cause.is_timeout())
    }

    pub(crate) fn http(url: &url::Url, cause: reqwest::Error) -> Self {
        // The URL is ours to print once; reqwest would add it again in its own Display.
        let cause = cause.without_url();
        let message = cause_chain(&cause);
        ClientError::Http {
            url: url.to_string(),
            message,
            cause: Arc::new(cause),
        }
    }

    pub(crate) fn decode(url: &url::Url, cause: serde_json::Error) -> Self {
        ClientError::Decode {
            url: url.to_string(),
            cause: Arc::new(cause),
        }
    }

    pub(crate) fn status_from(url: &url::Url, status: u16, body: &[u8]) -> Self {
        let text = String::from_utf8_lossy(body);
        let mut body = text.trim().to_string();
        if body.len() > MAX_ERROR_BODY {
            let mut cut = MAX_ERROR_BODY;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push_str("...");
        }
        if body.is_empty() {
            body = "(empty body)".to_string();
        }
        ClientError::Status {
            status,
            url: url.to_string(),
            body,
        }
    }
}

/// `outer: inner: innermost`, skipping a level whose text its parent already contains.
fn cause_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> url::Url {
        url::Url::parse("http://127.0.0.1:8500/v1/kv/a").unwrap()
    }

    #[test]
    fn status_error_keeps_server_message() {
        let e = ClientError::status_from(&url(), 400, b"  Invalid wait time\n");
        assert_eq!(
            e.to_string(),
            "http://127.0.0.1:8500/v1/kv/a: HTTP 400: Invalid wait time"
        );
        assert_eq!(e.status(), Some(400));
        assert!(!e.is_transient());
    }

    #[test]
    fn long_bodies_are_cut_on_char_boundaries() {
        let body = "é".repeat(MAX_ERROR_BODY);
        let ClientError::Status { body, .. } =
            ClientError::status_from(&url(), 500, body.as_bytes())
        else {
            panic!("not a status error")
        };
        assert!(body.len() <= MAX_ERROR_BODY + 3);
        assert!(body.ends_with("..."));
    }

    #[test]
    fn transient_classification() {
        let s = |status| ClientError::Status {
            status,
            url: String::new(),
            body: String::new(),
        };
        assert!(s(500).is_transient());
        assert!(s(503).is_transient());
        assert!(s(429).is_transient());
        assert!(!s(403).is_transient());
        assert!(!s(404).is_transient());
        assert!(
            !ClientError::MissingIndex {
                url: String::new(),
                value: None
            }
            .is_transient()
        );
    }
}

//! What can go wrong talking to etcd. Errors are `Clone` (a watch keeps its last error and hands it
//! over) and name the endpoint they are about where there is one.

/// gRPC status code `Unavailable`: etcd's "no leader", "leader changed", "request timed out",
/// "server stopped". A read answered with it is tried on the next endpoint.
pub const CODE_UNAVAILABLE: i32 = 14;

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered: each attempt is `"<endpoint>: <why>"`, in the order tried.
    #[error("no etcd endpoint answered: {}", .attempts.join("; "))]
    Unavailable { attempts: Vec<String> },

    /// A write was sent and no answer came back (timeout, connection lost after sending, or
    /// etcd's own "request timed out"): it may or may not have been applied. It is not retried;
    /// read the key to find out.
    #[error("{endpoint}: etcd write outcome unknown (it may have been applied): {reason}")]
    Indeterminate { endpoint: String, reason: String },

    /// etcd refused the request: the gateway's `{"error","code","message"}` body, `code` being
    /// the gRPC status code (3 invalid argument, 5 not found, 9 failed precondition, 11 out of
    /// range (a future or compacted revision in a range), 14 unavailable).
    #[error("etcd: {message} (gRPC code {code})")]
    Server { code: i32, message: String },

    /// A watch's start revision (or the revision it resumed from) has been compacted away:
    /// `compact_revision` is the oldest revision still available. Read the current state again
    /// and watch from its revision + 1.
    #[error("etcd revision compacted; the oldest available is {compact_revision}")]
    Compacted { compact_revision: i64 },

    /// The response is not the JSON this call expects.
    #[error("{endpoint}: unexpected etcd response: {reason}")]
    Decode { endpoint: String, reason: String },

    /// The lease is gone: expired, revoked, or never existed.
    #[error("etcd lease {id:x} expired or was revoked")]
    LeaseExpired { id: i64 },

    /// A response (or one watch message) is larger than the client's limit
    /// ([`EtcdClient::with_max_body`](crate::EtcdClient::with_max_body)); it was not read.
    #[error("{endpoint}: etcd response larger than the {limit}-byte limit")]
    TooLarge { endpoint: String, limit: usize },

    /// The client cannot be built: no endpoint, an unusable URL, TLS files (named).
    #[error("etcd client: {reason}")]
    Config { reason: String },
}

impl EtcdError {
    /// Whether the same call may succeed later without anyone changing anything: no endpoint
    /// answered, or etcd was unavailable (code 14).
    pub fn is_transient(&self) -> bool {
        match self {
            EtcdError::Unavailable { .. } => true,
            EtcdError::Server { code, .. } => *code == CODE_UNAVAILABLE,
            _ => false,
        }
    }
}

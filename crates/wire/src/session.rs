//! Sessions: the create body clients send and the entry catalogd returns.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What happens to a session's locks when it ends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SessionBehavior {
    #[default]
    Release,
    Delete,
}

/// Body of `PUT /v1/session/create`. `LockDelay` arrives as a Go duration string or as integer
/// nanoseconds (the Go client's form); both are kept raw and read by the server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionRequest {
    pub lock_delay: Option<Value>,
    pub node: String,
    pub name: String,
    pub checks: Option<Vec<String>>,
    pub node_checks: Option<Vec<String>>,
    pub service_checks: Option<Vec<Value>>,
    pub behavior: Option<SessionBehavior>,
    #[serde(rename = "TTL")]
    pub ttl: String,
}

/// A session as `/v1/session/info` returns it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionEntry {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub node: String,
    /// Nanoseconds, as Consul serializes a `time.Duration`.
    pub lock_delay: u64,
    pub behavior: SessionBehavior,
    #[serde(rename = "TTL")]
    pub ttl: String,
    pub node_checks: Vec<String>,
    pub service_checks: Vec<Value>,
    pub create_index: u64,
    pub modify_index: u64,
}

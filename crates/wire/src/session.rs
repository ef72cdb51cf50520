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
/// nanoseconds (the Go client's form); both are kept raw and read by the server, as is
/// `Behavior` (an unknown one is refused with Consul's text, not as a decoding error).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct SessionRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_delay: Option<Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_checks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_checks: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behavior: Option<String>,
    #[serde(rename = "TTL", skip_serializing_if = "String::is_empty")]
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
    /// Consul's deprecated check list, shown only when a client set it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    pub node_checks: Vec<String>,
    /// `null` when the session has none, as Consul renders it.
    pub service_checks: Option<Vec<Value>>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl SessionEntry {
    /// Every check ID (on the session's node) whose failure ends the session.
    pub fn check_ids(&self) -> impl Iterator<Item = &str> {
        self.checks
            .iter()
            .chain(&self.node_checks)
            .map(String::as_str)
            .chain(
                self.service_checks
                    .iter()
                    .flatten()
                    .filter_map(|sc| sc.get("ID").and_then(Value::as_str)),
            )
    }
}

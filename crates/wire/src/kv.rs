//! KV entries as Consul returns them (`Value` base64, `Session` omitted when unheld).

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One KV entry.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct KvPair {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    /// Base64 of the value; `null` for an empty value, as Consul sends it.
    pub value: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl KvPair {
    /// The decoded value (empty when absent or not valid base64).
    pub fn value_bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| b64_decode(v).ok())
            .unwrap_or_default()
    }
}

/// Standard base64, as Consul encodes KV values.
pub fn b64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64.
pub fn b64_decode(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    base64::engine::general_purpose::STANDARD.decode(s)
}

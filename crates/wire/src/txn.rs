//! `/v1/txn` bodies: KV operations applied all-or-nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kv::KvPair;

/// One KV operation of a transaction.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnKvOp {
    pub verb: String,
    pub key: String,
    pub value: Option<String>,
    pub flags: u64,
    pub index: u64,
    pub session: String,
}

/// One operation; only `KV` is supported, the others are kept to name them in errors.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct TxnOp {
    #[serde(rename = "KV")]
    pub kv: Option<TxnKvOp>,
    #[serde(rename = "Node", skip_serializing_if = "Option::is_none")]
    pub node: Option<Value>,
    #[serde(rename = "Service", skip_serializing_if = "Option::is_none")]
    pub service: Option<Value>,
    #[serde(rename = "Check", skip_serializing_if = "Option::is_none")]
    pub check: Option<Value>,
}

/// One result of a successful transaction.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct TxnResult {
    #[serde(rename = "KV")]
    pub kv: KvPair,
}

/// Why an operation failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnError {
    pub op_index: usize,
    pub what: String,
}

/// Body of a `/v1/txn` answer: `Results` on success, `Errors` (with 409) on failure.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TxnResponse {
    pub results: Option<Vec<TxnResult>>,
    pub errors: Option<Vec<TxnError>>,
}

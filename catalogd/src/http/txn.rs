//! `PUT /v1/txn`: KV operations applied all-or-nothing; 200 with `Results` or 409 with `Errors`.
//! A transaction of reads alone runs on the current snapshot without a write and answers as
//! Consul's read path does: leader headers, no index, Consul's query metadata in the body.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use cairn_wire::{TxnError, TxnKvOp, TxnOp, TxnResponse};

use super::query::Who;
use super::respond::{json_bytes, names};
use super::{HttpError, HttpResult, decode_body};
use crate::acl::Caller;
use crate::core::Core;
use crate::state::{ApplyError, Changes, LockDelays, READ_VERBS};
use crate::writer::{Command, Reply, WriteError};

/// Most operations in one transaction, as Consul's `maxTxnOps`.
const MAX_OPS: usize = 128;

/// How an answer is framed: after a write (no read headers), or as a read.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Write,
    Read,
}

fn answer(path: Path, result: Result<Vec<cairn_wire::TxnResult>, Vec<TxnError>>) -> HttpResult {
    let (status, body) = match result {
        Ok(results) => (
            StatusCode::OK,
            TxnResponse {
                results: Some(results),
                errors: None,
            },
        ),
        Err(errors) => (
            StatusCode::CONFLICT,
            TxnResponse {
                results: None,
                errors: Some(errors),
            },
        ),
    };
    let mut value = serde_json::to_value(&body).unwrap_or_default();
    if path == Path::Read
        && let serde_json::Value::Object(m) = &mut value
    {
        for (k, v) in [
            ("Index", serde_json::json!(0)),
            ("LastContact", serde_json::json!(0)),
            ("KnownLeader", serde_json::json!(true)),
            ("ConsistencyLevel", serde_json::json!("")),
            ("NotModified", serde_json::json!(false)),
            ("Backend", serde_json::json!(0)),
            ("ResultsFilteredByACLs", serde_json::json!(false)),
        ] {
            m.insert(k.into(), v);
        }
    }
    let mut resp = json_bytes(status, serde_json::to_vec(&value).unwrap_or_default());
    if path == Path::Read {
        let h = resp.headers_mut();
        h.insert(names::KNOWN_LEADER, HeaderValue::from_static("true"));
        h.insert(names::LAST_CONTACT, HeaderValue::from_static("0"));
    }
    Ok(resp)
}

/// The right each KV operation needs (Consul's `vetTxnKVOp`); a refused one fails the whole
/// transaction with "Permission denied" at its index. A `get-tree` needs read on its prefix.
fn vet(caller: &Caller, ops: &[TxnKvOp]) -> Result<(), Vec<TxnError>> {
    let errors: Vec<TxnError> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| {
            let a = &caller.authz;
            !match op.verb.as_str() {
                "delete-tree" => a.key_write_prefix(&op.key),
                v if READ_VERBS.contains(&v) => a.key_read(&op.key),
                _ => a.key_write(&op.key),
            }
        })
        .map(|(i, _)| TxnError {
            op_index: i,
            what: "Permission denied".into(),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub async fn txn(State(core): State<Arc<Core>>, Who(caller): Who, body: Bytes) -> HttpResult {
    let ops: Vec<TxnOp> = decode_body(&body).map_err(|e| {
        HttpError::bad_request(
            e.message
                .replace("Request decode failed", "Failed to parse body"),
        )
    })?;
    if ops.len() > MAX_OPS {
        return Err(HttpError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "Transaction contains too many operations ({} > {MAX_OPS})",
                ops.len()
            ),
        });
    }
    let mut kv_ops: Vec<TxnKvOp> = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        match op.kv {
            Some(kv) => kv_ops.push(kv),
            None => {
                let kind = if op.node.is_some() {
                    "Node"
                } else if op.service.is_some() {
                    "Service"
                } else if op.check.is_some() {
                    "Check"
                } else {
                    "empty"
                };
                return Err(HttpError::bad_request(format!(
                    "[{i}]: {kind} operations are not supported in transactions; only KV"
                )));
            }
        }
    }
    let reads_only = kv_ops
        .iter()
        .all(|op| READ_VERBS.contains(&op.verb.as_str()));
    if let Err(errors) = vet(&caller, &kv_ops) {
        let path = if reads_only { Path::Read } else { Path::Write };
        return answer(path, Err(errors));
    }
    if reads_only {
        let mut snapshot = (**core.current.load()).clone();
        let mut scratch = Changes::default();
        let result = snapshot.txn(
            &kv_ops,
            &LockDelays::default(),
            Instant::now(),
            &mut scratch,
        );
        return match result {
            Ok(results) => answer(Path::Read, Ok(results)),
            Err(ApplyError::Txn(errors)) => answer(Path::Read, Err(errors)),
            Err(other) => Err(HttpError::bad_request(other.to_string())),
        };
    }
    match core.writer.submit(Command::Txn(kv_ops)).await {
        Ok(Reply::Txn(results)) => answer(Path::Write, Ok(results)),
        Ok(_) => answer(Path::Write, Ok(Vec::new())),
        Err(WriteError::Apply(ApplyError::Txn(errors))) => answer(Path::Write, Err(errors)),
        Err(e) => Err(e.into()),
    }
}

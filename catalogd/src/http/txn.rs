//! `PUT /v1/txn`: KV operations applied all-or-nothing; 200 with `Results` or 409 with `Errors`.
//! A transaction of reads alone runs on the current snapshot without a write.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use cairn_wire::{TxnError, TxnKvOp, TxnOp, TxnResponse};

use super::respond::{json_bytes, with_index};
use super::{HttpError, HttpResult, decode_body};
use crate::core::Core;
use crate::state::{ApplyError, Changes, LockDelays, READ_VERBS};
use crate::writer::{Command, Reply, WriteError};

/// Most operations in one transaction (Consul allows 128; larger batches are a useful extension).
const MAX_OPS: usize = 4096;

fn answer(index: u64, result: Result<Vec<cairn_wire::TxnResult>, Vec<TxnError>>) -> HttpResult {
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
    Ok(with_index(
        json_bytes(status, serde_json::to_vec(&body).unwrap_or_default()),
        index,
    ))
}

pub async fn txn(State(core): State<Arc<Core>>, body: Bytes) -> HttpResult {
    let ops: Vec<TxnOp> = decode_body(&body)?;
    if ops.len() > MAX_OPS {
        return Err(HttpError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "transaction has {} operations, more than the {MAX_OPS} allowed",
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
    if kv_ops
        .iter()
        .all(|op| READ_VERBS.contains(&op.verb.as_str()))
    {
        let mut snapshot = (**core.current.load()).clone();
        let index = snapshot.index;
        let mut scratch = Changes::default();
        let result = snapshot.txn(
            &kv_ops,
            &LockDelays::default(),
            Instant::now(),
            &mut scratch,
        );
        return match result {
            Ok(results) => answer(index, Ok(results)),
            Err(ApplyError::Txn(errors)) => answer(index, Err(errors)),
            Err(other) => Err(HttpError::bad_request(other.to_string())),
        };
    }
    match core.writer.submit(Command::Txn(kv_ops)).await {
        Ok(Reply::Txn(results)) => answer(core.index(), Ok(results)),
        Ok(_) => answer(core.index(), Ok(Vec::new())),
        Err(WriteError::Apply(ApplyError::Txn(errors))) => answer(core.index(), Err(errors)),
        Err(e) => Err(e.into()),
    }
}

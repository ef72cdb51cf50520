//! `/v1/txn`: KV operations applied all-or-nothing. The caller runs a transaction on a clone of
//! the state and keeps the clone only when every operation succeeded.

use std::time::Instant;

use cairn_wire::{TxnError, TxnKvOp, TxnResult, b64_decode};

use super::kv::{KvPut, validate_key};
use super::{ApplyError, Changes, LockDelays, State, prefix_range};

/// Verbs that only read; a transaction made of them alone needs no write.
pub const READ_VERBS: &[&str] = &[
    "get",
    "get-or-empty",
    "get-tree",
    "check-index",
    "check-session",
    "check-not-exists",
];

impl State {
    /// Runs every operation in order; on the first failure returns every error found so far and
    /// the caller discards this state.
    pub fn txn(
        &mut self,
        ops: &[TxnKvOp],
        delays: &LockDelays,
        now: Instant,
        ch: &mut Changes,
    ) -> Result<Vec<TxnResult>, ApplyError> {
        let mut results = Vec::new();
        let mut errors = Vec::new();
        self.as_one_write(|st| {
            for (i, op) in ops.iter().enumerate() {
                if let Err(what) = st.txn_op(op, delays, now, ch, &mut results) {
                    errors.push(TxnError { op_index: i, what });
                }
            }
        });
        if errors.is_empty() {
            Ok(results)
        } else {
            Err(ApplyError::Txn(errors))
        }
    }

    fn txn_op(
        &mut self,
        op: &TxnKvOp,
        delays: &LockDelays,
        now: Instant,
        ch: &mut Changes,
        results: &mut Vec<TxnResult>,
    ) -> Result<(), String> {
        let key = op.key.as_str();
        let value = || -> Result<Vec<u8>, String> {
            match &op.value {
                None => Ok(Vec::new()),
                Some(v) => {
                    b64_decode(v).map_err(|e| format!("Value of key {key:?}: invalid base64: {e}"))
                }
            }
        };
        let push = |state: &State, results: &mut Vec<TxnResult>, with_value: bool| {
            if let Some(e) = state.kv.get(key) {
                results.push(TxnResult {
                    kv: e.to_pair(key, with_value),
                });
            }
        };
        let put = |state: &mut State, put: KvPut, ch: &mut Changes| -> Result<bool, String> {
            state.kv_put(put, delays, now, ch).map_err(|e| match e {
                ApplyError::Txn(_) => "transaction failed".to_string(),
                other => other.to_string(),
            })
        };
        let current_index = self.kv.get(key).map_or(0, |e| e.modify_index);
        match op.verb.as_str() {
            "set" => {
                let p = KvPut {
                    key: key.into(),
                    value: value()?,
                    flags: Some(op.flags),
                    ..Default::default()
                };
                put(self, p, ch)?;
                push(self, results, false);
            }
            "cas" => {
                let p = KvPut {
                    key: key.into(),
                    value: value()?,
                    flags: Some(op.flags),
                    cas: Some(op.index),
                    ..Default::default()
                };
                if !put(self, p, ch)? {
                    return Err(format!(
                        "failed to set key {key:?}, index is stale (current {current_index}, expected {})",
                        op.index
                    ));
                }
                push(self, results, false);
            }
            "lock" => {
                let p = KvPut {
                    key: key.into(),
                    value: value()?,
                    flags: Some(op.flags),
                    acquire: Some(op.session.clone()),
                    ..Default::default()
                };
                if !put(self, p, ch)? {
                    return Err(format!("failed to lock key {key:?}, lock is already held"));
                }
                push(self, results, false);
            }
            "unlock" => {
                let p = KvPut {
                    key: key.into(),
                    value: value()?,
                    flags: Some(op.flags),
                    release: Some(op.session.clone()),
                    ..Default::default()
                };
                if !put(self, p, ch)? {
                    return Err(format!(
                        "failed to unlock key {key:?}, lock isn't held by session {:?}",
                        op.session
                    ));
                }
                push(self, results, false);
            }
            "get" => {
                if !self.kv.contains_key(key) {
                    return Err(format!("key {key:?} doesn't exist"));
                }
                push(self, results, true);
            }
            "get-or-empty" => match self.kv.get(key) {
                Some(e) => results.push(TxnResult {
                    kv: e.to_pair(key, true),
                }),
                None => results.push(TxnResult {
                    kv: cairn_wire::KvPair {
                        key: key.to_string(),
                        ..Default::default()
                    },
                }),
            },
            "get-tree" => {
                for (k, e) in prefix_range(&self.kv, key) {
                    results.push(TxnResult {
                        kv: e.to_pair(k, true),
                    });
                }
            }
            "check-index" => {
                if !self.kv.contains_key(key) {
                    return Err(format!("key {key:?} doesn't exist"));
                }
                if current_index != op.index {
                    return Err(format!(
                        "current modify index {current_index} for key {key:?} != {}",
                        op.index
                    ));
                }
                push(self, results, false);
            }
            "check-session" => {
                let held = self.kv.get(key).map(|e| e.session.as_str());
                match held {
                    None => return Err(format!("key {key:?} doesn't exist")),
                    Some(s) if s != op.session => {
                        return Err(format!(
                            "failed session check for key {key:?}, current session {s:?} != {:?}",
                            op.session
                        ));
                    }
                    Some(_) => push(self, results, false),
                }
            }
            "check-not-exists" => {
                if self.kv.contains_key(key) {
                    return Err(format!("key {key:?} exists"));
                }
            }
            "delete" => {
                validate_key(key).map_err(|e| e.to_string())?;
                self.kv_delete(key, false, None, ch)
                    .map_err(|e| e.to_string())?;
            }
            "delete-tree" => {
                self.kv_delete(key, true, None, ch)
                    .map_err(|e| e.to_string())?;
            }
            "delete-cas" => {
                let done = self
                    .kv_delete(key, false, Some(op.index), ch)
                    .map_err(|e| e.to_string())?;
                if !done {
                    return Err(format!(
                        "failed to delete key {key:?}, index is stale (current {current_index}, expected {})",
                        op.index
                    ));
                }
            }
            other => return Err(format!("unknown KV verb {other:?}")),
        }
        Ok(())
    }
}

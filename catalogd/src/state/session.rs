//! Sessions and the locks they hold: creation with its checks and TTL, destruction (by request,
//! TTL expiry, a critical check or the node leaving) releasing or deleting held keys, and the
//! lock-delay that keeps a released key from being re-acquired at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_wire::{
    CheckStatus, SessionBehavior, SessionEntry, SessionRequest, format_go_duration,
    parse_go_duration,
};
use serde_json::Value;

use super::{ApplyError, Changes, NodeKey, Session, State, TtlChange, invalid};

/// Consul's default and maximum lock delay.
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
const MAX_SESSION_TTL: Duration = Duration::from_secs(86400);

/// Keys that may not be acquired until a deadline (in memory only: after a restart there is no
/// delay, as with Consul's leader change).
#[derive(Debug, Default, Clone)]
pub struct LockDelays {
    until: HashMap<String, Instant>,
}

impl LockDelays {
    pub fn blocks(&self, key: &str, now: Instant) -> bool {
        self.until.get(key).is_some_and(|t| *t > now)
    }

    pub fn set(&mut self, key: String, until: Instant) {
        self.until.insert(key, until);
    }

    /// Forgets every delay (the state they applied to was replaced).
    pub fn clear(&mut self) {
        self.until.clear();
    }

    /// Drops expired entries.
    pub fn prune(&mut self, now: Instant) {
        self.until.retain(|_, t| *t > now);
    }
}

/// Reads `LockDelay` as Consul does: a duration string or a number of nanoseconds, and then a
/// value below 1000 ns counts as seconds (clients send `15` meaning 15 s).
fn lock_delay(raw: Option<&Value>) -> Result<Duration, ApplyError> {
    let d = match raw {
        None | Some(Value::Null) => return Ok(DEFAULT_LOCK_DELAY),
        Some(Value::String(s)) => match parse_go_duration(s) {
            Ok(d) => d,
            Err(_) => {
                return invalid(format!(
                    "Request decode failed: time: invalid duration {s:?}"
                ));
            }
        },
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v >= 0.0 => Duration::from_nanos(v as u64),
            _ => return invalid("Request decode failed: LockDelay: must not be negative"),
        },
        Some(other) => {
            return invalid(format!(
                "Request decode failed: LockDelay: expected a duration, got {other}"
            ));
        }
    };
    Ok(if d < Duration::from_nanos(1000) {
        Duration::from_secs(d.as_nanos() as u64)
    } else {
        d
    })
}

/// Consul's default session checks: the node's `serfHealth`.
const DEFAULT_CHECKS: &[&str] = &["serfHealth"];

/// Consul's `fixupEmptySessionChecks`: which check lists a create request ends up with.
fn session_checks(req: &SessionRequest) -> (Vec<String>, Vec<String>) {
    let default = || {
        DEFAULT_CHECKS
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    let mut checks = req.checks.clone().unwrap_or_else(default);
    let mut node_checks = req.node_checks.clone().unwrap_or_else(default);
    if checks.is_empty() {
        // `"Checks": []` means no checks at all.
        node_checks.clear();
    } else if checks == default() || node_checks.is_empty() {
        checks.clear();
    }
    (checks, node_checks)
}

impl State {
    /// `PUT /v1/session/create`; returns the new session's ID.
    pub fn session_create(
        &mut self,
        id: String,
        req: SessionRequest,
        self_node: &str,
        min_ttl: Duration,
        ch: &mut Changes,
    ) -> Result<String, ApplyError> {
        let node = if req.node.is_empty() {
            self_node.to_string()
        } else {
            req.node.clone()
        };
        let delay = lock_delay(req.lock_delay.as_ref())?;
        let behavior = match req.behavior.as_deref() {
            None | Some("" | "release") => SessionBehavior::Release,
            Some("delete") => SessionBehavior::Delete,
            Some(other) => {
                return Err(ApplyError::Rpc(format!(
                    "Invalid Behavior setting '{other}'"
                )));
            }
        };
        let ttl = if req.ttl.is_empty() {
            None
        } else {
            let ttl = parse_go_duration(&req.ttl).map_err(|_| {
                ApplyError::Rpc(format!(
                    "Session TTL '{}' invalid: time: invalid duration {:?}",
                    req.ttl, req.ttl
                ))
            })?;
            if ttl.is_zero() {
                None
            } else if ttl < min_ttl || ttl > MAX_SESSION_TTL {
                return Err(ApplyError::Rpc(format!(
                    "Invalid Session TTL '{}', must be between [{}={}]",
                    ttl.as_nanos(),
                    format_go_duration(min_ttl),
                    format_go_duration(MAX_SESSION_TTL)
                )));
            } else {
                Some(ttl)
            }
        };
        if !self.nodes.contains_key(&node) {
            return Err(ApplyError::Rpc(
                "apply failed: Missing node registration".into(),
            ));
        }
        let (checks, node_checks) = session_checks(&req);
        let service_checks = req.service_checks.clone().filter(|v| !v.is_empty());
        let entry = SessionEntry {
            id: id.clone(),
            name: req.name,
            node: node.clone(),
            lock_delay: delay.as_nanos() as u64,
            behavior,
            ttl: req.ttl,
            checks,
            node_checks,
            service_checks,
            create_index: 0,
            modify_index: 0,
        };
        for cid in entry.check_ids() {
            match self.checks.get(&(node.clone(), cid.to_string())) {
                None => {
                    return Err(ApplyError::Rpc(format!(
                        "apply failed: Missing check '{cid}' registration"
                    )));
                }
                Some(c) if c.status == CheckStatus::Critical => {
                    return Err(ApplyError::Rpc(format!(
                        "apply failed: Check '{cid}' is in critical state"
                    )));
                }
                Some(_) => {}
            }
        }
        let idx = self.next_index();
        let entry = SessionEntry {
            create_index: idx,
            modify_index: idx,
            ..entry
        };
        let ttl_ms = ttl.map_or(0, |t| t.as_millis() as u64);
        self.sessions.insert(id.clone(), Session { entry, ttl_ms });
        self.tables.sessions = idx;
        ch.sessions.insert(id.clone());
        if let Some(ttl) = ttl {
            ch.ttl.push(TtlChange::ArmSession(id.clone(), ttl));
        }
        Ok(id)
    }

    /// `PUT /v1/session/destroy/:id` and TTL expiry; false when unknown.
    pub fn session_destroy(&mut self, id: &str, ch: &mut Changes) -> bool {
        if !self.sessions.contains_key(id) {
            return false;
        }
        let idx = self.next_index();
        self.end_session(id, idx, ch);
        true
    }

    /// The lock-delays that ending session `id` starts: every key it holds, for its
    /// lock-delay (none when that is zero). A replica that learns of another's ending of a
    /// session from the store starts the same ones.
    pub(crate) fn lock_delays_of(&self, id: &str) -> Vec<(String, Duration)> {
        let Some(session) = self.sessions.get(id) else {
            return Vec::new();
        };
        let delay = Duration::from_nanos(session.entry.lock_delay).min(MAX_LOCK_DELAY);
        if delay.is_zero() {
            return Vec::new();
        }
        self.kv
            .iter()
            .filter(|(_, e)| e.session == id)
            .map(|(k, _)| (k.clone(), delay))
            .collect()
    }

    /// Ends a session at `idx`: releases or deletes its keys and starts their lock-delay.
    pub(crate) fn end_session(&mut self, id: &str, idx: u64, ch: &mut Changes) {
        ch.lock_delays.extend(self.lock_delays_of(id));
        let Some(session) = self.sessions.remove(id) else {
            return;
        };
        self.tables.sessions = idx;
        ch.sessions.insert(id.to_string());
        ch.ttl.push(TtlChange::DisarmSession(id.to_string()));
        self.drop_queries_of_session(id, idx, ch);
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session == id)
            .map(|(k, _)| k.clone())
            .collect();
        for key in held {
            match session.entry.behavior {
                SessionBehavior::Delete => {
                    self.drop_kv(&key, idx, ch);
                }
                SessionBehavior::Release => {
                    if let Some(mut e) = self.kv.get(&key).cloned() {
                        e.session.clear();
                        e.modify_index = idx;
                        self.store_kv(key, e, idx, ch);
                    }
                }
            }
        }
    }

    /// Ends every session that depends on a check that went critical or away.
    pub(crate) fn invalidate_sessions_of_check(
        &mut self,
        key: &NodeKey,
        idx: u64,
        ch: &mut Changes,
    ) {
        let doomed: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.entry.node == key.0 && s.entry.check_ids().any(|c| c == key.1))
            .map(|(id, _)| id.clone())
            .collect();
        for id in doomed {
            self.end_session(&id, idx, ch);
        }
    }
}

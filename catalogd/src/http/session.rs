//! `/v1/session/*`: create, destroy, renew (which resets the TTL without a write), and reads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use cairn_wire::{SessionEntry, SessionRequest};

use super::query::Who;
use super::respond::{blocking, filtered_by_acls, json_list, json_plain};
use super::{HttpError, HttpResult, Read, decode_keys, typed};
use crate::acl::Caller;
use crate::core::Core;
use crate::state::TtlChange;
use crate::watch::Topic;
use crate::writer::{Command, Reply};

pub async fn create(State(core): State<Arc<Core>>, Who(caller): Who, body: Bytes) -> HttpResult {
    // An empty body is allowed: every field has a default.
    let req: SessionRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SessionRequest::default()
    } else {
        typed(decode_keys(&body)?)?
    };
    // A session without a node is catalogd's own node's.
    let node = if req.node.is_empty() {
        &core.config.node
    } else {
        &req.node
    };
    caller.require(
        caller.authz.session_write(node),
        "session",
        "write",
        Some(node),
    )?;
    match core.writer.submit(Command::SessionCreate(req)).await? {
        Reply::Id(id) => Ok(json_plain(&serde_json::json!({ "ID": id }))),
        _ => Err(HttpError::bad_request("unexpected reply")),
    }
}

/// Consul's rule for acting on an existing session: session:write on its node.
fn may_change(core: &Core, caller: &Caller, id: &str) -> Result<(), HttpError> {
    if let Some(s) = core.current.load().sessions.get(id) {
        let node = &s.entry.node;
        caller.require(
            caller.authz.session_write(node),
            "session",
            "write",
            Some(node),
        )?;
    }
    Ok(())
}

pub async fn destroy(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> HttpResult {
    may_change(&core, &caller, &id)?;
    core.writer.submit(Command::SessionDestroy(id)).await?;
    Ok(json_plain(&true))
}

pub async fn renew(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> HttpResult {
    may_change(&core, &caller, &id)?;
    if core.replicated {
        // Any replica may be the one enforcing the TTL: the renewal goes through the store.
        core.writer
            .submit(Command::SessionRenew(id.clone()))
            .await?;
    }
    let st = core.current.load();
    let Some(session) = st.sessions.get(&id) else {
        return Err(HttpError::not_found(format!("Session id '{id}' not found")));
    };
    if !core.replicated && session.ttl_ms > 0 && !core.timers.renew_session(&id, Instant::now()) {
        // The sweeper took the deadline a moment ago; re-arm so the expiry it queued is dropped.
        let ttl = Duration::from_millis(session.ttl_ms);
        core.timers
            .apply(&[TtlChange::ArmSession(id.clone(), ttl)], Instant::now());
    }
    Ok(json_plain(&[&session.entry]))
}

pub async fn info(State(core): State<Arc<Core>>, Path(id): Path<String>, read: Read) -> HttpResult {
    list_where(core, read, move |s| s.id == id).await
}

pub async fn list(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    list_where(core, read, |_| true).await
}

pub async fn node(
    State(core): State<Arc<Core>>,
    Path(node): Path<String>,
    read: Read,
) -> HttpResult {
    list_where(core, read, move |s| s.node == node).await
}

async fn list_where(
    core: Arc<Core>,
    read: Read,
    keep: impl Fn(&SessionEntry) -> bool,
) -> HttpResult {
    let Read { opts, caller, .. } = read;
    let (idx, (sessions, hidden)) = blocking(&core, &opts, Topic::Sessions, |st| {
        let mut hidden = false;
        let list: Vec<SessionEntry> = st
            .sessions
            .values()
            .map(|s| &s.entry)
            .filter(|e| keep(e))
            .filter(|e| {
                let visible = caller.authz.session_read(&e.node);
                hidden |= !visible;
                visible
            })
            .cloned()
            .collect();
        (st.tables.sessions, (list, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_list(idx, &sessions, &opts)))
}

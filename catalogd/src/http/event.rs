//! `/v1/event/fire/:name` and `/v1/event/list` (see [`crate::events`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};

use super::respond::{filtered_by_acls, json_plain, json_read, names};
use super::{HttpError, HttpResult, QueryParams, Read};
use crate::core::Core;
use crate::events::{LocalService, UserEvent, list_index};
use crate::server_node::is_server_service;

/// `PUT /v1/event/fire/:name?node=&service=&tag=`: the body is the payload.
pub async fn fire(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    if name.is_empty() {
        return Err(HttpError::bad_request("Missing name"));
    }
    let query = QueryParams::parse(q.as_deref());
    let param = |k| query.first(k).unwrap_or_default().to_string();
    let event = UserEvent {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        payload: (!body.is_empty()).then(|| cairn_wire::b64_encode(&body)),
        node_filter: param("node"),
        service_filter: param("service"),
        tag_filter: param("tag"),
        version: 1,
        ltime: 0,
    };
    let st = core.current.load();
    let services: Vec<LocalService<'_>> = st
        .node_services(&core.config.node)
        .filter(|(k, _)| !is_server_service(&k.1))
        .map(|(_, s)| LocalService {
            name: &s.service,
            tags: &s.tags,
        })
        .collect();
    let fired = core
        .events
        .fire(event, body.len(), &core.config.node, &services)
        .map_err(|e| HttpError::internal(e.to_string()))?;
    Ok(json_plain(&fired))
}

/// `GET /v1/event/list?name=`: blocking on `index` by equality, as Consul's (the index is a
/// hash of the newest event's ID, not a counter).
pub async fn list(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let name = read.query.first("name").filter(|n| !n.is_empty());
    let mut events = core.events.list(name);
    let mut index = list_index(&events);
    if read.opts.index > 0 && index == read.opts.index {
        let deadline = tokio::time::Instant::now() + read.opts.wait;
        loop {
            let changed = core.events.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            events = core.events.list(name);
            index = list_index(&events);
            if index != read.opts.index || core.registry.closing() {
                break;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                break;
            }
        }
    }
    let before = events.len();
    events.retain(|e| read.caller.authz.event_read(&e.name));
    let hidden = events.len() != before;
    // Consul sets only the index on this answer.
    let mut resp = filtered_by_acls(hidden, json_read(index, &events));
    let h = resp.headers_mut();
    for name in [
        names::KNOWN_LEADER,
        names::LAST_CONTACT,
        names::CONSISTENCY,
        names::QUERY_BACKEND,
    ] {
        h.remove(name);
    }
    Ok(resp)
}

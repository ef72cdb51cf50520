//! `/v1/query`: prepared queries (rules in the `cairn-query` crate, shared with dnsbridge).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use cairn_query::{Near, PreparedQuery, ResolveError, execute, resolve, validate};
use serde_json::{Value, json};

use super::respond::{blocking, filtered_by_acls, json_plain, json_read};
use super::{HttpError, HttpResult, QueryParams, Read, decode_keys, typed};
use crate::core::Core;
use crate::state::{Selection, Table};
use crate::watch::Topic;
use crate::writer::Command;

/// Consul's query metadata, which its execute and explain answers carry in the body.
fn with_query_meta(mut body: Value) -> Value {
    if let Value::Object(m) = &mut body {
        for (k, v) in [
            ("Index", json!(0)),
            ("LastContact", json!(0)),
            ("KnownLeader", json!(true)),
            ("ConsistencyLevel", json!("leader")),
            ("NotModified", json!(false)),
            ("Backend", json!(0)),
            ("ResultsFilteredByACLs", json!(false)),
        ] {
            m.insert(k.into(), v);
        }
    }
    body
}

/// Reads a query definition from a request body (its `DNS.TTL` is a plain string to Consul's
/// decoder, checked by the query's validation with its own text).
fn definition(body: &[u8]) -> Result<PreparedQuery, HttpError> {
    let q: PreparedQuery = typed(decode_keys(body)?)?;
    validate(&q).map_err(HttpError::internal)?;
    Ok(q)
}

/// `POST /v1/query` (create) and `GET /v1/query` (list).
pub async fn root(
    State(core): State<Arc<Core>>,
    method: Method,
    read: Read,
    body: Bytes,
) -> HttpResult {
    let caller = read.caller.clone();
    if method == Method::GET {
        let (idx, mut list) = blocking(
            &core,
            &read.opts,
            Topic::Table(Table::PreparedQueries),
            |st| {
                (
                    st.table_index(Table::PreparedQueries),
                    st.prepared_queries(),
                )
            },
        )
        .await;
        let before = list.len();
        list.retain(|q| may_read(&caller, q));
        let hidden = list.len() != before;
        return Ok(filtered_by_acls(hidden, json_read(idx, &list)));
    }
    let mut q = definition(&body)?;
    may_write(&caller, &q.name)?;
    if !q.id.is_empty() {
        return Err(HttpError::internal(
            "ID must be empty when creating a new prepared query",
        ));
    }
    q.id = uuid::Uuid::new_v4().to_string();
    let id = q.id.clone();
    core.writer
        .submit(Command::QueryCreate(Box::new(q)))
        .await?;
    Ok(json_plain(&json!({ "ID": id })))
}

/// Consul's rule: a named query is read with query:read on its name; a nameless one only by
/// a management-level token (it is bound to the token that made it).
fn may_read(caller: &crate::acl::Caller, q: &PreparedQuery) -> bool {
    if q.name.is_empty() {
        caller.authz.acl_write()
    } else {
        caller.authz.query_read(&q.name)
    }
}

/// Creating, changing or deleting a named query needs query:write on its name.
fn may_write(caller: &crate::acl::Caller, name: &str) -> Result<(), HttpError> {
    if name.is_empty() {
        return Ok(());
    }
    caller.require(caller.authz.query_write(name), "query", "write", Some(name))
}

/// The address a request came from: the first `X-Forwarded-For` entry, else the peer's.
fn source_ip(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
    headers
        .get("X-Forwarded-For")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| peer.map(|p| p.ip().to_string()))
}

/// `/v1/query/:id` (GET, PUT, DELETE), `/v1/query/:id/execute`, `/v1/query/:id/explain`.
pub async fn by_id(
    State(core): State<Arc<Core>>,
    Path(rest): Path<String>,
    method: Method,
    read: Read,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> HttpResult {
    if let Some(name) = rest.strip_suffix("/execute") {
        if method != Method::GET {
            return Err(not_allowed(&method));
        }
        let ip = source_ip(&headers, peer.map(|Extension(c)| c.0));
        return run(&core, &read.caller, name, &read.query, ip.as_deref());
    }
    if let Some(name) = rest.strip_suffix("/explain") {
        if method != Method::GET {
            return Err(not_allowed(&method));
        }
        let queries = core.current.load().prepared_queries();
        let q = resolve(&queries, name).map_err(resolve_error)?;
        if !may_read(&read.caller, &q) {
            return Err(read.caller.denied("query", "read", Some(&q.name)));
        }
        return Ok(json_plain(&with_query_meta(json!({ "Query": q }))));
    }
    let id = rest;
    match method {
        Method::GET => {
            let (idx, found) = blocking(
                &core,
                &read.opts,
                Topic::Table(Table::PreparedQueries),
                |st| {
                    let found = st.prepared_queries().into_iter().find(|q| q.id == id);
                    (st.table_index(Table::PreparedQueries), found)
                },
            )
            .await;
            match found {
                Some(q) if !may_read(&read.caller, &q) => {
                    Err(read.caller.denied("query", "read", Some(&q.name)))
                }
                Some(q) => Ok(json_read(idx, &[q])),
                None => Err(HttpError::not_found("Query not found")),
            }
        }
        Method::PUT => {
            // A whole replacement: the ID is the URL's, whatever the body says.
            let mut q = if body.iter().all(u8::is_ascii_whitespace) {
                PreparedQuery::default()
            } else {
                typed(decode_keys(&body)?)?
            };
            let old = core
                .current
                .load()
                .prepared_queries()
                .into_iter()
                .find(|o| o.id == id);
            if let Some(old) = &old {
                may_write(&read.caller, &old.name)?;
            }
            may_write(&read.caller, &q.name)?;
            q.id = id;
            validate(&q).map_err(HttpError::internal)?;
            core.writer
                .submit(Command::QueryUpdate(Box::new(q)))
                .await?;
            Ok(StatusCode::OK.into_response())
        }
        Method::DELETE => {
            let old = core
                .current
                .load()
                .prepared_queries()
                .into_iter()
                .find(|o| o.id == id);
            if let Some(old) = &old {
                may_write(&read.caller, &old.name)?;
            }
            core.writer.submit(Command::QueryDelete(id)).await?;
            Ok(StatusCode::OK.into_response())
        }
        other => Err(not_allowed(&other)),
    }
}

fn not_allowed(method: &Method) -> HttpError {
    HttpError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: format!("method {method} not allowed"),
    }
}

fn resolve_error(e: ResolveError) -> HttpError {
    match e {
        ResolveError::NotFound => HttpError::not_found("Query not found"),
        other => HttpError::internal(other.to_string()),
    }
}

/// Executes a query: `?near=`, `?limit=`, `?connect=`.
fn run(
    core: &Core,
    caller: &crate::acl::Caller,
    name: &str,
    query: &QueryParams,
    ip: Option<&str>,
) -> HttpResult {
    let limit = match query.first("limit") {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            HttpError::internal(format!(
                "Bad limit: strconv.Atoi: parsing {v:?}: invalid syntax"
            ))
        })?),
    };
    let connect = match query.first("connect") {
        None | Some("") => false,
        Some(v) => {
            matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True")
                || if matches!(v, "0" | "f" | "F" | "FALSE" | "false" | "False") {
                    false
                } else {
                    return Err(HttpError::internal(format!(
                        "Error parsing 'connect' value: strconv.ParseBool: parsing {v:?}: invalid syntax"
                    )));
                }
        }
    };
    let st = core.current.load();
    let queries = st.prepared_queries();
    let q = resolve(&queries, name).map_err(resolve_error)?;
    let service = q.service.service.clone();
    caller.require(
        caller.authz.service_read(&service),
        "service",
        "read",
        Some(&service),
    )?;
    let sel = if connect || q.service.connect {
        Selection::Connect(service.clone())
    } else {
        Selection::Service(service.clone())
    };
    // Peered services are not found here: catalogd has no peerings.
    let instances = if q.service.peer.is_empty() {
        st.entries_of(&sel)
    } else {
        Vec::new()
    };
    let near_param = query.first("near").filter(|n| !n.is_empty());
    let near = Near {
        name: near_param.unwrap_or(&q.service.near),
        agent_node: &core.config.node,
        source_ip: ip,
    };
    let instances: Vec<_> = instances
        .into_iter()
        .filter(|e| caller.authz.node_read(&e.node.node))
        .collect();
    let nodes = execute(&q, instances, &near, limit);
    let body = with_query_meta(json!({
        "Service": service,
        "Nodes": nodes,
        "DNS": q.dns,
        "Datacenter": core.config.datacenter,
        "PeerName": "",
        "Failovers": 0,
    }));
    // Consul never sets an index on this answer, so clients see 1.
    Ok(super::respond::with_index(json_plain(&body), 1))
}

//! `/v1/config`: config entries (see [`crate::config_entries`] for the kinds' rules).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;

use super::query::Who;
use super::respond::{blocking, json_plain, json_read, with_index};
use super::{HttpError, HttpResult, QueryParams, Read};
use crate::acl::Caller;
use crate::config_entries::{EntryError, kind_fields, parse, render_entry};
use crate::core::Core;
use crate::state::Table;
use crate::watch::Topic;
use crate::writer::{Command, Reply};

/// `?cas=`, as Consul parses it (a bad value is a bare parse error, 500).
fn cas_param(query: &QueryParams) -> Result<Option<u64>, HttpError> {
    query
        .first("cas")
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                HttpError::internal(format!("strconv.ParseUint: parsing {v:?}: invalid syntax"))
            })
        })
        .transpose()
}

/// Kinds that configure one service: written with service:write (service-intentions with
/// intentions:write) and read with service:read on its name. The other kinds (proxy-defaults,
/// mesh, gateways' shared settings, ...) are mesh-wide: mesh:write to change; readable by all.
const SERVICE_KINDS: &[&str] = &[
    "service-defaults",
    "service-router",
    "service-splitter",
    "service-resolver",
    "service-intentions",
    "ingress-gateway",
    "terminating-gateway",
    "api-gateway",
];

fn may_read(caller: &Caller, kind: &str, name: &str) -> bool {
    if !SERVICE_KINDS.contains(&kind) {
        return true;
    }
    if kind == "service-intentions" {
        caller.authz.intention_read(name)
    } else {
        caller.authz.service_read(name)
    }
}

fn may_write(caller: &Caller, kind: &str, name: &str) -> Result<(), HttpError> {
    match kind {
        "service-intentions" => caller.require(
            caller.authz.intention_write(name),
            "intention",
            "write",
            Some(name),
        ),
        k if SERVICE_KINDS.contains(&k) => caller.require(
            caller.authz.service_write(name),
            "service",
            "write",
            Some(name),
        ),
        _ => caller.require(caller.authz.mesh_write(), "mesh", "write", None),
    }
}

/// `PUT /v1/config[?cas=]`.
pub async fn apply(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    let cas = cas_param(&QueryParams::parse(q.as_deref()))?;
    let decode = |why: String| HttpError::bad_request(format!("Request decoding failed: {why}"));
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(decode("EOF".into()));
    }
    let raw: Value = serde_json::from_slice(&body).map_err(|e| decode(e.to_string()))?;
    let entry = parse(raw).map_err(|e| match e {
        EntryError::Decode(why) => decode(why),
        EntryError::Invalid(why) => HttpError::internal(why),
        EntryError::Forbidden(why) => HttpError {
            status: StatusCode::FORBIDDEN,
            message: why,
        },
    })?;
    may_write(
        &caller,
        entry["Kind"].as_str().unwrap_or_default(),
        entry["Name"].as_str().unwrap_or_default(),
    )?;
    match core
        .writer
        .submit(Command::ConfigApply { entry, cas })
        .await?
    {
        Reply::Bool(ok) => Ok(json_plain(&ok)),
        _ => Ok(json_plain(&true)),
    }
}

/// Splits `:kind/:name` (a name may hold `/`).
fn split(rest: &str) -> (String, String) {
    match rest.split_once('/') {
        Some((k, n)) => (k.to_string(), n.to_string()),
        None => (rest.to_string(), String::new()),
    }
}

/// `GET /v1/config/:kind[/:name]`.
pub async fn get(
    State(core): State<Arc<Core>>,
    Path(rest): Path<String>,
    read: Read,
) -> HttpResult {
    let (kind, name) = split(&rest);
    if kind_fields(&kind).is_none() {
        return Err(HttpError::internal(format!(
            "invalid config entry kind: {kind}"
        )));
    }
    if name.is_empty() {
        return list(core, kind, read).await;
    }
    if !may_read(&read.caller, &kind, &name) {
        let resource = if kind == "service-intentions" {
            "intention"
        } else {
            "service"
        };
        return Err(read.caller.denied(resource, "read", Some(&name)));
    }
    let key = crate::state::config_key(&kind, if kind == "mesh" { "mesh" } else { &name });
    let (idx, found) = blocking(
        &core,
        &read.opts,
        Topic::Table(Table::ConfigEntries),
        |st| {
            let found = st
                .doc(Table::ConfigEntries, &key)
                .map(|d| render_entry(&d.value, d.create_index, d.modify_index));
            (st.table_index(Table::ConfigEntries), found)
        },
    )
    .await;
    match found {
        Some(e) => Ok(json_read(idx, &e)),
        None => Ok(with_index(
            HttpError::not_found(format!("Config entry not found for {kind:?} / {name:?}"))
                .into_response(),
            idx,
        )),
    }
}

/// `GET /v1/config/` (every kind).
pub async fn list_all(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    list(core, String::new(), read).await
}

async fn list(core: Arc<Core>, kind: String, read: Read) -> HttpResult {
    if read.opts.filter.is_some() && kind != "service-defaults" {
        return Err(HttpError::internal(format!(
            "filtering not supported for config entry kind={kind}"
        )));
    }
    let prefix = if kind.is_empty() {
        String::new()
    } else {
        format!("{kind}/")
    };
    let caller = &read.caller;
    let (idx, (entries, hidden)) = blocking(
        &core,
        &read.opts,
        Topic::Table(Table::ConfigEntries),
        |st| {
            let mut hidden = false;
            let entries: Vec<Value> = st
                .docs_with_prefix(Table::ConfigEntries, &prefix)
                .filter(|(_, d)| {
                    let visible = may_read(
                        caller,
                        d.value["Kind"].as_str().unwrap_or_default(),
                        d.value["Name"].as_str().unwrap_or_default(),
                    );
                    hidden |= !visible;
                    visible
                })
                .map(|(_, d)| render_entry(&d.value, d.create_index, d.modify_index))
                .collect();
            (st.table_index(Table::ConfigEntries), (entries, hidden))
        },
    )
    .await;
    Ok(super::respond::filtered_by_acls(
        hidden,
        super::respond::json_list(idx, &entries, &read.opts),
    ))
}

/// `DELETE /v1/config/:kind/:name[?cas=]`: `{}` without `cas`, `true`/`false` with it.
pub async fn delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> HttpResult {
    let (kind, name) = split(&rest);
    if name.is_empty() && kind != "mesh" {
        return Err(HttpError::not_found(
            "Must provide both a kind and name to delete",
        ));
    }
    if kind_fields(&kind).is_none() {
        return Err(HttpError::bad_request(format!(
            "invalid config entry kind: {kind}"
        )));
    }
    if kind == "proxy-defaults" && name != "global" {
        return Err(HttpError::internal(format!(
            "invalid name ({name:?}), only \"global\" is supported"
        )));
    }
    may_write(&caller, &kind, &name)?;
    let cas = cas_param(&QueryParams::parse(q.as_deref()))?;
    let reply = core
        .writer
        .submit(Command::ConfigDelete { kind, name, cas })
        .await?;
    Ok(match (cas, reply) {
        (Some(_), Reply::Bool(ok)) => json_plain(&ok),
        _ => json_plain(&serde_json::json!({})),
    })
}

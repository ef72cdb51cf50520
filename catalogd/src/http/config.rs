//! `/v1/config`: config entries (see [`crate::config_entries`] for the kinds' rules).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::Value;

use super::respond::{blocking, json_plain, json_read, with_index};
use super::{HttpError, HttpResult, QueryParams, Read};
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

/// `PUT /v1/config[?cas=]`.
pub async fn apply(
    State(core): State<Arc<Core>>,
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
    let (idx, entries) = blocking(
        &core,
        &read.opts,
        Topic::Table(Table::ConfigEntries),
        |st| {
            let entries: Vec<Value> = st
                .docs_with_prefix(Table::ConfigEntries, &prefix)
                .map(|(_, d)| render_entry(&d.value, d.create_index, d.modify_index))
                .collect();
            (st.table_index(Table::ConfigEntries), entries)
        },
    )
    .await;
    Ok(super::respond::json_list(idx, &entries, &read.opts))
}

/// `DELETE /v1/config/:kind/:name[?cas=]`: `{}` without `cas`, `true`/`false` with it.
pub async fn delete(
    State(core): State<Arc<Core>>,
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

//! `/v1/connect/intentions*` (Consul 1.9+'s exact-match API) and
//! `/v1/connect/ca/configuration`.
//!
//! Intentions are stored as Consul stores them since 1.9: as the `Sources` of the destination's
//! `service-intentions` config entry. An upsert or delete rewrites that entry with a
//! compare-and-set on its index (retried when another write got there first), so two clients
//! changing intentions of one destination at once both land. Rights: intentions:write on the
//! destination to change, intentions:read on it to read.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::query::Who;
use super::respond::{filtered_by_acls, json_plain, json_read};
use super::{HttpError, HttpResult, QueryParams, Read, decode_value};
use crate::acl::Caller;
use crate::config_entries::{EntryError, parse};
use crate::core::Core;
use crate::state::{State as CatalogState, Table, config_key};
use crate::writer::{Command, Reply};

/// Compare-and-set attempts before an intention write gives up under contention.
const CAS_ATTEMPTS: usize = 16;
/// Key of the CA configuration in the system table.
const CA_KEY: &str = "connect-ca";

fn source_destination(q: &QueryParams) -> Result<(String, String), HttpError> {
    let source = q.first("source").unwrap_or_default();
    let destination = q.first("destination").unwrap_or_default();
    if source.is_empty() {
        return Err(HttpError::bad_request(
            "required query parameter 'source' not set",
        ));
    }
    if destination.is_empty() {
        return Err(HttpError::bad_request(
            "required query parameter 'destination' not set",
        ));
    }
    Ok((source.to_string(), destination.to_string()))
}

/// One source of a service-intentions entry as Consul's `Intention` answer.
fn intention(destination: &str, source: &Value, doc_index: (u64, u64)) -> Value {
    let mut out = json!({
        "ID": "",
        "Description": source["Description"].as_str().unwrap_or_default(),
        "SourceNS": "default",
        "SourceName": source["Name"],
        "DestinationNS": "default",
        "DestinationName": destination,
        "SourcePartition": "default",
        "DestinationPartition": "default",
        "SourceType": source["Type"].as_str().unwrap_or("consul"),
        "Precedence": source["Precedence"],
        "CreateIndex": doc_index.0,
        "ModifyIndex": doc_index.1,
    });
    if let Some(a) = source["Action"].as_str().filter(|a| !a.is_empty()) {
        out["Action"] = json!(a);
    }
    for field in ["Permissions", "Meta"] {
        if let Some(v) = source.get(field).filter(|v| !v.is_null()) {
            out[field] = v.clone();
        }
    }
    out
}

/// Every intention, destination by destination.
fn all_intentions(st: &CatalogState) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (_, doc) in st.docs_with_prefix(Table::ConfigEntries, "service-intentions/") {
        let destination = doc.value["Name"].as_str().unwrap_or_default().to_string();
        for source in doc.value["Sources"].as_array().into_iter().flatten() {
            out.push((
                destination.clone(),
                intention(&destination, source, (doc.create_index, doc.modify_index)),
            ));
        }
    }
    out
}

/// `GET /v1/connect/intentions`: those the caller may read, highest precedence first.
pub async fn list(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let st = core.current.load();
    let all = all_intentions(&st);
    let before = all.len();
    let mut list: Vec<Value> = all
        .into_iter()
        .filter(|(d, _)| read.caller.authz.intention_read(d))
        .map(|(_, i)| i)
        .filter(|i| read.opts.filter.as_ref().is_none_or(|f| f.matches(i)))
        .collect();
    let hidden = list.len() != before && read.opts.filter.is_none();
    list.sort_by_key(|i| -i["Precedence"].as_i64().unwrap_or(0));
    Ok(filtered_by_acls(
        hidden,
        json_read(st.table_index(Table::ConfigEntries), &list),
    ))
}

fn may_read(caller: &Caller, destination: &str) -> Result<(), HttpError> {
    caller.require(
        caller.authz.intention_read(destination),
        "intention",
        "read",
        Some(destination),
    )
}

/// `GET|PUT|DELETE /v1/connect/intentions/exact?source=&destination=`.
pub async fn exact_get(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let (source, destination) = source_destination(&read.query)?;
    may_read(&read.caller, &destination)?;
    let st = core.current.load();
    let found = st
        .doc(
            Table::ConfigEntries,
            &config_key("service-intentions", &destination),
        )
        .and_then(|doc| {
            doc.value["Sources"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["Name"] == source.as_str())
                .map(|s| intention(&destination, s, (doc.create_index, doc.modify_index)))
        });
    match found {
        Some(i) => Ok(json_read(st.table_index(Table::ConfigEntries), &i)),
        None => Err(HttpError::not_found("Intention not found")),
    }
}

/// Rewrites the destination's entry with `change` applied to its sources, under
/// compare-and-set; deleting the last source deletes the entry.
async fn rewrite(
    core: &Core,
    destination: &str,
    change: impl Fn(&mut Vec<Value>),
) -> Result<(), HttpError> {
    for _ in 0..CAS_ATTEMPTS {
        let st = core.current.load();
        let key = config_key("service-intentions", destination);
        let existing = st.doc(Table::ConfigEntries, &key);
        let cas = existing.map_or(0, |d| d.modify_index);
        let mut entry = existing.map_or_else(
            || json!({"Kind": "service-intentions", "Name": destination, "Sources": []}),
            |d| (*d.value).clone(),
        );
        drop(st);
        let mut sources: Vec<Value> = entry["Sources"].as_array().cloned().unwrap_or_default();
        change(&mut sources);
        let reply = if sources.is_empty() {
            if cas == 0 {
                // Nothing stored and nothing to store.
                return Ok(());
            }
            core.writer
                .submit(Command::ConfigDelete {
                    kind: "service-intentions".into(),
                    name: destination.to_string(),
                    cas: Some(cas),
                })
                .await?
        } else {
            entry["Sources"] = Value::Array(sources);
            let entry = parse(entry).map_err(|e| match e {
                EntryError::Decode(why) | EntryError::Invalid(why) | EntryError::Forbidden(why) => {
                    HttpError::bad_request(why)
                }
            })?;
            core.writer
                .submit(Command::ConfigApply {
                    entry,
                    cas: Some(cas),
                })
                .await?
        };
        if matches!(reply, Reply::Bool(true)) {
            return Ok(());
        }
    }
    Err(HttpError::internal(format!(
        "intentions of {destination:?} kept changing under this write; try again"
    )))
}

pub async fn exact_put(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> HttpResult {
    let q = QueryParams::parse(raw.as_deref());
    let (source, destination) = source_destination(&q)?;
    caller.require(
        caller.authz.intention_write(&destination),
        "intention",
        "write",
        Some(&destination),
    )?;
    let given = decode_value(&body)?;
    let mut new = Map::new();
    new.insert("Name".into(), json!(source));
    for field in ["Action", "Description", "Meta", "Permissions", "Type"] {
        if let Some(v) = given.get(field).filter(|v| !v.is_null()) {
            new.insert(field.into(), v.clone());
        }
    }
    if let Some(t) = given.get("SourceType").and_then(Value::as_str) {
        new.insert("Type".into(), json!(t));
    }
    let new = Value::Object(new);
    rewrite(&core, &destination, |sources| {
        sources.retain(|s| s["Name"] != source.as_str());
        sources.push(new.clone());
    })
    .await?;
    Ok(json_plain(&true))
}

pub async fn exact_delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(raw): RawQuery,
) -> HttpResult {
    let q = QueryParams::parse(raw.as_deref());
    let (source, destination) = source_destination(&q)?;
    caller.require(
        caller.authz.intention_write(&destination),
        "intention",
        "write",
        Some(&destination),
    )?;
    rewrite(&core, &destination, |sources| {
        sources.retain(|s| s["Name"] != source.as_str());
    })
    .await?;
    Ok(json_plain(&true))
}

/// Whether `pattern` (a name or `*`) matches `name`.
fn matches(pattern: &str, name: &str) -> bool {
    pattern == "*" || pattern == name
}

/// `GET /v1/connect/intentions/check?source=&destination=`: what the highest-precedence
/// matching intention says; without one, the ACL default policy decides, as in Consul.
pub async fn check(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let (source, destination) = source_destination(&read.query)?;
    may_read(&read.caller, &destination)?;
    let st = core.current.load();
    let best = all_intentions(&st)
        .into_iter()
        .filter(|(d, i)| {
            matches(d, &destination)
                && matches(i["SourceName"].as_str().unwrap_or_default(), &source)
        })
        .max_by_key(|(_, i)| i["Precedence"].as_i64().unwrap_or(0));
    let allowed = match best {
        Some((_, i)) => i["Action"] == "allow",
        None => {
            !core.acl.enabled() || core.acl.config.default_policy == cairn_acl::DefaultPolicy::Allow
        }
    };
    Ok(json_plain(&json!({ "Allowed": allowed })))
}

/// `GET /v1/connect/intentions/match?by=source|destination&name=`: the matching intentions
/// of each name, highest precedence first.
pub async fn match_(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let by = read.query.first("by").unwrap_or_default();
    if by != "source" && by != "destination" {
        return Err(HttpError::bad_request(
            "required query parameter 'by' must be 'source' or 'destination'",
        ));
    }
    let names: Vec<&str> = read.query.all("name").collect();
    if names.is_empty() {
        return Err(HttpError::bad_request(
            "required query parameter 'name' not set",
        ));
    }
    let st = core.current.load();
    let all = all_intentions(&st);
    let mut out = Map::new();
    for name in names {
        let mut list: Vec<Value> = all
            .iter()
            .filter(|(d, i)| {
                let field = if by == "source" {
                    i["SourceName"].as_str().unwrap_or_default()
                } else {
                    d.as_str()
                };
                matches(field, name) && read.caller.authz.intention_read(d)
            })
            .map(|(_, i)| i.clone())
            .collect();
        list.sort_by_key(|i| -i["Precedence"].as_i64().unwrap_or(0));
        out.insert(name.to_string(), Value::Array(list));
    }
    Ok(json_read(st.table_index(Table::ConfigEntries), &out))
}

/// The built-in CA's configuration Consul starts with.
fn default_ca() -> Value {
    json!({
        "Provider": "consul",
        "Config": {
            "LeafCertTTL": "72h",
            "RotationPeriod": "2160h",
            "IntermediateCertTTL": "8760h",
            "PrivateKeyType": "ec",
            "PrivateKeyBits": 256,
        },
        "State": null,
        "ForceWithoutCrossSigning": false,
    })
}

/// `GET /v1/connect/ca/configuration` (operator:read, checked by the guard).
pub async fn ca_get(State(core): State<Arc<Core>>) -> HttpResult {
    let st = core.current.load();
    let (mut value, create, modify) = match st.doc(Table::System, CA_KEY) {
        Some(d) => ((*d.value).clone(), d.create_index, d.modify_index),
        None => (default_ca(), 1, 1),
    };
    value["CreateIndex"] = json!(create);
    value["ModifyIndex"] = json!(modify);
    Ok(json_plain(&value))
}

/// `PUT /v1/connect/ca/configuration` (operator:write, checked by the guard). Only the
/// built-in `consul` provider exists here; its settings are stored as given.
pub async fn ca_put(State(core): State<Arc<Core>>, body: Bytes) -> HttpResult {
    let given = decode_value(&body)?;
    let provider = given["Provider"].as_str().unwrap_or_default();
    if provider != "consul" {
        return Err(HttpError::bad_request(format!(
            "CA provider {provider:?} is not supported: catalogd has only the built-in \"consul\" provider"
        )));
    }
    let Some(config) = given.get("Config").filter(|c| c.is_object()) else {
        return Err(HttpError::bad_request("Config must be an object"));
    };
    let mut value = default_ca();
    if let (Value::Object(stored), Value::Object(new)) = (&mut value["Config"], config) {
        for (k, v) in new {
            stored.insert(k.clone(), v.clone());
        }
    }
    core.writer
        .submit(Command::SetSetting { key: CA_KEY, value })
        .await?;
    Ok(StatusCode::OK.into_response())
}

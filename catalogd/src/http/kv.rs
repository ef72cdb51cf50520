//! `/v1/kv/*`: reads (single, `recurse`, `keys` with `separator`, `raw`), writes (`flags`, `cas`,
//! `acquire`, `release`) and deletes (`recurse`, `cas`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use cairn_wire::KvPair;

use super::query::Who;
use super::respond::{blocking, filtered_by_acls, json_list, json_plain, json_read, with_index};
use super::{HttpError, HttpResult, QueryParams, Read};
use crate::acl::Caller;
use crate::core::Core;
use crate::state::{KvPut, State as CatalogState, prefix_range};
use crate::watch::Topic;
use crate::writer::{Command, Reply};

/// What a KV read answers.
enum KvRead {
    Missing,
    Raw(Arc<[u8]>),
    Entries(Vec<KvPair>),
    Keys(Vec<String>),
}

fn list_keys(st: &CatalogState, prefix: &str, separator: Option<&str>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for (k, _) in prefix_range(&st.kv, prefix) {
        let key = match separator.filter(|s| !s.is_empty()) {
            Some(sep) => match k[prefix.len()..].find(sep) {
                Some(pos) => k[..prefix.len() + pos + sep.len()].to_string(),
                None => k.clone(),
            },
            None => k.clone(),
        };
        if keys.last() != Some(&key) {
            keys.push(key);
        }
    }
    keys
}

// Plain functions handing over `read`'s future: an `async fn` here would keep its own copy of
// the arguments beside that future for as long as a blocking query waits.
pub fn get(
    State(core): State<Arc<Core>>,
    Path(key): Path<String>,
    req: Read,
) -> impl Future<Output = HttpResult> {
    read(core, key, req)
}

pub fn get_root(State(core): State<Arc<Core>>, req: Read) -> impl Future<Output = HttpResult> {
    read(core, String::new(), req)
}

async fn read(core: Arc<Core>, key: String, req: Read) -> HttpResult {
    // The request's fields are used where they are: moved into locals, they would be held twice
    // by this future while it waits.
    let keys = req.query.present("keys");
    let recurse = req.query.present("recurse") || keys;
    let raw = req.query.present("raw");
    let separator = req.query.first("separator").map(str::to_string);
    // Nothing else of the query string is read: a parked query does not keep it.
    drop(req.query);
    let (opts, caller) = (&req.opts, &req.caller);
    if !recurse && key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    if !recurse {
        caller.require(caller.authz.key_read(&key), "key", "read", Some(&key))?;
    }
    let authz = &caller.authz;
    let topic = if recurse {
        Topic::KvPrefix(key.clone())
    } else {
        Topic::Kv(key.clone())
    };
    let (idx, (found, hidden)) = blocking(&core, opts, topic, |st| {
        if keys {
            let mut list = list_keys(st, &key, separator.as_deref());
            let before = list.len();
            list.retain(|k| authz.key_read(k) || authz.key_list(k));
            let hidden = list.len() != before;
            // An empty listing of everything is `[]`; of a prefix, a 404 (Consul's answers).
            let found = if list.is_empty() && !key.is_empty() {
                KvRead::Missing
            } else {
                KvRead::Keys(list)
            };
            (st.kv_prefix_index(&key), (found, hidden))
        } else if recurse {
            let mut hidden = false;
            let entries: Vec<KvPair> = prefix_range(&st.kv, &key)
                .filter(|(k, _)| {
                    let readable = authz.key_read(k);
                    hidden |= !readable;
                    readable
                })
                .map(|(k, e)| e.to_pair(k, true))
                .collect();
            let found = if entries.is_empty() {
                KvRead::Missing
            } else {
                KvRead::Entries(entries)
            };
            (st.kv_prefix_index(&key), (found, hidden))
        } else {
            let found = match st.kv.get(&key) {
                None => KvRead::Missing,
                Some(e) if raw => KvRead::Raw(e.value.clone()),
                Some(e) => KvRead::Entries(vec![e.to_pair(&key, true)]),
            };
            (st.kv_key_index(&key), (found, false))
        }
    })
    .await;
    Ok(filtered_by_acls(
        hidden,
        match found {
            KvRead::Missing => with_index(StatusCode::NOT_FOUND.into_response(), idx),
            // Raw values are the user's bytes: never let a browser interpret them.
            KvRead::Raw(bytes) => with_index(
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
                        (
                            header::X_CONTENT_TYPE_OPTIONS,
                            HeaderValue::from_static("nosniff"),
                        ),
                        (
                            header::CONTENT_SECURITY_POLICY,
                            HeaderValue::from_static("sandbox"),
                        ),
                    ],
                    bytes.to_vec(),
                )
                    .into_response(),
                idx,
            ),
            KvRead::Entries(entries) => json_list(idx, &entries, opts),
            KvRead::Keys(keys) => json_read(idx, &keys),
        },
    ))
}

pub async fn put(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    caller.require(caller.authz.key_write(&key), "key", "write", Some(&key))?;
    write(core, key, q, body).await
}

pub async fn put_root(
    State(core): State<Arc<Core>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    // Refused for its missing key before any right matters.
    write(core, String::new(), q, body).await
}

/// Reads an unsigned integer parameter as Consul does: a bad value is a bare parse error (500).
fn consul_u64(query: &QueryParams, name: &str) -> Result<Option<u64>, HttpError> {
    match query.first(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            HttpError::internal(format!("strconv.ParseUint: parsing {v:?}: invalid syntax"))
        }),
    }
}

/// Consul's refusal of parameters that contradict each other.
fn conflicting(raw_query: Option<&str>) -> HttpError {
    HttpError::bad_request(format!(
        "Conflicting flags: {}",
        raw_query.unwrap_or_default()
    ))
}

async fn write(core: Arc<Core>, key: String, q: Option<String>, body: Bytes) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    if key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    let cas = consul_u64(&query, "cas")?;
    let acquire = query.first("acquire").map(str::to_string);
    let release = query.first("release").map(str::to_string);
    if (cas.is_some() && (acquire.is_some() || release.is_some()))
        || (acquire.is_some() && release.is_some())
    {
        return Err(conflicting(q.as_deref()));
    }
    if body.len() > cairn_wire::MAX_KV_VALUE {
        return Err(HttpError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "Request body({} bytes) too large, max size: {} bytes. See \
                 https://www.consul.io/docs/agent/config/config-files#kv_max_value_size.",
                body.len(),
                cairn_wire::MAX_KV_VALUE
            ),
        });
    }
    let put = KvPut {
        key,
        value: body.to_vec(),
        flags: consul_u64(&query, "flags")?,
        cas,
        acquire,
        release,
    };
    match core.writer.submit(Command::KvPut(put)).await? {
        Reply::Bool(ok) => Ok(json_plain(&ok)),
        _ => Ok(json_plain(&true)),
    }
}

pub async fn delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> HttpResult {
    remove(core, &caller, key, q).await
}

pub async fn delete_root(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(q): RawQuery,
) -> HttpResult {
    remove(core, &caller, String::new(), q).await
}

async fn remove(core: Arc<Core>, caller: &Caller, key: String, q: Option<String>) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    let recurse = query.present("recurse");
    if recurse {
        caller.require(
            caller.authz.key_write_prefix(&key),
            "key",
            "write",
            Some(&key),
        )?;
    } else {
        caller.require(caller.authz.key_write(&key), "key", "write", Some(&key))?;
    }
    let cas = consul_u64(&query, "cas")?;
    if recurse && cas.is_some() {
        return Err(conflicting(q.as_deref()));
    }
    if !recurse && key.is_empty() {
        return Err(HttpError::bad_request("Missing key name"));
    }
    match core
        .writer
        .submit(Command::KvDelete { key, recurse, cas })
        .await?
    {
        Reply::Bool(ok) => Ok(json_plain(&ok)),
        _ => Ok(json_plain(&true)),
    }
}

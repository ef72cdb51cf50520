//! `/v1/kv/*`: reads (single, `recurse`, `keys` with `separator`, `raw`), writes (`flags`, `cas`,
//! `acquire`, `release`) and deletes (`recurse`, `cas`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use cairn_wire::KvPair;

use super::respond::{blocking, json_list, json_read, with_index};
use super::{HttpError, HttpResult, Query, Read};
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

pub async fn get(State(core): State<Arc<Core>>, Path(key): Path<String>, req: Read) -> HttpResult {
    read(core, key, req).await
}

pub async fn get_root(State(core): State<Arc<Core>>, req: Read) -> HttpResult {
    read(core, String::new(), req).await
}

async fn read(core: Arc<Core>, key: String, req: Read) -> HttpResult {
    let Read { query, opts } = req;
    let keys = query.flag("keys");
    let recurse = query.flag("recurse") || keys;
    let raw = query.flag("raw");
    let separator = query.get("separator").map(str::to_string);
    if !recurse && key.is_empty() {
        return Err(HttpError::bad_request(
            "missing key name (use ?recurse to list every key)",
        ));
    }
    let topic = if recurse {
        Topic::KvPrefix(key.clone())
    } else {
        Topic::Kv(key.clone())
    };
    let (idx, found) = blocking(&core, &opts, topic, |st| {
        if keys {
            let list = list_keys(st, &key, separator.as_deref());
            let found = if list.is_empty() {
                KvRead::Missing
            } else {
                KvRead::Keys(list)
            };
            (st.kv_prefix_index(&key), found)
        } else if recurse {
            let entries: Vec<KvPair> = prefix_range(&st.kv, &key)
                .map(|(k, e)| e.to_pair(k, true))
                .collect();
            let found = if entries.is_empty() {
                KvRead::Missing
            } else {
                KvRead::Entries(entries)
            };
            (st.kv_prefix_index(&key), found)
        } else {
            let found = match st.kv.get(&key) {
                None => KvRead::Missing,
                Some(e) if raw => KvRead::Raw(e.value.clone()),
                Some(e) => KvRead::Entries(vec![e.to_pair(&key, true)]),
            };
            (st.kv_key_index(&key), found)
        }
    })
    .await;
    Ok(match found {
        KvRead::Missing => with_index(StatusCode::NOT_FOUND.into_response(), idx),
        KvRead::Raw(bytes) => with_index(
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )],
                bytes.to_vec(),
            )
                .into_response(),
            idx,
        ),
        KvRead::Entries(entries) => json_list(idx, &entries, &opts),
        KvRead::Keys(keys) => json_read(idx, &keys),
    })
}

pub async fn put(
    State(core): State<Arc<Core>>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    write(core, key, q, body).await
}

pub async fn put_root(
    State(core): State<Arc<Core>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    write(core, String::new(), q, body).await
}

async fn write(core: Arc<Core>, key: String, q: Option<String>, body: Bytes) -> HttpResult {
    let query = Query::parse(q.as_deref());
    let put = KvPut {
        key,
        value: body.to_vec(),
        flags: query.u64("flags")?,
        cas: query.u64("cas")?,
        acquire: query.get("acquire").map(str::to_string),
        release: query.get("release").map(str::to_string),
    };
    for (name, v) in [("acquire", &put.acquire), ("release", &put.release)] {
        if v.as_deref() == Some("") {
            return Err(HttpError::bad_request(format!(
                "query parameter {name}: missing session ID"
            )));
        }
    }
    match core.writer.submit(Command::KvPut(put)).await? {
        Reply::Bool(ok) => Ok(json_read(core.index(), &ok)),
        _ => Ok(json_read(core.index(), &true)),
    }
}

pub async fn delete(
    State(core): State<Arc<Core>>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> HttpResult {
    remove(core, key, q).await
}

pub async fn delete_root(State(core): State<Arc<Core>>, RawQuery(q): RawQuery) -> HttpResult {
    remove(core, String::new(), q).await
}

async fn remove(core: Arc<Core>, key: String, q: Option<String>) -> HttpResult {
    let query = Query::parse(q.as_deref());
    let recurse = query.flag("recurse");
    let cas = query.u64("cas")?;
    if !recurse && key.is_empty() {
        return Err(HttpError::bad_request(
            "missing key name (use ?recurse to delete every key)",
        ));
    }
    match core
        .writer
        .submit(Command::KvDelete { key, recurse, cas })
        .await?
    {
        Reply::Bool(ok) => Ok(json_read(core.index(), &ok)),
        _ => Ok(json_read(core.index(), &true)),
    }
}

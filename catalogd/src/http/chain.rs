//! `/v1/discovery-chain/:service` (see [`crate::chain`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use serde_json::Value;

use super::respond::{blocking, json_read};
use super::{HttpError, HttpResult, Read};
use crate::chain::{Context, Overrides, compile};
use crate::core::Core;
use crate::state::{CLUSTER_KEY, Table};
use crate::watch::Topic;

/// Reads the `POST` body's overrides (keys case-insensitive, snake_case too).
fn overrides(body: &[u8]) -> Result<Overrides, HttpError> {
    let mut o = Overrides::default();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(o);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("Request decoding failed: {e}")))?;
    for (k, v) in v.as_object().into_iter().flatten() {
        match k.to_lowercase().replace('_', "").as_str() {
            "overrideprotocol" => o.protocol = v.as_str().unwrap_or_default().to_string(),
            "overrideconnecttimeout" => {
                o.connect_timeout = match v {
                    Value::String(s) => cairn_wire::parse_go_duration(s)
                        .ok()
                        .map(cairn_wire::format_go_duration),
                    Value::Number(n) => n.as_u64().map(|ns| {
                        cairn_wire::format_go_duration(std::time::Duration::from_nanos(ns))
                    }),
                    _ => None,
                }
            }
            "overridemeshgateway" => {
                let mode = v
                    .as_object()
                    .and_then(|m| m.iter().find(|(k, _)| k.eq_ignore_ascii_case("mode")))
                    .and_then(|(_, m)| m.as_str())
                    .unwrap_or_default();
                if !["", "none", "local", "remote"].contains(&mode) {
                    return Err(HttpError::bad_request(
                        "Invalid OverrideMeshGateway.Mode parameter",
                    ));
                }
                o.mesh_gateway_mode = mode.to_string();
            }
            // Consul's decoder ignores keys it does not know here.
            _ => {}
        }
    }
    Ok(o)
}

/// `GET|POST /v1/discovery-chain/:service[?compile-dc=]`.
pub async fn get(
    State(core): State<Arc<Core>>,
    Path(service): Path<String>,
    read: Read,
    body: Bytes,
) -> HttpResult {
    if service.is_empty() {
        return Err(HttpError::bad_request("Missing chain name"));
    }
    let over = overrides(&body)?;
    let dc = read
        .query
        .first("compile-dc")
        .filter(|d| !d.is_empty())
        .unwrap_or(&core.config.datacenter)
        .to_string();
    let (idx, chain) = blocking(
        &core,
        &read.opts,
        Topic::Table(Table::ConfigEntries),
        |st| {
            let cluster = st
                .doc(Table::System, CLUSTER_KEY)
                .and_then(|d| d.value["ID"].as_str().map(str::to_string))
                .unwrap_or_default();
            let trust_domain = format!("{cluster}.consul");
            let ctx = Context {
                datacenter: &dc,
                trust_domain: &trust_domain,
            };
            let chain = compile(
                &service,
                |kind, name| st.config_entry(kind, name),
                &ctx,
                &over,
            );
            (st.table_index(Table::ConfigEntries), chain)
        },
    )
    .await;
    match chain {
        Ok(chain) => Ok(json_read(idx, &chain)),
        Err(e) => Err(HttpError::internal(e.to_string())),
    }
}

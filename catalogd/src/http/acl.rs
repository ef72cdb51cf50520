//! `/v1/acl/*`: bootstrap, tokens, policies, roles, templated policies, auth methods and
//! binding rules, with Consul's rights (`acl:read` to read, `acl:write` to change; a token may
//! always read itself) and answers (401 "ACL support disabled" while ACLs are off, 404 for an
//! unknown ID, 500 with Consul's text for a refused change). SecretIDs show only to callers
//! with `acl:write`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::query::Who;
use super::respond::{json_plain, json_read};
use super::{HttpError, HttpResult, QueryParams, decode_value, typed};
use crate::acl::Caller;
use crate::core::Core;
use crate::state::{
    ANONYMOUS_ACCESSOR, AclOp, AclReply, Doc, Link, Policy, Role, State as CatalogState, Table,
    Token, is_uuid,
};
use crate::writer::{Command, Reply};

/// Shortest and longest `ExpirationTTL` (Consul's `acl.token_min_expiration_ttl` and
/// `token_max_expiration_ttl` defaults).
const MIN_TTL: std::time::Duration = std::time::Duration::from_secs(60);
const MAX_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

fn disabled() -> HttpError {
    HttpError {
        status: StatusCode::UNAUTHORIZED,
        message: "ACL support disabled".into(),
    }
}

fn acl_not_found() -> HttpError {
    HttpError::not_found("ACL not found")
}

/// The caller, refused unless ACLs are on and it holds `acl:read`.
fn reader(caller: &Caller) -> Result<(), HttpError> {
    if !caller.enforced {
        return Err(disabled());
    }
    caller.require(caller.authz.acl_read(), "acl", "read", None)
}

fn writer(caller: &Caller) -> Result<(), HttpError> {
    if !caller.enforced {
        return Err(disabled());
    }
    caller.require(caller.authz.acl_write(), "acl", "write", None)
}

async fn apply(core: &Core, op: AclOp) -> Result<AclReply, HttpError> {
    match core.writer.submit(Command::Acl(Box::new(op))).await? {
        Reply::Acl(reply) => Ok(reply),
        other => Err(HttpError::internal(format!(
            "unexpected writer reply {other:?}"
        ))),
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A record as answered: its stored form with its indexes.
fn with_indexes(mut value: Value, doc: Option<&Doc>, st: &CatalogState) -> Value {
    let (create, modify) = doc.map_or((st.index, st.index), |d| (d.create_index, d.modify_index));
    if let Value::Object(m) = &mut value {
        m.insert("CreateIndex".into(), json!(create));
        m.insert("ModifyIndex".into(), json!(modify));
    }
    value
}

/// Policy and role links with the names they have now; links to deleted ones dropped.
fn resolve_links(value: &mut Value, st: &CatalogState) {
    for (field, table) in [("Policies", Table::AclPolicies), ("Roles", Table::AclRoles)] {
        let Some(Value::Array(links)) = value.get_mut(field) else {
            continue;
        };
        links.retain_mut(|link| {
            let id = link["ID"].as_str().unwrap_or_default().to_ascii_lowercase();
            match st.doc(table, &id) {
                Some(doc) => {
                    link["Name"] = doc.value["Name"].clone();
                    true
                }
                None => false,
            }
        });
        if links.is_empty()
            && let Value::Object(m) = value
        {
            m.remove(field);
        }
    }
}

/// Whether an answered token shows its SecretID.
#[derive(Clone, Copy)]
enum Secret {
    Shown,
    Hidden,
}

impl Secret {
    /// Secrets show to callers that may write ACLs (they could mint any token anyway).
    fn for_caller(caller: &Caller) -> Secret {
        if caller.authz.acl_write() {
            Secret::Shown
        } else {
            Secret::Hidden
        }
    }
}

fn token_view(st: &CatalogState, accessor: &str, caller: &Caller) -> Option<Value> {
    token_shown(st, accessor, Secret::for_caller(caller))
}

fn token_shown(st: &CatalogState, accessor: &str, secret: Secret) -> Option<Value> {
    let doc = st.doc(Table::AclTokens, &accessor.to_ascii_lowercase())?;
    let mut value = (*doc.value).clone();
    resolve_links(&mut value, st);
    if let Secret::Hidden = secret {
        value["SecretID"] = json!("<hidden>");
    }
    Some(with_indexes(value, Some(doc), st))
}

fn expired(value: &Value) -> bool {
    value["ExpirationTime"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t <= jiff::Timestamp::now())
}

// ---- bootstrap ----

pub async fn bootstrap(State(core): State<Arc<Core>>, Who(caller): Who, body: Bytes) -> HttpResult {
    if !caller.enforced {
        return Err(disabled());
    }
    let secret = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        decode_value(&body)?["BootstrapSecret"]
            .as_str()
            .map(str::to_string)
    };
    let token = Token {
        accessor_id: new_id(),
        secret_id: secret.filter(|s| !s.is_empty()).unwrap_or_else(new_id),
        description: "Bootstrap Token (Global Management)".into(),
        policies: vec![Link {
            id: crate::state::GLOBAL_MANAGEMENT_ID.into(),
            name: String::new(),
        }],
        create_time: now(),
        ..Token::default()
    };
    let AclReply::Record(mut value) = apply(&core, AclOp::Bootstrap { token }).await? else {
        return Err(HttpError::internal("bootstrap answered no token"));
    };
    let st = core.current.load();
    resolve_links(&mut value, &st);
    // Consul still sends the pre-1.4 `ID` (the secret) beside the token.
    value["ID"] = value["SecretID"].clone();
    let accessor = value["AccessorID"].as_str().unwrap_or_default().to_string();
    let doc = st.doc(Table::AclTokens, &accessor.to_ascii_lowercase());
    Ok(json_plain(&with_indexes(value, doc, &st)))
}

// ---- tokens ----

pub async fn token_list(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(raw): RawQuery,
) -> HttpResult {
    reader(&caller)?;
    let q = QueryParams::parse(raw.as_deref());
    let policy = q.first("policy").filter(|s| !s.is_empty());
    let role = q.first("role").filter(|s| !s.is_empty());
    let method = q.first("authmethod").filter(|s| !s.is_empty());
    let service = q.first("servicename").filter(|s| !s.is_empty());
    let st = core.current.load();
    let has_link = |v: &Value, field: &str, id: &str| {
        v[field].as_array().is_some_and(|l| {
            l.iter()
                .any(|x| x["ID"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(id)))
        })
    };
    let tokens: Vec<Value> = st
        .docs_with_prefix(Table::AclTokens, "")
        .filter(|(_, d)| !expired(&d.value))
        .filter(|(_, d)| policy.is_none_or(|p| has_link(&d.value, "Policies", p)))
        .filter(|(_, d)| role.is_none_or(|r| has_link(&d.value, "Roles", r)))
        .filter(|(_, d)| method.is_none_or(|m| d.value["AuthMethod"] == m))
        .filter(|(_, d)| {
            service.is_none_or(|s| {
                d.value["ServiceIdentities"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|i| i["ServiceName"] == s))
            })
        })
        .filter_map(|(k, _)| token_view(&st, k, &caller))
        .collect();
    Ok(json_read(st.table_index(Table::AclTokens), &tokens))
}

/// `/v1/acl/token/{rest}`: `self`, an accessor, or `{accessor}/clone`.
pub async fn token_get(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(rest): Path<String>,
) -> HttpResult {
    if !caller.enforced {
        return Err(disabled());
    }
    let st = core.current.load();
    if rest == "self" {
        // A token reads itself whole: its secret is what the caller presented.
        return token_shown(&st, &caller.accessor, Secret::Shown)
            .map(|v| json_read(st.table_index(Table::AclTokens), &v))
            .ok_or_else(crate::acl::not_found);
    }
    reader(&caller)?;
    if !is_uuid(&rest) {
        return Err(HttpError::internal(
            "failed acl token lookup: index error: UUID must be 36 characters",
        ));
    }
    match st
        .doc(Table::AclTokens, &rest.to_ascii_lowercase())
        .filter(|d| !expired(&d.value))
    {
        Some(_) => Ok(json_read(
            st.table_index(Table::AclTokens),
            &token_view(&st, &rest, &caller),
        )),
        // Consul answers a token it does not have as it answers an unknown secret (403), not
        // with the 404 of the other ACL objects.
        None => Err(crate::acl::not_found()),
    }
}

/// The token fields a create or update body may set.
fn token_from_body(body: &[u8]) -> Result<(Token, Option<std::time::Duration>), HttpError> {
    let mut value = decode_value(body).map_err(|e| HttpError {
        message: e
            .message
            .replace("Request decode failed", "Token decoding failed"),
        ..e
    })?;
    let ttl = match value
        .as_object_mut()
        .and_then(|m| m.remove("ExpirationTTL"))
    {
        None => None,
        Some(Value::String(s)) => Some(cairn_wire::parse_go_duration(&s).map_err(|e| {
            HttpError::bad_request(format!("Token decoding failed: ExpirationTTL: {e}"))
        })?),
        Some(Value::Number(n)) => Some(std::time::Duration::from_nanos(n.as_u64().unwrap_or(0))),
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "Token decoding failed: ExpirationTTL: not a duration: {other}"
            )));
        }
    };
    for field in ["CreateIndex", "ModifyIndex", "Hash", "CreateTime", "ID"] {
        if let Value::Object(m) = &mut value {
            m.remove(field);
        }
    }
    let token: Token = typed(value).map_err(|e| HttpError {
        message: e
            .message
            .replace("Request decode failed", "Token decoding failed"),
        ..e
    })?;
    Ok((token, ttl))
}

fn expiration(
    ttl: Option<std::time::Duration>,
    token: &Token,
) -> Result<Option<String>, HttpError> {
    let Some(ttl) = ttl.filter(|d| !d.is_zero()) else {
        return Ok(token.expiration_time.clone());
    };
    if token.expiration_time.is_some() {
        return Err(HttpError::internal(
            "Expiration TTL and Expiration Time cannot both be set",
        ));
    }
    if ttl < MIN_TTL {
        return Err(HttpError::internal(format!(
            "Invalid Token: ExpirationTTL cannot be less than {}",
            cairn_wire::format_go_duration(MIN_TTL)
        )));
    }
    if ttl > MAX_TTL {
        return Err(HttpError::internal(format!(
            "Invalid Token: ExpirationTTL cannot be more than {}",
            cairn_wire::format_go_duration(MAX_TTL)
        )));
    }
    let at = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::try_from(ttl).unwrap_or(jiff::SignedDuration::ZERO))
        .map_err(|e| HttpError::internal(format!("Invalid Token: ExpirationTTL: {e}")))?;
    Ok(Some(at.to_string()))
}

async fn token_answer(core: &Core, reply: AclReply, caller: &Caller) -> HttpResult {
    let AclReply::Record(value) = reply else {
        return Err(HttpError::internal("token change answered no token"));
    };
    let st = core.current.load();
    let accessor = value["AccessorID"].as_str().unwrap_or_default();
    token_view(&st, accessor, caller)
        .map(|v| json_plain(&v))
        .ok_or_else(|| HttpError::internal("token vanished after its change"))
}

pub async fn token_create(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let (mut token, ttl) = token_from_body(&body)?;
    if token.accessor_id.is_empty() {
        token.accessor_id = new_id();
    }
    if token.secret_id.is_empty() {
        token.secret_id = new_id();
    } else if !is_uuid(&token.secret_id) {
        return Err(HttpError::internal(
            "Invalid Token: SecretID is not a valid UUID",
        ));
    }
    token.expiration_time = expiration(ttl, &token)?;
    token.create_time = now();
    token.auth_method.clear();
    let reply = apply(
        &core,
        AclOp::TokenSet {
            token,
            create: true,
        },
    )
    .await?;
    token_answer(&core, reply, &caller).await
}

pub async fn token_put(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(rest): Path<String>,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    if let Some(accessor) = rest.strip_suffix("/clone") {
        return token_clone(&core, &caller, accessor, &body).await;
    }
    let (mut token, ttl) = token_from_body(&body)?;
    if !token.accessor_id.is_empty() && !token.accessor_id.eq_ignore_ascii_case(&rest) {
        return Err(HttpError::bad_request(
            "Token Accessor ID in URL and payload do not match",
        ));
    }
    token.accessor_id = rest;
    if ttl.is_some_and(|d| !d.is_zero()) {
        return Err(HttpError::internal(format!(
            "Cannot change expiration time of {}",
            token.accessor_id
        )));
    }
    let reply = apply(
        &core,
        AclOp::TokenSet {
            token,
            create: false,
        },
    )
    .await?;
    token_answer(&core, reply, &caller).await
}

async fn token_clone(core: &Core, caller: &Caller, accessor: &str, body: &[u8]) -> HttpResult {
    let description = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        decode_value(body)?["Description"]
            .as_str()
            .map(str::to_string)
    };
    let st = core.current.load();
    let Some((mut token, _)) = st.acl_token(accessor).filter(|(t, _)| {
        !t.expiration_time.as_deref().is_some_and(|e| {
            e.parse::<jiff::Timestamp>()
                .is_ok_and(|e| e <= jiff::Timestamp::now())
        })
    }) else {
        return Err(HttpError::internal(format!(
            "Cannot find token {accessor:?}"
        )));
    };
    drop(st);
    if !token.auth_method.is_empty() {
        return Err(HttpError::internal(
            "Cannot clone a token created from an auth method",
        ));
    }
    token.accessor_id = new_id();
    token.secret_id = new_id();
    token.create_time = now();
    if let Some(d) = description {
        token.description = d;
    }
    let reply = apply(
        core,
        AclOp::TokenSet {
            token,
            create: true,
        },
    )
    .await?;
    token_answer(core, reply, caller).await
}

pub async fn token_delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(accessor): Path<String>,
) -> HttpResult {
    writer(&caller)?;
    if !is_uuid(&accessor) {
        return Err(HttpError::internal(
            "failed acl token lookup: index error: UUID must be 36 characters",
        ));
    }
    apply(
        &core,
        AclOp::TokenDelete {
            accessor,
            caller: caller.accessor.clone(),
        },
    )
    .await?;
    Ok(json_plain(&true))
}

// ---- policies ----

fn policy_view(st: &CatalogState, doc: &Doc) -> Value {
    with_indexes((*doc.value).clone(), Some(doc), st)
}

pub async fn policy_list(State(core): State<Arc<Core>>, Who(caller): Who) -> HttpResult {
    reader(&caller)?;
    let st = core.current.load();
    let list: Vec<Value> = st
        .docs_with_prefix(Table::AclPolicies, "")
        .map(|(_, d)| {
            let mut v = policy_view(&st, d);
            if let Value::Object(m) = &mut v {
                m.remove("Rules");
            }
            v
        })
        .collect();
    Ok(json_read(st.table_index(Table::AclPolicies), &list))
}

pub async fn policy_get(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> HttpResult {
    reader(&caller)?;
    if !is_uuid(&id) {
        return Err(HttpError::internal(
            "failed acl policy lookup: index error: UUID must be 36 characters",
        ));
    }
    let st = core.current.load();
    let doc = st
        .doc(Table::AclPolicies, &id.to_ascii_lowercase())
        .ok_or_else(acl_not_found)?;
    Ok(json_read(
        st.table_index(Table::AclPolicies),
        &policy_view(&st, doc),
    ))
}

pub async fn policy_by_name(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(name): Path<String>,
) -> HttpResult {
    reader(&caller)?;
    let st = core.current.load();
    let (_, doc) = st.acl_policy_by_name(&name).ok_or_else(acl_not_found)?;
    Ok(json_read(
        st.table_index(Table::AclPolicies),
        &policy_view(&st, doc),
    ))
}

fn policy_from_body(body: &[u8]) -> Result<Policy, HttpError> {
    let rename = |e: HttpError| HttpError {
        message: e
            .message
            .replace("Request decode failed", "Policy decoding failed"),
        ..e
    };
    let mut value = decode_value(body).map_err(rename)?;
    if let Value::Object(m) = &mut value {
        for field in ["CreateIndex", "ModifyIndex", "Hash"] {
            m.remove(field);
        }
    }
    typed(value).map_err(rename)
}

async fn policy_answer(core: &Core, reply: AclReply) -> HttpResult {
    let AclReply::Record(value) = reply else {
        return Err(HttpError::internal("policy change answered no policy"));
    };
    let st = core.current.load();
    let id = value["ID"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(json_plain(&with_indexes(
        value,
        st.doc(Table::AclPolicies, &id),
        &st,
    )))
}

pub async fn policy_create(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let mut policy = policy_from_body(&body)?;
    if !policy.id.is_empty() {
        return Err(HttpError::bad_request(
            "Cannot specify the ID when creating a new policy",
        ));
    }
    policy.id = new_id();
    let reply = apply(
        &core,
        AclOp::PolicySet {
            policy,
            create: true,
        },
    )
    .await?;
    policy_answer(&core, reply).await
}

pub async fn policy_put(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let mut policy = policy_from_body(&body)?;
    if !policy.id.is_empty() && !policy.id.eq_ignore_ascii_case(&id) {
        return Err(HttpError::bad_request(
            "Policy ID in URL and payload do not match",
        ));
    }
    policy.id = id;
    let reply = apply(
        &core,
        AclOp::PolicySet {
            policy,
            create: false,
        },
    )
    .await?;
    policy_answer(&core, reply).await
}

pub async fn policy_delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> HttpResult {
    writer(&caller)?;
    apply(&core, AclOp::PolicyDelete(id)).await?;
    Ok(json_plain(&true))
}

// ---- roles ----

fn role_view(st: &CatalogState, doc: &Doc) -> Value {
    let mut value = (*doc.value).clone();
    resolve_links(&mut value, st);
    with_indexes(value, Some(doc), st)
}

pub async fn role_list(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(raw): RawQuery,
) -> HttpResult {
    reader(&caller)?;
    let q = QueryParams::parse(raw.as_deref());
    let policy = q.first("policy").filter(|s| !s.is_empty());
    let st = core.current.load();
    let list: Vec<Value> = st
        .docs_with_prefix(Table::AclRoles, "")
        .filter(|(_, d)| {
            policy.is_none_or(|p| {
                d.value["Policies"].as_array().is_some_and(|l| {
                    l.iter()
                        .any(|x| x["ID"].as_str().is_some_and(|x| x.eq_ignore_ascii_case(p)))
                })
            })
        })
        .map(|(_, d)| role_view(&st, d))
        .collect();
    Ok(json_read(st.table_index(Table::AclRoles), &list))
}

pub async fn role_get(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(rest): Path<String>,
) -> HttpResult {
    reader(&caller)?;
    let st = core.current.load();
    let doc = match rest.strip_prefix("name/") {
        Some(name) => st.acl_role_by_name(name).map(|(_, d)| d),
        None => {
            if !is_uuid(&rest) {
                return Err(HttpError::internal(
                    "failed acl role lookup: index error: UUID must be 36 characters",
                ));
            }
            st.doc(Table::AclRoles, &rest.to_ascii_lowercase())
        }
    };
    let doc = doc.ok_or_else(acl_not_found)?;
    Ok(json_read(
        st.table_index(Table::AclRoles),
        &role_view(&st, doc),
    ))
}

fn role_from_body(body: &[u8]) -> Result<Role, HttpError> {
    let rename = |e: HttpError| HttpError {
        message: e
            .message
            .replace("Request decode failed", "Role decoding failed"),
        ..e
    };
    let mut value = decode_value(body).map_err(rename)?;
    if let Value::Object(m) = &mut value {
        for field in ["CreateIndex", "ModifyIndex", "Hash"] {
            m.remove(field);
        }
    }
    typed(value).map_err(rename)
}

async fn role_answer(core: &Core, reply: AclReply) -> HttpResult {
    let AclReply::Record(value) = reply else {
        return Err(HttpError::internal("role change answered no role"));
    };
    let st = core.current.load();
    let id = value["ID"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let doc = st
        .doc(Table::AclRoles, &id)
        .ok_or_else(|| HttpError::internal("role vanished after its change"))?;
    Ok(json_plain(&role_view(&st, doc)))
}

pub async fn role_create(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let mut role = role_from_body(&body)?;
    if !role.id.is_empty() {
        return Err(HttpError::bad_request(
            "Cannot specify the ID when creating a new role",
        ));
    }
    role.id = new_id();
    let reply = apply(&core, AclOp::RoleSet { role, create: true }).await?;
    role_answer(&core, reply).await
}

pub async fn role_put(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let mut role = role_from_body(&body)?;
    if !role.id.is_empty() && !role.id.eq_ignore_ascii_case(&id) {
        return Err(HttpError::bad_request(
            "Role ID in URL and payload do not match",
        ));
    }
    role.id = id;
    let reply = apply(
        &core,
        AclOp::RoleSet {
            role,
            create: false,
        },
    )
    .await?;
    role_answer(&core, reply).await
}

pub async fn role_delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> HttpResult {
    writer(&caller)?;
    apply(&core, AclOp::RoleDelete(id)).await?;
    Ok(json_plain(&true))
}

// ---- templated policies ----

fn template_view(t: &cairn_acl::templated::Template) -> Value {
    json!({
        "TemplateName": t.name,
        "Schema": t.schema,
        "Template": t.template,
        "Description": t.description,
    })
}

pub async fn templated_list(Who(caller): Who) -> HttpResult {
    reader(&caller)?;
    let map: serde_json::Map<String, Value> = cairn_acl::templated::builtins()
        .iter()
        .map(|t| (t.name.to_string(), template_view(t)))
        .collect();
    Ok(json_plain(&map))
}

pub async fn templated_get(Who(caller): Who, Path(name): Path<String>) -> HttpResult {
    reader(&caller)?;
    let t = cairn_acl::templated::find(&name)
        .ok_or_else(|| HttpError::not_found(format!("Invalid templated policy Name: {name}")))?;
    Ok(json_plain(&template_view(t)))
}

pub async fn templated_preview(
    Who(caller): Who,
    Path(name): Path<String>,
    body: Bytes,
) -> HttpResult {
    reader(&caller)?;
    if cairn_acl::templated::find(&name).is_none() {
        return Err(HttpError::not_found(format!(
            "Invalid templated policy Name: {name}"
        )));
    }
    let variable = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        decode_value(&body)?["Name"].as_str().map(str::to_string)
    };
    let rules = cairn_acl::templated::render(&name, variable.as_deref())
        .map_err(|e| HttpError::bad_request(e.to_string()))?;
    let id = new_id();
    let suffix: String = id.chars().filter(|c| *c != '-').take(10).collect();
    Ok(json_plain(&json!({
        "ID": id,
        "Name": format!("synthetic-policy-{suffix}"),
        "Description": format!("synthetic policy generated from templated policy: {name}"),
        "Rules": rules,
    })))
}

// ---- auth methods ----

fn method_view(st: &CatalogState, doc: &Doc) -> Value {
    with_indexes((*doc.value).clone(), Some(doc), st)
}

pub async fn auth_method_list(State(core): State<Arc<Core>>, Who(caller): Who) -> HttpResult {
    reader(&caller)?;
    let st = core.current.load();
    let list: Vec<Value> = st
        .docs_with_prefix(Table::AclAuthMethods, "")
        .map(|(_, d)| {
            let mut v = method_view(&st, d);
            if let Value::Object(m) = &mut v {
                m.remove("Config");
            }
            v
        })
        .collect();
    Ok(json_read(st.table_index(Table::AclAuthMethods), &list))
}

pub async fn auth_method_get(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(name): Path<String>,
) -> HttpResult {
    reader(&caller)?;
    let st = core.current.load();
    let doc = st
        .doc(Table::AclAuthMethods, &name)
        .ok_or_else(acl_not_found)?;
    Ok(json_read(
        st.table_index(Table::AclAuthMethods),
        &method_view(&st, doc),
    ))
}

/// The fields of an auth method a body may set.
fn method_from_body(body: &[u8]) -> Result<Value, HttpError> {
    let value = decode_value(body)?;
    let Value::Object(m) = value else {
        return Err(HttpError::bad_request(
            "AuthMethod decoding failed: expected a JSON object",
        ));
    };
    let mut out = serde_json::Map::new();
    for (field, default) in [
        ("Name", json!("")),
        ("Type", json!("")),
        ("DisplayName", Value::Null),
        ("Description", json!("")),
        ("MaxTokenTTL", Value::Null),
        ("TokenLocality", Value::Null),
        ("TokenNameFormat", Value::Null),
        ("Config", json!({})),
    ] {
        match m.get(field) {
            Some(v) if !v.is_null() => {
                out.insert(field.into(), v.clone());
            }
            _ if !default.is_null() => {
                out.insert(field.into(), default);
            }
            _ => {}
        }
    }
    if let Some(ttl) = out.get("MaxTokenTTL").and_then(Value::as_str) {
        cairn_wire::parse_go_duration(ttl).map_err(|e| {
            HttpError::bad_request(format!("AuthMethod decoding failed: MaxTokenTTL: {e}"))
        })?;
    }
    Ok(Value::Object(out))
}

async fn record_answer(core: &Core, reply: AclReply, table: Table, key: String) -> HttpResult {
    let AclReply::Record(value) = reply else {
        return Err(HttpError::internal("ACL change answered no record"));
    };
    let st = core.current.load();
    Ok(json_plain(&with_indexes(value, st.doc(table, &key), &st)))
}

pub async fn auth_method_create(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let method = method_from_body(&body)?;
    let name = method["Name"].as_str().unwrap_or_default().to_string();
    let reply = apply(
        &core,
        AclOp::AuthMethodSet {
            method,
            create: true,
        },
    )
    .await?;
    record_answer(&core, reply, Table::AclAuthMethods, name).await
}

pub async fn auth_method_put(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(name): Path<String>,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let mut method = method_from_body(&body)?;
    match method["Name"].as_str() {
        Some("") | None => method["Name"] = json!(name),
        Some(n) if n != name => {
            return Err(HttpError::bad_request(
                "AuthMethod Name in URL and payload do not match",
            ));
        }
        Some(_) => {}
    }
    let reply = apply(
        &core,
        AclOp::AuthMethodSet {
            method,
            create: false,
        },
    )
    .await?;
    record_answer(&core, reply, Table::AclAuthMethods, name).await
}

pub async fn auth_method_delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(name): Path<String>,
) -> HttpResult {
    writer(&caller)?;
    apply(&core, AclOp::AuthMethodDelete(name)).await?;
    Ok(json_plain(&true))
}

// ---- binding rules ----

pub async fn binding_rule_list(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(raw): RawQuery,
) -> HttpResult {
    reader(&caller)?;
    let q = QueryParams::parse(raw.as_deref());
    let method = q.first("authmethod").filter(|s| !s.is_empty());
    let st = core.current.load();
    let list: Vec<Value> = st
        .docs_with_prefix(Table::AclBindingRules, "")
        .filter(|(_, d)| method.is_none_or(|m| d.value["AuthMethod"] == m))
        .map(|(_, d)| with_indexes((*d.value).clone(), Some(d), &st))
        .collect();
    Ok(json_read(st.table_index(Table::AclBindingRules), &list))
}

pub async fn binding_rule_get(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> HttpResult {
    reader(&caller)?;
    if !is_uuid(&id) {
        return Err(HttpError::internal(
            "failed acl binding rule lookup: index error: UUID must be 36 characters",
        ));
    }
    let st = core.current.load();
    let doc = st
        .doc(Table::AclBindingRules, &id.to_ascii_lowercase())
        .ok_or_else(acl_not_found)?;
    Ok(json_read(
        st.table_index(Table::AclBindingRules),
        &with_indexes((*doc.value).clone(), Some(doc), &st),
    ))
}

fn rule_from_body(body: &[u8]) -> Result<Value, HttpError> {
    let value = decode_value(body)?;
    let Value::Object(m) = value else {
        return Err(HttpError::bad_request(
            "BindingRule decoding failed: expected a JSON object",
        ));
    };
    let mut out = serde_json::Map::new();
    for (field, default) in [
        ("ID", json!("")),
        ("Description", json!("")),
        ("AuthMethod", json!("")),
        ("Selector", json!("")),
        ("BindType", json!("")),
        ("BindName", json!("")),
        ("BindVars", Value::Null),
    ] {
        match m.get(field) {
            Some(v) if !v.is_null() => {
                out.insert(field.into(), v.clone());
            }
            _ if !default.is_null() => {
                out.insert(field.into(), default);
            }
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

pub async fn binding_rule_create(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let mut rule = rule_from_body(&body)?;
    if rule["ID"].as_str().is_some_and(|s| !s.is_empty()) {
        return Err(HttpError::bad_request(
            "Cannot specify the ID when creating a new binding rule",
        ));
    }
    let id = new_id();
    rule["ID"] = json!(id);
    let reply = apply(&core, AclOp::BindingRuleSet { rule, create: true }).await?;
    record_answer(&core, reply, Table::AclBindingRules, id).await
}

pub async fn binding_rule_put(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
    body: Bytes,
) -> HttpResult {
    writer(&caller)?;
    let mut rule = rule_from_body(&body)?;
    match rule["ID"].as_str() {
        Some("") | None => rule["ID"] = json!(id),
        Some(given) if !given.eq_ignore_ascii_case(&id) => {
            return Err(HttpError::bad_request(
                "BindingRule ID in URL and payload do not match",
            ));
        }
        Some(_) => {}
    }
    let key = id.to_ascii_lowercase();
    let reply = apply(
        &core,
        AclOp::BindingRuleSet {
            rule,
            create: false,
        },
    )
    .await?;
    record_answer(&core, reply, Table::AclBindingRules, key).await
}

pub async fn binding_rule_delete(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> HttpResult {
    writer(&caller)?;
    apply(&core, AclOp::BindingRuleDelete(id)).await?;
    Ok(json_plain(&true))
}

// ---- login / logout ----

/// `POST /v1/acl/login`: catalogd stores auth methods but verifies no bearer tokens (no JWT,
/// OIDC or Kubernetes validator), so a login names an unknown method ("ACL not found") or is
/// refused.
pub async fn login(State(core): State<Arc<Core>>, Who(caller): Who, body: Bytes) -> HttpResult {
    if !caller.enforced {
        return Err(disabled());
    }
    let value = decode_value(&body)?;
    let method = value["AuthMethod"].as_str().unwrap_or_default();
    if core
        .current
        .load()
        .doc(Table::AclAuthMethods, method)
        .is_none()
    {
        return Err(crate::acl::not_found());
    }
    Err(HttpError {
        status: StatusCode::FORBIDDEN,
        message: format!(
            "Permission denied: auth method {method:?}: catalogd cannot verify bearer tokens; \
             log in is not supported"
        ),
    })
}

/// `POST /v1/acl/logout`: deletes the calling token if an auth method issued it.
pub async fn logout(State(core): State<Arc<Core>>, Who(caller): Who) -> HttpResult {
    if !caller.enforced {
        return Err(disabled());
    }
    if caller.accessor == ANONYMOUS_ACCESSOR {
        return Err(crate::acl::not_found());
    }
    if caller.auth_method.is_empty() {
        return Err(HttpError {
            status: StatusCode::FORBIDDEN,
            message: "Permission denied: The token specified was not created via a login".into(),
        });
    }
    apply(
        &core,
        AclOp::TokenDelete {
            accessor: caller.accessor.clone(),
            caller: String::new(),
        },
    )
    .await?;
    Ok(json_plain(&true))
}

/// `GET /v1/acl/replication`: one datacenter, nothing replicates.
pub async fn replication(Who(caller): Who) -> Response {
    if !caller.enforced {
        return disabled().into_response();
    }
    json_plain(&json!({
        "Enabled": false,
        "Running": false,
        "SourceDatacenter": "",
        "ReplicationType": "",
        "ReplicatedIndex": 0,
        "ReplicatedRoleIndex": 0,
        "ReplicatedTokenIndex": 0,
        "LastSuccess": "0001-01-01T00:00:00Z",
        "LastError": "0001-01-01T00:00:00Z",
        "LastErrorMessage": "",
    }))
}

// ---- authorize ----

/// Most checks one `/v1/internal/acl/authorize` call may ask for (Consul's bound).
const MAX_AUTHORIZATIONS: usize = 64;

/// `POST /v1/internal/acl/authorize`: Consul's check of what the caller's token may do, one
/// answer (`Allow`) per `{Resource, Segment, Access}` asked; the web UI offers only the
/// actions it is told are allowed. Needs no right of its own: it tells a token about itself.
/// With ACLs off everything is allowed.
pub async fn authorize(Who(caller): Who, body: Bytes) -> HttpResult {
    let asked: Vec<Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| HttpError::bad_request(format!("Failed to decode request body: {e}")))?
    };
    if asked.len() > MAX_AUTHORIZATIONS {
        return Err(HttpError::bad_request(format!(
            "Refusing to process more than {MAX_AUTHORIZATIONS} authorizations at once"
        )));
    }
    let mut answers = Vec::with_capacity(asked.len());
    for mut item in asked {
        let field = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (resource, segment, access) = (field("Resource"), field("Segment"), field("Access"));
        let allow = allowed(&caller, &resource, &segment, &access.to_ascii_lowercase())?;
        if let Some(object) = item.as_object_mut() {
            object.insert("Allow".into(), Value::Bool(!caller.enforced || allow));
        }
        answers.push(item);
    }
    Ok(json_plain(&answers))
}

/// Consul's `acl.Enforce`: the decision for one resource, segment and access level.
fn allowed(
    caller: &Caller,
    resource: &str,
    segment: &str,
    access: &str,
) -> Result<bool, HttpError> {
    let a = &caller.authz;
    let decision = match (resource, access) {
        ("acl", "read") => a.acl_read(),
        ("acl", "write") => a.acl_write(),
        ("agent", "read") => a.agent_read(segment),
        ("agent", "write") => a.agent_write(segment),
        ("event", "read") => a.event_read(segment),
        ("event", "write") => a.event_write(segment),
        ("intention", "read") => a.intention_read(segment),
        ("intention", "write") => a.intention_write(segment),
        ("key", "read") => a.key_read(segment),
        ("key", "list") => a.key_list(segment),
        ("key", "write") => a.key_write(segment),
        ("key", "write-prefix") => a.key_write_prefix(segment),
        ("keyring", "read") => a.keyring_read(),
        ("keyring", "write") => a.keyring_write(),
        ("mesh", "read") => a.mesh_read(),
        ("mesh", "write") => a.mesh_write(),
        ("node", "read") => a.node_read(segment),
        ("node", "write") => a.node_write(segment),
        ("operator", "read") => a.operator_read(),
        ("operator", "write") => a.operator_write(),
        ("peering", "read") => a.peering_read(),
        ("peering", "write") => a.peering_write(),
        ("query", "read") => a.query_read(segment),
        ("query", "write") => a.query_write(segment),
        ("service", "read") => a.service_read(segment),
        ("service", "write") => a.service_write(segment),
        ("session", "read") => a.session_read(segment),
        ("session", "write") => a.session_write(segment),
        (
            "acl" | "agent" | "event" | "intention" | "key" | "keyring" | "mesh" | "node"
            | "operator" | "peering" | "query" | "service" | "session",
            _,
        ) => {
            return Err(HttpError::bad_request(format!(
                "Invalid access level for {resource} resource: {access}"
            )));
        }
        _ => {
            return Err(HttpError::bad_request(format!(
                "Invalid ACL resource requested: {resource:?}"
            )));
        }
    };
    Ok(decision)
}

//! The rights a request needs that its method and path alone decide, checked before the
//! handler runs (Consul's per-endpoint `authz.XRead/XWrite` calls for endpoints that act on a
//! named resource). What depends on the body (registrations, transactions, prepared queries,
//! config entries) is vetted by the handler, and reads of lists filter their results there.
//!
//! A path this table does not know needs `operator:read` (reads) or `operator:write`: a route
//! added without a thought for its rights stays closed rather than open.

use axum::http::Method;

use super::HttpError;
use crate::acl::Caller;
use crate::state::State;

/// The right a request needs before its handler runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Right<'a> {
    /// Checked by the handler (body-dependent) or filtered there (lists), or open to all.
    Handler,
    AgentRead,
    AgentWrite,
    NodeWrite(&'a str),
    ServiceRead(String),
    ServiceWrite(String),
    /// A check on catalogd's node: its service's write, or node write for a node check.
    CheckWrite(String),
    OperatorRead,
    OperatorWrite,
    KeyringRead,
    KeyringWrite,
    AclWrite,
    EventWrite(&'a str),
    /// Snapshot save and restore: a management token (Consul asks for `acl:write`).
    Management,
}

/// The right `method path` needs on catalogd's node `node`.
pub fn required<'a>(method: &Method, path: &'a str, node: &str, st: &State) -> Right<'a> {
    let write = method != Method::GET && method != Method::HEAD;
    let service_of = |id: &str| {
        st.services
            .get(&(node.to_string(), id.to_string()))
            .map_or_else(|| id.to_string(), |s| s.service.clone())
    };
    if let Some(rest) = path.strip_prefix("/v1/agent/") {
        return agent(rest, write, service_of);
    }
    if let Some(rest) = path.strip_prefix("/v1/operator/") {
        return match (rest, write) {
            (r, false) if r.starts_with("keyring") => Right::KeyringRead,
            (r, true) if r.starts_with("keyring") => Right::KeyringWrite,
            (_, false) => Right::OperatorRead,
            (_, true) => Right::OperatorWrite,
        };
    }
    if path == "/v1/snapshot" {
        return Right::Management;
    }
    if let Some(name) = path.strip_prefix("/v1/event/fire/") {
        return Right::EventWrite(name);
    }
    if let Some(name) = path.strip_prefix("/v1/discovery-chain/") {
        return Right::ServiceRead(name.to_string());
    }
    if HANDLER_CHECKED.iter().any(|p| path.starts_with(p)) || path == "/" || is_ui_file(path) {
        return Right::Handler;
    }
    if write {
        Right::OperatorWrite
    } else {
        Right::OperatorRead
    }
}

/// Paths whose handlers check rights themselves (the right depends on the body or on the
/// record named) or filter what they answer; `/v1/status` is open, as in Consul.
const HANDLER_CHECKED: &[&str] = &[
    "/v1/catalog/",
    "/v1/health/",
    "/v1/kv",
    "/v1/session/",
    "/v1/txn",
    "/v1/coordinate/",
    "/v1/query",
    "/v1/config",
    "/v1/event/list",
    "/v1/acl/",
    "/v1/status/",
    "/v1/cairn/",
    "/v1/connect/intentions",
    "/v1/internal/acl/authorize",
    "/metrics",
];

/// The web UI's files (`cairn-ui`): open, as Consul's `/ui/` is; they hold no data.
fn is_ui_file(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

fn agent<'a>(rest: &'a str, write: bool, service_of: impl Fn(&str) -> String) -> Right<'a> {
    let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (head, write) {
        ("self" | "metrics" | "monitor" | "host", false) => Right::AgentRead,
        ("version" | "members", false) => Right::Handler,
        ("services" | "checks", false) => Right::Handler,
        ("service", false) => Right::ServiceRead(service_of(tail)),
        ("health", false) => match tail.split_once('/') {
            Some(("service", rest)) => match rest.split_once('/') {
                Some(("id", id)) => Right::ServiceRead(service_of(id)),
                Some(("name", name)) => Right::ServiceRead(name.to_string()),
                _ => Right::Handler,
            },
            _ => Right::Handler,
        },
        ("reload" | "leave", true) => Right::AgentWrite,
        ("force-leave", true) => Right::OperatorWrite,
        ("token", true) => Right::AclWrite,
        ("maintenance", true) => Right::NodeWrite(""),
        ("service", true) => match tail.split_once('/') {
            Some(("register", _)) | None => Right::Handler,
            Some(("deregister" | "maintenance", id)) => Right::ServiceWrite(service_of(id)),
            Some(_) => Right::Handler,
        },
        ("check", true) => match tail.split_once('/') {
            Some(("register", _)) | None => Right::Handler,
            Some((_, id)) => Right::CheckWrite(id.to_string()),
        },
        (_, false) => Right::OperatorRead,
        (_, true) => Right::OperatorWrite,
    }
}

/// Checks `right` for `caller`; `node` is catalogd's own node.
pub fn check(caller: &Caller, right: &Right, node: &str, st: &State) -> Result<(), HttpError> {
    let a = &caller.authz;
    match right {
        Right::Handler => Ok(()),
        Right::AgentRead => caller.require(a.agent_read(node), "agent", "read", Some(node)),
        Right::AgentWrite => caller.require(a.agent_write(node), "agent", "write", Some(node)),
        Right::NodeWrite(_) => caller.require(a.node_write(node), "node", "write", Some(node)),
        Right::ServiceRead(s) => caller.require(a.service_read(s), "service", "read", Some(s)),
        Right::ServiceWrite(s) => caller.require(a.service_write(s), "service", "write", Some(s)),
        Right::CheckWrite(id) => {
            let service = st
                .checks
                .get(&(node.to_string(), id.clone()))
                .filter(|c| !c.service_id.is_empty())
                .map(|c| {
                    st.services
                        .get(&(node.to_string(), c.service_id.clone()))
                        .map_or_else(|| c.service_name.clone(), |s| s.service.clone())
                });
            caller.may_write_check(node, service.as_deref())
        }
        Right::OperatorRead => caller.require(a.operator_read(), "operator", "read", None),
        Right::OperatorWrite => caller.require(a.operator_write(), "operator", "write", None),
        Right::KeyringRead => caller.require(a.keyring_read(), "keyring", "read", None),
        Right::KeyringWrite => caller.require(a.keyring_write(), "keyring", "write", None),
        Right::AclWrite | Right::Management => caller.require(a.acl_write(), "acl", "write", None),
        Right::EventWrite(name) => {
            caller.require(a.event_write(name), "event", "write", Some(name))
        }
    }
}

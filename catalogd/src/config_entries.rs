//! Config entries (`/v1/config`) as open-source Consul reads, normalizes, validates and renders
//! them. catalogd runs no service mesh, but mesh tooling, gateways and operators keep their
//! central configuration here, and what they write must come back in Consul's shape and be
//! refused with Consul's texts.
//!
//! Each kind has a [`Shape`]: its fields in Consul's order, which of them are nested structs,
//! lists or user maps, and which Consul always renders (a nested struct as `{}`, some fields as
//! `""` or `null`). Decoding matches keys case-insensitively and accepts snake_case, as Consul's
//! mapstructure decoder does; an unknown key is refused with Consul's text.

use serde_json::{Map, Value, json};

/// How a field is decoded and rendered.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A string, number or bool.
    Scalar,
    /// Anything, kept as given (opaque maps, deep structures catalogd does not interpret).
    Any,
    /// A map owned by the user (`Meta`, `Config`): keys kept, values kept.
    UserMap,
    /// A nested object with known fields.
    Obj(&'static [Field]),
    /// A list of values of one shape.
    List(&'static Shape),
    /// A map from user keys to values of one shape.
    MapOf(&'static Shape),
}

/// What Consul renders for a field the entry does not set.
#[derive(Clone, Copy)]
pub enum Absent {
    Omit,
    Null,
    EmptyString,
    EmptyObject,
    False,
    Zero,
}

/// One field of a shape.
#[derive(Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub shape: Shape,
    pub absent: Absent,
}

const fn f(name: &'static str, shape: Shape, absent: Absent) -> Field {
    Field {
        name,
        shape,
        absent,
    }
}

use Absent::{EmptyObject, EmptyString, Null, Omit};
use Shape::{Any, List, MapOf, Obj, Scalar, UserMap};

const MESH_GATEWAY: Shape = Obj(&[f("Mode", Scalar, Omit)]);
const TRANSPARENT_PROXY: Shape = Obj(&[
    f("OutboundListenerPort", Scalar, Omit),
    f("DialedDirectly", Scalar, Omit),
]);
const EXPOSE_PATH: Shape = Obj(&[
    f("ListenerPort", Scalar, Omit),
    f("Path", Scalar, Omit),
    f("LocalPathPort", Scalar, Omit),
    f("Protocol", Scalar, Omit),
]);
const EXPOSE: Shape = Obj(&[
    f("Checks", Scalar, Omit),
    f("Paths", List(&EXPOSE_PATH), Omit),
]);
const ACCESS_LOGS: Shape = Obj(&[
    f("Enabled", Scalar, Omit),
    f("DisableListenerLogs", Scalar, Omit),
    f("Type", Scalar, Omit),
    f("Path", Scalar, Omit),
    f("JSONFormat", Scalar, Omit),
    f("TextFormat", Scalar, Omit),
]);
const UPSTREAM: Shape = Obj(&[
    f("Name", Scalar, Omit),
    f("Peer", Scalar, EmptyString),
    f("EnvoyListenerJSON", Scalar, Omit),
    f("EnvoyClusterJSON", Scalar, Omit),
    f("Protocol", Scalar, Omit),
    f("ConnectTimeoutMs", Scalar, Omit),
    f("Limits", Any, Omit),
    f("PassiveHealthCheck", Any, Omit),
    f("MeshGateway", MESH_GATEWAY, EmptyObject),
    f("BalanceOutboundConnections", Scalar, Omit),
]);
const UPSTREAM_CONFIG: Shape = Obj(&[
    f("Overrides", List(&UPSTREAM), Omit),
    f("Defaults", UPSTREAM, Omit),
]);
const DESTINATION: Shape = Obj(&[f("Addresses", List(&Scalar), Omit), f("Port", Scalar, Omit)]);
const META: Field = f("Meta", UserMap, Omit);
const KIND: Field = f("Kind", Scalar, Omit);
const NAME: Field = f("Name", Scalar, Omit);

const SERVICE_DEFAULTS: &[Field] = &[
    KIND,
    NAME,
    f("Protocol", Scalar, EmptyString),
    f("Mode", Scalar, Omit),
    f("TransparentProxy", TRANSPARENT_PROXY, EmptyObject),
    f("MutualTLSMode", Scalar, Omit),
    f("MeshGateway", MESH_GATEWAY, EmptyObject),
    f("Expose", EXPOSE, EmptyObject),
    f("ExternalSNI", Scalar, Omit),
    f("UpstreamConfig", UPSTREAM_CONFIG, Omit),
    f("Destination", DESTINATION, Omit),
    f("MaxInboundConnections", Scalar, Omit),
    f("LocalConnectTimeoutMs", Scalar, Omit),
    f("LocalRequestTimeoutMs", Scalar, Omit),
    f("BalanceInboundConnections", Scalar, Omit),
    f("RateLimits", Any, Omit),
    f("EnvoyExtensions", List(&Any), Omit),
    META,
];

const PROXY_DEFAULTS: &[Field] = &[
    KIND,
    NAME,
    f("Config", UserMap, Null),
    f("Mode", Scalar, Omit),
    f("TransparentProxy", TRANSPARENT_PROXY, EmptyObject),
    f("MutualTLSMode", Scalar, Omit),
    f("MeshGateway", MESH_GATEWAY, EmptyObject),
    f("Expose", EXPOSE, EmptyObject),
    f("AccessLogs", ACCESS_LOGS, EmptyObject),
    f("EnvoyExtensions", List(&Any), Omit),
    f("FailoverPolicy", Any, Omit),
    f("PrioritizeByLocality", Any, Omit),
    META,
];

const ROUTE_DESTINATION: Shape = Obj(&[
    f("Service", Scalar, Omit),
    f("ServiceSubset", Scalar, Omit),
    f("Namespace", Scalar, Omit),
    f("Partition", Scalar, Omit),
    f("PrefixRewrite", Scalar, Omit),
    f("RequestTimeout", Scalar, Omit),
    f("IdleTimeout", Scalar, Omit),
    f("NumRetries", Scalar, Omit),
    f("RetryOnConnectFailure", Scalar, Omit),
    f("RetryOn", List(&Scalar), Omit),
    f("RetryOnStatusCodes", List(&Scalar), Omit),
    f("RequestHeaders", Any, Omit),
    f("ResponseHeaders", Any, Omit),
]);
const ROUTE_HTTP_MATCH: Shape = Obj(&[
    f("PathExact", Scalar, Omit),
    f("PathPrefix", Scalar, Omit),
    f("PathRegex", Scalar, Omit),
    f("Header", List(&Any), Omit),
    f("QueryParam", List(&Any), Omit),
    f("Methods", List(&Scalar), Omit),
]);
const ROUTE: Shape = Obj(&[
    f("Match", Obj(&[f("HTTP", ROUTE_HTTP_MATCH, Omit)]), Omit),
    f("Destination", ROUTE_DESTINATION, Omit),
]);
const SERVICE_ROUTER: &[Field] = &[KIND, NAME, f("Routes", List(&ROUTE), Null), META];

const SPLIT: Shape = Obj(&[
    f("Weight", Scalar, Absent::Zero),
    f("Service", Scalar, Omit),
    f("ServiceSubset", Scalar, Omit),
    f("Namespace", Scalar, Omit),
    f("Partition", Scalar, Omit),
    f("RequestHeaders", Any, Omit),
    f("ResponseHeaders", Any, Omit),
]);
const SERVICE_SPLITTER: &[Field] = &[KIND, NAME, f("Splits", List(&SPLIT), Null), META];

const SUBSET: Shape = Obj(&[f("Filter", Scalar, Omit), f("OnlyPassing", Scalar, Omit)]);
const REDIRECT: Shape = Obj(&[
    f("Service", Scalar, Omit),
    f("ServiceSubset", Scalar, Omit),
    f("Namespace", Scalar, Omit),
    f("Partition", Scalar, Omit),
    f("Datacenter", Scalar, Omit),
    f("Peer", Scalar, Omit),
    f("SamenessGroup", Scalar, Omit),
]);
const FAILOVER: Shape = Obj(&[
    f("Service", Scalar, Omit),
    f("ServiceSubset", Scalar, Omit),
    f("Namespace", Scalar, Omit),
    f("Datacenters", List(&Scalar), Omit),
    f("Targets", List(&Any), Omit),
    f("Policy", Any, Omit),
    f("SamenessGroup", Scalar, Omit),
]);
const SERVICE_RESOLVER: &[Field] = &[
    KIND,
    NAME,
    f("DefaultSubset", Scalar, Omit),
    f("Subsets", MapOf(&SUBSET), Omit),
    f("Redirect", REDIRECT, Omit),
    f("Failover", MapOf(&FAILOVER), Omit),
    f("ConnectTimeout", Scalar, Omit),
    f("RequestTimeout", Scalar, Omit),
    f("PrioritizeByLocality", Any, Omit),
    f("LoadBalancer", Any, Omit),
    META,
];

const INGRESS_SERVICE: Shape = Obj(&[
    f("Name", Scalar, Omit),
    f("Hosts", List(&Scalar), Null),
    f("TLS", Any, Omit),
    f("RequestHeaders", Any, Omit),
    f("ResponseHeaders", Any, Omit),
    f("MaxConnections", Scalar, Omit),
    f("MaxPendingRequests", Scalar, Omit),
    f("MaxConcurrentRequests", Scalar, Omit),
    f("PassiveHealthCheck", Any, Omit),
    META,
]);
const LISTENER: Shape = Obj(&[
    f("Port", Scalar, Absent::Zero),
    f("Protocol", Scalar, EmptyString),
    f("TLS", Any, Omit),
    f("Services", List(&INGRESS_SERVICE), Null),
]);
const INGRESS_GATEWAY: &[Field] = &[
    KIND,
    NAME,
    f("TLS", Any, Omit),
    f("Listeners", List(&LISTENER), Null),
    f("Defaults", Any, Omit),
    META,
];

const LINKED_SERVICE: Shape = Obj(&[
    f("Name", Scalar, Omit),
    f("CAFile", Scalar, Omit),
    f("CertFile", Scalar, Omit),
    f("KeyFile", Scalar, Omit),
    f("SNI", Scalar, Omit),
]);
const TERMINATING_GATEWAY: &[Field] =
    &[KIND, NAME, f("Services", List(&LINKED_SERVICE), Null), META];

const INTENTION_SOURCE: Shape = Obj(&[
    f("Name", Scalar, Omit),
    f("Peer", Scalar, Omit),
    f("SamenessGroup", Scalar, Omit),
    f("Action", Scalar, Omit),
    f("Permissions", List(&Any), Omit),
    f("Precedence", Scalar, Absent::Zero),
    f("Type", Scalar, EmptyString),
    f("Description", Scalar, Omit),
    f("LegacyID", Scalar, Omit),
    f("LegacyMeta", UserMap, Omit),
    f("LegacyCreateTime", Scalar, Omit),
    f("LegacyUpdateTime", Scalar, Omit),
]);
const SERVICE_INTENTIONS: &[Field] = &[
    KIND,
    NAME,
    f("Sources", List(&INTENTION_SOURCE), Null),
    f("JWT", Any, Omit),
    META,
];

const MESH: &[Field] = &[
    KIND,
    f(
        "TransparentProxy",
        Obj(&[f("MeshDestinationsOnly", Scalar, Absent::False)]),
        EmptyObject,
    ),
    f("AllowEnablingPermissiveMutualTLS", Scalar, Omit),
    f("ValidateClusters", Scalar, Omit),
    f("TLS", Any, Omit),
    f("HTTP", Any, Omit),
    f("Peering", Any, Omit),
    META,
];

const CONSUMER: Shape = Obj(&[
    f("Partition", Scalar, Omit),
    f("Peer", Scalar, Omit),
    f("SamenessGroup", Scalar, Omit),
]);
const EXPORTED_SERVICE: Shape = Obj(&[
    f("Name", Scalar, Omit),
    f("Namespace", Scalar, Omit),
    f("Consumers", List(&CONSUMER), Omit),
]);
const EXPORTED_SERVICES: &[Field] = &[
    KIND,
    NAME,
    f("Services", List(&EXPORTED_SERVICE), Omit),
    META,
];

const JWT_PROVIDER: &[Field] = &[
    KIND,
    NAME,
    f("JSONWebKeySet", Any, Omit),
    f("Issuer", Scalar, Omit),
    f("Audiences", List(&Scalar), Omit),
    f("Locations", List(&Any), Omit),
    f("Forwarding", Any, Omit),
    f("ClockSkewSeconds", Scalar, Omit),
    f("CacheConfig", Any, Omit),
    META,
];

const API_GATEWAY: &[Field] = &[
    KIND,
    NAME,
    f("Listeners", List(&Any), Null),
    f("Status", Any, EmptyObject),
    META,
];
const HTTP_ROUTE: &[Field] = &[
    KIND,
    NAME,
    f("Parents", List(&Any), Null),
    f("Rules", List(&Any), Null),
    f("Hostnames", List(&Scalar), Null),
    f("Status", Any, EmptyObject),
    META,
];
const TCP_ROUTE: &[Field] = &[
    KIND,
    NAME,
    f("Parents", List(&Any), Null),
    f("Services", List(&Any), Null),
    f("Status", Any, EmptyObject),
    META,
];
const INLINE_CERTIFICATE: &[Field] = &[
    KIND,
    NAME,
    f("Certificate", Scalar, EmptyString),
    f("PrivateKey", Scalar, EmptyString),
    META,
];

/// The kinds open-source Consul knows, with their fields.
pub fn kind_fields(kind: &str) -> Option<&'static [Field]> {
    Some(match kind {
        "service-defaults" => SERVICE_DEFAULTS,
        "proxy-defaults" => PROXY_DEFAULTS,
        "service-router" => SERVICE_ROUTER,
        "service-splitter" => SERVICE_SPLITTER,
        "service-resolver" => SERVICE_RESOLVER,
        "ingress-gateway" => INGRESS_GATEWAY,
        "terminating-gateway" => TERMINATING_GATEWAY,
        "service-intentions" => SERVICE_INTENTIONS,
        "mesh" => MESH,
        "exported-services" => EXPORTED_SERVICES,
        "jwt-provider" => JWT_PROVIDER,
        "api-gateway" => API_GATEWAY,
        "bound-api-gateway" => API_GATEWAY,
        "http-route" => HTTP_ROUTE,
        "tcp-route" => TCP_ROUTE,
        "inline-certificate" => INLINE_CERTIFICATE,
        "file-system-certificate" => INLINE_CERTIFICATE,
        // Known to the decoder; refused by its validation in the open-source edition.
        "sameness-group" => &[KIND, NAME, META],
        _ => return None,
    })
}

/// A refusal, and the HTTP status class Consul answers it with.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryError {
    /// 400 `Request decoding failed: ...`.
    Decode(String),
    /// 500 with the validation text.
    Invalid(String),
    /// 403.
    Forbidden(String),
}

fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Decodes `value` against `fields`: keys matched case-insensitively (snake_case too), unknown
/// keys refused with Consul's `invalid config key` text (`at` prefixes nested keys).
fn decode_obj(value: Value, fields: &[Field], at: &str) -> Result<Map<String, Value>, String> {
    let Value::Object(given) = value else {
        return Err(format!("{at}: expected an object"));
    };
    let mut out = Map::new();
    for (key, v) in given {
        if v.is_null() {
            continue;
        }
        let folded = fold(&key);
        let Some(field) = fields.iter().find(|f| fold(f.name) == folded) else {
            if matches!(folded.as_str(), "createindex" | "modifyindex" | "hash") {
                continue;
            }
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            if folded.ends_with("namespace") {
                return Err(format!(
                    "invalid config key {path:?}, namespaces are a consul enterprise feature"
                ));
            }
            if folded.contains("jwt") {
                return Err(format!(
                    "invalid config key {path:?}, api-gateway jwt validation is a consul enterprise feature"
                ));
            }
            return Err(format!("invalid config key {path:?}"));
        };
        let path = if at.is_empty() {
            field.name.to_string()
        } else {
            format!("{at}.{}", field.name)
        };
        out.insert(field.name.to_string(), decode(v, field.shape, &path)?);
    }
    Ok(out)
}

fn decode(value: Value, shape: Shape, at: &str) -> Result<Value, String> {
    Ok(match shape {
        Scalar | Any | UserMap => value,
        Obj(fields) => Value::Object(decode_obj(value, fields, at)?),
        List(inner) => match value {
            Value::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| decode(v, *inner, &format!("{at}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            other => other,
        },
        MapOf(inner) => match value {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| Ok((k.clone(), decode(v, *inner, &format!("{at}[{k}]"))?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => other,
        },
    })
}

/// Renders `value` in Consul's field order with Consul's always-present fields.
fn render_obj(value: &Map<String, Value>, fields: &[Field]) -> Map<String, Value> {
    let mut out = Map::new();
    for field in fields {
        match value.get(field.name) {
            Some(v) => {
                out.insert(field.name.to_string(), render(v, field.shape));
            }
            None => {
                let absent = match field.absent {
                    Omit => continue,
                    Null => Value::Null,
                    EmptyString => json!(""),
                    EmptyObject => match field.shape {
                        Obj(inner) => Value::Object(render_obj(&Map::new(), inner)),
                        _ => json!({}),
                    },
                    Absent::False => json!(false),
                    Absent::Zero => json!(0),
                };
                out.insert(field.name.to_string(), absent);
            }
        }
    }
    out
}

fn render(value: &Value, shape: Shape) -> Value {
    match (shape, value) {
        (Obj(fields), Value::Object(m)) => Value::Object(render_obj(m, fields)),
        (List(inner), Value::Array(items)) => {
            Value::Array(items.iter().map(|v| render(v, *inner)).collect())
        }
        (MapOf(inner), Value::Object(m)) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render(v, *inner)))
                .collect(),
        ),
        _ => value.clone(),
    }
}

/// An entry as stored, with its indexes, as Consul renders it.
pub fn render_entry(stored: &Value, create_index: u64, modify_index: u64) -> Value {
    let kind = stored
        .get("Kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = match (kind_fields(kind), stored) {
        (Some(fields), Value::Object(m)) => render_obj(m, fields),
        (_, Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    out.insert("CreateIndex".into(), json!(create_index));
    out.insert("ModifyIndex".into(), json!(modify_index));
    Value::Object(out)
}

/// The kind named by a body's top-level `Kind` (or `kind`) key.
pub fn body_kind(body: &Value) -> Result<String, EntryError> {
    let raw = body.get("Kind").or_else(|| body.get("kind"));
    match raw {
        None => Err(EntryError::Decode(
            "Payload does not contain a kind/Kind key at the top level".into(),
        )),
        Some(Value::String(k)) => Ok(k.clone()),
        Some(_) => Err(EntryError::Decode(
            "Kind value in payload is not a string".into(),
        )),
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn lowercase(m: &mut Map<String, Value>, k: &str) {
    if let Some(Value::String(s)) = m.get_mut(k) {
        *s = s.to_lowercase();
    }
}

fn validate_meta(m: &Map<String, Value>) -> Result<(), String> {
    let Some(Value::Object(meta)) = m.get("Meta") else {
        return Ok(());
    };
    use cairn_wire::limits::{META_KEY_MAX, META_MAX_PAIRS, META_VALUE_MAX};
    if meta.len() > META_MAX_PAIRS {
        return Err(format!(
            "Meta exceeds maximum element count {META_MAX_PAIRS}"
        ));
    }
    for (k, v) in meta {
        if k.len() > META_KEY_MAX {
            return Err(format!(
                "Meta key {k:?} exceeds maximum length {META_KEY_MAX}"
            ));
        }
        if v.as_str().is_some_and(|s| s.len() > META_VALUE_MAX) {
            return Err(format!(
                "Meta value for key {k:?} exceeds maximum length {META_VALUE_MAX}"
            ));
        }
    }
    Ok(())
}

/// A valid DNS host name (ingress hosts), allowing a leading `*.` label.
fn valid_host(h: &str) -> bool {
    let h = h.strip_prefix("*.").unwrap_or(h);
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

const HTTP_PROTOCOLS: &[&str] = &["http", "http2", "grpc"];

/// Normalizes and validates an ingress gateway's listeners.
fn ingress(m: &mut Map<String, Value>) -> Result<(), String> {
    let Some(Value::Array(listeners)) = m.get_mut("Listeners") else {
        return Ok(());
    };
    let mut ports = std::collections::BTreeSet::new();
    for l in listeners.iter_mut() {
        let Value::Object(l) = l else { continue };
        let port = l.get("Port").and_then(Value::as_i64).unwrap_or(0);
        if !ports.insert(port) {
            return Err(format!("port {port} declared on two listeners"));
        }
        let proto = match str_of(l, "Protocol") {
            "" => "tcp".to_string(),
            p => p.to_lowercase(),
        };
        l.insert("Protocol".into(), json!(proto));
        if !["tcp", "http", "http2", "grpc"].contains(&proto.as_str()) {
            return Err(format!(
                "protocol must be 'tcp', 'http', 'http2', or 'grpc'. '{proto}' is an unsupported protocol"
            ));
        }
        let services = match l.get("Services") {
            Some(Value::Array(s)) if !s.is_empty() => s.clone(),
            _ => return Err(format!("No service declared for listener with port {port}")),
        };
        if services.len() > 1 && proto == "tcp" {
            return Err(format!(
                "Multiple services per listener are only supported for L7 protocols, 'http', 'grpc' and 'http2' (listener on port {port})"
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut hosts = std::collections::BTreeSet::new();
        for s in &services {
            let name = s.get("Name").and_then(Value::as_str).unwrap_or_default();
            let svc_hosts: Vec<&str> = s
                .get("Hosts")
                .and_then(Value::as_array)
                .map(|h| h.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if name == "*" && proto != "http" {
                return Err(format!(
                    "Wildcard service name is only valid for protocol = 'http' (listener on port {port})"
                ));
            }
            if !svc_hosts.is_empty() && proto == "tcp" {
                return Err(format!(
                    "Associating hosts to a service is not supported for the tcp protocol (listener on port {port})"
                ));
            }
            if name.is_empty() {
                return Err(format!(
                    "Service name cannot be blank (listener on port {port})"
                ));
            }
            if name == "*" && !svc_hosts.is_empty() {
                return Err(format!(
                    "Associating hosts to a wildcard service is not supported (listener on port {port})"
                ));
            }
            if !names.insert(name) {
                return Err(format!(
                    "Service {name} cannot be added multiple times (listener on port {port})"
                ));
            }
            for h in svc_hosts {
                if !hosts.insert(h) {
                    return Err(format!(
                        "Hosts must be unique within a specific listener (listener on port {port})"
                    ));
                }
                if !valid_host(h) && h != "*" {
                    return Err(format!("Host {h:?} must be a valid DNS hostname"));
                }
            }
        }
    }
    Ok(())
}

fn splitter(m: &mut Map<String, Value>) -> Result<(), String> {
    let splits = match m.get_mut("Splits") {
        Some(Value::Array(s)) if !s.is_empty() => s,
        _ => return Err("no splits configured".into()),
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut total: i64 = 0;
    for s in splits.iter_mut() {
        let Value::Object(s) = s else { continue };
        let w = s.get("Weight").and_then(Value::as_f64).unwrap_or(0.0);
        let hundredths = (w * 100.0).round() as i64;
        s.insert("Weight".into(), json!(hundredths as f64 / 100.0));
        total += hundredths;
        let key = (
            str_of(s, "Service").to_string(),
            str_of(s, "ServiceSubset").to_string(),
        );
        if !seen.insert(key.clone()) {
            return Err(format!(
                "split destination occurs more than once: service={:?}, subset={:?}, namespace=\"\", partition=\"\"",
                key.0, key.1
            ));
        }
    }
    if total != 10_000 {
        return Err(format!(
            "the sum of all split weights must be 100, not {:.6}",
            total as f64 / 100.0
        ));
    }
    Ok(())
}

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE",
];

fn router(m: &mut Map<String, Value>) -> Result<(), String> {
    let Some(Value::Array(routes)) = m.get_mut("Routes") else {
        return Ok(());
    };
    for (i, r) in routes.iter_mut().enumerate() {
        let Some(Value::Object(http)) = r.pointer_mut("/Match/HTTP") else {
            continue;
        };
        let paths = ["PathExact", "PathPrefix", "PathRegex"]
            .iter()
            .filter(|k| !str_of(http, k).is_empty())
            .count();
        if paths > 1 {
            return Err(format!(
                "Route[{i}] should only contain at most one of PathExact, PathPrefix, or PathRegex"
            ));
        }
        for k in ["PathExact", "PathPrefix"] {
            let p = str_of(http, k);
            if !p.is_empty() && !p.starts_with('/') {
                return Err(format!("Route[{i}] {k} doesn't start with '/': {p:?}"));
            }
        }
        if let Some(Value::Array(methods)) = http.get_mut("Methods") {
            let mut seen = std::collections::BTreeSet::new();
            for meth in methods.iter_mut() {
                let up = meth.as_str().unwrap_or_default().to_uppercase();
                if !METHODS.contains(&up.as_str()) {
                    return Err(format!(
                        "Route[{i}] Methods contains an invalid method {up:?}"
                    ));
                }
                if !seen.insert(up.clone()) {
                    return Err(format!("Route[{i}] Methods contains {up:?} more than once"));
                }
                *meth = json!(up);
            }
        }
    }
    Ok(())
}

fn resolver(m: &Map<String, Value>) -> Result<(), String> {
    let default_subset = str_of(m, "DefaultSubset");
    if !default_subset.is_empty()
        && m.get("Subsets")
            .and_then(Value::as_object)
            .is_none_or(|s| !s.contains_key(default_subset))
    {
        return Err(format!(
            "DefaultSubset {default_subset:?} is not a valid subset"
        ));
    }
    if m.contains_key("Redirect") && m.contains_key("Failover") {
        return Err("Redirect and Failover cannot both be set".into());
    }
    if let Some(Value::Object(r)) = m.get("Redirect") {
        if r.values().all(|v| v.as_str().is_some_and(str::is_empty)) || r.is_empty() {
            return Err("Redirect is empty".into());
        }
        if !str_of(r, "ServiceSubset").is_empty() && str_of(r, "Service").is_empty() {
            return Err("Redirect.ServiceSubset defined without Redirect.Service".into());
        }
    }
    for k in ["ConnectTimeout", "RequestTimeout"] {
        if let Some(v) = m.get(k) {
            let ok = match v {
                Value::String(s) => cairn_wire::parse_go_duration(s).is_ok(),
                Value::Number(n) => n.as_i64().is_some_and(|n| n >= 0),
                _ => false,
            };
            if !ok {
                return Err(format!("Bad {k} '{v}', must be >= 0"));
            }
        }
    }
    Ok(())
}

/// Precedence of an intention source, as Consul computes it for an exact destination.
fn intention_precedence(dest_exact: bool, source_name: &str) -> i64 {
    let dest = if dest_exact { 9 } else { 6 };
    let exact_source_parts = 1 + i64::from(source_name != "*");
    dest - (2 - exact_source_parts)
}

fn intentions(m: &mut Map<String, Value>, name: &str) -> Result<(), String> {
    let sources = match m.get_mut("Sources") {
        Some(Value::Array(s)) if !s.is_empty() => s,
        _ => return Err("At least one source is required".into()),
    };
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in sources.iter_mut().enumerate() {
        let Value::Object(s) = s else { continue };
        let src = str_of(s, "Name").to_string();
        if src.is_empty() {
            return Err(format!("Sources[{i}].Name is required"));
        }
        if src.contains('*') && src != "*" {
            return Err("Name: wildcard character '*' cannot be used with partial values".into());
        }
        let has_permissions = s
            .get("Permissions")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        let action = str_of(s, "Action").to_lowercase();
        if has_permissions && !action.is_empty() {
            return Err(format!(
                "Sources[{i}].Action must be omitted if Permissions are specified"
            ));
        }
        if !has_permissions && action != "allow" && action != "deny" {
            return Err(format!(
                "Sources[{i}].Action must be set to 'allow' or 'deny'"
            ));
        }
        if !action.is_empty() {
            s.insert("Action".into(), json!(action));
        }
        match str_of(s, "Type") {
            "" => {
                s.insert("Type".into(), json!("consul"));
            }
            "consul" => {}
            _ => return Err(format!("Sources[{i}].Type must be set to 'consul'")),
        }
        if !str_of(s, "SamenessGroup").is_empty() {
            return Err(format!(
                "Sources[{i}].SamenessGroup: Sameness groups are a Consul Enterprise feature. "
            ));
        }
        if !seen.insert(src.clone()) {
            return Err(format!("Sources[{i}] defines {src:?} more than once"));
        }
        s.insert(
            "Precedence".into(),
            json!(intention_precedence(name != "*", &src)),
        );
    }
    sources.sort_by_key(|s| -s.get("Precedence").and_then(Value::as_i64).unwrap_or(0));
    Ok(())
}

/// Decodes, normalizes and validates a config entry body (without `?cas`), Consul's way.
/// Returns the entry to store (kind and name set, Consul's normal forms).
pub fn parse(body: Value) -> Result<Value, EntryError> {
    let kind = body_kind(&body)?;
    match kind.as_str() {
        "control-plane-request-limit" => {
            return Err(EntryError::Decode(format!(
                "invalid config entry kind: {kind}"
            )));
        }
        "bound-api-gateway" => {
            return Err(EntryError::Forbidden("only writeable by controller".into()));
        }
        _ => {}
    }
    let Some(fields) = kind_fields(&kind) else {
        return Err(EntryError::Decode(format!(
            "invalid config entry kind: {kind}"
        )));
    };
    let mut m = decode_obj(body, fields, "")
        .map_err(|e| EntryError::Decode(format!("1 error occurred:\n\t* {e}\n\n")))?;
    m.insert("Kind".into(), json!(kind));
    let invalid = |s: String| -> Result<Value, EntryError> { Err(EntryError::Invalid(s)) };
    if kind == "mesh" {
        m.remove("Name");
    }
    let name = str_of(&m, "Name").to_string();
    match kind.as_str() {
        "proxy-defaults" => {
            if name.is_empty() {
                m.insert("Name".into(), json!("global"));
            } else if name != "global" {
                return invalid(format!(
                    "invalid name ({name:?}), only \"global\" is supported"
                ));
            }
            if m.contains_key("FailoverPolicy") {
                return invalid("Setting failover policies requires Consul Enterprise".into());
            }
            if m.contains_key("PrioritizeByLocality") {
                return invalid("Prioritize-by-locality requires Consul Enterprise ".into());
            }
        }
        "mesh" => {}
        "exported-services" => {
            if name != "default" {
                return invalid("exported-services Name must be \"default\"".into());
            }
        }
        "sameness-group" => {
            return invalid("sameness-groups are an enterprise-only feature".into());
        }
        "ingress-gateway" | "terminating-gateway" | "api-gateway" => {
            if name.is_empty() {
                return invalid("Name is required".into());
            }
        }
        _ => {
            if name.is_empty() {
                return invalid("Name is required".into());
            }
        }
    }
    let checked = match kind.as_str() {
        "service-defaults" => {
            lowercase(&mut m, "Protocol");
            if name == "*" {
                Err(
                    "service-defaults name must be the name of a service, and not a wildcard"
                        .to_string(),
                )
            } else if !["", "exact_balance"].contains(&str_of(&m, "BalanceInboundConnections")) {
                Err(format!(
                    "invalid value for balance_inbound_connections: {}",
                    str_of(&m, "BalanceInboundConnections")
                ))
            } else if m.contains_key("UpstreamConfig") && m.contains_key("Destination") {
                Err(
                    "UpstreamConfig and Destination are mutually exclusive for service defaults"
                        .into(),
                )
            } else if m.contains_key("RateLimits") {
                Err(
                    "invalid rate_limit config. Rate limiting is a consul enterprise feature"
                        .into(),
                )
            } else if !["", "strict", "permissive"].contains(&str_of(&m, "MutualTLSMode")) {
                Err(format!(
                    "Invalid MutualTLSMode {:?}. Must be one of \"\", \"strict\", or \"permissive\".",
                    str_of(&m, "MutualTLSMode")
                ))
            } else {
                destination(&m)
            }
        }
        "ingress-gateway" => ingress(&mut m),
        "terminating-gateway" => terminating(&m),
        "service-splitter" => splitter(&mut m),
        "service-router" => router(&mut m),
        "service-resolver" => resolver(&m),
        "service-intentions" => intentions(&mut m, &name),
        "jwt-provider" => {
            if !m.contains_key("ClockSkewSeconds") {
                m.insert("ClockSkewSeconds".into(), json!(30));
            }
            if m.contains_key("JSONWebKeySet") {
                Ok(())
            } else {
                Err("JSONWebKeySet is required".into())
            }
        }
        _ => Ok(()),
    };
    checked.map_err(EntryError::Invalid)?;
    validate_meta(&m).map_err(EntryError::Invalid)?;
    Ok(Value::Object(m))
}

fn destination(m: &Map<String, Value>) -> Result<(), String> {
    let Some(Value::Object(d)) = m.get("Destination") else {
        return Ok(());
    };
    let addrs: Vec<&str> = d
        .get("Addresses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if addrs.is_empty() {
        return Err("Destination must contain at least one valid address".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for a in addrs {
        if !seen.insert(a) {
            return Err(format!("Duplicate address '{a}' is not allowed"));
        }
        if a.parse::<std::net::IpAddr>().is_err() && !valid_host(a) {
            return Err(format!(
                "Destination address '{a}' is invalid Could not validate address {a} as an IP or Hostname"
            ));
        }
    }
    let port = d.get("Port").and_then(Value::as_i64).unwrap_or(0);
    if !(1..=65535).contains(&port) {
        return Err(format!("Invalid Port number {port}"));
    }
    Ok(())
}

fn terminating(m: &Map<String, Value>) -> Result<(), String> {
    let Some(Value::Array(services)) = m.get("Services") else {
        return Ok(());
    };
    let mut seen = std::collections::BTreeSet::new();
    for s in services {
        let Value::Object(s) = s else { continue };
        let name = str_of(s, "Name");
        if name.is_empty() {
            return Err("Service name cannot be blank.".into());
        }
        if !seen.insert(name) {
            return Err(format!(
                "Service {name:?} was specified more than once within a namespace"
            ));
        }
        let tls = ["CAFile", "CertFile", "KeyFile"].map(|k| !str_of(s, k).is_empty());
        if (tls[1] || tls[2]) && !tls.iter().all(|t| *t) {
            return Err(format!(
                "Service {name:?} must have a CertFile, CAFile, and KeyFile specified for TLS origination"
            ));
        }
    }
    Ok(())
}

/// Protocol of a service's discovery chain: its service-defaults `Protocol`, else the global
/// proxy-defaults `Config.protocol`, else `tcp`.
pub fn service_protocol(entry: impl Fn(&str, &str) -> Option<Value>, service: &str) -> String {
    if let Some(p) = entry("service-defaults", service)
        .and_then(|e| {
            e.get("Protocol")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .filter(|p| !p.is_empty())
    {
        return p.to_lowercase();
    }
    entry("proxy-defaults", "global")
        .and_then(|e| {
            e.pointer("/Config/protocol")
                .and_then(Value::as_str)
                .map(str::to_lowercase)
        })
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "tcp".into())
}

/// Whether a protocol allows L7 routing and splitting.
pub fn is_http_like(protocol: &str) -> bool {
    HTTP_PROTOCOLS.contains(&protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_decode_case_insensitively_and_render_as_consul() {
        let e = parse(
            json!({"kind": "service-defaults", "name": "web", "protocol": "HTTP",
            "mesh_gateway": {"mode": "local"}}),
        )
        .unwrap();
        assert_eq!(
            render_entry(&e, 5, 6),
            json!({"Kind": "service-defaults", "Name": "web", "Protocol": "http",
                "TransparentProxy": {}, "MeshGateway": {"Mode": "local"}, "Expose": {},
                "CreateIndex": 5, "ModifyIndex": 6})
        );
        let serialized = serde_json::to_string(&render_entry(&e, 5, 6)).unwrap();
        assert!(serialized.starts_with(r#"{"Kind":"service-defaults","Name":"web","Protocol""#));
    }

    #[test]
    fn refusals_carry_consul_texts() {
        let cases: &[(Value, EntryError)] = &[
            (
                json!({"Name": "x"}),
                EntryError::Decode(
                    "Payload does not contain a kind/Kind key at the top level".into(),
                ),
            ),
            (
                json!({"Kind": "nope", "Name": "x"}),
                EntryError::Decode("invalid config entry kind: nope".into()),
            ),
            (
                json!({"Kind": "service-defaults", "Name": "x", "Bogus": 1}),
                EntryError::Decode("1 error occurred:\n\t* invalid config key \"Bogus\"\n\n".into()),
            ),
            (
                json!({"Kind": "service-defaults"}),
                EntryError::Invalid("Name is required".into()),
            ),
            (
                json!({"Kind": "proxy-defaults", "Name": "web"}),
                EntryError::Invalid("invalid name (\"web\"), only \"global\" is supported".into()),
            ),
            (
                json!({"Kind": "service-splitter", "Name": "web",
                    "Splits": [{"Weight": 50, "Service": "a"}, {"Weight": 40, "Service": "b"}]}),
                EntryError::Invalid(
                    "the sum of all split weights must be 100, not 90.000000".into(),
                ),
            ),
            (
                json!({"Kind": "ingress-gateway", "Name": "gw",
                    "Listeners": [{"Port": 80, "Protocol": "udp", "Services": [{"Name": "a"}]}]}),
                EntryError::Invalid(
                    "protocol must be 'tcp', 'http', 'http2', or 'grpc'. 'udp' is an unsupported protocol"
                        .into(),
                ),
            ),
            (
                json!({"Kind": "sameness-group", "Name": "g"}),
                EntryError::Invalid("sameness-groups are an enterprise-only feature".into()),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(body.clone()).as_ref(), Err(want), "{body}");
        }
    }

    #[test]
    fn normal_forms_are_consuls() {
        let pd = parse(json!({"Kind": "proxy-defaults"})).unwrap();
        assert_eq!(pd["Name"], "global");
        let ig = parse(json!({"Kind": "ingress-gateway", "Name": "gw",
            "Listeners": [{"Port": 8080, "Services": [{"Name": "web"}]}]}))
        .unwrap();
        assert_eq!(ig["Listeners"][0]["Protocol"], "tcp");
        let rendered = render_entry(&ig, 1, 1);
        assert_eq!(
            rendered["Listeners"][0]["Services"][0]["Hosts"],
            Value::Null
        );
        let si = parse(json!({"Kind": "service-intentions", "Name": "db",
            "Sources": [{"Name": "*", "Action": "deny"}, {"Name": "web", "Action": "ALLOW"}]}))
        .unwrap();
        assert_eq!(si["Sources"][0]["Name"], "web");
        assert_eq!(si["Sources"][0]["Precedence"], 9);
        assert_eq!(si["Sources"][0]["Action"], "allow");
        assert_eq!(si["Sources"][1]["Precedence"], 8);
    }
}

//! Key canonicalization for request bodies.
//!
//! Go's `encoding/json` matches object keys to struct fields case-insensitively, and Consul's agent
//! endpoints also take snake_case (`deregister_critical_service_after`). Clients rely on both, so a
//! body is rewritten to Consul's canonical PascalCase before serde sees it. Keys inside user maps
//! (`Meta`, `NodeMeta`, `TaggedAddresses`, `Header`, ...) are the user's own and are left alone.

use serde_json::Value;

/// Consul field names, canonical spelling. Lookup is by lowercase with underscores removed.
const FIELDS: &[&str] = &[
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "Meta",
    "Service",
    "Services",
    "Check",
    "Checks",
    "SkipNodeUpdate",
    "Tags",
    "Port",
    "Weights",
    "Passing",
    "Warning",
    "EnableTagOverride",
    "Kind",
    "Name",
    "Notes",
    "Status",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "CheckID",
    "Output",
    "Type",
    "Definition",
    "Interval",
    "Timeout",
    "TTL",
    "HTTP",
    "TCP",
    "Method",
    "Header",
    "Body",
    "TLSSkipVerify",
    "Args",
    "ScriptArgs",
    "DeregisterCriticalServiceAfter",
    "CreateIndex",
    "ModifyIndex",
    "LockIndex",
    "Key",
    "Flags",
    "Value",
    "Session",
    "Verb",
    "Index",
    "KV",
    "LockDelay",
    "Behavior",
    "NodeChecks",
    "ServiceChecks",
    "TLSServerName",
    "GRPC",
    "GRPCUseTLS",
    "DockerContainerID",
    "Shell",
    "AliasNode",
    "AliasService",
    "SuccessBeforePassing",
    "FailuresBeforeCritical",
    "FailuresBeforeWarning",
    "OutputMaxSize",
    "Namespace",
    "Partition",
    "Proxy",
    "Connect",
    "SocketPath",
    "LocallyRegisteredAsSidecar",
    "ServiceWeights",
    "NodeName",
    "CheckIDs",
    "H2PING",
    "UDP",
    "OSService",
    "ExposedPort",
    "SocketPath",
    "Locality",
    "Region",
    "Zone",
    "Native",
    "SidecarService",
    "DestinationServiceName",
    "DestinationServiceID",
    "LocalServiceAddress",
    "LocalServicePort",
    "LocalServiceSocketPath",
    "Mode",
    "Config",
    "Upstreams",
    "MeshGateway",
    "Expose",
    "TransparentProxy",
    "AccessLogs",
    "EnvoyExtensions",
    "DestinationType",
    "DestinationNamespace",
    "DestinationPartition",
    "DestinationPeer",
    "DestinationName",
    "LocalBindAddress",
    "LocalBindPort",
    "LocalBindSocketPath",
    "LocalBindSocketMode",
    "Paths",
    "Path",
    "ListenerPort",
    "LocalPathPort",
    "Protocol",
    "ParsedFromCheck",
    "OutboundListenerPort",
    "DialedDirectly",
    "Token",
    "PeerName",
    "H2PingUseTLS",
    "DisableRedirects",
    "Coord",
    "Segment",
    "Vec",
    "Error",
    "Adjustment",
    "Height",
    // ACL bodies (/v1/acl/*).
    "AccessorID",
    "SecretID",
    "Description",
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "TemplatedPolicies",
    "TemplateName",
    "TemplateVariables",
    "Datacenters",
    "Local",
    "ExpirationTTL",
    "ExpirationTime",
    "Rules",
    "AuthMethod",
    "BearerToken",
    "DisplayName",
    "MaxTokenTTL",
    "TokenLocality",
    "TokenNameFormat",
    "Selector",
    "BindType",
    "BindName",
    "BindVars",
    "BootstrapSecret",
];

/// Keys whose value is a map owned by the user: its keys are data, not field names.
const USER_MAPS: &[&str] = &["Meta", "NodeMeta", "Header", "ServiceMeta", "Config"];

/// Maps whose keys are the user's but whose values are Consul objects (service tagged addresses
/// `{"lan": {"address": ..., "port": ...}}`): the keys stay, the values are canonicalized.
const KEYED_MAPS: &[&str] = &["TaggedAddresses", "ServiceTaggedAddresses"];

fn canonical(key: &str) -> Option<&'static str> {
    let folded: String = key
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    FIELDS
        .iter()
        .find(|f| f.len() == folded.len() && f.to_ascii_lowercase() == folded)
        .copied()
}

/// Rewrites every object key in `value` to Consul's canonical spelling, recursively, skipping
/// the contents of user maps.
pub fn canonicalize_keys(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut v) in entries {
                let name = canonical(&key).map(str::to_string).unwrap_or(key);
                if KEYED_MAPS.contains(&name.as_str()) {
                    if let Value::Object(inner) = &mut v {
                        inner.values_mut().for_each(canonicalize_keys);
                    }
                } else if !USER_MAPS.contains(&name.as_str()) {
                    canonicalize_keys(&mut v);
                }
                // An explicit canonical key wins over a differently cased duplicate.
                if !map.contains_key(&name) {
                    map.insert(name, v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonicalize_keys),
        _ => {}
    }
}

/// Fields Consul's check decoder reads as Go durations, given as a string (`"10s"`) or as a
/// number of nanoseconds (what `time.Duration` marshals to).
const DURATION_FIELDS: &[&str] = &[
    "Interval",
    "Timeout",
    "TTL",
    "DeregisterCriticalServiceAfter",
];

/// Reads duration fields as Consul's decoder does: a number is nanoseconds (rewritten as a Go
/// duration string), a string must parse as a Go duration. Recursive, skipping user maps; run
/// after [`canonicalize_keys`]. The error is Go's text for the bad string.
pub fn durations_from_numbers(value: &mut Value) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if USER_MAPS.contains(&key.as_str()) {
                    continue;
                }
                if !DURATION_FIELDS.contains(&key.as_str()) {
                    durations_from_numbers(v)?;
                    continue;
                }
                match v {
                    Value::Number(n) => {
                        if let Some(ns) = n.as_f64().filter(|ns| *ns >= 0.0) {
                            *v = Value::String(crate::format_go_duration(
                                std::time::Duration::from_nanos(ns as u64),
                            ));
                        }
                    }
                    Value::String(s) if !s.is_empty() && crate::parse_go_duration(s).is_err() => {
                        return Err(format!("time: invalid duration {s:?}"));
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter_mut().try_for_each(durations_from_numbers),
        _ => Ok(()),
    }
}

/// Drops `null` members of objects (Go's decoder leaves the field at its zero value, so `null`
/// means "not given"), recursively, keeping user maps as they are.
pub fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            for (key, v) in map.iter_mut() {
                if !USER_MAPS.contains(&key.as_str()) {
                    drop_nulls(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_durations_are_nanoseconds_and_nulls_are_absent() {
        let mut v = json!({"Check": {"Interval": 10, "TTL": "5s", "Timeout": 2_000_000_000u64,
            "Name": null}, "Meta": {"Interval": 3}, "Port": null});
        durations_from_numbers(&mut v).unwrap();
        drop_nulls(&mut v);
        let mut bad = json!({"Check": {"TTL": "ten seconds"}});
        assert_eq!(
            durations_from_numbers(&mut bad),
            Err("time: invalid duration \"ten seconds\"".to_string())
        );
        assert_eq!(
            v,
            json!({"Check": {"Interval": "10ns", "TTL": "5s", "Timeout": "2s"},
                "Meta": {"Interval": 3}})
        );
    }

    #[test]
    fn snake_and_lower_case_become_pascal() {
        let mut v = json!({"name": "web", "id": "web1", "check": {"ttl": "10s",
            "deregister_critical_service_after": "1m"}, "meta": {"some_key": "v"},
            "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}, "wan": "1.2.3.4"}});
        canonicalize_keys(&mut v);
        assert_eq!(
            v,
            json!({"Name": "web", "ID": "web1", "Check": {"TTL": "10s",
                "DeregisterCriticalServiceAfter": "1m"}, "Meta": {"some_key": "v"},
                "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 80}, "wan": "1.2.3.4"}})
        );
    }
}

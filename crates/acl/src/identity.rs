//! The policies Consul synthesizes rather than stores: the rules of a token's service identities
//! and node identities (`agent/structs/acl_ce.go`), the builtin `global-management` and
//! `builtin/global-read-only` policies (`agent/structs/acl.go`), and the name checks Consul
//! applies to identities (`acl/validation.go`). The texts are Consul's, leading newline
//! included, so a policy built from them reads the same.

/// The rules of Consul's builtin `global-management` policy (ID
/// `00000000-0000-0000-0000-000000000001`): write on everything.
pub const GLOBAL_MANAGEMENT_RULES: &str = r#"
acl = "write"
agent_prefix "" {
	policy = "write"
}
event_prefix "" {
	policy = "write"
}
key_prefix "" {
	policy = "write"
}
keyring = "write"
node_prefix "" {
	policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
	policy = "write"
}
service_prefix "" {
	policy = "write"
	intentions = "write"
}
session_prefix "" {
	policy = "write"
}"#;

/// The rules of Consul's builtin `builtin/global-read-only` policy (ID
/// `00000000-0000-0000-0000-000000000002`): read on everything.
pub const GLOBAL_READ_ONLY_RULES: &str = r#"
acl = "read"
agent_prefix "" {
	policy = "read"
}
event_prefix "" {
	policy = "read"
}
key_prefix "" {
	policy = "read"
}
keyring = "read"
node_prefix "" {
	policy = "read"
}
operator = "read"
mesh = "read"
peering = "read"
query_prefix "" {
	policy = "read"
}
service_prefix "" {
	policy = "read"
	intentions = "read"
}
session_prefix "" {
	policy = "read"
}"#;

/// The synthetic policy of a service identity: write on the service and its sidecar proxy, read
/// on all services and nodes (for discovery). Consul validates the name before storing the
/// token, so it is not escaped; see [`is_valid_service_identity_name`].
pub fn service_identity_rules(service_name: &str) -> String {
    format!(
        r#"
service "{service_name}" {{
	policy = "write"
}}
service "{service_name}-sidecar-proxy" {{
	policy = "write"
}}
service_prefix "" {{
	policy = "read"
}}
node_prefix "" {{
	policy = "read"
}}"#
    )
}

/// The synthetic policy of a node identity: write on the node (to register it and its
/// coordinates), read on all services (anti-entropy compares the node's services with the
/// catalog's).
pub fn node_identity_rules(node_name: &str) -> String {
    format!(
        r#"
node "{node_name}" {{
	policy = "write"
}}
service_prefix "" {{
	policy = "read"
}}"#
    )
}

/// The longest service identity name Consul accepts.
pub const SERVICE_IDENTITY_NAME_MAX_LENGTH: usize = 256;
/// The longest node identity name Consul accepts.
pub const NODE_IDENTITY_NAME_MAX_LENGTH: usize = 256;

/// Consul's rule for identity names: lowercase letters, digits, `-` and `_`, starting and ending
/// with a letter or digit.
fn is_identity_name(name: &str, max_length: usize) -> bool {
    let bytes = name.as_bytes();
    let inner_ok =
        |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_';
    let end_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= max_length && end_ok(first) && end_ok(last) && bytes.iter().all(inner_ok)
        }
        _ => false,
    }
}

/// Whether `name` may be a service identity's service name (stricter than catalog names).
pub fn is_valid_service_identity_name(name: &str) -> bool {
    is_identity_name(name, SERVICE_IDENTITY_NAME_MAX_LENGTH)
}

/// Whether `name` may be a node identity's node name (stricter than catalog names).
pub fn is_valid_node_identity_name(name: &str) -> bool {
    is_identity_name(name, NODE_IDENTITY_NAME_MAX_LENGTH)
}

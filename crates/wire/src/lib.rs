//! Consul-compatible JSON wire types shared by every cairn binary.
//!
//! The structs here serialize with exactly the field names and casing that Consul's HTTP API uses,
//! because unmodified Consul clients (the Go `api` package, py-consul, curl scripts) read them.
//! Incoming bodies are more lenient: Go's JSON decoder matches field names case-insensitively and
//! Consul's agent endpoints accept snake_case, so [`canonicalize_keys`] rewrites a request body's
//! keys before it is decoded into these types.

mod agent;
mod catalog;
mod connect;
mod duration;
mod event;
mod health;
mod keys;
mod kv;
pub mod limits;
mod session;
mod time;
mod txn;
mod whole;

pub use agent::{
    AgentCheckRegistration, AgentConfig, AgentMember, AgentSelf, AgentService, AgentServiceConnect,
    AgentServiceRegistration, CheckUpdate,
};
pub use catalog::StringMap;
pub use catalog::{
    CatalogDeregistration, CatalogNodeServices, CatalogRegistration, CatalogService,
    CheckDefinition, HealthCheck, Node, NodeService, ServiceEntry, Weights,
};
pub use connect::{
    AgentProxyConfig, ConnectProxyConfig, ExposeConfig, Locality, MeshGatewayConfig,
    ServiceAddress, ServiceConnect, ServiceTaggedAddresses, Upstream, is_proxy_kind,
};
pub use duration::{DurationError, format_go_duration, parse_go_duration};
pub use event::{UserEvent, event_id_to_index, event_list_index};
pub use health::{CheckStatus, UnknownStatus, aggregate_status};
pub use keys::{canonicalize_keys, drop_nulls, durations_from_numbers};
pub use kv::{KvPair, b64_decode, b64_encode};
pub use session::{SessionBehavior, SessionEntry, SessionRequest};
pub use time::rfc3339_seconds;
pub use txn::{TxnError, TxnKvOp, TxnOp, TxnResponse, TxnResult};
pub use whole::{CatalogDelta, CatalogMirror, InstanceRef, NodeHealth, Touched, WholeCatalog};

/// Default datacenter name, as Consul's.
pub const DEFAULT_DATACENTER: &str = "dc1";
/// Largest KV value accepted, as Consul's default `kv_max_value_size`.
pub const MAX_KV_VALUE: usize = 512 * 1024;

//! offerd: agents' resources, placement, and the life of apps and tasks, behind a
//! Marathon-compatible HTTP API and cairn's agent protocol.
//!
//! - [`scheduler`]: the level-triggered loop that launches, kills, replaces and finishes.
//! - [`core`]: the published state and its one writer, made durable in a [`cairn_store::Store`].
//! - [`tx`]: what a change touched (records, agents to wake, events).
//! - [`http`]: Marathon's `/v2` API, the agents' `/v1/agents` API and the event stream.
//! - [`health`]: task health read from the catalog with a blocking query.
//! - [`service_ports`]: the load balancers' ports of apps (assignment, conflicts).
//! - [`offers`]: the offers book for other schedulers (two-level scheduling).
//! - [`auth`]: who may call what: `--auth-file` principals and roles, agent tokens.
//! - [`ha`]: replicas on etcd (`--etcd`): the elected leader schedules, standbys forward.
//! - [`cli`]: `offerd serve` and the client commands (`apply`, `apps`, `tasks`, `scale`, `kill`).

pub mod auth;
pub mod autoscale;
pub mod cli;
pub mod core;
pub mod events;
pub mod ha;
pub mod health;
pub mod http;
pub mod model;
pub mod offers;
pub mod scheduler;
pub mod serve;
pub mod service_ports;
pub mod tx;

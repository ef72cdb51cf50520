//! catalogd: cairn's service catalog, health state, KV store and sessions, behind a
//! Consul-compatible HTTP API.
//!
//! Layout: [`state`] is the catalog and every rule of how it changes (pure, testable without
//! I/O); [`writer`] serializes changes, groups them into durable commits and publishes snapshots;
//! [`persist`] maps the state onto a [`cairn_store::Store`]; [`watch`] wakes blocking queries by
//! topic; [`timers`] enforces TTLs; [`core`] starts a catalog ([`Catalog`]) and holds what the
//! handlers share; [`http`] is the API; [`serve`](mod@serve) runs both behind the listener;
//! [`cli`] the command line.

pub mod acl;
pub mod agent_checks;
pub mod chain;
pub mod cli;
pub mod config_entries;
pub mod core;
pub mod events;
pub mod ha;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod persist;
pub mod serve;
pub mod server_node;
pub mod snapshot;
pub mod state;
pub mod store_health;
pub mod timers;
pub mod watch;
pub mod whole_catalog;
pub mod writer;

pub use crate::core::{Catalog, Config};
pub use crate::serve::serve;

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod test_support;

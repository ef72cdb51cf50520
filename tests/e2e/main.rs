//! cairn's end-to-end tests: one binary, one module per area. Every test starts the real
//! `catalogd` (and, for later binaries, the real peers) and talks to it over loopback.

mod catalogd_agent;
mod catalogd_bad_input;
mod catalogd_blocking;
mod catalogd_catalog;
mod catalogd_cli;
mod catalogd_client_lib;
mod catalogd_durability;
mod catalogd_kv;
mod catalogd_sessions;
mod catalogd_txn;
mod consul_clients;
mod demo;
mod prometheus_metrics;

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
mod dnsbridge_common;
mod dnsbridge_health;
mod dnsbridge_lifecycle;
mod dnsbridge_live;
mod dnsbridge_malformed;
mod dnsbridge_names;
mod dnsbridge_recursor;
mod dnsbridge_shuffle;
mod dnsbridge_truncation;
mod healthcheck_agent;
mod healthcheck_args;
mod healthcheck_common;
mod healthcheck_dns;
mod healthcheck_exec;
mod healthcheck_file;
mod healthcheck_http;
mod healthcheck_run;
mod healthcheck_tcp;
mod prometheus_metrics;

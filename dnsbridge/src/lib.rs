//! dnsbridge: service discovery over DNS from the catalog, with Consul's names. One blocking
//! watch on catalogd's whole-catalog endpoint keeps an in-memory [`view::View`]; the
//! hickory-server [`handler::Handler`] answers from it without touching the network.

pub mod answer;
pub mod cli;
pub mod handler;
pub mod held;
pub mod names;
pub mod resolve;
pub mod serve;
pub mod udp;
pub mod view;

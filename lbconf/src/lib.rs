//! lbconf: HAProxy routing from the catalog. [`model`] turns the whole catalog into validated
//! routes (opt-in through `lb_*` ServiceMeta), [`render`] writes haproxy.cfg from them, [`watch`]
//! keeps HAProxy in step, [`metrics`] serves HAProxy's request counts per service read through
//! [`stats`].

pub mod certs;
pub mod cli;
pub mod marathon_lb;
pub mod metrics;
pub mod model;
pub mod render;
pub mod stats;
pub mod watch;

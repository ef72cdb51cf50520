//! lbconf: HAProxy routing from the catalog. [`model`] turns the whole catalog into validated
//! routes (opt-in through `lb_*` ServiceMeta), [`render`] writes haproxy.cfg from them.

pub mod cli;
pub mod model;
pub mod render;
pub mod watch;

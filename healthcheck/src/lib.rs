//! healthcheck: one check per call with Nagios output and exit codes (`http`, `tcp`, `dns`,
//! `exec`, `file`), a concurrent batch runner (`run`), and a node agent (`agent`) that runs the
//! checks registered in the catalog for a node and pushes their status. The checks themselves
//! live in the shared `cairn-checks` engine.

pub mod agent;
pub mod batch;
pub mod cli;
mod duration_arg;

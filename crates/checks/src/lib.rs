//! cairn's check engine, shared by `healthcheck` (one-shot, batch and node agent) and `taskrun`
//! (task health checks): HTTP, TCP, DNS, exec (any Nagios plugin) and file checks, each a
//! plain async call that returns a [`CheckResult`] with a Nagios [`Status`], a message and
//! performance data. Checks never fail as Rust errors: a refused connection, a timeout or a
//! wrong answer is a CRITICAL result that says which. Only a check that cannot be built
//! (a bad URL, a bad regex) is a [`CheckError`], which callers report as UNKNOWN.

pub mod agent;
mod batch;
mod check;
mod context;
mod dns;
mod exec;
mod file;
mod http;
mod spec;
mod status;
mod tcp;
mod thresholds;

pub use batch::run_batch;
pub use check::Check;
pub use context::Context;
pub use dns::DnsCheck;
pub use exec::ExecCheck;
pub use file::FileCheck;
pub use http::{HttpCheck, StatusRanges};
pub use spec::{CheckError, CheckSpec, Kind};
pub use status::{CheckResult, Perf, Status};
pub use tcp::TcpCheck;
pub use thresholds::Thresholds;

/// Default timeout of every check, as Consul's and check_http's.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

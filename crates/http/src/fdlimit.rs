//! The open-file limit a server needs: one descriptor per connection under the cap, plus the
//! process's own files. Distributions start processes with a soft limit of 1,024 and a much
//! higher hard limit; the soft limit is raised to the hard one as Go's runtime does for Consul.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for what is not a connection (store, logs, sockets to peers, children).
const SPARE: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit when it is below `connections` plus a
/// spare, and warns when even the hard limit is too low for `connections`.
pub fn raise_fd_limit(connections: usize) {
    let needed = connections as u64 + SPARE;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if soft >= needed {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let now = match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            hard
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
            soft
        }
    };
    if now < needed {
        tracing::warn!(
            limit = now,
            connections,
            "the open-file limit is below --max-connections plus {SPARE}: past it, accepts \
             fail instead of being refused cleanly; raise LimitNOFILE or lower --max-connections"
        );
    }
}

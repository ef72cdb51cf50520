//! How a task ended, in the terms every driver shares: each driver (a process under its
//! supervisor, a Docker container) turns what it learns at the end into an [`Outcome`] and
//! reports how a kill went as a [`KillReport`], so the agent records every task the same way.

use cairn_marathon::TaskState;

use crate::sandbox::ExitInfo;

/// How a task ended, all things considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub state: TaskState,
    pub message: String,
    /// The shell's exit code for it (128 + signal for a signal).
    pub exit_code: i32,
    pub exit: Option<ExitInfo>,
}

/// How a kill went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KillReport {
    /// SIGKILL was needed after the grace period.
    pub escalated: bool,
}

//! The exec driver: starts a task as a process under its supervisor (`taskrun wrap`), follows it
//! (as its parent, or by pid + start time when adopted after a restart), kills it (SIGTERM to
//! its process group, SIGKILL after the grace period), and says how it ended.
//!
//! A task's process tree never depends on the agent: it runs in its own session (so neither a
//! terminal's signals nor `kill -9` of the agent reach it), its stdin is `/dev/null` and its
//! stdout/stderr are pipes its supervisor copies into the sandbox's log files, rotating them (no
//! pipes through the agent).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cairn_marathon::{TaskSpec, TaskState};

use crate::limits::{LimitMode, TaskLimits};
use crate::outcome::{KillReport, Outcome};
use crate::sandbox::{EXIT_FILE, ExitInfo, STDERR_FILE, STDOUT_FILE};
use crate::user::Credentials;

/// How often an adopted task (not our child) is checked for having ended.
const ADOPTED_POLL: Duration = Duration::from_millis(200);

/// Why a task could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("the task has neither cmd nor args")]
    NoCommand,
    #[error("cannot prepare the sandbox {path}: {source}")]
    Sandbox {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the task's cgroup: {0}")]
    Cgroup(#[from] crate::limits::CgroupError),
    #[error("cannot start the task: {0}")]
    Spawn(#[source] std::io::Error),
}

/// The program and arguments: `cmd` through `sh -c` (as Marathon), else `args` as given.
pub fn command_argv(spec: &TaskSpec) -> Result<Vec<OsString>, ExecError> {
    if let Some(cmd) = spec.cmd.as_ref().filter(|c| !c.trim().is_empty()) {
        return Ok(vec!["sh".into(), "-c".into(), cmd.into()]);
    }
    match &spec.args {
        Some(args) if !args.is_empty() => Ok(args.iter().map(OsString::from).collect()),
        _ => Err(ExecError::NoCommand),
    }
}

/// What [`launch`] needs.
pub struct Launch<'a> {
    pub task_id: &'a str,
    /// Where the record, exit file and logs go (taskrun's).
    pub sandbox: &'a Path,
    /// The task's working directory (its sandbox, or its workspace: see [`crate::sandbox`]).
    pub workdir: &'a Path,
    /// The ids the program takes (its supervisor keeps taskrun's); `None`: taskrun's own.
    pub credentials: Option<Credentials>,
    pub argv: Vec<OsString>,
    pub env: BTreeMap<String, String>,
    pub limits: TaskLimits,
    pub mode: &'a LimitMode,
    /// The taskrun binary (`/proc/self/exe`), run as `taskrun wrap`.
    pub wrapper: &'a Path,
    /// Rotate the task's log files above this many bytes (0: never).
    pub log_rotate_bytes: u64,
}

/// A started task.
pub struct Started {
    pub child: tokio::process::Child,
    /// The supervisor's pid = the task's process group.
    pub pid: i32,
    pub start_time: Option<u64>,
    /// The cgroup recorded for the task (see [`LimitMode::prepare`]).
    pub cgroup: Option<PathBuf>,
}

/// `taskrun wrap`'s flags for the ids of the program (see [`crate::wrap`]).
pub fn credential_args(credentials: Option<&Credentials>) -> Vec<String> {
    let Some(c) = credentials else {
        return Vec::new();
    };
    let mut args = vec![
        "--uid".to_string(),
        c.uid.to_string(),
        "--gid".to_string(),
        c.gid.to_string(),
    ];
    if !c.groups.is_empty() {
        args.push("--groups".into());
        args.push(
            c.groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    args
}

/// Starts a task: sandbox files, cgroup, then `taskrun wrap` in a new session.
pub fn launch(l: Launch<'_>) -> Result<Started, ExecError> {
    let sandbox_err = |source| ExecError::Sandbox {
        path: l.sandbox.to_path_buf(),
        source,
    };
    cairn_cli::create_private_dir(l.sandbox).map_err(sandbox_err)?;
    let exit_file = l.sandbox.join(EXIT_FILE);
    match std::fs::remove_file(&exit_file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(sandbox_err(e)),
    }
    let (stdout, stderr) = (l.sandbox.join(STDOUT_FILE), l.sandbox.join(STDERR_FILE));
    // Created now, so they exist (empty) as soon as the task does.
    for log in [&stdout, &stderr] {
        crate::logs::open_append(log).map_err(sandbox_err)?;
    }
    let cgroup = l.mode.prepare(l.task_id, l.limits)?;
    let pre = l.mode.pre_exec(l.task_id, cgroup.as_deref(), l.limits);

    let mut cmd = tokio::process::Command::new(l.wrapper);
    cmd.arg0("taskrun")
        .arg("wrap")
        .arg("--exit-file")
        .arg(&exit_file)
        .arg("--stdout")
        .arg(&stdout)
        .arg("--stderr")
        .arg(&stderr)
        .arg("--log-rotate-bytes")
        .arg(l.log_rotate_bytes.to_string())
        .args(credential_args(l.credentials.as_ref()))
        .arg("--")
        .args(&l.argv)
        .env_clear()
        .envs(&l.env)
        .current_dir(l.workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(false);
    // SAFETY: PreExec::apply only makes async-signal-safe system calls on prepared data.
    unsafe {
        cmd.pre_exec(move || pre.apply());
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            l.mode.release(l.task_id, cgroup.as_deref());
            return Err(ExecError::Spawn(e));
        }
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    let start_time = crate::procfs::read_stat(pid)
        .ok()
        .flatten()
        .map(|s| s.start_time);
    Ok(Started {
        child,
        pid,
        start_time,
        cgroup,
    })
}

/// A task's process as the agent follows it.
pub enum Proc {
    /// Started by this agent: waited for as a child.
    Owned(tokio::process::Child),
    /// Started by an earlier agent: followed by pid and start time.
    Adopted { pid: i32, start_time: Option<u64> },
}

impl Proc {
    /// Waits until the supervisor has exited; the wait status when it was our child.
    pub async fn wait(&mut self) -> Option<ExitStatus> {
        match self {
            Proc::Owned(child) => child.wait().await.ok(),
            Proc::Adopted { pid, start_time } => {
                while crate::procfs::is_same_process(*pid, *start_time) {
                    tokio::time::sleep(ADOPTED_POLL).await;
                }
                None
            }
        }
    }

    /// Sends `sig` to the task's process group, if the group is still the task's: an unreaped
    /// child pins its pid; an adopted pid is checked against its start time first.
    pub fn signal_group(&self, sig: cairn_proc::Signal) -> bool {
        let pid = match self {
            Proc::Owned(child) => match child.id().and_then(|p| i32::try_from(p).ok()) {
                Some(p) => p,
                None => return false,
            },
            Proc::Adopted { pid, start_time } => {
                if !crate::procfs::is_same_process(*pid, *start_time) {
                    return false;
                }
                *pid
            }
        };
        // A group that cannot be signalled (ended, or a pid below 2) is reported as not signalled.
        cairn_proc::signal_group(pid, sig).unwrap_or(false)
    }
}

/// Kills a task: SIGTERM to its group, SIGKILL to the group if it has not ended within `grace`.
/// Returns once the supervisor has exited, with its wait status when it was our child.
pub async fn kill(proc: &mut Proc, grace: Duration) -> (Option<ExitStatus>, KillReport) {
    proc.signal_group(cairn_proc::Signal::TERM);
    if let Ok(status) = tokio::time::timeout(grace, proc.wait()).await {
        return (status, KillReport { escalated: false });
    }
    proc.signal_group(cairn_proc::Signal::KILL);
    let status = proc.wait().await;
    (status, KillReport { escalated: true })
}

/// The grace period of a spec (Mesos' 3 s when unset or nonsensical).
pub fn grace_of(seconds: f64) -> Duration {
    if seconds.is_finite() && seconds >= 0.0 {
        Duration::from_secs_f64(seconds.min(86_400.0))
    } else {
        Duration::from_secs(3)
    }
}

/// Combines the supervisor's exit file, its wait status (when it was our child) and whether the
/// agent killed the task.
pub fn outcome(
    exit: Option<ExitInfo>,
    wait: Option<ExitStatus>,
    killed: Option<KillReport>,
) -> Outcome {
    let wait_code = wait.map(|w| match (w.code(), w.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    });
    let exit_code = exit
        .as_ref()
        .map(ExitInfo::exit_code)
        .or(wait_code)
        .unwrap_or(128 + libc::SIGKILL);
    if let Some(k) = killed {
        let how = if k.escalated {
            "killed: no longer desired (SIGKILL after the grace period)"
        } else {
            "killed: no longer desired"
        };
        return Outcome {
            state: TaskState::Killed,
            message: how.into(),
            exit_code,
            exit,
        };
    }
    let (state, message) = match (&exit, wait) {
        (Some(info), _) => info.describe(),
        (None, Some(w)) => match (w.code(), w.signal()) {
            (_, Some(s)) => (TaskState::Failed, format!("killed by signal {s}")),
            (Some(c), _) => (
                TaskState::Failed,
                format!("exited with status {c} without recording it"),
            ),
            _ => (TaskState::Failed, "ended with an unknown status".into()),
        },
        (None, None) => (
            TaskState::Failed,
            "ended while taskrun was not running; exit status unknown".into(),
        ),
    };
    Outcome {
        state,
        message,
        exit_code,
        exit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(extra: serde_json::Value) -> TaskSpec {
        let mut base = json!({
            "id": "a.1", "app_id": "/a", "version": "v",
            "cpus": 1.0, "mem": 32.0, "disk": 0.0,
            "kill_grace_seconds": 3.0, "service_name": "a"
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn cmd_runs_through_the_shell_args_directly() {
        let argv = command_argv(&spec(json!({"cmd": "echo $HOME"}))).unwrap();
        assert_eq!(argv, ["sh", "-c", "echo $HOME"]);
        let argv = command_argv(&spec(json!({"args": ["/bin/echo", "a b"]}))).unwrap();
        assert_eq!(argv, ["/bin/echo", "a b"]);
        assert!(matches!(
            command_argv(&spec(json!({}))),
            Err(ExecError::NoCommand)
        ));
    }

    #[test]
    fn outcomes() {
        let code = |c| {
            Some(ExitInfo {
                code: Some(c),
                ..Default::default()
            })
        };
        let o = outcome(code(0), None, None);
        assert_eq!((o.state, o.exit_code), (TaskState::Finished, 0));
        let o = outcome(code(3), None, None);
        assert_eq!(o.state, TaskState::Failed);
        assert_eq!(o.message, "exited with status 3");
        // Killed by the agent: KILLED whatever the code.
        let o = outcome(
            Some(ExitInfo {
                signal: Some(15),
                ..Default::default()
            }),
            None,
            Some(KillReport { escalated: false }),
        );
        assert_eq!((o.state, o.exit_code), (TaskState::Killed, 143));
        // Escalated: the supervisor died with the group, no exit file.
        let o = outcome(
            None,
            Some(ExitStatus::from_raw(libc::SIGKILL)),
            Some(KillReport { escalated: true }),
        );
        assert_eq!((o.state, o.exit_code), (TaskState::Killed, 137));
        // The whole group killed by someone else.
        let o = outcome(None, Some(ExitStatus::from_raw(libc::SIGKILL)), None);
        assert_eq!(o.message, "killed by signal 9");
        // Ended while nobody watched and left no file.
        let o = outcome(None, None, None);
        assert_eq!(o.state, TaskState::Failed);
        assert!(o.message.contains("unknown"));
    }

    #[test]
    fn grace_periods() {
        assert_eq!(grace_of(1.5), Duration::from_millis(1500));
        assert_eq!(grace_of(f64::NAN), Duration::from_secs(3));
        assert_eq!(grace_of(-1.0), Duration::from_secs(3));
    }
}

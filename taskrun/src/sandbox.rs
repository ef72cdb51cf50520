//! A task's sandbox `<work-dir>/tasks/<task-id>/` and what is kept in it: `task.json` (the
//! [`TaskRecord`]: spec, process identity, state, exit; replaced atomically on every change so a
//! restarted agent knows every task), `exit_status` (the [`ExitInfo`] the per-task supervisor
//! writes when the task ends, whoever its parent is by then), and the `stdout`/`stderr` logs
//! (for a Docker task, copied from the container, with `log_cursor` saying how far).
//! Terminal sandboxes are kept so logs stay readable; [`gc_victims`] picks which to remove.
//!
//! A process task of the agent works elsewhere, in its workspace `<work-dir>/workspaces/<id>/`
//! (its working directory and `MESOS_SANDBOX`), owned by the task's user:
//!
//! ```text
//! <work-dir>/tasks/            0700 taskrun   records and logs: the app's env (secrets) is in
//! <work-dir>/tasks/<id>/       0700 taskrun   task.json, and a task may print it; files 0600
//! <work-dir>/workspaces/       0711 taskrun   a task reaches its own workspace, lists none
//! <work-dir>/workspaces/<id>/  0700 task user the task's files
//! ```
//!
//! The two are apart because taskrun (root) writes the record, the exit file and the logs: in a
//! directory the task user owned, the task could swap them for links to any file and have root
//! write there. (`taskrun run`, which switches no user, keeps the task in its sandbox.)

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_marathon::{TaskSpec, TaskState, TaskStatusUpdate};
use serde::{Deserialize, Serialize};

pub const RECORD_FILE: &str = "task.json";
pub const EXIT_FILE: &str = "exit_status";
pub const STDOUT_FILE: &str = "stdout";
pub const STDERR_FILE: &str = "stderr";
/// A Docker task's: the timestamp of the last log entry copied into the logs.
pub const LOG_CURSOR_FILE: &str = "log_cursor";

/// Terminal sandboxes always kept (the newest ones).
pub const GC_KEEP_NEWEST: usize = 50;
/// Terminal sandboxes younger than this are kept.
pub const GC_MIN_AGE: Duration = Duration::from_secs(3600);

/// `<work-dir>/tasks`.
pub fn tasks_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("tasks")
}

/// `<work-dir>/tasks/<id>`.
pub fn sandbox_dir(work_dir: &Path, id: &str) -> PathBuf {
    tasks_dir(work_dir).join(id)
}

/// `<work-dir>/workspaces`.
pub fn workspaces_dir(work_dir: &Path) -> PathBuf {
    work_dir.join("workspaces")
}

/// `<work-dir>/workspaces/<id>`: where a process task works (see the module docs).
pub fn workspace_dir(work_dir: &Path, id: &str) -> PathBuf {
    workspaces_dir(work_dir).join(id)
}

/// Creates `<work-dir>/workspaces/` (0711: its entries can be reached, not listed) if needed.
pub fn create_workspaces_dir(work_dir: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    let dir = workspaces_dir(work_dir);
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    if meta.permissions().mode() & 0o7777 != 0o711 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(dir)
}

/// Creates the workspace of task `id` (0700), owned by `owner` (uid, gid) when given; returns
/// its path.
pub fn create_workspace(
    work_dir: &Path,
    id: &str,
    owner: Option<(u32, u32)>,
) -> io::Result<PathBuf> {
    let dir = create_workspaces_dir(work_dir)?.join(id);
    cairn_cli::create_private_dir(&dir)?;
    if let Some((uid, gid)) = owner {
        // The path is taskrun's all the way (workspaces/ is only writable by taskrun): no link
        // can stand in for it.
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
    }
    Ok(dir)
}

/// Whether `id` can name a directory safely: 1-200 characters of ASCII letters, digits, `.`,
/// `_`, `-`, not starting with `.` (so no `..`, no `/`, no hidden files).
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Problems with a sandbox's files.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a task record: {source}")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// How a task's process ended, as its supervisor wrote it to `exit_status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why it could not start at all (the program is missing, not executable, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Unix milliseconds.
    #[serde(default)]
    pub finished_at: u64,
}

impl ExitInfo {
    /// Reads `<sandbox>/exit_status`; `None` when absent or unreadable.
    pub fn read(sandbox: &Path) -> Option<ExitInfo> {
        let bytes = std::fs::read(sandbox.join(EXIT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes it atomically.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        cairn_cli::replace_file(path, &bytes, None)
    }

    /// The shell's view: the exit code, 128 + the signal, 127 for a program that cannot run.
    pub fn exit_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 127,
        }
    }

    /// The terminal state and message of a task that ended this way on its own.
    pub fn describe(&self) -> (TaskState, String) {
        if let Some(e) = &self.error {
            return (TaskState::Failed, e.clone());
        }
        match (self.code, self.signal) {
            (Some(0), _) => (TaskState::Finished, "exited with status 0".into()),
            (Some(c), _) => (TaskState::Failed, format!("exited with status {c}")),
            (None, Some(s)) => (TaskState::Failed, format!("killed by signal {s}")),
            (None, None) => (TaskState::Failed, "ended with an unknown status".into()),
        }
    }
}

/// Everything the agent knows about one task, persisted as `task.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    pub state: TaskState,
    #[serde(default)]
    pub message: String,
    /// The supervisor's pid, which is also the task's process group and session.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Start time of `pid` (clock ticks after boot, `/proc/<pid>/stat` field 22).
    #[serde(default)]
    pub start_time: Option<u64>,
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Unix milliseconds of each step.
    #[serde(default)]
    pub staged_at: u64,
    #[serde(default)]
    pub started_at: Option<u64>,
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// When the state last changed (the status update's timestamp).
    #[serde(default)]
    pub updated_at: u64,
    #[serde(default)]
    pub exit: Option<ExitInfo>,
    /// The task's cgroup in a cgroup mode (v2: its cgroup; v1: its memory cgroup, the others
    /// derive from the task id).
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// The Docker container's id, for a Docker task once it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The user the task runs as, when one was named (the app's user or `--default-user`; for a
    /// container, also its `user` parameter): its COMMAND health checks run as that user too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<crate::user::Account>,
}

impl TaskRecord {
    /// A task just accepted.
    pub fn staged(spec: TaskSpec, now: u64) -> TaskRecord {
        TaskRecord {
            ports: spec.ports.clone(),
            spec,
            state: TaskState::Staging,
            message: String::new(),
            pid: None,
            start_time: None,
            staged_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
            exit: None,
            cgroup: None,
            container: None,
            run_as: None,
        }
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// Moves to `state` with `message` at `now`.
    pub fn set_state(&mut self, state: TaskState, message: impl Into<String>, now: u64) {
        self.state = state;
        self.message = message.into();
        self.updated_at = now;
        if state.is_terminal() && self.finished_at.is_none() {
            self.finished_at = Some(now);
        }
    }

    /// The status update announcing the current state.
    pub fn status(&self) -> TaskStatusUpdate {
        TaskStatusUpdate {
            task_id: self.spec.id.clone(),
            state: self.state,
            message: self.message.clone(),
            timestamp: self.updated_at,
            healthy: None,
        }
    }

    /// Writes `<sandbox>/task.json` atomically.
    pub fn save(&self, sandbox: &Path) -> Result<(), SandboxError> {
        let path = sandbox.join(RECORD_FILE);
        let bytes = serde_json::to_vec_pretty(self).map_err(|source| SandboxError::Decode {
            path: path.clone(),
            source,
        })?;
        cairn_cli::replace_file(&path, &bytes, None)
            .map_err(|source| SandboxError::Io { path, source })
    }

    /// Reads `<sandbox>/task.json`.
    pub fn load(sandbox: &Path) -> Result<TaskRecord, SandboxError> {
        let path = sandbox.join(RECORD_FILE);
        let bytes = std::fs::read(&path).map_err(|source| SandboxError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| SandboxError::Decode { path, source })
    }
}

/// Every task record under `<work-dir>/tasks`, and the sandboxes that could not be read.
pub fn load_all(work_dir: &Path) -> (Vec<TaskRecord>, Vec<SandboxError>) {
    let dir = tasks_dir(work_dir);
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return (records, errors),
        Err(source) => {
            errors.push(SandboxError::Io { path: dir, source });
            return (records, errors);
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        match TaskRecord::load(&path) {
            Ok(r) if path.file_name().is_some_and(|n| n == r.id()) => records.push(r),
            Ok(r) => errors.push(SandboxError::Io {
                path: path.clone(),
                source: io::Error::other(format!(
                    "holds the record of another task ({:?})",
                    r.id()
                )),
            }),
            Err(e) => errors.push(e),
        }
    }
    (records, errors)
}

/// Terminal tasks to remove: all but the [`GC_KEEP_NEWEST`] most recently finished, and of
/// those only the ones finished more than [`GC_MIN_AGE`] ago. `finished` is `(id, unix ms)`.
pub fn gc_victims(finished: &[(String, u64)], now_ms: u64) -> Vec<String> {
    let mut sorted: Vec<&(String, u64)> = finished.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let min_age = GC_MIN_AGE.as_millis() as u64;
    sorted
        .into_iter()
        .skip(GC_KEEP_NEWEST)
        .filter(|(_, at)| now_ms.saturating_sub(*at) > min_age)
        .map(|(id, _)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_that_are_safe_paths() {
        assert!(valid_task_id("shop_web.6f2b-11"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b", "é"] {
            assert!(!valid_task_id(bad), "{bad:?}");
        }
        assert!(!valid_task_id(&"a".repeat(201)));
    }

    #[test]
    fn exit_info_describes_the_end() {
        let code = |c| ExitInfo {
            code: Some(c),
            ..Default::default()
        };
        assert_eq!(
            code(0).describe(),
            (TaskState::Finished, "exited with status 0".into())
        );
        assert_eq!(
            code(3).describe(),
            (TaskState::Failed, "exited with status 3".into())
        );
        assert_eq!(code(3).exit_code(), 3);
        let sig = ExitInfo {
            signal: Some(9),
            ..Default::default()
        };
        assert_eq!(
            sig.describe(),
            (TaskState::Failed, "killed by signal 9".into())
        );
        assert_eq!(sig.exit_code(), 137);
        let err = ExitInfo {
            code: Some(127),
            error: Some("cannot run \"nope\": No such file or directory".into()),
            ..Default::default()
        };
        assert_eq!(err.describe().0, TaskState::Failed);
        assert!(err.describe().1.contains("nope"));
    }

    #[test]
    fn records_round_trip_through_the_sandbox() {
        let work = tempfile::tempdir().unwrap();
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "id": "a.1", "app_id": "/a", "version": "v", "cmd": "true",
            "cpus": 1.0, "mem": 32.0, "disk": 0.0, "ports": [31000],
            "kill_grace_seconds": 3.0, "service_name": "a"
        }))
        .unwrap();
        let sb = sandbox_dir(work.path(), "a.1");
        std::fs::create_dir_all(&sb).unwrap();
        let mut rec = TaskRecord::staged(spec, 10);
        rec.set_state(TaskState::Finished, "exited with status 0", 20);
        rec.save(&sb).unwrap();
        let back = TaskRecord::load(&sb).unwrap();
        assert_eq!(back, rec);
        assert_eq!(back.finished_at, Some(20));
        assert_eq!(back.status().timestamp, 20);
        std::fs::create_dir_all(sandbox_dir(work.path(), "junk")).unwrap();
        std::fs::write(sandbox_dir(work.path(), "junk").join(RECORD_FILE), "{").unwrap();
        let (all, errors) = load_all(work.path());
        assert_eq!(all.len(), 1);
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn gc_keeps_the_newest_and_the_young() {
        let hour = 3_600_000;
        let now = 100 * hour;
        // 60 tasks finished 2h ago and older, one per minute, plus 5 finished just now.
        let mut finished: Vec<(String, u64)> = (0..60)
            .map(|i| (format!("old{i}"), now - 2 * hour - i * 60_000))
            .collect();
        finished.extend((0..5).map(|i| (format!("new{i}"), now - i)));
        let victims = gc_victims(&finished, now);
        // 65 terminal, the newest 50 stay (5 new + old0..old44), the rest are old enough.
        assert_eq!(victims.len(), 15);
        assert!(victims.iter().all(|v| v.starts_with("old")));
        assert!(victims.contains(&"old59".to_string()));
        assert!(!victims.contains(&"old44".to_string()));
        // Young tasks beyond the newest 50 are kept too.
        let young: Vec<(String, u64)> = (0..80).map(|i| (format!("y{i}"), now - i)).collect();
        assert!(gc_victims(&young, now).is_empty());
    }
}

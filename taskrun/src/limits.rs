//! Resource limits of a task, and the few steps a forked child takes before it becomes the task.
//!
//! With cgroup v2 (`/sys/fs/cgroup/cgroup.controllers` exists and the agent can create child
//! cgroups with the memory and cpu controllers) every task gets its own cgroup with `memory.max`
//! = mem MB and `cpu.max` = cpus × the period. Otherwise (cgroup v1 hosts, no delegation) the
//! memory limit is `RLIMIT_DATA` = mem MB (at least [`MIN_DATA_MB`]) and CPU is not limited.
//!
//! Why `RLIMIT_DATA` and not `RLIMIT_AS`: the address-space limit counts every reservation, not
//! memory in use — glibc reserves 64 MB of address space per malloc arena (one per thread), the
//! JVM and Go runtimes reserve their whole heap range up front, and every mapped library and file
//! counts — so an app with a 128 MB budget fails at start-up under `RLIMIT_AS` = 128 MB. Since
//! Linux 4.7 `RLIMIT_DATA` counts private writable mappings (heap and anonymous `mmap`), which is
//! what a program actually allocates, and reservations made `PROT_NONE` do not count.
//!
//! The per-child steps ([`PreExec::apply`]) run between `fork` and `exec`, so they use only
//! async-signal-safe system calls on data prepared beforehand.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// Root of the cgroup v2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `cpu.max` period in microseconds (the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest `RLIMIT_DATA` given to a task: below this even a shell fails to start.
pub const MIN_DATA_MB: u64 = 32;
/// Leaf cgroup the agent moves itself into so its parent may enable controllers for children
/// (cgroup v2 allows controllers in `subtree_control` only for cgroups without processes).
const AGENT_LEAF: &str = "taskrun.agent";

/// How tasks are limited on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitMode {
    /// One cgroup per task under `parent`.
    CgroupV2 { parent: PathBuf },
    /// `RLIMIT_DATA` only.
    Rlimit,
}

/// The limits one task asks for (0 = unlimited).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskLimits {
    pub cpus: f64,
    pub mem_mb: f64,
}

/// Why cgroup v2 cannot be used (the agent falls back to rlimits and says why).
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{CGROUP_ROOT}/cgroup.controllers does not exist (not a cgroup v2 host)")]
    NotV2,
    #[error("cannot find this process's cgroup v2 path in /proc/self/cgroup")]
    NoOwnCgroup,
    #[error("the memory and cpu controllers are not available in {0}")]
    MissingControllers(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `memory.max` for `mem_mb` (bytes, or `max` when unlimited).
pub fn memory_max(mem_mb: f64) -> String {
    if mem_mb > 0.0 {
        ((mem_mb * 1024.0 * 1024.0).round() as u64).to_string()
    } else {
        "max".into()
    }
}

/// `cpu.max` for `cpus`: `<quota> <period>` with quota = cpus × period (at least 1 ms), or
/// `max <period>` when unlimited.
pub fn cpu_max(cpus: f64) -> String {
    if cpus > 0.0 {
        let quota = ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000);
        format!("{quota} {CPU_PERIOD_US}")
    } else {
        format!("max {CPU_PERIOD_US}")
    }
}

/// The files written into a task's cgroup, with their contents.
pub fn cgroup_files(limits: TaskLimits) -> [(&'static str, String); 2] {
    [
        ("memory.max", memory_max(limits.mem_mb)),
        ("cpu.max", cpu_max(limits.cpus)),
    ]
}

/// `RLIMIT_DATA` in bytes for `mem_mb`, `None` when unlimited.
pub fn rlimit_data_bytes(mem_mb: f64) -> Option<u64> {
    if mem_mb > 0.0 {
        let mb = (mem_mb.ceil() as u64).max(MIN_DATA_MB);
        Some(mb * 1024 * 1024)
    } else {
        None
    }
}

/// The cgroup v2 path of this process from `/proc/self/cgroup` (the `0::<path>` line).
pub fn own_cgroup_v2(proc_self_cgroup: &str) -> Option<String> {
    proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim().to_string())
        .filter(|p| p.starts_with('/'))
}

fn has_controllers(list: &str) -> bool {
    let words: Vec<&str> = list.split_whitespace().collect();
    words.contains(&"memory") && words.contains(&"cpu")
}

impl LimitMode {
    /// cgroup v2 when usable here, else rlimits (logged once, with the reason).
    pub fn detect() -> LimitMode {
        match setup_cgroup_v2(Path::new(CGROUP_ROOT)) {
            Ok(parent) => {
                tracing::info!(parent = %parent.display(), "limiting tasks with cgroup v2");
                LimitMode::CgroupV2 { parent }
            }
            Err(why) => {
                tracing::info!(reason = %why, "cgroup v2 not usable; limiting task memory with RLIMIT_DATA (CPU is not limited)");
                LimitMode::Rlimit
            }
        }
    }

    /// Creates the cgroup of one task (cgroup mode), returning its directory.
    pub fn prepare(
        &self,
        task_id: &str,
        limits: TaskLimits,
    ) -> Result<Option<PathBuf>, CgroupError> {
        let LimitMode::CgroupV2 { parent } = self else {
            return Ok(None);
        };
        let dir = parent.join(format!("task-{task_id}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_at(&dir)(e)),
        }
        for (file, contents) in cgroup_files(limits) {
            let path = dir.join(file);
            std::fs::write(&path, contents).map_err(io_at(&path))?;
        }
        Ok(Some(dir))
    }

    /// The steps the child runs before `exec` for a task with `limits` in `cgroup`.
    pub fn pre_exec(&self, cgroup: Option<&Path>, limits: TaskLimits) -> PreExec {
        let cgroup_procs = cgroup
            .map(|d| d.join("cgroup.procs"))
            .and_then(|p| CString::new(p.as_os_str().as_bytes()).ok());
        let rlimit_data = match self {
            LimitMode::CgroupV2 { .. } => None,
            LimitMode::Rlimit => rlimit_data_bytes(limits.mem_mb),
        };
        PreExec {
            cgroup_procs,
            rlimit_data,
        }
    }
}

/// Removes a task's cgroup once its processes are gone (best effort).
pub fn remove_task_cgroup(dir: &Path) {
    if let Err(e) = std::fs::remove_dir(dir) {
        tracing::debug!(cgroup = %dir.display(), error = %e, "cannot remove the task's cgroup");
    }
}

/// Makes `<own cgroup>` able to hold task cgroups with the memory and cpu controllers.
fn setup_cgroup_v2(root: &Path) -> Result<PathBuf, CgroupError> {
    if !root.join("cgroup.controllers").exists() {
        return Err(CgroupError::NotV2);
    }
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| own_cgroup_v2(&t))
        .ok_or(CgroupError::NoOwnCgroup)?;
    let base = root.join(own.trim_start_matches('/'));
    let controllers = base.join("cgroup.controllers");
    let available = std::fs::read_to_string(&controllers).map_err(io_at(&controllers))?;
    if !has_controllers(&available) {
        return Err(CgroupError::MissingControllers(base));
    }
    let subtree = base.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&subtree).map_err(io_at(&subtree))?;
    if !has_controllers(&enabled) {
        let pid = std::process::id().to_string();
        let moved = if own == "/" {
            None
        } else {
            let leaf = base.join(AGENT_LEAF);
            match std::fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_at(&leaf)(e)),
            }
            let procs = leaf.join("cgroup.procs");
            std::fs::write(&procs, &pid).map_err(io_at(&procs))?;
            Some(leaf)
        };
        if let Err(e) = std::fs::write(&subtree, "+memory +cpu") {
            if let Some(leaf) = moved {
                // Best-effort undo on the way to reporting `e`, the error that matters.
                let _ = std::fs::write(base.join("cgroup.procs"), &pid);
                // Same: an empty leaf left behind is harmless.
                let _ = std::fs::remove_dir(leaf);
            }
            return Err(io_at(&subtree)(e));
        }
    }
    let probe = base.join("taskrun.probe");
    std::fs::create_dir(&probe).map_err(io_at(&probe))?;
    let usable = probe.join("memory.max").exists() && probe.join("cpu.max").exists();
    if let Err(e) = std::fs::remove_dir(&probe) {
        // The answer is `usable` either way, but a probe left behind must be seen: the next
        // start's create_dir of it would fail.
        tracing::warn!(path = %probe.display(), error = %e, "removing the cgroup probe failed");
    }
    if !usable {
        return Err(CgroupError::MissingControllers(base));
    }
    Ok(base)
}

/// Gives the calling process default signal dispositions and an empty signal mask, as a service
/// manager does: ignored dispositions and the mask survive `exec`, so without this a task would
/// inherit, say, SIGINT ignored because the agent was started in the background by a shell, or
/// SIGTERM blocked from its supervisor, and a kill would not reach it. Async-signal-safe.
pub fn reset_signals() -> io::Result<()> {
    // SAFETY: sigaction/sigprocmask on stack data; no allocation.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        for sig in 1..32 {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            // Fails only for signals that cannot be changed; nothing to do about those.
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// What a forked child does before `exec`: a new session (so the task is its own process group
/// and outlives the agent, even `kill -9` of it), joining its cgroup, the memory rlimit.
#[derive(Clone, Debug, Default)]
pub struct PreExec {
    cgroup_procs: Option<CString>,
    rlimit_data: Option<u64>,
}

impl PreExec {
    /// `RLIMIT_DATA` this child gets, if any.
    pub fn rlimit_data(&self) -> Option<u64> {
        self.rlimit_data
    }

    /// Runs in the child between `fork` and `exec`: only async-signal-safe calls, no allocation.
    pub fn apply(&self) -> io::Result<()> {
        reset_signals()?;
        // SAFETY: plain system calls on memory prepared before the fork.
        unsafe {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            if let Some(path) = &self.cgroup_procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // "0" moves the writing process.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
            }
            if let Some(bytes) = self.rlimit_data {
                let lim = libc::rlimit {
                    rlim_cur: bytes as libc::rlim_t,
                    rlim_max: bytes as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_file_contents() {
        let files = cgroup_files(TaskLimits {
            cpus: 0.5,
            mem_mb: 128.0,
        });
        assert_eq!(files[0], ("memory.max", "134217728".to_string()));
        assert_eq!(files[1], ("cpu.max", "50000 100000".to_string()));
        assert_eq!(cpu_max(2.0), "200000 100000");
        assert_eq!(cpu_max(0.001), "1000 100000", "at least 1 ms per period");
        assert_eq!(cpu_max(0.0), "max 100000");
        assert_eq!(memory_max(0.0), "max");
    }

    #[test]
    fn rlimit_has_a_floor() {
        assert_eq!(rlimit_data_bytes(64.0), Some(64 << 20));
        assert_eq!(rlimit_data_bytes(4.0), Some(32 << 20));
        assert_eq!(rlimit_data_bytes(100.5), Some(101 << 20));
        assert_eq!(rlimit_data_bytes(0.0), None);
        let pre = LimitMode::Rlimit.pre_exec(
            None,
            TaskLimits {
                cpus: 1.0,
                mem_mb: 64.0,
            },
        );
        assert_eq!(pre.rlimit_data(), Some(64 << 20));
        let v2 = LimitMode::CgroupV2 {
            parent: "/x".into(),
        };
        let pre = v2.pre_exec(
            Some(Path::new("/x/task-a")),
            TaskLimits {
                cpus: 1.0,
                mem_mb: 64.0,
            },
        );
        assert_eq!(
            pre.rlimit_data(),
            None,
            "cgroup mode limits memory with memory.max"
        );
    }

    #[test]
    fn finds_own_cgroup_v2_path() {
        let hybrid = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/taskrun.service\n";
        assert_eq!(
            own_cgroup_v2(hybrid).as_deref(),
            Some("/system.slice/taskrun.service")
        );
        assert_eq!(own_cgroup_v2("4:memory:/x\n"), None);
        assert!(has_controllers("cpuset cpu io memory pids"));
        assert!(!has_controllers("cpuset io memory"));
    }

    #[test]
    fn task_cgroup_gets_its_limit_files() {
        let dir = tempfile::tempdir().unwrap();
        let mode = LimitMode::CgroupV2 {
            parent: dir.path().to_path_buf(),
        };
        let cg = mode
            .prepare(
                "web.1",
                TaskLimits {
                    cpus: 1.5,
                    mem_mb: 256.0,
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(cg, dir.path().join("task-web.1"));
        assert_eq!(
            std::fs::read_to_string(cg.join("memory.max")).unwrap(),
            "268435456"
        );
        assert_eq!(
            std::fs::read_to_string(cg.join("cpu.max")).unwrap(),
            "150000 100000"
        );
        assert_eq!(
            LimitMode::Rlimit
                .prepare("x", TaskLimits::default())
                .unwrap(),
            None
        );
    }
}

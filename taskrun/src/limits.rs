//! Resource limits of a task, and the few steps a forked child takes before it becomes the task.
//!
//! Three modes ([`LimitMode`], chosen by `taskrun agent --cgroups`, `auto` by default: the first
//! of the three that works here):
//!
//! - cgroup v2 (`/sys/fs/cgroup/cgroup.controllers` exists and the agent can create child
//!   cgroups with the memory and cpu controllers): every task gets its own cgroup
//!   `<agent's cgroup>/task-<id>` with `memory.max` = mem MB and `cpu.max` = cpus × the period.
//! - cgroup v1 (the memory, cpu and cpuacct hierarchies are mounted and writable where the
//!   agent's own cgroups are, see [`crate::cgroupfs`]): every task gets a cgroup
//!   `<agent's cgroup>/taskrun-<hash of the work dir>/task-<id>` in each of the three, with
//!   `memory.limit_in_bytes` = mem MB and `cpu.cfs_quota_us` = cpus × `cpu.cfs_period_us`;
//!   cpuacct is only read. The level named after the work dir keeps two agents in one cgroup
//!   (tests, several agents on a host) out of each other's task cgroups.
//! - otherwise (no delegation, `--cgroups off`) the memory limit is `RLIMIT_DATA` = mem MB (at
//!   least [`MIN_DATA_MB`]) and CPU is not limited.
//!
//! A task cgroup's path derives from the task id, so a restarted agent finds (and measures) the
//! cgroups of the tasks it adopts; cgroups are removed when their task ends
//! ([`LimitMode::release`]) and, at start, those of tasks the agent no longer knows
//! ([`LimitMode::sweep`]). The cgroups also account what a task uses: [`LimitMode::usage`].
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

use crate::cgroupfs::{self, Usage};

/// Root of the cgroup v2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `cpu.max` period in microseconds (the kernel default).
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest `RLIMIT_DATA` given to a task: below this even a shell fails to start.
pub const MIN_DATA_MB: u64 = 32;
/// Leaf cgroup the agent moves itself into so its parent may enable controllers for children
/// (cgroup v2 allows controllers in `subtree_control` only for cgroups without processes).
const AGENT_LEAF: &str = "taskrun.agent";

/// Prefix of a task's cgroup name (`task-<id>`).
const TASK_PREFIX: &str = "task-";

/// Which way of limiting tasks the operator asked for (`taskrun agent --cgroups`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum CgroupChoice {
    /// cgroup v2 when usable, else cgroup v1, else rlimits.
    #[default]
    Auto,
    /// cgroup v2, or the agent does not start.
    V2,
    /// cgroup v1, or the agent does not start.
    V1,
    /// No cgroups: `RLIMIT_DATA` for memory, CPU not limited, usage read from /proc.
    Off,
}

impl std::fmt::Display for CgroupChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CgroupChoice::Auto => "auto",
            CgroupChoice::V2 => "v2",
            CgroupChoice::V1 => "v1",
            CgroupChoice::Off => "off",
        })
    }
}

/// How tasks are limited on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitMode {
    /// One cgroup per task under `parent`.
    CgroupV2 { parent: PathBuf },
    /// One cgroup per task under each of the agent's cgroups in the v1 hierarchies.
    CgroupV1(V1Parents),
    /// `RLIMIT_DATA` only.
    Rlimit,
}

/// Where a cgroup v1 agent's task cgroups go: its own level in each hierarchy (the same
/// directory twice when cpu and cpuacct are mounted together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Parents {
    pub memory: PathBuf,
    pub cpu: PathBuf,
    pub cpuacct: PathBuf,
}

impl V1Parents {
    /// The distinct parent directories, memory first.
    fn distinct(&self) -> Vec<&Path> {
        let mut dirs: Vec<&Path> = Vec::with_capacity(3);
        for d in [&self.memory, &self.cpu, &self.cpuacct] {
            if !dirs.contains(&d.as_path()) {
                dirs.push(d);
            }
        }
        dirs
    }
}

/// The cgroup directory name of task `id`.
fn task_cgroup_name(id: &str) -> String {
    format!("{TASK_PREFIX}{id}")
}

/// The name of a cgroup v1 agent's own level: `taskrun-` and a hash of its work dir (FNV-1a,
/// fixed here so the name stays the same across builds: a restarted agent must find its tasks).
pub fn agent_cgroup_name(work_dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in work_dir.as_os_str().as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("taskrun-{hash:016x}")
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
    #[error(
        "no cgroup v1 hierarchy with the {0} controller is mounted where this process's cgroup is"
    )]
    NoV1Hierarchy(&'static str),
    #[error("{0} does not exist (the kernel lacks that part of the {1} controller)")]
    MissingV1File(PathBuf, &'static str),
    #[error("neither cgroup v2 ({v2}) nor cgroup v1 ({v1})")]
    Neither {
        v2: Box<CgroupError>,
        v1: Box<CgroupError>,
    },
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

/// A cgroup v1 hierarchy a task cgroup file belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1Hierarchy {
    Memory,
    Cpu,
}

/// The files written into a task's cgroup v1 cgroups, in order (the period before the quota it
/// is a share of), with their contents: `-1` is unlimited.
pub fn cgroup_v1_files(limits: TaskLimits) -> [(V1Hierarchy, &'static str, String); 3] {
    let memory = if limits.mem_mb > 0.0 {
        memory_max(limits.mem_mb)
    } else {
        "-1".into()
    };
    let quota = if limits.cpus > 0.0 {
        ((limits.cpus * CPU_PERIOD_US as f64).round() as u64)
            .max(1000)
            .to_string()
    } else {
        "-1".into()
    };
    [
        (V1Hierarchy::Memory, "memory.limit_in_bytes", memory),
        (
            V1Hierarchy::Cpu,
            "cpu.cfs_period_us",
            CPU_PERIOD_US.to_string(),
        ),
        (V1Hierarchy::Cpu, "cpu.cfs_quota_us", quota),
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
    /// The mode `choice` asks for on this machine, logged once with the reason for what was not
    /// chosen. `work_dir` names a cgroup v1 agent's level. An explicit `v2` or `v1` that cannot
    /// be used is an error (the operator asked for limits the host cannot give).
    pub fn detect(choice: CgroupChoice, work_dir: &Path) -> Result<LimitMode, CgroupError> {
        let mode = match choice {
            CgroupChoice::Off => {
                tracing::info!(
                    "cgroups off (--cgroups off): limiting task memory with RLIMIT_DATA (CPU is not limited); usage read from /proc"
                );
                return Ok(LimitMode::Rlimit);
            }
            CgroupChoice::V2 => LimitMode::CgroupV2 {
                parent: setup_cgroup_v2(Path::new(CGROUP_ROOT))?,
            },
            CgroupChoice::V1 => LimitMode::CgroupV1(setup_cgroup_v1(work_dir)?),
            CgroupChoice::Auto => match setup_cgroup_v2(Path::new(CGROUP_ROOT)) {
                Ok(parent) => LimitMode::CgroupV2 { parent },
                Err(v2) => match setup_cgroup_v1(work_dir) {
                    Ok(parents) => {
                        tracing::info!(reason = %v2, "cgroup v2 not usable");
                        LimitMode::CgroupV1(parents)
                    }
                    Err(v1) => {
                        let why = CgroupError::Neither {
                            v2: Box::new(v2),
                            v1: Box::new(v1),
                        };
                        tracing::info!(reason = %why, "cgroups not usable; limiting task memory with RLIMIT_DATA (CPU is not limited); usage read from /proc");
                        return Ok(LimitMode::Rlimit);
                    }
                },
            },
        };
        match &mode {
            LimitMode::CgroupV2 { parent } => {
                tracing::info!(parent = %parent.display(), "limiting tasks with cgroup v2")
            }
            LimitMode::CgroupV1(p) => {
                tracing::info!(memory = %p.memory.display(), cpu = %p.cpu.display(), cpuacct = %p.cpuacct.display(), "limiting tasks with cgroup v1")
            }
            LimitMode::Rlimit => {}
        }
        Ok(mode)
    }

    /// cgroup v2 when usable here, else rlimits (logged once, with the reason): `taskrun run`'s
    /// choice, whose `--mem` keeps failing allocations (rather than OOM kills) on v1 hosts.
    pub fn detect_v2_or_rlimit() -> LimitMode {
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

    /// The directories of task `task_id`'s cgroups in this mode (none without cgroups).
    pub fn task_dirs(&self, task_id: &str) -> Vec<PathBuf> {
        let name = task_cgroup_name(task_id);
        match self {
            LimitMode::CgroupV2 { parent } => vec![parent.join(name)],
            LimitMode::CgroupV1(p) => p.distinct().into_iter().map(|d| d.join(&name)).collect(),
            LimitMode::Rlimit => Vec::new(),
        }
    }

    /// Creates the cgroups of one task (cgroup modes) with its limits, returning the directory
    /// recorded for it (v2: its cgroup; v1: its memory cgroup, the others derive from the id).
    pub fn prepare(
        &self,
        task_id: &str,
        limits: TaskLimits,
    ) -> Result<Option<PathBuf>, CgroupError> {
        let dirs = self.task_dirs(task_id);
        let Some(recorded) = dirs.first().cloned() else {
            return Ok(None);
        };
        for dir in &dirs {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    self.release(task_id, None);
                    return Err(io_at(dir)(e));
                }
            }
        }
        let written = match self {
            LimitMode::CgroupV2 { .. } => cgroup_files(limits)
                .into_iter()
                .try_for_each(|(file, contents)| write_file(&recorded.join(file), &contents)),
            LimitMode::CgroupV1(p) => {
                let name = task_cgroup_name(task_id);
                cgroup_v1_files(limits)
                    .into_iter()
                    .try_for_each(|(hierarchy, file, contents)| {
                        let dir = match hierarchy {
                            V1Hierarchy::Memory => &p.memory,
                            V1Hierarchy::Cpu => &p.cpu,
                        };
                        write_file(&dir.join(&name).join(file), &contents)
                    })
            }
            LimitMode::Rlimit => Ok(()),
        };
        if let Err(e) = written {
            self.release(task_id, None);
            return Err(e);
        }
        Ok(Some(recorded))
    }

    /// The steps the child runs before `exec` for task `task_id` with `limits`, whose cgroups
    /// [`Self::prepare`] made (`prepared`: what it returned).
    pub fn pre_exec(&self, task_id: &str, prepared: Option<&Path>, limits: TaskLimits) -> PreExec {
        let dirs = match (self, prepared) {
            (_, None) | (LimitMode::Rlimit, _) => Vec::new(),
            (LimitMode::CgroupV2 { .. }, Some(dir)) => vec![dir.to_path_buf()],
            (LimitMode::CgroupV1(_), Some(_)) => self.task_dirs(task_id),
        };
        let cgroup_procs = dirs
            .iter()
            .map(|d| d.join("cgroup.procs"))
            .filter_map(|p| CString::new(p.as_os_str().as_bytes()).ok())
            .collect();
        let rlimit_data = match self {
            LimitMode::CgroupV2 { .. } | LimitMode::CgroupV1(_) => None,
            LimitMode::Rlimit => rlimit_data_bytes(limits.mem_mb),
        };
        PreExec {
            cgroup_procs,
            rlimit_data,
        }
    }

    /// What task `task_id` has used, from its cgroups (`recorded`: the cgroup its record names,
    /// used in v2 mode); `None` in rlimit mode. An error (the cgroups do not exist: the task
    /// was started in another mode) sends the caller to /proc.
    pub fn usage(&self, task_id: &str, recorded: Option<&Path>) -> Option<io::Result<Usage>> {
        let name = task_cgroup_name(task_id);
        match self {
            LimitMode::CgroupV2 { parent } => Some(cgroupfs::read_v2(
                &recorded.map_or_else(|| parent.join(&name), Path::to_path_buf),
            )),
            LimitMode::CgroupV1(p) => Some(cgroupfs::read_v1(
                &p.cpuacct.join(&name),
                &p.memory.join(&name),
            )),
            LimitMode::Rlimit => None,
        }
    }

    /// Removes task `task_id`'s cgroups once its processes are gone (best effort), and the one
    /// its record names (`recorded`) when that is elsewhere (made in another mode).
    pub fn release(&self, task_id: &str, recorded: Option<&Path>) {
        let mut dirs = self.task_dirs(task_id);
        if let Some(r) = recorded
            && !dirs.iter().any(|d| d == r)
        {
            dirs.push(r.to_path_buf());
        }
        for dir in dirs {
            remove_task_cgroup(&dir);
        }
    }

    /// Removes the task cgroups of tasks that are not `live` (left by tasks that ended while no
    /// agent ran, or whose records are gone): at start, before any task is launched. A cgroup
    /// that still holds processes cannot be removed and is left, with a warning.
    pub fn sweep(&self, live: impl Fn(&str) -> bool) {
        let parents: Vec<&Path> = match self {
            LimitMode::CgroupV2 { parent } => vec![parent],
            LimitMode::CgroupV1(p) => p.distinct(),
            LimitMode::Rlimit => return,
        };
        for parent in parents {
            let Ok(entries) = std::fs::read_dir(parent) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(id) = name.to_str().and_then(|n| n.strip_prefix(TASK_PREFIX)) else {
                    continue;
                };
                if live(id) || !entry.path().is_dir() {
                    continue;
                }
                match std::fs::remove_dir(entry.path()) {
                    Ok(()) => {
                        tracing::info!(cgroup = %entry.path().display(), "removed the cgroup of a task no longer known")
                    }
                    Err(e) => {
                        tracing::warn!(cgroup = %entry.path().display(), error = %e, "cannot remove the cgroup of a task no longer known (processes left in it?)")
                    }
                }
            }
        }
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), CgroupError> {
    std::fs::write(path, contents).map_err(io_at(path))
}

/// Removes a task's cgroup once its processes are gone (best effort; one already gone is fine).
pub fn remove_task_cgroup(dir: &Path) {
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::debug!(cgroup = %dir.display(), error = %e, "cannot remove the task's cgroup")
        }
    }
}

/// Makes the agent's own level in the cgroup v1 memory, cpu and cpuacct hierarchies.
fn setup_cgroup_v1(work_dir: &Path) -> Result<V1Parents, CgroupError> {
    let read = |p: &str| std::fs::read_to_string(p).map_err(io_at(Path::new(p)));
    let mountinfo = read("/proc/self/mountinfo")?;
    let own = read("/proc/self/cgroup")?;
    setup_v1_in(
        &cgroupfs::v1_mounts(&mountinfo),
        &own,
        &agent_cgroup_name(work_dir),
    )
}

/// [`setup_cgroup_v1`] on given mounts and `/proc/self/cgroup` text: `<own cgroup>/<name>` in
/// each hierarchy, after checking the files the agent writes and reads exist there.
pub fn setup_v1_in(
    mounts: &[cgroupfs::V1Mount],
    proc_self_cgroup: &str,
    name: &str,
) -> Result<V1Parents, CgroupError> {
    let own = |controller: &'static str, file: &str| {
        let dir = cgroupfs::v1_own_dir(mounts, proc_self_cgroup, controller)
            .ok_or(CgroupError::NoV1Hierarchy(controller))?;
        if !dir.join(file).exists() {
            return Err(CgroupError::MissingV1File(dir.join(file), controller));
        }
        Ok(dir.join(name))
    };
    let parents = V1Parents {
        memory: own("memory", "memory.limit_in_bytes")?,
        cpu: own("cpu", "cpu.cfs_quota_us")?,
        cpuacct: own("cpuacct", "cpuacct.usage")?,
    };
    let mut made = Vec::new();
    for dir in parents.distinct() {
        match std::fs::create_dir(dir) {
            Ok(()) => made.push(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                for d in made {
                    // Best-effort undo on the way to reporting `e`; an empty level left behind
                    // is harmless and reused by the next start.
                    let _ = std::fs::remove_dir(d);
                }
                return Err(io_at(dir)(e));
            }
        }
    }
    Ok(parents)
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
/// and outlives the agent, even `kill -9` of it), joining its cgroups, the memory rlimit.
#[derive(Clone, Debug, Default)]
pub struct PreExec {
    /// `cgroup.procs` of each cgroup the child joins (one in v2, up to three in v1).
    cgroup_procs: Vec<CString>,
    rlimit_data: Option<u64>,
}

impl PreExec {
    /// `RLIMIT_DATA` this child gets, if any.
    pub fn rlimit_data(&self) -> Option<u64> {
        self.rlimit_data
    }

    /// The `cgroup.procs` files this child writes itself into.
    pub fn cgroup_procs(&self) -> Vec<&std::ffi::CStr> {
        self.cgroup_procs.iter().map(CString::as_c_str).collect()
    }

    /// Runs in the child between `fork` and `exec`: only async-signal-safe calls, no allocation.
    pub fn apply(&self) -> io::Result<()> {
        reset_signals()?;
        // SAFETY: plain system calls on memory prepared before the fork.
        unsafe {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            for path in &self.cgroup_procs {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // "0" moves the writing process (v1 and v2 alike).
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
            "x",
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
            "a",
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
        assert_eq!(pre.cgroup_procs(), [c"/x/task-a/cgroup.procs"]);
    }

    #[test]
    fn cgroup_v1_file_contents() {
        let files = cgroup_v1_files(TaskLimits {
            cpus: 0.5,
            mem_mb: 128.0,
        });
        assert_eq!(
            files,
            [
                (
                    V1Hierarchy::Memory,
                    "memory.limit_in_bytes",
                    "134217728".into()
                ),
                (V1Hierarchy::Cpu, "cpu.cfs_period_us", "100000".into()),
                (V1Hierarchy::Cpu, "cpu.cfs_quota_us", "50000".into()),
            ]
        );
        let unlimited = cgroup_v1_files(TaskLimits::default());
        assert_eq!(
            (unlimited[0].2.as_str(), unlimited[2].2.as_str()),
            ("-1", "-1")
        );
        let tiny = cgroup_v1_files(TaskLimits {
            cpus: 0.001,
            mem_mb: 1.0,
        });
        assert_eq!(tiny[2].2, "1000", "at least 1 ms per period");
        // The agent's level: stable for a work dir, apart for two.
        let a = agent_cgroup_name(Path::new("/var/lib/taskrun"));
        assert_eq!(a, agent_cgroup_name(Path::new("/var/lib/taskrun")));
        assert_ne!(a, agent_cgroup_name(Path::new("/var/lib/taskrun2")));
        assert!(
            a.starts_with("taskrun-") && a.len() == "taskrun-".len() + 16,
            "{a}"
        );
    }

    /// A fake cgroup v1 filesystem (memory, cpu and cpuacct as separate hierarchies under a
    /// temp dir, the agent's cgroup nested in memory as on this machine): the agent's level is
    /// made, a task's three cgroups get their limits, its figures are read from its accounting
    /// files, and release and the start-up sweep remove what they should.
    #[test]
    fn cgroup_v1_mode_on_a_fake_cgroupfs() {
        let fs = tempfile::tempdir().unwrap();
        let root = fs.path();
        for (dir, file) in [
            ("memory/agent", "memory.limit_in_bytes"),
            ("cpu", "cpu.cfs_quota_us"),
            ("cpuacct", "cpuacct.usage"),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join(file), "").unwrap();
        }
        let mountinfo = format!(
            "32 31 0:29 / {r}/cpu rw - cgroup cgroup rw,cpu\n\
             33 31 0:30 / {r}/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             35 31 0:32 / {r}/memory rw - cgroup cgroup rw,memory\n",
            r = root.display()
        );
        let own = "4:memory:/agent\n2:cpuacct:/\n1:cpu:/\n0::/\n";
        let mounts = cgroupfs::v1_mounts(&mountinfo);
        let parents = setup_v1_in(&mounts, own, "taskrun-x").unwrap();
        assert_eq!(parents.memory, root.join("memory/agent/taskrun-x"));
        assert_eq!(parents.cpu, root.join("cpu/taskrun-x"));
        assert!(parents.cpuacct.is_dir());
        // Set up again (a restart): the level is reused.
        assert_eq!(setup_v1_in(&mounts, own, "taskrun-x").unwrap(), parents);
        let mode = LimitMode::CgroupV1(parents.clone());

        let limits = TaskLimits {
            cpus: 0.25,
            mem_mb: 64.0,
        };
        let recorded = mode.prepare("web.1", limits).unwrap();
        assert_eq!(recorded, Some(parents.memory.join("task-web.1")));
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            read(parents.memory.join("task-web.1/memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(
            read(parents.cpu.join("task-web.1/cpu.cfs_quota_us")),
            "25000"
        );
        assert_eq!(
            read(parents.cpu.join("task-web.1/cpu.cfs_period_us")),
            "100000"
        );
        let pre = mode.pre_exec("web.1", recorded.as_deref(), limits);
        assert_eq!(pre.rlimit_data(), None);
        let joined: Vec<PathBuf> = pre
            .cgroup_procs()
            .iter()
            .map(|c| PathBuf::from(c.to_str().unwrap()))
            .collect();
        assert_eq!(
            joined,
            ["memory", "cpu", "cpuacct"].map(|h| {
                let p = match h {
                    "memory" => &parents.memory,
                    "cpu" => &parents.cpu,
                    _ => &parents.cpuacct,
                };
                p.join("task-web.1/cgroup.procs")
            })
        );

        // Accounting, as the kernel would show it.
        assert!(
            mode.usage("web.1", None).unwrap().is_err(),
            "no figures yet"
        );
        std::fs::write(
            parents.cpuacct.join("task-web.1/cpuacct.usage"),
            "1500000000\n",
        )
        .unwrap();
        std::fs::write(
            parents.memory.join("task-web.1/memory.stat"),
            "cache 0\nrss 4096\ntotal_rss 4096\n",
        )
        .unwrap();
        let usage = mode.usage("web.1", None).unwrap().unwrap();
        assert_eq!((usage.cpu_seconds, usage.rss_bytes), (1.5, 4096));

        // A second task, then the start-up sweep with only the first one known: the second's
        // cgroups go (here the fake dirs hold files, so empty them as the kernel would).
        mode.prepare("old.1", TaskLimits::default()).unwrap();
        for d in mode.task_dirs("old.1") {
            for f in std::fs::read_dir(&d).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
        mode.sweep(|id| id == "web.1");
        assert!(mode.task_dirs("old.1").iter().all(|d| !d.exists()));
        assert!(mode.task_dirs("web.1").iter().all(|d| d.exists()));

        // Missing hierarchies and files are reasons, not panics.
        assert!(matches!(
            setup_v1_in(&mounts, "1:cpu:/\n", "taskrun-x"),
            Err(CgroupError::NoV1Hierarchy("memory"))
        ));
        std::fs::remove_file(root.join("cpu/cpu.cfs_quota_us")).unwrap();
        assert!(matches!(
            setup_v1_in(&mounts, own, "taskrun-y"),
            Err(CgroupError::MissingV1File(_, "cpu"))
        ));
        assert!(
            !root.join("memory/agent/taskrun-y").exists(),
            "nothing made when a hierarchy cannot be used"
        );
    }

    /// The v2 code path on a fake cgroup v2 directory (this machine has no v2): limits written,
    /// figures read from cpu.stat and memory.stat, cgroups released.
    #[test]
    fn cgroup_v2_usage_and_release_on_a_fake_dir() {
        let dir = tempfile::tempdir().unwrap();
        let mode = LimitMode::CgroupV2 {
            parent: dir.path().to_path_buf(),
        };
        let cg = mode
            .prepare(
                "a.1",
                TaskLimits {
                    cpus: 1.0,
                    mem_mb: 32.0,
                },
            )
            .unwrap()
            .unwrap();
        std::fs::write(
            cg.join("cpu.stat"),
            "usage_usec 2000000\nuser_usec 1500000\n",
        )
        .unwrap();
        std::fs::write(cg.join("memory.stat"), "anon 1048576\nfile 4096\n").unwrap();
        let usage = mode.usage("a.1", Some(&cg)).unwrap().unwrap();
        assert_eq!((usage.cpu_seconds, usage.rss_bytes), (2.0, 1 << 20));
        assert_eq!(
            mode.usage("a.1", None).unwrap().unwrap(),
            usage,
            "derived from the id"
        );
        assert!(LimitMode::Rlimit.usage("a.1", None).is_none());
        for f in std::fs::read_dir(&cg).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        mode.release("a.1", Some(&cg));
        assert!(!cg.exists());
        mode.release("a.1", Some(&cg));
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

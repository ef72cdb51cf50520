//! Process identity from `/proc`: a pid alone does not name a process (pids are recycled), a pid
//! with its start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) does. The agent
//! records both when it starts a task and re-adopts a task after a restart only if both still
//! match; [`adoption`] is that decision.
//!
//! Without cgroups, a task's usage is read here too ([`groups_usage`]): the CPU time and
//! resident anonymous memory of the processes in its process group (which its supervisor,
//! `taskrun wrap`, leads), one pass over `/proc` for every task.

use std::io;

/// The fields of `/proc/<pid>/stat` taskrun uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Process group id.
    pub pgrp: i32,
    /// Start time in clock ticks after boot (field 22).
    pub start_time: u64,
    /// User + system CPU time in clock ticks (fields 14 and 15).
    pub cpu_ticks: u64,
    /// User + system CPU time of the children it has waited for, in clock ticks (fields 16
    /// and 17).
    pub child_ticks: u64,
}

/// A `/proc/<pid>/stat` line that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed /proc stat line: {0}")]
pub struct StatError(pub &'static str);

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat(line: &str) -> Result<ProcStat, StatError> {
    let close = line
        .rfind(')')
        .ok_or(StatError("no ')' after the command name"))?;
    let rest = line
        .get(close + 1..)
        .ok_or(StatError("nothing after the command name"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or(StatError("no state field"))?;
    let pgrp = fields
        .get(2)
        .and_then(|s| s.parse().ok())
        .ok_or(StatError("no process group field"))?;
    let start_time = fields
        .get(19)
        .and_then(|s| s.parse().ok())
        .ok_or(StatError("no start time field"))?;
    // Fields 14-17; the children's two are signed in the kernel's format.
    let ticks = |i: usize| -> Result<u64, StatError> {
        fields
            .get(i)
            .and_then(|s| s.parse::<i64>().ok())
            .map(|t| u64::try_from(t).unwrap_or(0))
            .ok_or(StatError("no CPU time fields"))
    };
    Ok(ProcStat {
        state,
        pgrp,
        start_time,
        cpu_ticks: ticks(11)?.saturating_add(ticks(12)?),
        child_ticks: ticks(13)?.saturating_add(ticks(14)?),
    })
}

/// Resident anonymous pages from a `/proc/<pid>/statm` line (`size resident shared ...`, in
/// pages): resident minus shared (file-backed and shmem) is the process's `RssAnon`.
pub fn parse_statm_anon_pages(line: &str) -> Option<u64> {
    let mut fields = line.split_whitespace().skip(1);
    let resident: u64 = fields.next()?.parse().ok()?;
    let shared: u64 = fields.next()?.parse().ok()?;
    Some(resident.saturating_sub(shared))
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// The page size in bytes.
fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// One process of a measured group, as [`group_usage`] adds it up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub pid: i32,
    pub stat: ProcStat,
    /// Resident anonymous pages (0 when unknown).
    pub anon_pages: u64,
}

/// What a task's process group used, its supervisor (the group's leader, pid = `pgrp`) left
/// out: the program and everything it started are measured, not `taskrun wrap`. Its CPU is the
/// members' own time plus the time of the children each has waited for — the supervisor's
/// waited-for children are the task's processes that ended, so the sum does not fall when one
/// does — in clock ticks; its memory the members' resident anonymous pages. `None` without
/// any process in the group.
pub fn group_usage(pgrp: i32, members: &[Member]) -> Option<(u64, u64)> {
    if members.is_empty() {
        return None;
    }
    let mut ticks = 0u64;
    let mut pages = 0u64;
    for m in members {
        ticks = ticks.saturating_add(m.stat.child_ticks);
        if m.pid != pgrp {
            ticks = ticks.saturating_add(m.stat.cpu_ticks);
            pages = pages.saturating_add(m.anon_pages);
        }
    }
    Some((ticks, pages))
}

/// The usage of each process group in `groups` (see [`group_usage`]), from one pass over
/// `/proc`; a group without processes is absent from the answer.
pub fn groups_usage(
    groups: &std::collections::BTreeSet<i32>,
) -> std::collections::BTreeMap<i32, crate::cgroupfs::Usage> {
    let mut members: std::collections::BTreeMap<i32, Vec<Member>> = Default::default();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for pid in dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        {
            let Ok(Some(stat)) = read_stat(pid) else {
                continue;
            };
            if !groups.contains(&stat.pgrp) {
                continue;
            }
            let anon_pages = if pid == stat.pgrp || matches!(stat.state, 'Z' | 'X' | 'x') {
                0
            } else {
                std::fs::read_to_string(format!("/proc/{pid}/statm"))
                    .ok()
                    .and_then(|l| parse_statm_anon_pages(&l))
                    .unwrap_or(0)
            };
            members.entry(stat.pgrp).or_default().push(Member {
                pid,
                stat,
                anon_pages,
            });
        }
    }
    let (hz, page) = (clock_ticks(), page_size());
    members
        .into_iter()
        .filter_map(|(pgrp, m)| {
            let (ticks, pages) = group_usage(pgrp, &m)?;
            Some((
                pgrp,
                crate::cgroupfs::Usage {
                    cpu_seconds: ticks as f64 / hz,
                    rss_bytes: pages.saturating_mul(page),
                },
            ))
        })
        .collect()
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn read_stat(pid: i32) -> io::Result<Option<ProcStat>> {
    if pid <= 0 {
        return Ok(None);
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(text) => parse_stat(&text)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What to do with a recorded task whose process may or may not still run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The very process that was started still runs: follow it.
    Adopt,
    /// It is gone (no process, a zombie, or the pid now belongs to another process).
    Gone,
}

/// Decides whether the process recorded with `recorded_start` is the one `current` describes.
pub fn adoption(recorded_start: Option<u64>, current: Option<&ProcStat>) -> Adoption {
    match (recorded_start, current) {
        (Some(start), Some(stat))
            if stat.start_time == start && !matches!(stat.state, 'Z' | 'X' | 'x') =>
        {
            Adoption::Adopt
        }
        _ => Adoption::Gone,
    }
}

/// Whether `pid` is still the process that started at `start_time`.
pub fn is_same_process(pid: i32, start_time: Option<u64>) -> bool {
    let stat = read_stat(pid).ok().flatten();
    adoption(start_time, stat.as_ref()) == Adoption::Adopt
}

/// Whether a live (non-zombie) process other than `except` is in process group `pgrp`.
pub fn group_has_others(pgrp: i32, except: i32) -> bool {
    !group_members(pgrp, except).is_empty()
}

/// The live (non-zombie) processes of group `pgrp` but `except` (and never pid 0 or 1).
pub fn group_members(pgrp: i32, except: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != except && pid > 1)
        .filter(|&pid| {
            read_stat(pid)
                .ok()
                .flatten()
                .is_some_and(|s| s.pgrp == pgrp && !matches!(s.state, 'Z' | 'X' | 'x'))
        })
        .collect()
}

/// The pid of a running `taskrun wrap --exit-file <exit_file>` (a task whose launch was not
/// recorded because the agent died in between), if any.
pub fn find_wrapper(exit_file: &std::path::Path) -> Option<i32> {
    let want = exit_file.as_os_str().as_encoded_bytes();
    let dir = std::fs::read_dir("/proc").ok()?;
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.windows(3)
                .any(|w| w[0] == b"wrap" && w[1] == b"--exit-file" && w[2] == want)
        })
        .filter(|pid| {
            read_stat(*pid)
                .ok()
                .flatten()
                .is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 987654 12345678 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn parses_start_time_past_an_odd_command_name() {
        let s = parse_stat(LINE).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.pgrp, 4242);
        assert_eq!(s.start_time, 987_654);
        assert_eq!((s.cpu_ticks, s.child_ticks), (3 + 1, 0));
        assert!(parse_stat("12 (x) S 1").is_err());
        assert!(parse_stat("garbage").is_err());
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let s = read_stat(me).unwrap().expect("this process exists");
        assert!(s.start_time > 0);
        assert!(is_same_process(me, Some(s.start_time)));
        assert!(!is_same_process(me, Some(s.start_time + 1)));
        assert_eq!(read_stat(i32::MAX).unwrap(), None);
        assert_eq!(
            find_wrapper(std::path::Path::new("/no/such/exit_status")),
            None
        );
    }

    #[test]
    fn adopts_only_the_same_live_process() {
        let live = ProcStat {
            state: 'S',
            pgrp: 10,
            start_time: 500,
            cpu_ticks: 0,
            child_ticks: 0,
        };
        assert_eq!(adoption(Some(500), Some(&live)), Adoption::Adopt);
        // Same pid, another start time: the pid was recycled.
        assert_eq!(adoption(Some(499), Some(&live)), Adoption::Gone);
        // No process at all.
        assert_eq!(adoption(Some(500), None), Adoption::Gone);
        // A zombie has exited.
        let zombie = ProcStat { state: 'Z', ..live };
        assert_eq!(adoption(Some(500), Some(&zombie)), Adoption::Gone);
        // Nothing recorded: never adopt on a pid alone.
        assert_eq!(adoption(None, Some(&live)), Adoption::Gone);
    }

    #[test]
    fn cpu_times_and_anonymous_memory() {
        // Fields 14-17 = utime stime cutime cstime; a negative cutime (never seen, but signed
        // in the format) counts as 0.
        let cases = [
            (
                "7 (sh) S 1 7 7 0 -1 0 0 0 0 0 250 50 10 5 20 0 1 0 100 0 0",
                Some((300, 15)),
            ),
            (
                "7 (sh) S 1 7 7 0 -1 0 0 0 0 0 1 2 -1 3 20 0 1 0 100 0 0",
                Some((3, 3)),
            ),
            (
                "7 (sh) S 1 7 7 0 -1 0 0 0 0 0 x 2 0 0 20 0 1 0 100 0 0",
                None,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_stat(line).ok().map(|s| (s.cpu_ticks, s.child_ticks)),
                want,
                "{line}"
            );
        }
        let statm = [
            ("2500 700 300 10 0 400 0", Some(400)),
            ("2500 100 300 10 0 400 0", Some(0)),
            ("2500", None),
            ("", None),
        ];
        for (line, want) in statm {
            assert_eq!(parse_statm_anon_pages(line), want, "{line:?}");
        }
    }

    /// The supervisor's own time and memory are left out, the time of the children it reaped
    /// is in.
    #[test]
    fn a_group_is_measured_without_its_supervisor() {
        let stat = |cpu, child| ProcStat {
            state: 'S',
            pgrp: 10,
            start_time: 1,
            cpu_ticks: cpu,
            child_ticks: child,
        };
        let members = [
            Member {
                pid: 10,
                stat: stat(1000, 30),
                anon_pages: 999,
            },
            Member {
                pid: 11,
                stat: stat(200, 5),
                anon_pages: 40,
            },
            Member {
                pid: 12,
                stat: stat(7, 0),
                anon_pages: 2,
            },
        ];
        assert_eq!(group_usage(10, &members), Some((30 + 205 + 7, 42)));
        assert_eq!(group_usage(10, &[]), None);
    }

    #[test]
    fn measures_a_real_process_group() {
        // This test's own group: its leader may be the test harness (left out as a
        // supervisor) or this process; either way the group is found and has memory.
        let me = read_stat(std::process::id() as i32).unwrap().unwrap();
        let usage = groups_usage(&[me.pgrp].into());
        assert!(usage.contains_key(&me.pgrp), "{usage:?}");
        assert!(groups_usage(&[i32::MAX].into()).is_empty());
    }
}

//! Process identity from `/proc`: a pid alone does not name a process (pids are recycled), a pid
//! with its start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) does. The agent
//! records both when it starts a task and re-adopts a task after a restart only if both still
//! match; [`adoption`] is that decision.

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
    Ok(ProcStat {
        state,
        pgrp,
        start_time,
    })
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
}

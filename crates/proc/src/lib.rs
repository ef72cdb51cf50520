//! Child processes, the way every cairn program runs them.
//!
//! * [`signal_group`] signals a whole process group. A group id of 0 or 1 would mean "my own
//!   group" or "every process I may signal" to kill(2); both are refused, so a missing or
//!   corrupted pid can never take the machine down.
//! * [`run`] runs a command in its own process group with a deadline, reading stdout and stderr
//!   at the same time. Reading one pipe to its end before the other deadlocks as soon as the
//!   child fills the second pipe's buffer (64 KiB on Linux): the child blocks writing, the reader
//!   waits for an end that never comes, and a healthy command is reported as a timeout. Output
//!   beyond a cap is read and discarded, so a chatty child neither blocks nor costs memory. At
//!   the deadline the whole group is killed: a shell's children go with it.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

pub use rustix::process::Signal;

/// Why [`run`] produced no exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot start {program:?}: {why}")]
    Spawn { program: String, why: String },
    #[error("timed out after {:.3} s; its process group was killed", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("waiting for {program:?}: {source}")]
    Wait { program: String, source: io::Error },
}

/// What a finished command printed and how it ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// The first `max_output` bytes of standard output.
    pub stdout: Vec<u8>,
    /// The first `max_output` bytes of standard error.
    pub stderr: Vec<u8>,
    /// Whether either stream had more than `max_output` bytes.
    pub truncated: bool,
}

impl Finished {
    /// Standard output as text (invalid UTF-8 replaced), trimmed.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).trim().to_string()
    }

    /// Standard error as text (invalid UTF-8 replaced), trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Sends `signal` to every process of group `pgid`. `Ok(false)`: no such group (it has ended).
/// Group ids below 2 are refused (see the module docs).
pub fn signal_group(pgid: i32, signal: Signal) -> io::Result<bool> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    let pid = rustix::process::Pid::from_raw(pgid)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "process group 0"))?;
    match rustix::process::kill_process_group(pid, signal) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Runs `cmd` (stdin from /dev/null) in a new process group until it exits or `timeout` passes,
/// keeping at most `max_output` bytes of each output stream. At the timeout the group is
/// killed with SIGKILL and reaped.
pub async fn run(
    cmd: &mut tokio::process::Command,
    timeout: Duration,
    max_output: usize,
) -> Result<Finished, RunError> {
    run_fed(cmd, None, timeout, max_output).await
}

/// [`run`], with `input` on the command's standard input (then closed). A command that exits
/// or closes its input without reading it all is not an error: what it did is its status.
pub async fn run_with_input(
    cmd: &mut tokio::process::Command,
    input: Vec<u8>,
    timeout: Duration,
    max_output: usize,
) -> Result<Finished, RunError> {
    run_fed(cmd, Some(input), timeout, max_output).await
}

async fn run_fed(
    cmd: &mut tokio::process::Command,
    input: Option<Vec<u8>>,
    timeout: Duration,
    max_output: usize,
) -> Result<Finished, RunError> {
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    // Dropping the future (a caller's own timeout) must not leave the child behind.
    .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| RunError::Spawn {
        program: program.clone(),
        why: match e.kind() {
            io::ErrorKind::NotFound => "no such command".to_string(),
            io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        },
    })?;
    let pgid = child.id().and_then(|id| i32::try_from(id).ok());
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdin = child.stdin.take();
    let finished = tokio::time::timeout(timeout, async {
        let feed = async move {
            if let (Some(mut pipe), Some(input)) = (stdin, input) {
                use tokio::io::AsyncWriteExt as _;
                // EPIPE when the command does not read its input: its exit status tells the rest.
                let _ = pipe.write_all(&input).await;
                // Dropping the pipe closes it: the command sees the end of its input.
            }
        };
        let ((stdout, out_cut), (stderr, err_cut), ()) = tokio::join!(
            capture(stdout, max_output),
            capture(stderr, max_output),
            feed
        );
        let status = child.wait().await;
        (status, stdout, stderr, out_cut || err_cut)
    })
    .await;
    match finished {
        Ok((status, stdout, stderr, truncated)) => Ok(Finished {
            status: status.map_err(|source| RunError::Wait { program, source })?,
            stdout,
            stderr,
            truncated,
        }),
        Err(_) => {
            if let Some(pgid) = pgid {
                // The group may have ended between the deadline and this call: not an error.
                let _ = signal_group(pgid, Signal::KILL);
            }
            // Reap the leader; kill_on_drop covers a leader that somehow survived SIGKILL.
            // Fails only when the leader has already been reaped: nothing left to kill.
            let _ = child.start_kill();
            // The caller reports the deadline; how the killed leader exited adds nothing.
            let _ = child.wait().await;
            Err(RunError::TimedOut(timeout))
        }
    }
}

/// Reads `pipe` to its end, keeping the first `cap` bytes; true when more came.
async fn capture(pipe: Option<impl AsyncRead + Unpin>, cap: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return (kept, false);
    };
    let mut buf = [0u8; 8192];
    let mut truncated = false;
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                truncated |= n > room;
            }
            // A read error ends the stream as EOF would; the exit status still tells the outcome.
            Err(_) => break,
        }
    }
    (kept, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(script);
        cmd
    }

    /// Large output on either pipe, or both, must not turn into a timeout.
    #[tokio::test]
    async fn large_output_on_both_pipes_does_not_deadlock() {
        let cases = [
            (
                "stderr only",
                "head -c 200000 /dev/zero >&2; echo done",
                5,
                65536,
            ),
            (
                "stdout only",
                "head -c 200000 /dev/zero; echo done >&2",
                65536,
                5,
            ),
            (
                "both",
                "head -c 300000 /dev/zero >&2; head -c 300000 /dev/zero; exit 3",
                65536,
                65536,
            ),
        ];
        for (what, script, out_len, err_len) in cases {
            let r = run(&mut sh(script), Duration::from_secs(30), 65536)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(r.stdout.len(), out_len, "{what}");
            assert_eq!(r.stderr.len(), err_len, "{what}");
            assert!(r.truncated, "{what}");
        }
    }

    #[tokio::test]
    async fn status_and_output_are_reported() {
        let r = run(
            &mut sh("echo out; echo err >&2; exit 2"),
            Duration::from_secs(30),
            100,
        )
        .await
        .unwrap();
        assert_eq!(r.status.code(), Some(2));
        assert_eq!(r.stdout_text(), "out");
        assert_eq!(r.stderr_text(), "err");
        assert!(!r.truncated);
    }

    #[tokio::test]
    async fn input_reaches_the_command_and_is_closed() {
        let r = run_with_input(
            &mut sh("wc -c; cat >/dev/null; echo done"),
            b"{\"cpus\":2}".to_vec(),
            Duration::from_secs(30),
            100,
        )
        .await
        .unwrap();
        assert!(r.status.success());
        assert_eq!(r.stdout_text(), "10\ndone");
        // A command that never reads a large input still ends with its own status.
        let r = run_with_input(
            &mut sh("exit 3"),
            vec![b'x'; 1 << 20],
            Duration::from_secs(30),
            100,
        )
        .await
        .unwrap();
        assert_eq!(r.status.code(), Some(3));
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let mut cmd = tokio::process::Command::new("/nonexistent/plugin");
        let e = run(&mut cmd, Duration::from_secs(5), 100)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot start \"/nonexistent/plugin\": no such command"
        );
    }

    /// At the deadline the shell and the process it started in the background both die.
    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let e = run(&mut sh(&script), Duration::from_millis(500), 100)
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::TimedOut(_)), "{e}");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The background sleep was a child of the killed shell: it is gone or a zombie being
        // reaped by init. Poll its state with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
            let alive = state
                .as_deref()
                .and_then(|s| s.rsplit(')').next())
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'));
            if !alive {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "background child {pid} survived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn groups_0_and_1_are_refused() {
        for pgid in [-5, 0, 1] {
            let e = signal_group(pgid, Signal::TERM).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{pgid}");
        }
    }

    #[test]
    fn an_ended_group_is_not_an_error() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        // `true` led no group of its own and has been reaped: no such group.
        assert!(!signal_group(pid, Signal::TERM).unwrap());
    }
}

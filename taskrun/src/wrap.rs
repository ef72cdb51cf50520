//! `taskrun wrap --exit-file F -- PROGRAM ARGS...`: the small supervisor every task runs under
//! (the same binary, started by the exec driver; not meant to be typed).
//!
//! It is the leader of the task's session and process group. It starts the program, waits for
//! it, and writes how it ended (code, signal, or why it could not start) to the exit file
//! atomically — whoever its parent is by then: a restarted agent that adopted the task reads the
//! file to learn the outcome. It blocks SIGTERM/SIGINT/SIGHUP/SIGQUIT for itself (the program
//! starts with an empty mask and default dispositions, see `limits::reset_signals`), so a kill
//! of the whole group reaches the program while the supervisor survives to record the result;
//! only the agent's SIGKILL escalation ends both. When the program has ended, anything it left
//! behind in the group is killed, as Mesos destroys a task's container.
//!
//! It is also the child subreaper of the task: a process the program leaves behind is
//! reparented to the supervisor, not to init. As the session leader, every process of its group
//! is then one of its children, so "is anything left?" is one `waitpid` instead of a read of
//! every `/proc/PID/stat` on the node (which, once per task end, made ending N tasks cost N²).
//!
//! With `--uid`/`--gid` (and `--groups`), the program runs as that user, the supervisor staying
//! taskrun's: the output files and the exit file are written by a process the task cannot
//! signal, trace or change (see [`crate::user`]).
//!
//! With `--stdout`/`--stderr` (as the exec driver starts it) the program's output goes through
//! pipes the supervisor owns and copies into those files, rotating them by size as it writes
//! ([`crate::logs::RotatingFile`]): the disk bound holds however fast the program writes, and
//! a full disk drops output rather than blocking the program. All of the output is in the files
//! before the exit file is written and the supervisor exits. Beside each file it keeps the
//! file's time index (`stdout.idx`: when output arrived, at most an entry a second; see
//! [`crate::logs`]), which the logs API's `since` reads.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::logs::RotatingFile;
use crate::sandbox::ExitInfo;
use crate::user::Credentials;

/// Blocks the signals a group kill or a terminal sends, for this process only.
fn block_group_signals() {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on the calling (only) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// The exit code a shell reports for a program that cannot be run.
fn spawn_error_code(e: &std::io::Error) -> i32 {
    if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

/// Where the program's output goes when the supervisor owns it.
#[derive(Clone, Debug)]
pub struct LogFiles {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// Rotate each file above this many bytes (0: never), keeping [`crate::logs::KEEP`].
    pub rotate_bytes: u64,
}

/// Stack of a thread copying a pipe into a log file: small, as the task's memory limit counts
/// it (the buffer is on the heap).
const COPY_STACK: usize = 64 * 1024;
/// How long the copies may take to drain once the program and its group are gone: a process
/// that left the group (a daemon) may hold the pipe open for ever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Copies `pipe` into `file` until the pipe's end. A failed write drops that output (the pipe
/// is still read, so the task never blocks on a full disk) and tries again with the next.
fn copy(
    mut pipe: impl Read,
    mut file: Option<RotatingFile>,
    open: impl Fn() -> io::Result<RotatingFile>,
) -> Option<RotatingFile> {
    let mut buf = vec![0u8; crate::logs::CHUNK];
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => return file,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return file,
        };
        if file.is_none() {
            file = open().ok();
        }
        if let Some(f) = &mut file
            && f.write_all(&buf[..n]).is_err()
        {
            file = None;
        }
    }
}

/// A copy thread: its result arrives on `done`.
fn spawn_copy(
    pipe: impl Read + Send + 'static,
    path: PathBuf,
    rotate_bytes: u64,
    done: mpsc::Sender<(PathBuf, Option<RotatingFile>)>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("taskrun-log".into())
        .stack_size(COPY_STACK)
        .spawn(move || {
            let open = || RotatingFile::open_indexed(&path, rotate_bytes, crate::logs::KEEP);
            let file = copy(pipe, open().ok(), open);
            // The receiver gave up waiting (DRAIN_TIMEOUT): nobody needs the file any more.
            let _ = done.send((path, file));
        })
        .map(|_| ())
}

/// Writes one line of the supervisor's own (to the task's stderr log when it owns it).
fn say(logs: Option<&LogFiles>, stderr: Option<&mut RotatingFile>, line: &str) {
    let text = format!("taskrun: {line}\n");
    let written = match (stderr, logs) {
        (Some(f), _) => f.write_all(text.as_bytes()).is_ok(),
        (None, Some(l)) => RotatingFile::open_indexed(&l.stderr, l.rotate_bytes, crate::logs::KEEP)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .is_ok(),
        (None, None) => false,
    };
    if !written {
        eprint!("{text}");
    }
}

/// Runs the supervisor; returns the program's exit code (128 + signal when a signal ended it).
/// With `logs`, the program's stdout and stderr are pipes the supervisor copies into the log
/// files, rotating them; without, the program inherits the supervisor's.
pub fn run(
    exit_file: &Path,
    logs: Option<&LogFiles>,
    credentials: Option<&Credentials>,
    argv: &[OsString],
) -> ExitCode {
    block_group_signals();
    let reaper = Reaper::become_subreaper();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("taskrun wrap: no program given");
        return ExitCode::from(2);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if logs.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // Prepared before the fork: the child only makes system calls with it.
    let credentials = credentials.cloned();
    // SAFETY: reset_signals and Credentials::apply only make async-signal-safe calls, on data
    // prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            crate::limits::reset_signals()?;
            if let Some(c) = &credentials {
                c.apply()?;
            }
            Ok(())
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut copies = 0;
    let info = match cmd.spawn() {
        Err(e) => {
            let msg = format!("cannot run {:?}: {e}", program.to_string_lossy());
            say(logs, None, &msg);
            ExitInfo {
                code: Some(spawn_error_code(&e)),
                signal: None,
                error: Some(msg),
                finished_at: cairn_marathon::now_millis(),
            }
        }
        Ok(mut child) => {
            if let Some(l) = logs {
                let pipes = [
                    child
                        .stdout
                        .take()
                        .map(|p| (Box::new(p) as Box<dyn Read + Send>, &l.stdout)),
                    child
                        .stderr
                        .take()
                        .map(|p| (Box::new(p) as Box<dyn Read + Send>, &l.stderr)),
                ];
                for (pipe, path) in pipes.into_iter().flatten() {
                    match spawn_copy(pipe, path.clone(), l.rotate_bytes, done_tx.clone()) {
                        Ok(()) => copies += 1,
                        Err(e) => say(
                            logs,
                            None,
                            &format!("cannot copy the task's output to {}: {e}", path.display()),
                        ),
                    }
                }
            }
            match child.wait() {
                Ok(status) => ExitInfo {
                    code: status.code(),
                    signal: status.signal(),
                    error: None,
                    finished_at: cairn_marathon::now_millis(),
                },
                Err(e) => ExitInfo {
                    error: Some(format!("cannot wait for the task: {e}")),
                    finished_at: cairn_marathon::now_millis(),
                    ..Default::default()
                },
            }
        }
    };
    drop(done_tx);
    // What the program left in its group holds the pipes open: it goes first, then the copies
    // drain what is left in the pipes, all before the exit file says the task ended.
    kill_others_in_group(reaper);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut stderr_file = None;
    for _ in 0..copies {
        match done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((path, file)) => {
                if logs.is_some_and(|l| l.stderr == path) {
                    stderr_file = file;
                }
            }
            Err(_) => break,
        }
    }
    if let Err(e) = info.write(exit_file) {
        say(
            logs,
            stderr_file.as_mut(),
            &format!(
                "cannot record the exit status in {}: {e}",
                exit_file.display()
            ),
        );
    }
    kill_leftovers(reaper);
    ExitCode::from(u8::try_from(info.exit_code().clamp(0, 255)).unwrap_or(1))
}

/// Kills every other process of this process's group — only when it leads the group (see
/// [`kill_leftovers`]) — so the task's pipes close.
fn kill_others_in_group(reaper: Reaper) {
    // SAFETY: getpid/getpgrp cannot fail.
    let (pid, pgrp) = unsafe { (libc::getpid(), libc::getpgrp()) };
    if pid != pgrp {
        return;
    }
    // Processes may fork while they are killed: a few rounds, then kill_leftovers' group kill.
    for _ in 0..10 {
        if !reaper.may_have_others(pid) {
            return;
        }
        let others = crate::procfs::group_members(pgrp, pid);
        if others.is_empty() {
            return;
        }
        for other in others {
            // SAFETY: kill(2) of a process of our own group (pid > 1, not ourselves). A process
            // that ended meanwhile (ESRCH) is what we want anyway.
            unsafe {
                libc::kill(other, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Kills what the program left running in its process group (this process included, after the
/// exit file is written) — only when this process leads the group, i.e. was started by the
/// exec driver, never a group it merely joined.
fn kill_leftovers(reaper: Reaper) {
    // SAFETY: getpid/getpgrp cannot fail.
    let (pid, pgrp) = unsafe { (libc::getpid(), libc::getpgrp()) };
    if pid != pgrp || !reaper.may_have_others(pid) || !crate::procfs::group_has_others(pgrp, pid) {
        return;
    }
    // Nothing is left to do if it fails: this process is about to exit either way.
    let _ = cairn_proc::signal_group(pgrp, cairn_proc::Signal::KILL);
}

/// Whether this process is the reaper of the program's orphaned descendants (see the module
/// docs). Without it (an old kernel) [`Reaper::may_have_others`] always answers yes and the
/// group is found by reading `/proc`, as before.
#[derive(Clone, Copy, Debug)]
struct Reaper {
    subreaper: bool,
}

impl Reaper {
    fn become_subreaper() -> Reaper {
        // SAFETY: prctl with integer arguments only.
        let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0;
        Reaper { subreaper }
    }

    /// Whether a process other than this one (`pid`, the group leader) may still be in its
    /// group; reaps the children that have ended. `false` is certain: as the session leader and
    /// subreaper, every process of the session is a descendant of this one and so, once
    /// orphaned, its child; no child left means no one left. Outside that case (not the session
    /// leader, no subreaper, an unexpected error) the answer is `true` and the caller reads
    /// `/proc`.
    fn may_have_others(self, pid: i32) -> bool {
        // SAFETY: getsid(0) cannot fail for the calling process.
        let session_leader = unsafe { libc::getsid(0) } == pid;
        if !session_leader || !self.subreaper {
            return true;
        }
        loop {
            let mut status = 0;
            // SAFETY: waitpid on any child with WNOHANG, status into a local.
            match unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } {
                // Children, none ended.
                0 => return true,
                // One reaped: look again.
                n if n > 0 => continue,
                _ => match io::Error::last_os_error().raw_os_error() {
                    Some(libc::ECHILD) => return false,
                    Some(libc::EINTR) => continue,
                    _ => return true,
                },
            }
        }
    }
}

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

use std::ffi::OsString;
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::Path;
use std::process::ExitCode;

use crate::sandbox::ExitInfo;

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

/// Runs the supervisor; returns the program's exit code (128 + signal when a signal ended it).
pub fn run(exit_file: &Path, argv: &[OsString]) -> ExitCode {
    block_group_signals();
    let Some((program, args)) = argv.split_first() else {
        eprintln!("taskrun wrap: no program given");
        return ExitCode::from(2);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    // SAFETY: reset_signals only makes async-signal-safe calls.
    unsafe {
        cmd.pre_exec(crate::limits::reset_signals);
    }
    let info = match cmd.spawn() {
        Err(e) => {
            let msg = format!("cannot run {:?}: {e}", program.to_string_lossy());
            eprintln!("taskrun: {msg}");
            ExitInfo {
                code: Some(spawn_error_code(&e)),
                signal: None,
                error: Some(msg),
                finished_at: cairn_marathon::now_millis(),
            }
        }
        Ok(mut child) => match child.wait() {
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
        },
    };
    if let Err(e) = info.write(exit_file) {
        eprintln!(
            "taskrun: cannot record the exit status in {}: {e}",
            exit_file.display()
        );
    }
    kill_leftovers();
    ExitCode::from(u8::try_from(info.exit_code().clamp(0, 255)).unwrap_or(1))
}

/// Kills what the program left running in its process group (this process included, after the
/// exit file is written) — only when this process leads the group, i.e. was started by the
/// exec driver, never a group it merely joined.
fn kill_leftovers() {
    // SAFETY: getpid/getpgrp cannot fail.
    let (pid, pgrp) = unsafe { (libc::getpid(), libc::getpgrp()) };
    if pid != pgrp || !crate::procfs::group_has_others(pgrp, pid) {
        return;
    }
    // Nothing is left to do if it fails: this process is about to exit either way.
    let _ = cairn_proc::signal_group(pgrp, cairn_proc::Signal::KILL);
}

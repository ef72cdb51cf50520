//! The command run under the lock: started in its own process group (so the whole tree it
//! starts can be signalled at once), with stdout/stderr passed through, signals forwarded to
//! the group, and a SIGTERM-then-SIGKILL stop when the lock is lost.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cairn_proc::Signal;
use tokio::process::Command;

/// A running child and its process group.
pub struct Child {
    inner: tokio::process::Child,
    pgid: i32,
}

/// The program and arguments to run: with `shell`, the arguments joined by spaces and given to
/// `$SHELL -c` (`/bin/sh` when unset), as `consul lock` does by default; else the argv itself.
pub fn command_line(args: &[String], shell: bool, shell_env: Option<String>) -> Vec<String> {
    if shell {
        let sh = shell_env
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "/bin/sh".to_string());
        vec![sh, "-c".to_string(), args.join(" ")]
    } else {
        args.to_vec()
    }
}

impl Child {
    /// Starts `argv` (non-empty) with `CONSUL_LOCK_HELD=true` in its environment, as `consul
    /// lock` sets it; stdin is /dev/null unless `pass_stdin`.
    pub fn spawn(argv: &[String], pass_stdin: bool) -> io::Result<Child> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("CONSUL_LOCK_HELD", "true")
            .stdin(if pass_stdin {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .process_group(0);
        #[cfg(target_os = "linux")]
        {
            // If `catalogd lock` itself is killed (SIGKILL, OOM), its session expires and another
            // host may take the lock: the command must not run on unlocked, so the kernel sends it
            // SIGTERM when its parent dies. The parent is the thread that spawns it, the
            // runtime's `block_on` thread, which lives as long as the process.
            let parent = std::process::id();
            // SAFETY: runs between fork and exec; prctl(2) and getppid(2) are async-signal-safe
            // and touch no memory of the parent.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    // The parent may have died before the prctl took effect.
                    if libc::getppid() as u32 != parent {
                        return Err(io::Error::other("catalogd lock exited"));
                    }
                    Ok(())
                });
            }
        }
        let inner = cmd.spawn()?;
        let pgid = inner
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .ok_or_else(|| io::Error::other("the child has no process id"))?;
        Ok(Child { inner, pgid })
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Waits for the child (the group leader) to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.inner.wait().await
    }

    /// Sends `signal` to every process of the group; a group already gone is not an error.
    pub fn signal_group(&self, signal: Signal) -> io::Result<()> {
        cairn_proc::signal_group(self.pgid, signal).map(drop)
    }

    /// Stops the whole group: SIGTERM, up to `grace` for the child to exit, then SIGKILL to
    /// whatever of the group is left (also members that outlived the child).
    pub async fn stop(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal_group(Signal::TERM)?;
        let status = match tokio::time::timeout(grace, self.inner.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                self.signal_group(Signal::KILL)?;
                self.inner.wait().await?
            }
        };
        self.signal_group(Signal::KILL)?;
        Ok(status)
    }
}

/// The exit code a shell reports for a child's status: its code, or 128 + the signal that
/// killed it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_lines() {
        let args = strings(&["backup.sh", "--full", "/var"]);
        assert_eq!(
            command_line(&args, true, None),
            strings(&["/bin/sh", "-c", "backup.sh --full /var"])
        );
        assert_eq!(
            command_line(&args, true, Some("/bin/bash".into())),
            strings(&["/bin/bash", "-c", "backup.sh --full /var"])
        );
        assert_eq!(
            command_line(&args, true, Some(String::new())),
            strings(&["/bin/sh", "-c", "backup.sh --full /var"])
        );
        assert_eq!(command_line(&args, false, None), args);
    }

    #[test]
    fn exit_codes_as_a_shell_reports_them() {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
        assert_eq!(exit_code(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}

//! Running a template's command after its output changed: `sh -c`, in its own process group,
//! killed (group and all) at the timeout; its output is logged and a failure reported.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed(String),
    TimedOut,
}

/// Runs `command` through `sh -c`, at most `timeout`.
pub async fn run(command: &str, timeout: Duration) -> Outcome {
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(format!("cannot start sh: {e}")),
    };
    let pid = child.id();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let finished = tokio::time::timeout(timeout, async {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        if let Some(s) = out.as_mut() {
            let _ = s.read_to_end(&mut o).await;
        }
        if let Some(s) = err.as_mut() {
            let _ = s.read_to_end(&mut e).await;
        }
        (child.wait().await, o, e)
    })
    .await;
    match finished {
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the process group we created; no memory is involved.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
            tracing::error!(command, timeout = ?timeout, "command timed out and was killed");
            Outcome::TimedOut
        }
        Ok((status, o, e)) => {
            let stdout = String::from_utf8_lossy(&o);
            let stderr = String::from_utf8_lossy(&e);
            match status {
                Ok(s) if s.success() => {
                    tracing::info!(command, stdout = %stdout.trim(), stderr = %stderr.trim(), "command succeeded");
                    Outcome::Success
                }
                Ok(s) => {
                    let why = format!("{s}: {}", stderr.trim());
                    tracing::error!(command, status = %s, stdout = %stdout.trim(), stderr = %stderr.trim(), "command failed");
                    Outcome::Failed(why)
                }
                Err(e) => Outcome::Failed(format!("waiting for the command: {e}")),
            }
        }
    }
}

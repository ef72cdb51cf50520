//! Running a template's command after its output changed: `sh -c`, in its own process group,
//! killed (group and all) at the timeout; its output is logged and a failure reported.

use std::time::Duration;

use cairn_proc::RunError;

/// Most of each output stream kept for the log.
const MAX_OUTPUT: usize = 64 * 1024;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failed(String),
    TimedOut,
}

/// Runs `command` through `sh -c`, at most `timeout`.
pub async fn run(command: &str, timeout: Duration) -> Outcome {
    let mut sh = tokio::process::Command::new("sh");
    sh.arg("-c").arg(command);
    match cairn_proc::run(&mut sh, timeout, MAX_OUTPUT).await {
        Err(RunError::TimedOut(_)) => {
            tracing::error!(command, timeout = ?timeout, "command timed out and was killed");
            Outcome::TimedOut
        }
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(f) => {
            let (stdout, stderr) = (f.stdout_text(), f.stderr_text());
            if f.status.success() {
                tracing::info!(command, %stdout, %stderr, "command succeeded");
                Outcome::Success
            } else {
                tracing::error!(command, status = %f.status, %stdout, %stderr, "command failed");
                Outcome::Failed(format!("{}: {stderr}", f.status))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command that writes more than a pipe holds to stderr before exiting succeeds; reading
    /// stdout to its end first used to block it until the timeout.
    #[tokio::test]
    async fn large_stderr_is_not_a_timeout() {
        let outcome = run(
            "head -c 200000 /dev/zero >&2; exit 0",
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(outcome, Outcome::Success);
        let outcome = run("echo broken >&2; exit 4", Duration::from_secs(30)).await;
        assert_eq!(outcome, Outcome::Failed("exit status: 4: broken".into()));
    }
}

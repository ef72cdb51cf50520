//! Exec checks: run an existing Nagios plugin or script, relay its status (the exit code) and its
//! first output line (text and perfdata); kill its whole process group at the timeout.

use std::time::{Duration, Instant};

use cairn_proc::RunError;

use crate::spec::{CheckError, CheckSpec, bad};
use crate::status::{CheckResult, Perf, Status};

/// Most plugin output kept (Nagios keeps 4 KiB by default; Consul 4 KiB).
const MAX_OUTPUT: usize = 64 * 1024;

/// A validated exec check.
#[derive(Clone, Debug)]
pub struct ExecCheck {
    pub label: String,
    pub argv: Vec<String>,
    pub timeout: Duration,
}

impl ExecCheck {
    pub(crate) fn from_spec(
        spec: &CheckSpec,
        label: String,
        timeout: Duration,
    ) -> Result<ExecCheck, CheckError> {
        let Some(first) = spec.args.first() else {
            return bad("args: missing command");
        };
        if first.trim().is_empty() {
            return bad("args: the command is empty");
        }
        Ok(ExecCheck {
            label,
            argv: spec.args.clone(),
            timeout,
        })
    }

    pub(crate) async fn run(&self) -> CheckResult {
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]);
        let outcome = cairn_proc::run(&mut cmd, self.timeout, MAX_OUTPUT).await;
        let time = Perf::time(started.elapsed(), None, Some(self.timeout));
        let finished = match outcome {
            Ok(f) => f,
            Err(RunError::Spawn { program, why }) => {
                return CheckResult::new(
                    &self.label,
                    Status::Unknown,
                    format!("cannot run {program:?}: {why}"),
                );
            }
            Err(RunError::TimedOut(_)) => {
                return CheckResult::new(
                    &self.label,
                    Status::Critical,
                    format!(
                        "plugin timed out after {:.3} s and was killed",
                        self.timeout.as_secs_f64()
                    ),
                )
                .with_perf(time);
            }
            Err(e @ RunError::Wait { .. }) => {
                return CheckResult::new(&self.label, Status::Unknown, e.to_string());
            }
        };
        let (out, err) = (&finished.stdout, &finished.stderr);
        let text = String::from_utf8_lossy(if out.iter().all(u8::is_ascii_whitespace) {
            err
        } else {
            out
        });
        let first = text.lines().next().unwrap_or("").trim();
        let (message, perf) = match first.split_once('|') {
            Some((m, p)) => (m.trim().to_string(), Perf::parse_all(p)),
            None => (first.to_string(), Vec::new()),
        };
        let (status, message) = match finished.status.code() {
            Some(code @ 0..=3) => (Status::from_exit_code(code), message),
            Some(code) => (
                Status::Unknown,
                format!("plugin exited with code {code}: {message}"),
            ),
            None => (
                Status::Unknown,
                format!("plugin was killed by a signal: {message}"),
            ),
        };
        let message = if message.is_empty() {
            "(no output)".to_string()
        } else {
            message
        };
        let mut r = CheckResult::new(&self.label, status, message);
        r.perfdata = perf;
        if !r.perfdata.iter().any(|p| p.label == "time") {
            r.perfdata.push(time);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(script: &str, timeout: Duration) -> ExecCheck {
        ExecCheck {
            label: "plugin".into(),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout,
        }
    }

    /// (script, status, message): plugins whose output exceeds a pipe's buffer are judged by
    /// their exit code, not reported as timeouts.
    #[tokio::test]
    async fn plugins_are_judged_by_exit_code_and_first_line() {
        let cases = [
            (
                "echo 'DISK OK - 80% free'; head -c 200000 /dev/zero >&2",
                Status::Ok,
                "DISK OK - 80% free",
            ),
            (
                "head -c 200000 /dev/zero | tr '\\000' x; exit 2",
                Status::Critical,
                "xxxxxxxx",
            ),
            (
                "echo 'LOAD WARNING | load=3;2;4'; exit 1",
                Status::Warning,
                "LOAD WARNING",
            ),
            ("exit 7", Status::Unknown, "plugin exited with code 7"),
        ];
        for (script, status, message) in cases {
            let r = check(script, Duration::from_secs(30)).run().await;
            assert_eq!(r.status, status, "{script}: {r:?}");
            assert!(r.message.starts_with(message), "{script}: {r:?}");
        }
    }

    #[tokio::test]
    async fn a_plugin_past_its_timeout_is_critical() {
        let r = check("sleep 30", Duration::from_millis(300)).run().await;
        assert_eq!(r.status, Status::Critical);
        assert_eq!(r.message, "plugin timed out after 0.300 s and was killed");
    }
}

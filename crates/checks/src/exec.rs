//! Exec checks: run an existing Nagios plugin or script, relay its status (the exit code) and its
//! first output line (text and perfdata); kill its whole process group at the timeout.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

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
        cmd.args(&self.argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so a timeout kills the plugin and everything it started.
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "no such command".to_string(),
                    std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => e.to_string(),
                };
                return CheckResult::new(
                    &self.label,
                    Status::Unknown,
                    format!("cannot run {:?}: {why}", self.argv[0]),
                );
            }
        };
        let pgid = child.id();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_all = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.take(MAX_OUTPUT as u64).read_to_end(&mut out).await;
            }
            if let Some(s) = stderr.as_mut() {
                let _ = s.take(MAX_OUTPUT as u64).read_to_end(&mut err).await;
            }
            let status = child.wait().await;
            (out, err, status)
        };
        let outcome = tokio::time::timeout(self.timeout, read_all).await;
        let elapsed = started.elapsed();
        let time = Perf::time(elapsed, None, Some(self.timeout));
        let (out, err, status) = match outcome {
            Err(_) => {
                if let Some(pid) = pgid {
                    // SAFETY: kill(2) on a process group we created; no memory is touched.
                    unsafe {
                        libc::kill(-(pid as i32), libc::SIGKILL);
                    }
                }
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
            Ok(r) => r,
        };
        let text = String::from_utf8_lossy(if out.iter().all(u8::is_ascii_whitespace) {
            &err
        } else {
            &out
        });
        let first = text.lines().next().unwrap_or("").trim();
        let (message, perf) = match first.split_once('|') {
            Some((m, p)) => (m.trim().to_string(), Perf::parse_all(p)),
            None => (first.to_string(), Vec::new()),
        };
        let (status, message) = match status {
            Ok(s) => match s.code() {
                Some(code @ 0..=3) => (Status::from_exit_code(code), message),
                Some(code) => (
                    Status::Unknown,
                    format!("plugin exited with code {code}: {message}"),
                ),
                None => (
                    Status::Unknown,
                    format!("plugin was killed by a signal: {message}"),
                ),
            },
            Err(e) => (Status::Unknown, format!("waiting for the plugin: {e}")),
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

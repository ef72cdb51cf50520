//! `taskrun run -- CMD [ARGS...]`: one task in the foreground with the agent's exec driver — the
//! same sandbox layout, environment, limits, supervisor and log files — for trying a command the
//! way the agent would run it, or for scripts. The task's `stdout`/`stderr` files are copied to
//! taskrun's own as they grow; SIGTERM/SIGINT become a kill with the grace period (a second one
//! kills at once); the exit code is the task's (128 + signal when a signal ended it).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use cairn_marathon::{TaskSpec, TaskState, iso8601_millis, now_millis};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::exec::{self, Launch, Proc};
use crate::limits::{LimitMode, TaskLimits};
use crate::logs::LogReader;
use crate::outcome::KillReport;
use crate::sandbox::{self, ExitInfo, STDERR_FILE, STDOUT_FILE, TaskRecord};

/// How often the log files are checked for new output.
const TAIL_POLL: Duration = Duration::from_millis(50);
/// `HOST` of a task run this way.
const HOST: &str = "127.0.0.1";

/// What to run and how.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Work dir; a new one under `$TMPDIR` when `None`.
    pub work_dir: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub mem_mb: Option<f64>,
    pub cpus: Option<f64>,
    pub grace_seconds: f64,
    pub ports: Vec<u16>,
    /// One element runs through `sh -c`; more run directly.
    pub command: Vec<String>,
    /// Rotate the log files above this size.
    pub log_rotate_bytes: u64,
}

/// Why the task could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no command given")]
    NoCommand,
    #[error("work dir {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    #[error(transparent)]
    Record(#[from] sandbox::SandboxError),
    #[error("cannot start the runtime or signal handlers: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The task spec of a foreground run.
pub fn spec_for(id: &str, opts: &RunOptions) -> Result<TaskSpec, RunError> {
    let (cmd, args) = match opts.command.as_slice() {
        [] => return Err(RunError::NoCommand),
        [one] => (Some(one.clone()), None),
        many => (None, Some(many.to_vec())),
    };
    Ok(TaskSpec {
        id: id.to_string(),
        app_id: "/taskrun-run".into(),
        version: iso8601_millis(now_millis()),
        cmd,
        args,
        user: None,
        env: opts.env.iter().cloned().collect::<BTreeMap<_, _>>(),
        labels: BTreeMap::new(),
        cpus: opts.cpus.unwrap_or(0.0),
        mem: opts.mem_mb.unwrap_or(0.0),
        disk: 0.0,
        ports: opts.ports.clone(),
        port_names: vec![None; opts.ports.len()],
        health_checks: Vec::new(),
        kill_grace_seconds: opts.grace_seconds,
        container: None,
        networks: None,
        service_ports: Vec::new(),
        service_name: "taskrun-run".into(),
    })
}

/// Runs the task; returns its exit code.
pub fn run(opts: RunOptions) -> Result<i32, RunError> {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let id = format!("taskrun-run.{unique}");
    let spec = spec_for(&id, &opts)?;
    let work_dir = opts
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("taskrun-{unique}")));
    // The task runs in its sandbox: every path handed to it must be absolute.
    let work_dir = std::path::absolute(&work_dir).map_err(|source| RunError::WorkDir {
        path: work_dir.clone(),
        source,
    })?;
    let sandbox = sandbox::sandbox_dir(&work_dir, &id);
    cairn_cli::create_private_dir(&sandbox).map_err(|source| RunError::WorkDir {
        path: sandbox.clone(),
        source,
    })?;
    eprintln!("taskrun: sandbox {}", sandbox.display());
    cairn_cli::block_on(
        cairn_cli::Flavor::CurrentThread,
        run_task(spec, sandbox, opts),
    )
    .map_err(RunError::Runtime)?
}

async fn run_task(spec: TaskSpec, sandbox: PathBuf, opts: RunOptions) -> Result<i32, RunError> {
    // Handlers first: a SIGTERM that arrives while the task starts must stop the task, not kill
    // this supervisor with the default action and leave the task behind.
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Runtime)?;
    // Only a run that asks for limits may set up cgroups (which moves this process).
    let mode = if opts.mem_mb.is_some() || opts.cpus.is_some() {
        LimitMode::detect_v2_or_rlimit()
    } else {
        LimitMode::Rlimit
    };
    let mut rec = TaskRecord::staged(spec, now_millis());
    rec.save(&sandbox)?;
    let inherited = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    let env = crate::env::task_env(&rec.spec, HOST, &sandbox, None, inherited);
    let argv = exec::command_argv(&rec.spec)?;
    let wrapper = PathBuf::from("/proc/self/exe");
    let started = exec::launch(Launch {
        task_id: &rec.spec.id,
        sandbox: &sandbox,
        workdir: &sandbox,
        credentials: None,
        argv,
        env,
        limits: TaskLimits {
            cpus: rec.spec.cpus,
            mem_mb: rec.spec.mem,
        },
        mode: &mode,
        wrapper: &wrapper,
        log_rotate_bytes: opts.log_rotate_bytes,
    });
    let started = match started {
        Ok(s) => s,
        Err(e) => {
            rec.set_state(TaskState::Failed, e.to_string(), now_millis());
            if let Err(saving) = rec.save(&sandbox) {
                // The start failure is the error returned; the record only reflects it.
                tracing::warn!(sandbox = %sandbox.display(), error = %saving, "recording the failed start failed");
            }
            return Err(e.into());
        }
    };
    let now = now_millis();
    rec.pid = Some(started.pid);
    rec.start_time = started.start_time;
    rec.cgroup = started.cgroup.clone();
    rec.started_at = Some(now);
    rec.set_state(TaskState::Running, "", now);
    rec.save(&sandbox)?;

    let stop_tail = CancellationToken::new();
    let tail = tokio::spawn(tail(sandbox.clone(), stop_tail.clone()));
    let mut proc = Proc::Owned(started.child);
    let grace = exec::grace_of(rec.spec.kill_grace_seconds);

    let (wait, killed) = tokio::select! {
        w = proc.wait() => (w, None),
        _ = term.recv() => kill(&mut proc, grace, &mut term, &mut int).await,
        _ = int.recv() => kill(&mut proc, grace, &mut term, &mut int).await,
    };
    stop_tail.cancel();
    // The relay of the log to our stdout ends with the task; a panic in it is the runtime's to
    // report and changes nothing about the task's outcome.
    let _ = tail.await;

    let out = exec::outcome(ExitInfo::read(&sandbox), wait, killed);
    let code = out.exit_code;
    rec.exit = out.exit;
    rec.set_state(out.state, out.message, now_millis());
    rec.save(&sandbox)?;
    mode.release(&rec.spec.id, rec.cgroup.as_deref());
    Ok(code)
}

/// Kills the task with the grace period; another SIGTERM/SIGINT meanwhile cuts it short.
async fn kill(
    proc: &mut Proc,
    grace: Duration,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
) -> (Option<std::process::ExitStatus>, Option<KillReport>) {
    proc.signal_group(cairn_proc::Signal::TERM);
    let ended = tokio::select! {
        w = proc.wait() => Some(w),
        _ = tokio::time::sleep(grace) => None,
        _ = term.recv() => None,
        _ = int.recv() => None,
    };
    match ended {
        Some(w) => (w, Some(KillReport { escalated: false })),
        None => {
            proc.signal_group(cairn_proc::Signal::KILL);
            (proc.wait().await, Some(KillReport { escalated: true }))
        }
    }
}

/// Copies what the task appends to its log files to our stdout/stderr until `stop`, then
/// drains them. The readers follow the files across rotations.
async fn tail(sandbox: PathBuf, stop: CancellationToken) {
    let mut readers = Some([
        Relay::new(sandbox.join(STDOUT_FILE)),
        Relay::new(sandbox.join(STDERR_FILE)),
    ]);
    loop {
        let stopping = stop.is_cancelled();
        let Some(mut taken) = readers.take() else {
            return;
        };
        let copied = tokio::task::spawn_blocking(move || {
            let [out, err] = &mut taken;
            out.copy_new(&mut std::io::stdout());
            err.copy_new(&mut std::io::stderr());
            taken
        })
        .await;
        match copied {
            Ok(r) => readers = Some(r),
            // The copy panicked: nothing more can be relayed.
            Err(_) => return,
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(TAIL_POLL) => {}
            () = stop.cancelled() => {}
        }
    }
}

/// One log file relayed to one of our streams.
struct Relay {
    path: PathBuf,
    reader: Option<LogReader>,
    warned: bool,
}

impl Relay {
    fn new(path: PathBuf) -> Relay {
        Relay {
            path,
            reader: None,
            warned: false,
        }
    }

    /// Writes what the file got since the last call to `out`.
    fn copy_new(&mut self, out: &mut impl Write) {
        let result = (|| {
            let reader = match &mut self.reader {
                Some(r) => r,
                None => self.reader.insert(LogReader::open(&self.path, 0)?),
            };
            loop {
                let chunk = reader.read_chunk()?;
                if chunk.is_empty() {
                    return Ok::<_, std::io::Error>(());
                }
                // Our own stdout/stderr gone (a closed pipe): the task runs on regardless.
                let _ = out.write_all(&chunk);
            }
        })();
        // Same: a closed stream of ours must not stop the task.
        let _ = out.flush();
        if let Err(e) = result
            && !self.warned
        {
            self.warned = true;
            tracing::warn!(file = %self.path.display(), error = %e, "cannot read the task's log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_is_a_shell_command_several_are_args() {
        let opts = |c: &[&str]| RunOptions {
            command: c.iter().map(|s| s.to_string()).collect(),
            ports: vec![8080],
            ..Default::default()
        };
        let s = spec_for("t.1", &opts(&["echo hi; exit 3"])).unwrap();
        assert_eq!(s.cmd.as_deref(), Some("echo hi; exit 3"));
        assert!(s.args.is_none());
        assert_eq!(s.port_names, [None]);
        let s = spec_for("t.1", &opts(&["printf", "%s", "a b"])).unwrap();
        assert_eq!(s.args.unwrap(), ["printf", "%s", "a b"]);
        assert!(matches!(
            spec_for("t.1", &opts(&[])),
            Err(RunError::NoCommand)
        ));
    }
}

//! The tasks' COMMAND health checks run as the task's user, like the task.
//!
//! taskrun registers a task's COMMAND check in the catalog with Marathon's command
//! (`sh -c CMD`, see [`crate::catalog::check_for`]) and runs it with the in-process check agent
//! (`cairn_checks::agent`), which follows the node's checks in the catalog. Between the two
//! stands [`TaskChecks`]: for a check of a task that runs as another user it hands the agent the
//! same command behind `taskrun as-user` ([`as_user_argv`]: this binary, which takes the user's
//! ids and `exec`s the command, so the check's process group, output and deadline stay the
//! agent's); [`TaskSink`] puts the registered command back into every result it pushes, so the
//! catalog keeps the app's command. The agent runs only the script checks [`OwnChecks`] vouches
//! for, in exactly the form it would hand out.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use cairn_checks::agent::{ChecksSource, StatusSink};
use cairn_wire::HealthCheck;

use crate::user::{Account, Credentials};

/// The hidden subcommand that runs a check's command as a task's user.
pub const AS_USER: &str = "as-user";

/// `<exe> as-user --uid U --gid G [--groups A,B] --user NAME --home DIR -- ARGV...`: `argv` run
/// as `user` by the taskrun binary `exe`.
pub fn as_user_argv(exe: &Path, user: &Account, argv: &[String]) -> Vec<String> {
    let mut out = vec![exe.display().to_string(), AS_USER.into()];
    out.extend(crate::exec::credential_args(Some(&user.credentials())));
    out.extend([
        "--user".to_string(),
        user.name.clone(),
        "--home".into(),
        user.home.clone(),
        "--".into(),
    ]);
    out.extend(argv.iter().cloned());
    out
}

/// The command inside an [`as_user_argv`] of `exe`, or `None` when `argv` is not one.
pub fn strip_as_user<'a>(exe: &Path, argv: &'a [String]) -> Option<&'a [String]> {
    if argv.first().map(String::as_str) != exe.to_str() || argv.get(1)? != AS_USER {
        return None;
    }
    // Every flag takes a value: walk them in pairs, so a value is never taken for the `--`.
    let mut i = 2;
    while argv.get(i)? != "--" {
        i += 2;
    }
    Some(&argv[i + 1..])
}

/// `c` as taskrun registered it (the command out of its `as-user` form).
pub fn registered_form(exe: &Path, c: &HealthCheck) -> HealthCheck {
    let mut c = c.clone();
    if let Some(inner) = strip_as_user(exe, &c.definition.script_args) {
        c.definition.script_args = inner.to_vec();
    }
    c
}

/// Which script checks are the agent's own tasks' (see [`crate::catalog::is_own_check`]) and
/// how each runs.
pub trait OwnChecks: Send + Sync + 'static {
    /// The taskrun binary `as-user` forms start.
    fn exe(&self) -> &Path;

    /// The command the check agent runs for `c` as registered in the catalog: `None` unless it
    /// is one of this agent's tasks' own script checks, else its command, behind
    /// [`as_user_argv`] when the task runs as another user.
    fn run_argv(&self, c: &HealthCheck) -> Option<Vec<String>>;

    /// Whether `c`, as [`TaskChecks`] handed it to the check agent, is one of the tasks' own
    /// script checks in exactly the form it runs in.
    fn vouch(&self, c: &HealthCheck) -> bool {
        let registered = registered_form(self.exe(), c);
        self.run_argv(&registered)
            .is_some_and(|argv| argv == c.definition.script_args)
    }
}

/// The node's checks from `inner`, the tasks' own script checks in the form they run in.
pub struct TaskChecks<S, O> {
    pub inner: S,
    pub own: Arc<O>,
}

impl<S: ChecksSource, O: OwnChecks> ChecksSource for TaskChecks<S, O> {
    async fn next(&mut self) -> Result<Vec<HealthCheck>, String> {
        let mut checks = self.inner.next().await?;
        for c in &mut checks {
            if c.definition.script_args.is_empty() {
                continue;
            }
            if let Some(argv) = self.own.run_argv(c) {
                c.definition.script_args = argv;
            }
        }
        Ok(checks)
    }
}

/// Pushes results to `inner` with the checks' commands as registered.
#[derive(Clone)]
pub struct TaskSink<S> {
    pub inner: S,
    /// The taskrun binary of the `as-user` forms.
    pub exe: std::path::PathBuf,
}

impl<S: StatusSink> StatusSink for TaskSink<S> {
    async fn push(&self, check: &HealthCheck) -> Result<(), String> {
        self.inner.push(&registered_form(&self.exe, check)).await
    }
}

/// `taskrun as-user`: `exec`s `argv` with `credentials` and the user's `HOME`, `USER` and
/// `LOGNAME` (`user`: name and home); returns only when it cannot (126, or 127 when there is
/// no such program, as a shell says).
pub fn as_user(
    credentials: Option<Credentials>,
    user: Option<(String, String)>,
    argv: &[OsString],
) -> ExitCode {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("taskrun as-user: no program given");
        return ExitCode::from(2);
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    if let Some((name, home)) = user {
        cmd.env("HOME", home)
            .env("USER", &name)
            .env("LOGNAME", &name);
    }
    if let Some(c) = credentials {
        // SAFETY: Credentials::apply makes plain system calls on data prepared beforehand.
        unsafe {
            cmd.pre_exec(move || c.apply());
        }
    }
    let e = cmd.exec();
    eprintln!(
        "taskrun as-user: cannot run {:?}: {e}",
        program.to_string_lossy()
    );
    ExitCode::from(if e.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wire::CheckDefinition;

    fn nobody() -> Account {
        Account {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![65534, 100],
            home: "/nonexistent".into(),
        }
    }

    fn sh(cmd: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), cmd.into()]
    }

    #[test]
    fn as_user_forms_round_trip() {
        let exe = Path::new("/proc/self/exe");
        let argv = as_user_argv(exe, &nobody(), &sh("test -f ready"));
        assert_eq!(
            argv,
            [
                "/proc/self/exe",
                "as-user",
                "--uid",
                "65534",
                "--gid",
                "65534",
                "--groups",
                "65534,100",
                "--user",
                "nobody",
                "--home",
                "/nonexistent",
                "--",
                "sh",
                "-c",
                "test -f ready"
            ]
        );
        assert_eq!(strip_as_user(exe, &argv), Some(&sh("test -f ready")[..]));
        assert_eq!(strip_as_user(exe, &sh("x")), None);
        assert_eq!(strip_as_user(Path::new("/other"), &argv), None);
        // A value that looks like the end of the flags is still a value.
        let odd = Account {
            home: "--".into(),
            groups: vec![],
            ..nobody()
        };
        let argv = as_user_argv(exe, &odd, &sh("true"));
        assert_eq!(strip_as_user(exe, &argv), Some(&sh("true")[..]));
        // Cut short: no command.
        assert_eq!(strip_as_user(exe, &argv[..6]), None);
    }

    /// The own check of task t.1 runs as nobody; everything else is no one's.
    struct Own;

    impl OwnChecks for Own {
        fn exe(&self) -> &Path {
            Path::new("/proc/self/exe")
        }

        fn run_argv(&self, c: &HealthCheck) -> Option<Vec<String>> {
            (c.service_id == "t.1" && c.definition.script_args == sh("ok"))
                .then(|| as_user_argv(self.exe(), &nobody(), &sh("ok")))
        }
    }

    fn check(service: &str, args: Vec<String>) -> HealthCheck {
        HealthCheck {
            node: "n".into(),
            check_id: format!("service:{service}:0"),
            service_id: service.into(),
            definition: CheckDefinition {
                script_args: args,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn own_checks_run_as_their_user_and_are_pushed_as_registered() {
        struct Fixed(Option<Vec<HealthCheck>>);
        impl ChecksSource for Fixed {
            async fn next(&mut self) -> Result<Vec<HealthCheck>, String> {
                self.0.take().ok_or_else(|| "done".to_string())
            }
        }
        let forged_as_user = as_user_argv(
            Path::new("/proc/self/exe"),
            &Account {
                uid: 0,
                gid: 0,
                ..nobody()
            },
            &sh("ok"),
        );
        let registered = vec![
            check("t.1", sh("ok")),
            check("t.1", sh("other")),
            check("t.2", sh("ok")),
            check("t.1", forged_as_user.clone()),
        ];
        let own = Arc::new(Own);
        let mut source = TaskChecks {
            inner: Fixed(Some(registered)),
            own: own.clone(),
        };
        let handed = source.next().await.unwrap();
        let exe = Path::new("/proc/self/exe");
        assert_eq!(
            handed[0].definition.script_args,
            as_user_argv(exe, &nobody(), &sh("ok"))
        );
        assert_eq!(handed[1].definition.script_args, sh("other"));
        assert_eq!(handed[2].definition.script_args, sh("ok"));
        assert_eq!(handed[3].definition.script_args, forged_as_user);
        let vouched: Vec<bool> = handed.iter().map(|c| own.vouch(c)).collect();
        assert_eq!(vouched, [true, false, false, false]);

        #[derive(Clone, Default)]
        struct Seen(Arc<std::sync::Mutex<Vec<HealthCheck>>>);
        impl StatusSink for Seen {
            async fn push(&self, check: &HealthCheck) -> Result<(), String> {
                self.0.lock().unwrap().push(check.clone());
                Ok(())
            }
        }
        let seen = Seen::default();
        let sink = TaskSink {
            inner: seen.clone(),
            exe: exe.to_path_buf(),
        };
        sink.push(&handed[0]).await.unwrap();
        assert_eq!(seen.0.lock().unwrap()[0].definition.script_args, sh("ok"));
    }
}

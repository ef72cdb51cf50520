//! `catalogd lock PREFIX -- CMD...`: runs a command while holding a lock (or one of `-n` slots
//! of a semaphore) in the KV store, with `consul lock`'s layout and protocol, so the two
//! exclude each other on one prefix. The cron case: every host's crontab fires the same line,
//! one runs the job, the others wait (or, with `--try`/`--timeout`, give up with exit 1).

mod child;
mod holder;
pub mod protocol;

use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use cairn_client::CatalogClient;
use clap::{ArgAction, Args};
use tokio::signal::unix::{Signal, SignalKind, signal};

use child::Child;
use holder::{Acquired, Holder, Session};
use protocol::KILL_GRACE;

/// `consul lock`'s default `-monitor-retry`.
const DEFAULT_MONITOR_RETRY: u32 = 3;
/// Longest the release, cleanup and session destroy may take together once the command ended.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

/// Flags of `catalogd lock`; the names and meanings are `consul lock`'s.
#[derive(Args, Debug)]
pub struct LockArgs {
    /// KV prefix of the lock: the lock lives at PREFIX/.lock (as consul lock's)
    pub prefix: String,
    /// The command and its arguments (after `--`). By default they are joined with spaces and
    /// run by $SHELL -c, as consul lock does; see --shell
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
    /// Number of holders allowed at once: 1 is a lock, more a semaphore with that many slots
    /// (every contender on the prefix must use the same number)
    #[arg(short = 'n', long = "limit", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Give up acquiring after this long (Go duration: 30s, 5m) and exit 1; 0 waits forever
    #[arg(long, value_parser = super::parse_duration, conflicts_with = "try_")]
    pub timeout: Option<Duration>,
    /// Do not wait: one attempt, exit 1 when the lock is held by another. `--try=D` waits up
    /// to D, as consul lock's deprecated `-try=D`
    #[arg(
        long = "try",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "0s",
        value_parser = super::parse_duration,
        value_name = "D"
    )]
    pub try_: Option<Duration>,
    /// Session name [default: catalogd lock for '<cmd>' at '<prefix>']
    #[arg(long)]
    pub name: Option<String>,
    /// Accepted for consul lock compatibility: catalogd lock always exits with the child's
    /// exit code (128 + N when a signal N killed it)
    #[arg(long)]
    pub child_exit_code: bool,
    /// Give the child this process's stdin (else /dev/null)
    #[arg(long)]
    pub pass_stdin: bool,
    /// Run the command through $SHELL -c (default, as consul lock); --shell=false runs the
    /// arguments as they are, without a shell
    #[arg(
        long,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = ArgAction::Set,
        value_name = "BOOL"
    )]
    pub shell: bool,
    /// Failed reads of the lock (server errors, connection failures) tolerated while holding
    /// it, a second apart, before the lock counts as lost
    #[arg(long, default_value_t = DEFAULT_MONITOR_RETRY)]
    pub monitor_retry: u32,
    /// Say on stderr what happens (acquisition, child start and end, release)
    #[arg(long)]
    pub verbose: bool,
}

/// Exit with this code and no message: the child's own exit code, passed through.
#[derive(Debug, thiserror::Error)]
#[error("the command exited with code {0}")]
pub struct ChildExit(pub u8);

/// The signals forwarded to the child's group (consul lock's: SIGINT and SIGTERM).
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// The next SIGTERM or SIGINT received.
    async fn recv(&mut self) -> cairn_proc::Signal {
        tokio::select! {
            _ = self.term.recv() => cairn_proc::Signal::TERM,
            _ = self.int.recv() => cairn_proc::Signal::INT,
        }
    }
}

fn signal_name(sig: cairn_proc::Signal) -> &'static str {
    match sig {
        cairn_proc::Signal::TERM => "SIGTERM",
        cairn_proc::Signal::INT => "SIGINT",
        _ => "a signal",
    }
}

/// Validated settings derived from the flags.
struct Plan {
    prefix: String,
    session_name: String,
    try_window: Option<Duration>,
    argv: Vec<String>,
}

impl LockArgs {
    fn plan(&self) -> anyhow::Result<Plan> {
        // Consul trims one leading slash; keys never start with one.
        let prefix = self.prefix.trim_start_matches('/').to_string();
        if prefix.is_empty() {
            bail!("the lock prefix is empty");
        }
        let session_name = self.name.clone().unwrap_or_else(|| {
            format!(
                "catalogd lock for '{}' at '{prefix}'",
                self.command.join(" ")
            )
        });
        // `--timeout 0` waits forever, as consul lock's `-timeout=0`; a bare `--try` is a
        // window of zero: one attempt.
        let try_window = match (self.timeout, self.try_) {
            (Some(t), _) if !t.is_zero() => Some(t),
            (_, Some(t)) => Some(t),
            _ => None,
        };
        let argv = child::command_line(&self.command, self.shell, std::env::var("SHELL").ok());
        Ok(Plan {
            prefix,
            session_name,
            try_window,
            argv,
        })
    }
}

/// What ended the hold.
enum Outcome {
    Exited(ExitStatus),
    Lost(String),
}

pub async fn lock(client: CatalogClient, args: LockArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let verbose = |msg: &str| {
        if args.verbose {
            eprintln!("catalogd lock: {msg}");
        }
    };
    let mut signals = Signals::new()?;
    let holder = Holder::new(
        client.clone(),
        &plan.prefix,
        args.limit,
        plan.try_window,
        args.monitor_retry,
    );
    let what = if holder.is_semaphore() {
        format!(
            "a slot of the semaphore {} (limit {})",
            holder.lock_key, args.limit
        )
    } else {
        format!("the lock {}", holder.lock_key)
    };
    let session = Session::create(&client, &plan.session_name, holder.session_behavior())
        .await
        .context("failed to create the lock session")?;
    verbose(&format!("session {} created; acquiring {what}", session.id));

    let acquired = tokio::select! {
        r = holder.acquire(&session.id) => r.map_err(anyhow::Error::from),
        reason = session.lost() => Err(anyhow!("{reason}")),
        sig = signals.recv() => Err(anyhow!("{} received while waiting", signal_name(sig))),
    };
    match acquired {
        Ok(Acquired::Held) => {}
        Ok(Acquired::GaveUp { holders }) => {
            destroy_session(session).await;
            let by = match holders.as_slice() {
                [] => "by another session".to_string(),
                [one] => format!("by session {one}"),
                many => format!("by sessions {}", many.join(", ")),
            };
            let held = if holder.is_semaphore() {
                format!(
                    "all {} slots of the semaphore {} are held {by}",
                    args.limit, holder.lock_key
                )
            } else if holders.is_empty() {
                // The key was free but acquiring it was refused: the server's lock-delay after
                // the previous holder's session ended (15s by default) is still running.
                format!(
                    "the lock {} is in its lock-delay (its previous holder's session ended)",
                    holder.lock_key
                )
            } else {
                format!("the lock {} is held {by}", holder.lock_key)
            };
            match plan.try_window {
                Some(w) if !w.is_zero() => bail!(
                    "{held}: gave up after {}",
                    cairn_wire::format_go_duration(w)
                ),
                _ => bail!("{held}"),
            }
        }
        Err(e) => {
            destroy_session(session).await;
            return Err(e.context(format!("failed to acquire {what}")));
        }
    }
    verbose(&format!("acquired {what}; starting {:?}", plan.argv));

    let outcome = match Child::spawn(&plan.argv, args.pass_stdin) {
        Ok(mut child) => hold(&holder, &session, &mut child, &mut signals, &verbose).await,
        Err(e) => Err(anyhow!(e).context(format!("cannot start {:?}", plan.argv[0]))),
    };

    // Give the lock back whatever happened; failures here are reported but do not hide the
    // command's result. Bounded, so a server that stopped answering does not hold us up: the
    // session's TTL then releases what is left.
    let release = async {
        if let Err(e) = holder.release(&session.id).await {
            eprintln!("catalogd lock: warning: releasing {what} failed: {e}");
        }
        match holder.cleanup().await {
            Ok(true) => verbose(&format!("deleted {} (no other holder)", holder.lock_key)),
            Ok(false) => verbose(&format!("{} left in place: still in use", holder.lock_key)),
            Err(e) => eprintln!(
                "catalogd lock: warning: cleaning up {} failed: {e}",
                holder.lock_key
            ),
        }
        destroy_session(session).await;
    };
    match tokio::time::timeout(RELEASE_TIMEOUT, release).await {
        Ok(()) => verbose("released"),
        Err(_) => eprintln!(
            "catalogd lock: warning: the server did not answer within {} while releasing {what}; the session's TTL will release it",
            cairn_wire::format_go_duration(RELEASE_TIMEOUT)
        ),
    }

    match outcome? {
        Outcome::Exited(status) => match child::exit_code(status) {
            0 => Ok(()),
            code => Err(ChildExit(code).into()),
        },
        Outcome::Lost(reason) => bail!("lock lost: {reason}; the command was stopped"),
    }
}

/// Runs until the child exits or the lock is lost. SIGTERM/SIGINT are forwarded to the child's
/// group; if it is still there `KILL_GRACE` after the first one, the group is killed.
async fn hold(
    holder: &Holder,
    session: &Session,
    child: &mut Child,
    signals: &mut Signals,
    verbose: &impl Fn(&str),
) -> anyhow::Result<Outcome> {
    let lost = async {
        tokio::select! {
            reason = holder.monitor(&session.id) => reason,
            reason = session.lost() => reason,
        }
    };
    tokio::pin!(lost);
    let kill_at = tokio::time::sleep(Duration::MAX);
    tokio::pin!(kill_at);
    let mut forwarded = false;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for the command")?;
                verbose(&format!("command ended: {status}"));
                return Ok(Outcome::Exited(status));
            }
            reason = &mut lost => {
                eprintln!("catalogd lock: lock lost: {reason}; stopping the command (process group {})", child.pgid());
                child.stop(KILL_GRACE).await.context("stopping the command")?;
                return Ok(Outcome::Lost(reason));
            }
            sig = signals.recv() => {
                verbose(&format!("{} received; forwarding it to process group {}", signal_name(sig), child.pgid()));
                if let Err(e) = child.signal_group(sig) {
                    eprintln!("catalogd lock: warning: could not forward {}: {e}", signal_name(sig));
                }
                if !forwarded {
                    forwarded = true;
                    kill_at.as_mut().reset(tokio::time::Instant::now() + KILL_GRACE);
                }
            }
            () = &mut kill_at => {
                eprintln!("catalogd lock: the command outlived the grace period of {}; killing process group {}", cairn_wire::format_go_duration(KILL_GRACE), child.pgid());
                child.signal_group(cairn_proc::Signal::KILL).context("killing the command")?;
                kill_at.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
        }
    }
}

async fn destroy_session(session: Session) {
    let id = session.id.clone();
    if let Err(e) = session.destroy().await {
        eprintln!("catalogd lock: warning: destroying session {id} failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Result<LockArgs, clap::Error> {
        let cli = crate::cli::Cli::try_parse_from(
            ["catalogd", "lock"].iter().chain(args.iter()).copied(),
        )?;
        match cli.command {
            crate::cli::Command::Lock(a) => Ok(a),
            other => panic!("not lock: {other:?}"),
        }
    }

    #[test]
    fn parses_consul_lock_flags() {
        let a = parse(&["jobs/nightly", "--", "backup.sh", "--full"]).unwrap();
        assert_eq!(a.prefix, "jobs/nightly");
        assert_eq!(a.command, ["backup.sh", "--full"]);
        assert_eq!(a.limit, 1);
        assert!(a.shell && !a.pass_stdin && !a.verbose);
        assert_eq!(a.monitor_retry, 3);
        assert_eq!((a.timeout, a.try_), (None, None));

        let a = parse(&[
            "-n",
            "2",
            "--timeout",
            "1m30s",
            "--name",
            "nightly",
            "--shell=false",
            "--monitor-retry",
            "0",
            "--pass-stdin",
            "p",
            "sleep",
            "1",
        ])
        .unwrap();
        assert_eq!(a.limit, 2);
        assert_eq!(a.timeout, Some(Duration::from_secs(90)));
        assert_eq!(a.name.as_deref(), Some("nightly"));
        assert!(!a.shell && a.pass_stdin);
        assert_eq!(a.command, ["sleep", "1"]);

        // A bare --try takes no value (the prefix is not eaten); --try=D is a window.
        let a = parse(&["--try", "p", "--", "true"]).unwrap();
        assert_eq!((a.try_, a.prefix.as_str()), (Some(Duration::ZERO), "p"));
        let a = parse(&["--try=5s", "p", "true"]).unwrap();
        assert_eq!(a.try_, Some(Duration::from_secs(5)));
    }

    #[test]
    fn rejects_bad_flags() {
        for bad in [
            &["-n", "0", "p", "--", "true"][..],
            &["-n", "-1", "p", "--", "true"],
            &["p"],
            &["--timeout", "soon", "p", "--", "true"],
            &["--timeout", "1s", "--try", "p", "--", "true"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn plans() {
        let a = parse(&["/jobs/nightly", "--shell=false", "--", "backup.sh", "-v"]).unwrap();
        let p = a.plan().unwrap();
        assert_eq!(p.prefix, "jobs/nightly");
        assert_eq!(
            p.session_name,
            "catalogd lock for 'backup.sh -v' at 'jobs/nightly'"
        );
        assert_eq!(p.try_window, None);
        assert_eq!(p.argv, ["backup.sh", "-v"]);

        let window = |args: &[&str]| parse(args).unwrap().plan().unwrap().try_window;
        assert_eq!(
            window(&["--timeout", "0s", "p", "x"]),
            None,
            "0 waits forever"
        );
        assert_eq!(
            window(&["--timeout", "2s", "p", "x"]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(window(&["--try", "p", "x"]), Some(Duration::ZERO));

        assert!(parse(&["/", "x"]).unwrap().plan().is_err());
    }
}

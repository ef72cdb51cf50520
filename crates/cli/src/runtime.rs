//! The one way a cairn binary runs its async `main`: a Tokio runtime of the asked flavor, the
//! same text for a runtime that cannot start and for an error that ends the program
//! (`<program>: error: <error with its causes>` on stderr, exit 1), and a bounded wait for
//! blocking tasks at the end, so a stuck `spawn_blocking` cannot keep a stopping daemon alive.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

/// How long blocking tasks may keep the process after `main` returned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Which Tokio runtime to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// One worker per core (or `Some(n)`): daemons and concurrent clients.
    MultiThread(Option<usize>),
    /// The calling thread only: one-shot commands, which it starts fastest.
    CurrentThread,
}

/// Runs `main` to completion on a new runtime; `Err` when the runtime cannot start.
pub fn block_on<T>(flavor: Flavor, main: impl Future<Output = T>) -> std::io::Result<T> {
    let mut builder = match flavor {
        Flavor::MultiThread(workers) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = workers {
                b.worker_threads(n.max(1));
            }
            b
        }
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = builder.enable_all().build()?;
    let out = runtime.block_on(main);
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    Ok(out)
}

/// Runs `main` (see [`block_on`]) and turns its outcome into the exit code: its own code, or
/// 1 with `program: error: ...` on stderr.
pub fn run_main<E: Display>(
    program: &str,
    flavor: Flavor,
    main: impl Future<Output = Result<ExitCode, E>>,
) -> ExitCode {
    match block_on(flavor, main) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("{program}: error: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{program}: error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_flavors_run_to_completion_and_keep_the_code() {
        for flavor in [Flavor::CurrentThread, Flavor::MultiThread(Some(2))] {
            let code = run_main("t", flavor, async {
                tokio::task::yield_now().await;
                Ok::<_, String>(ExitCode::from(7))
            });
            assert_eq!(code, ExitCode::from(7), "{flavor:?}");
            let code = run_main("t", flavor, async { Err::<ExitCode, _>("broken") });
            assert_eq!(code, ExitCode::FAILURE, "{flavor:?}");
        }
    }

    /// A blocking task that never ends does not keep the program from returning.
    #[test]
    fn a_stuck_blocking_task_does_not_hold_the_exit() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let out = block_on(Flavor::MultiThread(Some(1)), async move {
            tokio::task::spawn_blocking(move || {
                // Held until the test ends: the receiver waits on a sender kept alive below.
                let _ = rx.recv();
            });
            5
        })
        .unwrap();
        assert_eq!(out, 5);
        drop(tx);
    }
}

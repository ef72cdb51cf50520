//! The workspace's lock-poisoning policy: a panic while a lock was held may have left the data
//! behind it half-changed, so a daemon that finds a lock poisoned stops at once — with a clear
//! message and exit code [`EXIT_LOCK_POISONED`] (70, `EX_SOFTWARE`), for systemd to restart it
//! from its durable state — rather than run on, or skip work, with wrong data.
//!
//! ```
//! use cairn_cli::LockOrExit as _;
//! let table = std::sync::Mutex::new(vec![1]);
//! table.lock_or_exit("task table").push(2);
//! ```

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Exit code of a daemon that found a lock poisoned (`EX_SOFTWARE` of sysexits.h).
pub const EXIT_LOCK_POISONED: i32 = 70;

/// Stops the process: the message on stderr (and in the log), exit code 70.
#[cold]
pub fn exit_lock_poisoned(what: &str) -> ! {
    exit_crash(&format!("lock poisoned: {what}; exiting"))
}

/// The crash-only stop shared by every daemon whose memory may no longer match its disk (a
/// poisoned lock, a failed or panicked commit): `message` on stderr and in the log, exit 70
/// (`EX_SOFTWARE`), for the supervisor to restart it from its durable state.
#[cold]
pub fn exit_crash(message: &str) -> ! {
    tracing::error!("{message}");
    eprintln!("{message}");
    std::process::exit(EXIT_LOCK_POISONED)
}

/// Taking a lock under the policy: the guard, or the process stops (see the module docs).
/// `what` names the data behind the lock in the message (e.g. `"task table"`).
pub trait LockOrExit {
    type Guard<'a>
    where
        Self: 'a;
    fn lock_or_exit(&self, what: &str) -> Self::Guard<'_>;
}

impl<T: ?Sized> LockOrExit for Mutex<T> {
    type Guard<'a>
        = MutexGuard<'a, T>
    where
        Self: 'a;
    fn lock_or_exit(&self, what: &str) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|_| exit_lock_poisoned(what))
    }
}

/// [`LockOrExit`] for a `RwLock`'s two sides.
pub trait RwLockOrExit<T: ?Sized> {
    fn read_or_exit(&self, what: &str) -> RwLockReadGuard<'_, T>;
    fn write_or_exit(&self, what: &str) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> RwLockOrExit<T> for RwLock<T> {
    fn read_or_exit(&self, what: &str) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|_| exit_lock_poisoned(what))
    }
    fn write_or_exit(&self, what: &str) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|_| exit_lock_poisoned(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Set in the child process the test starts: the scenario to run there.
    const CHILD_ENV: &str = "CAIRN_CLI_LOCK_POISON_CHILD";

    fn poison<T: Send + Sync + 'static>(lock: Arc<T>, hold: fn(&T)) {
        let held = lock.clone();
        let joined = std::thread::spawn(move || {
            hold(&held);
        })
        .join();
        assert!(joined.is_err(), "the holder panicked");
    }

    /// In the child: poison a lock, then take it under the policy (which must exit).
    fn child(kind: &str) {
        match kind {
            "mutex" => {
                let m = Arc::new(Mutex::new(1));
                poison(m.clone(), |m| {
                    let _g = m.lock_or_exit("the counter");
                    panic!("while holding the lock");
                });
                *m.lock_or_exit("the counter") += 1;
            }
            _ => {
                let l = Arc::new(RwLock::new(1));
                poison(l.clone(), |l| {
                    let _g = l.write_or_exit("the settings");
                    panic!("while holding the lock");
                });
                drop(l.read_or_exit("the settings"));
            }
        }
        // Reached only when the policy did not stop the process.
        std::process::exit(0);
    }

    fn run_child(kind: &str, test_name: &str) -> std::process::Output {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, kind)
            .output()
            .unwrap()
    }

    #[test]
    fn a_poisoned_mutex_stops_the_process_with_70() {
        if let Ok(kind) = std::env::var(CHILD_ENV) {
            return child(&kind);
        }
        let out = run_child(
            "mutex",
            "locks::tests::a_poisoned_mutex_stops_the_process_with_70",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_LOCK_POISONED), "{stderr}");
        assert!(
            stderr.contains("lock poisoned: the counter; exiting"),
            "{stderr}"
        );
    }

    #[test]
    fn a_poisoned_rwlock_stops_the_process_with_70() {
        if let Ok(kind) = std::env::var(CHILD_ENV) {
            return child(&kind);
        }
        let out = run_child(
            "rwlock",
            "locks::tests::a_poisoned_rwlock_stops_the_process_with_70",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_LOCK_POISONED), "{stderr}");
        assert!(
            stderr.contains("lock poisoned: the settings; exiting"),
            "{stderr}"
        );
    }

    #[test]
    fn an_unpoisoned_lock_is_just_taken() {
        let m = Mutex::new(1);
        *m.lock_or_exit("n") += 1;
        assert_eq!(*m.lock_or_exit("n"), 2);
        let l = RwLock::new(1);
        *l.write_or_exit("n") += 1;
        assert_eq!(*l.read_or_exit("n"), 2);
    }
}

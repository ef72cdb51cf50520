//! Deadlines for TTL checks and sessions, and the task that enforces them.
//!
//! Deadlines live in memory only: after a restart every TTL starts over, as Consul's agent does.
//! The writer arms and disarms them after each durable commit; the sweeper finds expired ones and
//! sends them back to the writer, which re-checks the deadline so an update that raced the sweep
//! wins.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::state::{NodeKey, TtlChange};
use crate::writer::{Command, Writer};

/// How often expired deadlines are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Deadlines {
    checks: HashMap<NodeKey, Instant>,
    sessions: HashMap<String, (Instant, Duration)>,
}

/// TTL deadlines of checks and sessions.
#[derive(Default)]
pub struct Timers {
    inner: Mutex<Deadlines>,
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the TTL changes of a committed batch.
    pub fn apply(&self, changes: &[TtlChange], now: Instant) {
        let mut d = self.lock();
        for c in changes {
            match c {
                TtlChange::ArmCheck(k, ttl) => {
                    d.checks.insert(k.clone(), now + *ttl);
                }
                TtlChange::DisarmCheck(k) => {
                    d.checks.remove(k);
                }
                TtlChange::ArmSession(id, ttl) => {
                    d.sessions.insert(id.clone(), (now + *ttl, *ttl));
                }
                TtlChange::DisarmSession(id) => {
                    d.sessions.remove(id);
                }
            }
        }
    }

    /// Pushes a session's deadline out by its TTL; false when it has none or is unknown.
    pub fn renew_session(&self, id: &str, now: Instant) -> bool {
        let mut d = self.lock();
        match d.sessions.get_mut(id) {
            Some((deadline, ttl)) => {
                *deadline = now + *ttl;
                true
            }
            None => false,
        }
    }

    /// True when the check has no pending deadline or it has passed (the sweep's verdict holds).
    pub fn check_expired(&self, key: &NodeKey, now: Instant) -> bool {
        self.lock().checks.get(key).is_none_or(|t| *t <= now)
    }

    pub fn session_expired(&self, id: &str, now: Instant) -> bool {
        self.lock().sessions.get(id).is_none_or(|(t, _)| *t <= now)
    }

    /// Removes and returns everything expired at `now`.
    fn take_expired(&self, now: Instant) -> (Vec<NodeKey>, Vec<String>) {
        let mut d = self.lock();
        let checks: Vec<NodeKey> = d
            .checks
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &checks {
            d.checks.remove(k);
        }
        let sessions: Vec<String> = d
            .sessions
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for s in &sessions {
            d.sessions.remove(s);
        }
        (checks, sessions)
    }
}

/// Runs until the writer is gone: sends expired checks and sessions to it.
pub async fn sweep(timers: Arc<Timers>, writer: Writer) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (checks, sessions) = timers.take_expired(Instant::now());
        if !checks.is_empty() && writer.submit(Command::ExpireChecks(checks)).await.is_err() {
            return;
        }
        if !sessions.is_empty()
            && writer
                .submit(Command::ExpireSessions(sessions))
                .await
                .is_err()
        {
            return;
        }
    }
}

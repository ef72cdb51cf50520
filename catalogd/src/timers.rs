//! Deadlines for TTL checks and sessions, and the task that enforces them.
//!
//! Deadlines live in memory only: after a restart every TTL starts over, as Consul's agent does.
//! The writer arms and disarms them after each durable commit; the sweeper sleeps until the
//! earliest deadline (woken early when an earlier one is armed), then sends what expired back to
//! the writer, which re-checks the deadline so an update that raced the sweep wins. A check turns
//! critical when its TTL passes, as promptly as Consul's per-check timer; a session is
//! invalidated only after twice its TTL without a renewal, as Consul does (its TTL is a lower
//! bound that leader-election tools size their own timing on).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_cli::LockOrExit as _;
use tokio::sync::Notify;

use crate::state::{NodeKey, TtlChange};

/// Consul's `SessionTTLMultiplier`: a session lives this many TTLs past its last renewal.
pub const SESSION_TTL_MULTIPLIER: u32 = 2;
/// Longest the sweeper sleeps without a deadline in sight (it is woken for new ones anyway).
const IDLE_SLEEP: Duration = Duration::from_secs(60);

/// What a deadline belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Owner {
    Check(NodeKey),
    Session(String),
}

#[derive(Default)]
struct Deadlines {
    /// Owner → its deadline (and, for sessions, the TTL a renewal extends by).
    by_owner: HashMap<Owner, (Instant, Duration)>,
    /// The same deadlines in time order.
    queue: BTreeSet<(Instant, Owner)>,
}

impl Deadlines {
    fn set(&mut self, owner: Owner, deadline: Instant, ttl: Duration) {
        if let Some((old, _)) = self.by_owner.insert(owner.clone(), (deadline, ttl)) {
            self.queue.remove(&(old, owner.clone()));
        }
        self.queue.insert((deadline, owner));
    }

    fn remove(&mut self, owner: &Owner) {
        if let Some((old, _)) = self.by_owner.remove(owner) {
            self.queue.remove(&(old, owner.clone()));
        }
    }

    fn deadline(&self, owner: &Owner) -> Option<Instant> {
        self.by_owner.get(owner).map(|(t, _)| *t)
    }
}

/// TTL deadlines of checks and sessions.
#[derive(Default)]
pub struct Timers {
    inner: Mutex<Deadlines>,
    /// Wakes the sweeper when a deadline earlier than the one it sleeps towards is armed.
    armed: Notify,
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Deadlines> {
        self.inner.lock_or_exit("TTL deadlines")
    }

    /// Applies the TTL changes of a committed batch.
    pub fn apply(&self, changes: &[TtlChange], now: Instant) {
        if changes.is_empty() {
            return;
        }
        let mut d = self.lock();
        let before = d.queue.first().map(|(t, _)| *t);
        for c in changes {
            match c {
                TtlChange::ArmCheck(k, ttl) => d.set(Owner::Check(k.clone()), now + *ttl, *ttl),
                TtlChange::DisarmCheck(k) => d.remove(&Owner::Check(k.clone())),
                TtlChange::ArmSession(id, ttl) => {
                    let life = *ttl * SESSION_TTL_MULTIPLIER;
                    d.set(Owner::Session(id.clone()), now + life, life)
                }
                TtlChange::DisarmSession(id) => d.remove(&Owner::Session(id.clone())),
            }
        }
        let after = d.queue.first().map(|(t, _)| *t);
        drop(d);
        if after.is_some() && (before.is_none() || after < before) {
            self.armed.notify_one();
        }
    }

    /// Forgets every deadline and arms those of `state` from `now` (startup, restore): TTLs
    /// start over, as after a Consul agent restart.
    pub fn arm_all(&self, state: &crate::state::State, now: Instant) {
        *self.lock() = Deadlines::default();
        let mut arm = Vec::new();
        for (key, check) in state.checks.iter() {
            if let Ok(ttl) = cairn_wire::parse_go_duration(&check.definition.ttl)
                && !ttl.is_zero()
            {
                arm.push(TtlChange::ArmCheck(key.clone(), ttl));
            }
        }
        for (id, s) in state.sessions.iter() {
            if s.ttl_ms > 0 {
                arm.push(TtlChange::ArmSession(
                    id.clone(),
                    Duration::from_millis(s.ttl_ms),
                ));
            }
        }
        self.apply(&arm, now);
        self.armed.notify_one();
    }

    /// Pushes a session's deadline out by its lifetime; false when it has none or is unknown.
    pub fn renew_session(&self, id: &str, now: Instant) -> bool {
        let mut d = self.lock();
        let owner = Owner::Session(id.to_string());
        match d.by_owner.get(&owner).copied() {
            Some((_, life)) => {
                d.set(owner, now + life, life);
                true
            }
            None => false,
        }
    }

    /// True when the check has no pending deadline or it has passed (the sweep's verdict holds).
    pub fn check_expired(&self, key: &NodeKey, now: Instant) -> bool {
        self.lock()
            .deadline(&Owner::Check(key.clone()))
            .is_none_or(|t| t <= now)
    }

    pub fn session_expired(&self, id: &str, now: Instant) -> bool {
        self.lock()
            .deadline(&Owner::Session(id.to_string()))
            .is_none_or(|t| t <= now)
    }

    /// Removes and returns everything expired at `now`, and the next deadline after that.
    fn take_expired(&self, now: Instant) -> (Vec<NodeKey>, Vec<String>, Option<Instant>) {
        let mut d = self.lock();
        let (mut checks, mut sessions) = (Vec::new(), Vec::new());
        while let Some((t, owner)) = d.queue.first().cloned() {
            if t > now {
                break;
            }
            d.remove(&owner);
            match owner {
                Owner::Check(k) => checks.push(k),
                Owner::Session(id) => sessions.push(id),
            }
        }
        let next = d.queue.first().map(|(t, _)| *t);
        (checks, sessions, next)
    }
}

impl Timers {
    /// Waits until a deadline has passed, then takes every expired check and session (the
    /// sweeper's step: it hands them to the writer, which re-checks each deadline).
    pub async fn next_expired(&self) -> (Vec<NodeKey>, Vec<String>) {
        loop {
            // Register for wake-ups before reading the queue, so an arm in between is not missed.
            let armed = self.armed.notified();
            tokio::pin!(armed);
            armed.as_mut().enable();
            let (checks, sessions, next) = self.take_expired(Instant::now());
            if !checks.is_empty() || !sessions.is_empty() {
                return (checks, sessions);
            }
            let sleep = next.map_or(IDLE_SLEEP, |t| {
                t.saturating_duration_since(Instant::now()).min(IDLE_SLEEP)
            });
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = armed => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> NodeKey {
        ("n".to_string(), id.to_string())
    }

    #[test]
    fn checks_expire_at_their_ttl_and_sessions_at_twice_theirs() {
        let t = Timers::default();
        let now = Instant::now();
        t.apply(
            &[
                TtlChange::ArmCheck(key("c"), Duration::from_millis(100)),
                TtlChange::ArmSession("s".into(), Duration::from_secs(10)),
            ],
            now,
        );
        let (c, s, next) = t.take_expired(now + Duration::from_millis(99));
        assert!(c.is_empty() && s.is_empty());
        assert_eq!(next, Some(now + Duration::from_millis(100)));
        let (c, _, next) = t.take_expired(now + Duration::from_millis(100));
        assert_eq!(c, vec![key("c")]);
        assert_eq!(next, Some(now + Duration::from_secs(20)));
        assert!(!t.session_expired("s", now + Duration::from_secs(19)));
        assert!(t.renew_session("s", now + Duration::from_secs(15)));
        let (_, s, _) = t.take_expired(now + Duration::from_secs(20));
        assert!(
            s.is_empty(),
            "a renewal pushes the deadline to 2 x TTL from then"
        );
        let (_, s, next) = t.take_expired(now + Duration::from_secs(35));
        assert_eq!(s, vec!["s".to_string()]);
        assert_eq!(next, None);
    }

    #[test]
    fn rearming_replaces_the_old_deadline() {
        let t = Timers::default();
        let now = Instant::now();
        let arm = |d| TtlChange::ArmCheck(key("c"), Duration::from_secs(d));
        t.apply(&[arm(1)], now);
        t.apply(&[arm(5)], now);
        let (c, _, _) = t.take_expired(now + Duration::from_secs(2));
        assert!(c.is_empty());
        t.apply(&[TtlChange::DisarmCheck(key("c"))], now);
        let (c, _, next) = t.take_expired(now + Duration::from_secs(9));
        assert!(c.is_empty() && next.is_none());
    }
}

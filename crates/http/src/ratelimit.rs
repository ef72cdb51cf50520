//! Brute-force limiting of authentication: a peer that fails to authenticate too often is
//! answered 429 for a while without its credentials being checked at all, so guessing a token
//! or a password over the network runs at [`AUTH_FAILURES_ALLOWED`] guesses per
//! [`AUTH_FAILURE_WINDOW`] at most.
//!
//! A failure is one *distinct* credential refused ([`FailureLimiter::failed_with`]): a daemon
//! retrying a token an operator has not provisioned yet counts once, however often it retries,
//! while a guesser, who must present a new credential each time, counts every guess. (A
//! credential is remembered as a keyed hash, never as itself, and at most `max_failures` of
//! them per peer.) A refusal with no credential at all ([`FailureLimiter::failed`]) always
//! counts.
//!
//! Failures are counted per peer address: an IPv4 address, or an IPv6 /64 (one host usually
//! holds a whole /64, so counting single IPv6 addresses would let it rotate through them). A
//! peer's window starts at its first failure; once it has failed [`FailureLimiter::max_failures`]
//! times within the window it is refused until the window ends, and then starts afresh.
//!
//! Memory is bounded: at most [`MAX_TRACKED_PEERS`] peers are remembered. When a new peer does
//! not fit, peers whose window has ended are forgotten first, then the one whose window started
//! longest ago (an attacker spreading over more addresses than that only loses the oldest
//! counts, each of which allowed at most `max_failures` guesses anyway).
//!
//! Behind a proxy every request has the proxy's address: the limit then applies to all its
//! clients together (no forwarded-for header is trusted, since any client can send one).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed authentications a peer may make within [`AUTH_FAILURE_WINDOW`] before it is refused.
pub const AUTH_FAILURES_ALLOWED: u32 = 10;

/// How long a peer's failures count, from its first one; a refused peer waits for its end.
pub const AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// Most peers whose failures are remembered at once.
pub const MAX_TRACKED_PEERS: usize = 10_000;

/// One peer's failures in its current window.
#[derive(Clone, Debug)]
struct Failures {
    since: Instant,
    count: u32,
    /// Keyed hashes of the credentials counted in this window.
    seen: Vec<u64>,
}

/// Per-peer counts of failed authentications (see the module documentation).
#[derive(Debug)]
pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    capacity: usize,
    peers: Mutex<HashMap<IpAddr, Failures>>,
    /// Random keys of the credential hashes (per process: nothing to precompute against).
    hasher: std::collections::hash_map::RandomState,
}

impl Default for FailureLimiter {
    /// [`AUTH_FAILURES_ALLOWED`] per [`AUTH_FAILURE_WINDOW`], [`MAX_TRACKED_PEERS`] peers.
    fn default() -> Self {
        FailureLimiter::new(AUTH_FAILURES_ALLOWED, AUTH_FAILURE_WINDOW)
    }
}

impl FailureLimiter {
    /// `max_failures` per `window` (0 failures: no limit).
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        FailureLimiter::with_capacity(max_failures, window, MAX_TRACKED_PEERS)
    }

    /// The same, remembering at most `capacity` peers (at least 1).
    pub fn with_capacity(max_failures: u32, window: Duration, capacity: usize) -> FailureLimiter {
        FailureLimiter {
            max_failures,
            window,
            capacity: capacity.max(1),
            peers: Mutex::default(),
            hasher: Default::default(),
        }
    }

    /// Failed authentications allowed per window (0: no limit).
    pub fn max_failures(&self) -> u32 {
        self.max_failures
    }

    /// Whether `ip` may try to authenticate now; `Err(wait)`: not before `wait` has passed.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    /// Counts a failed authentication of `ip` that presented no credential.
    pub fn failed(&self, ip: IpAddr) {
        self.failed_at(ip, None, Instant::now());
    }

    /// Counts `ip`'s refused `credential`, unless it was refused already in this window.
    pub fn failed_with(&self, ip: IpAddr, credential: &[u8]) {
        use std::hash::BuildHasher as _;
        let fingerprint = self.hasher.hash_one(credential);
        self.failed_at(ip, Some(fingerprint), Instant::now());
    }

    /// [`FailureLimiter::check`] at `now`.
    pub fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.max_failures == 0 {
            return Ok(());
        }
        let peers = self.lock();
        match peers.get(&peer_key(ip)) {
            Some(f) if f.count >= self.max_failures => {
                let end = f.since + self.window;
                if now < end { Err(end - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    /// A failure of `ip` at `now`, of the credential with this fingerprint (`None`: none).
    pub fn failed_at(&self, ip: IpAddr, fingerprint: Option<u64>, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let key = peer_key(ip);
        let window = self.window;
        let mut peers = self.lock();
        let fresh = Failures {
            since: now,
            count: 1,
            seen: fingerprint.into_iter().collect(),
        };
        if let Some(f) = peers.get_mut(&key) {
            if now.saturating_duration_since(f.since) >= window {
                *f = fresh;
            } else if let Some(fp) = fingerprint {
                if !f.seen.contains(&fp) {
                    f.count = f.count.saturating_add(1);
                    if f.seen.len() < self.max_failures as usize {
                        f.seen.push(fp);
                    }
                }
            } else {
                f.count = f.count.saturating_add(1);
            }
            return;
        }
        if peers.len() >= self.capacity {
            peers.retain(|_, f| now.saturating_duration_since(f.since) < window);
        }
        if peers.len() >= self.capacity
            && let Some(oldest) = peers.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| *k)
        {
            peers.remove(&oldest);
        }
        peers.insert(key, fresh);
    }

    /// Peers remembered now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // Counters only: a panic elsewhere cannot leave them in a state worth refusing over.
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What failures are counted by: the IPv4 address (also when mapped into IPv6), or the /64 of
/// an IPv6 address.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_credential_retried_counts_once_and_every_new_one_counts() {
        let l = FailureLimiter::new(3, s(10));
        for _ in 0..50 {
            l.failed_with(A, b"not-provisioned-yet");
        }
        assert_eq!(
            l.check(A),
            Ok(()),
            "one unknown token retried is one failure"
        );
        l.failed_with(A, b"guess-2");
        l.failed_with(A, b"guess-3");
        assert!(l.check(A).is_err(), "three distinct tokens reach the limit");
        assert_eq!(l.check(B), Ok(()), "other peers are not affected");
    }

    #[test]
    fn refuses_past_the_limit_until_the_window_ends() {
        let l = FailureLimiter::new(3, s(10));
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.check_at(A, t0 + s(i)), Ok(()), "failure {i} is allowed");
            l.failed_at(A, None, t0 + s(i));
        }
        // Three failures within the window: refused until 10 s after the first.
        assert_eq!(l.check_at(A, t0 + s(3)), Err(s(7)));
        assert_eq!(l.check_at(A, t0 + s(9)), Err(s(1)));
        // Another peer is not affected.
        assert_eq!(l.check_at(B, t0 + s(3)), Ok(()));
        // The window over, the peer starts afresh: one failure is not enough to refuse it.
        assert_eq!(l.check_at(A, t0 + s(10)), Ok(()));
        l.failed_at(A, None, t0 + s(10));
        assert_eq!(l.check_at(A, t0 + s(11)), Ok(()));
    }

    #[test]
    fn failures_spread_over_more_than_a_window_are_not_refused() {
        let l = FailureLimiter::new(3, s(10));
        let t0 = Instant::now();
        for i in 0..10 {
            let now = t0 + s(6 * i);
            assert_eq!(l.check_at(A, now), Ok(()), "failure {i}");
            l.failed_at(A, None, now);
            l.failed_at(A, None, now);
        }
    }

    #[test]
    fn zero_means_no_limit() {
        let l = FailureLimiter::new(0, s(10));
        let t0 = Instant::now();
        for _ in 0..100 {
            l.failed_at(A, None, t0);
        }
        assert_eq!(l.check_at(A, t0), Ok(()));
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_v4_as_v4() {
        let l = FailureLimiter::new(2, s(10));
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let other_in_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        l.failed_at(one, None, t0);
        l.failed_at(other_in_64, None, t0);
        assert!(l.check_at(one, t0).is_err());
        assert!(l.check_at(other_in_64, t0).is_err());
        assert_eq!(l.check_at(other_64, t0), Ok(()));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        l.failed_at(mapped, None, t0);
        l.failed_at(A, None, t0);
        assert!(l.check_at(A, t0).is_err());
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_go_first() {
        let l = FailureLimiter::with_capacity(1, s(10), 3);
        let t0 = Instant::now();
        let ip = |n: u8| IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, n));
        for n in 0..3 {
            l.failed_at(ip(n), None, t0 + s(u64::from(n)));
        }
        assert_eq!(l.tracked(), 3);
        // A fourth peer while all windows are open: the oldest (ip 0) is forgotten.
        l.failed_at(ip(3), None, t0 + s(3));
        assert_eq!(l.tracked(), 3);
        assert_eq!(l.check_at(ip(0), t0 + s(3)), Ok(()));
        for n in 1..4 {
            assert!(l.check_at(ip(n), t0 + s(3)).is_err(), "peer {n}");
        }
        // Later, every window but ip 3's has ended: they all go to make room.
        l.failed_at(ip(4), None, t0 + s(12));
        assert_eq!(l.tracked(), 2);
        assert!(l.check_at(ip(3), t0 + s(12)).is_err());
        assert!(l.check_at(ip(4), t0 + s(12)).is_err());
        // Many more peers than the capacity never grow the map past it.
        for n in 0..=255 {
            l.failed_at(ip(n), None, t0 + s(13));
        }
        assert_eq!(l.tracked(), 3);
    }
}

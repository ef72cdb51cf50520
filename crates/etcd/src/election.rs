//! Leader election and membership of a daemon's replicas through etcd: each replica holds a
//! lease, keeps a membership key `<prefix>members/<name>` on it, and campaigns for
//! `<prefix>leader` (created only if absent, on its lease). The holder of that key leads until
//! its lease ends: it stops, or it cannot renew within the TTL and etcd expires it, which
//! deletes the key; the other replicas watch those keys and campaign at once.
//!
//! A leader must stop acting before anyone else can start. A replica counts itself leader only
//! while its last successful renewal, measured from when it was *sent*, leaves it more than a
//! safety margin of the TTL: etcd's lease clock started no earlier than that send, so by the
//! time etcd could expire the lease, this replica has already stepped down. A replica that
//! loses its lease grants a new one and campaigns again. The leader key's create revision is
//! the term's fencing token: a leader guards its writes with "the leader key still has this
//! create revision" ([`Term::guard`]), which a deposed leader's writes fail.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    Compare, CompareResult, CompareTarget, EtcdClient, EtcdError, Op, RangeRequest, Txn,
    WatchRequest,
};

/// What a replica knows of the election.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElectionView {
    /// The leader's name (`""`: none right now).
    pub leader: String,
    /// This replica's term while it leads (and is sure of it).
    pub term: Option<Term>,
    /// Every live replica's name, sorted.
    pub members: Vec<String>,
}

impl ElectionView {
    pub fn is_leader(&self) -> bool {
        self.term.is_some()
    }
}

/// One replica's leadership: the leader key and its create revision (the fencing token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub lease: i64,
}

impl Term {
    /// The compare that holds only while this term lasts.
    pub fn guard(&self) -> Compare {
        Compare::new(
            self.key.clone(),
            CompareTarget::Create(self.create_revision),
            CompareResult::Equal,
        )
    }
}

/// Settings of [`campaign`].
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// Key prefix of this daemon's replicas (`/cairn/catalogd/`): `leader` and `members/` go
    /// under it.
    pub prefix: Vec<u8>,
    /// This replica's name: its advertised address.
    pub name: String,
    /// The lease's TTL: how long a dead leader keeps the role.
    pub ttl: Duration,
}

impl ElectionConfig {
    fn leader_key(&self) -> Vec<u8> {
        [self.prefix.as_slice(), b"leader"].concat()
    }

    fn members_prefix(&self) -> Vec<u8> {
        [self.prefix.as_slice(), b"members/"].concat()
    }

    /// The keys of the election: from `<prefix>leader` to the end of `<prefix>members/`. Not
    /// the whole prefix: the daemons keep their data under it too (`<prefix>data/`), and a
    /// replica that re-read the election on every write of the data would campaign, read the
    /// whole store and watch again once per write.
    fn range(&self) -> (Vec<u8>, Vec<u8>) {
        (self.leader_key(), crate::prefix_end(&self.members_prefix()))
    }
}

/// Runs the election until `stop`, publishing every change of the view. On stop a leader
/// revokes its lease, so the others take over at once instead of after the TTL.
pub async fn campaign(
    client: EtcdClient,
    config: ElectionConfig,
    view: watch::Sender<ElectionView>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    while !stop.is_cancelled() {
        match session(&client, &config, &view, &stop).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "election session ended; starting another");
                view.send_modify(|v| v.term = None);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = stop.cancelled() => {}
                }
                backoff = (backoff * 2).min(config.ttl);
            }
        }
    }
    view.send_modify(|v| v.term = None);
}

/// How far ahead of its lease's end a leader steps down.
fn margin(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(500)).min(ttl / 2)
}

/// One lease: membership, campaigning and watching until the lease is lost (an error) or stop.
async fn session(
    client: &EtcdClient,
    config: &ElectionConfig,
    view: &watch::Sender<ElectionView>,
    stop: &CancellationToken,
) -> Result<(), EtcdError> {
    let ttl_secs = i64::try_from(config.ttl.as_secs().max(1)).unwrap_or(i64::MAX);
    let granted_at = Instant::now();
    let (lease, granted) = tokio::select! {
        r = client.lease_grant(ttl_secs) => r?,
        // Stopping while etcd cannot be reached: nothing was granted that needs handing over.
        () = stop.cancelled() => return Ok(()),
    };
    let valid_until =
        watch::channel(granted_at + Duration::from_secs(u64::try_from(granted).unwrap_or(0))).0;
    // The step-down deadline is kept apart from the session's requests: a request that hangs
    // (an etcd member cut off, a campaign or read waiting out its timeout) must not keep this
    // replica leading past it.
    let result = tokio::select! {
        r = lead_or_follow(client, config, view, stop, lease, &valid_until) => r,
        never = step_down_on_time(view, valid_until.subscribe(), config.ttl) => match never {},
    };
    view.send_modify(|v| v.term = None);
    if stop.is_cancelled() {
        // Handing over at once: the others see the leader key go now, not after the TTL.
        // Bounded: with etcd out of reach the lease ends by itself within the TTL, and a
        // stopping replica must not wait on it.
        match tokio::time::timeout(config.ttl, client.lease_revoke(lease)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "revoking the election lease on stop"),
            Err(_) => tracing::debug!("revoking the election lease on stop timed out"),
        }
    }
    result
}

/// Takes the term away from `view` a [`margin`] before the lease could end (its last
/// renewal's send time plus the TTL, `valid_until`), whatever the session is waiting for; a
/// later renewal gives it back ([`publish`]). Never returns.
async fn step_down_on_time(
    view: &watch::Sender<ElectionView>,
    mut valid_until: watch::Receiver<Instant>,
    ttl: Duration,
) -> std::convert::Infallible {
    loop {
        let until = *valid_until.borrow_and_update();
        let at = until.checked_sub(margin(ttl)).unwrap_or_else(Instant::now);
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {
                if view.send_if_modified(|v| v.term.take().is_some()) {
                    tracing::warn!("the election lease could not be renewed in time; stepping down");
                }
                if valid_until.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
            changed = valid_until.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

async fn lead_or_follow(
    client: &EtcdClient,
    config: &ElectionConfig,
    view: &watch::Sender<ElectionView>,
    stop: &CancellationToken,
    lease: i64,
    valid_until: &watch::Sender<Instant>,
) -> Result<(), EtcdError> {
    let member_key = [config.members_prefix().as_slice(), config.name.as_bytes()].concat();
    client
        .request(Op::Put {
            key: member_key,
            value: config.name.clone().into_bytes(),
            lease,
            prev_kv: false,
        })
        .await?;
    let leader_key = config.leader_key();
    let renew_every = (config.ttl / 3).max(Duration::from_millis(200));
    let mut renew = tokio::time::interval(renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Campaign (a no-op while someone holds the key), then read the election as it is.
        let term = try_lead(client, &leader_key, &config.name, lease).await?;
        let (revision, snapshot) = read_view(client, config, term.clone()).await?;
        publish(view, snapshot, *valid_until.borrow(), config.ttl);
        let (key, range_end) = config.range();
        let mut watch = client
            .watch(WatchRequest {
                key,
                range_end,
                start_revision: revision + 1,
                ..Default::default()
            })
            .await?;
        loop {
            // Stepping down on time is step_down_on_time's, beside this loop.
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                _ = renew.tick() => {
                    let sent = Instant::now();
                    match tokio::time::timeout(renew_every, client.lease_keepalive(lease)).await {
                        Ok(Ok(ttl)) => {
                            let until = sent + Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
                            valid_until.send_replace(until);
                            let current = view.borrow().clone();
                            publish(view, ElectionView { term: term.clone(), ..current }, until, config.ttl);
                        }
                        Ok(Err(e @ EtcdError::LeaseExpired { .. })) => return Err(e),
                        Ok(Err(e)) if Instant::now() >= *valid_until.borrow() => return Err(e),
                        Ok(Err(e)) => tracing::debug!(error = %e, "renewing the election lease; retrying"),
                        Err(_) if Instant::now() >= *valid_until.borrow() => {
                            return Err(EtcdError::LeaseExpired { id: lease });
                        }
                        Err(_) => tracing::debug!("renewing the election lease timed out; retrying"),
                    }
                }
                next = watch.next() => {
                    match next {
                        // Something changed: read the view again (and campaign if the key is free).
                        Some(Ok(_)) => break,
                        Some(Err(e)) => return Err(e),
                        None => {
                            return Err(EtcdError::Unavailable {
                                attempts: vec!["the election watch ended".into()],
                            });
                        }
                    }
                }
            }
        }
    }
}

/// Publishes `v`, without the term when the lease is too close to its end to be sure of.
fn publish(
    view: &watch::Sender<ElectionView>,
    mut v: ElectionView,
    valid_until: Instant,
    ttl: Duration,
) {
    if Instant::now() + margin(ttl) >= valid_until {
        v.term = None;
    }
    view.send_if_modified(|cur| {
        let changed = *cur != v;
        *cur = v;
        changed
    });
}

/// Takes the leader key if it is free; this replica's term if it holds it (now or already).
async fn try_lead(
    client: &EtcdClient,
    leader_key: &[u8],
    name: &str,
    lease: i64,
) -> Result<Option<Term>, EtcdError> {
    let resp = client
        .txn(&Txn {
            compare: vec![Compare::new(
                leader_key.to_vec(),
                CompareTarget::Create(0),
                CompareResult::Equal,
            )],
            success: vec![Op::Put {
                key: leader_key.to_vec(),
                value: name.as_bytes().to_vec(),
                lease,
                prev_kv: false,
            }],
            failure: vec![Op::get(leader_key.to_vec())],
        })
        .await?;
    if resp.succeeded {
        tracing::info!(name, "elected leader");
        return Ok(Some(Term {
            key: leader_key.to_vec(),
            create_revision: resp.revision,
            lease,
        }));
    }
    let holder = resp.responses.into_iter().find_map(|r| match r {
        crate::OpResponse::Range(range) => range.kvs.into_iter().next(),
        _ => None,
    });
    Ok(holder.filter(|kv| kv.lease == lease).map(|kv| Term {
        key: leader_key.to_vec(),
        create_revision: kv.create_revision,
        lease,
    }))
}

/// The leader and members as etcd has them now, and the revision of that read.
async fn read_view(
    client: &EtcdClient,
    config: &ElectionConfig,
    term: Option<Term>,
) -> Result<(i64, ElectionView), EtcdError> {
    let (key, range_end) = config.range();
    let all = client
        .range(&RangeRequest {
            key,
            range_end,
            ..Default::default()
        })
        .await?;
    let leader_key = config.leader_key();
    let members_prefix = config.members_prefix();
    let mut v = ElectionView {
        term,
        ..Default::default()
    };
    for kv in all.kvs {
        if kv.key == leader_key {
            v.leader = String::from_utf8_lossy(&kv.value).into_owned();
        } else if kv.key.starts_with(&members_prefix) {
            v.members
                .push(String::from_utf8_lossy(&kv.value).into_owned());
        }
    }
    v.members.sort();
    Ok((all.revision, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leading() -> ElectionView {
        ElectionView {
            leader: "a:1".into(),
            term: Some(Term {
                key: b"/p/leader".to_vec(),
                create_revision: 7,
                lease: 1,
            }),
            members: vec!["a:1".into()],
        }
    }

    /// The deadline holds whatever else the session waits for: here nothing renews after the
    /// first renewal. (Real time: the election measures with `std::time::Instant`.)
    #[tokio::test]
    async fn the_term_ends_a_margin_before_the_lease_could() {
        let ttl = Duration::from_secs(4);
        let (view, mut seen) = watch::channel(leading());
        let valid_until = watch::channel(Instant::now() + ttl).0;
        let guard = {
            let view = view.clone();
            let valid = valid_until.subscribe();
            tokio::spawn(async move { step_down_on_time(&view, valid, ttl).await })
        };
        seen.borrow_and_update();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(view.borrow().is_leader(), "well within the lease");
        // A renewal moves the deadline on: past the first one, the term holds.
        let renewed = Instant::now();
        valid_until.send_replace(renewed + ttl);
        tokio::time::sleep(ttl - margin(ttl) - Duration::from_millis(500)).await;
        assert!(view.borrow().is_leader(), "renewed");
        tokio::time::timeout(ttl, seen.changed())
            .await
            .expect("the term ends")
            .expect("the view changes");
        assert!(
            renewed.elapsed() >= ttl - margin(ttl),
            "never early: {:?}",
            renewed.elapsed()
        );
        assert!(!view.borrow().is_leader());
        assert_eq!(view.borrow().leader, "a:1", "only the term is taken");
        guard.abort();
    }
}

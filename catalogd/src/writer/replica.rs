//! The writer of a replica: several catalogd processes share one store (etcd), each serving
//! from its own in-memory state.
//!
//! Every batch a replica commits carries one compare: the metadata key (which every batch that
//! changes records writes, see [`persist::META`]) must still be at the revision this replica's
//! state reflects. So batches that change records form one chain through the store, each made
//! on top of the state the previous one left: a CAS, a lock acquisition or a transaction means
//! what it means on one server, whichever replica it reaches. When another replica got in
//! first, the compare fails; this replica applies what the store's feed delivers until it has
//! that batch, then applies the group again on top of it. A group of commands that changes
//! nothing (a refused CAS, say) is still checked against the store the same way before it is
//! answered, so a lagging replica never answers from old state.
//!
//! Batches of other replicas arrive on the feed and are applied entry by entry
//! ([`persist::apply_changeset`]), then published and their watchers woken as the replica's own
//! are; the replica's own batches come back on the feed too and are skipped. A feed that ends
//! (the follower fell behind, or the backend compacted the history it needed) is replaced by a
//! fresh read of the whole store. While that read fails (etcd is out of reach) the replica is
//! *detached*: it keeps serving reads from the state it has, refuses writes at once with the
//! store's error, and tries again with a backoff, so callers never hang on a store that is
//! gone and a stop is never held up by it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cairn_store::{Changeset, Compare, Feed, Outcome, Revision};
use tokio::sync::{mpsc, oneshot};

use super::{
    Applied, Command, MAX_GROUP, Reply, Request, WriteError, WriterParts, apply_group, batch_of,
    fail_group, gather, publish, publish_with,
};
use crate::persist;
use crate::state::{Changes, LockDelays, State};

/// Times a group is applied again after other replicas' batches got in first, before its
/// callers are told to retry.
const MAX_ATTEMPTS: usize = 64;
/// Longest a replica waits for the feed to deliver a batch the store says was committed.
const CATCH_UP: Duration = Duration::from_secs(10);
/// First and longest wait between a detached replica's attempts to read the store again.
const REATTACH_FIRST: Duration = Duration::from_millis(100);
const REATTACH_MAX: Duration = Duration::from_secs(5);

/// Where a replica is in the shared store.
pub struct Replica {
    /// The runtime whose timers bound the writer thread's waits on the feed.
    runtime: tokio::runtime::Handle,
    feed: Feed,
    /// The revision of the metadata key in the current state: the compare of the next batch.
    meta_revision: Revision,
    /// Revisions this replica committed that the feed has not delivered back yet.
    own: VecDeque<Revision>,
    /// The metadata key's revision in the published state, for `?consistent` reads.
    published: tokio::sync::watch::Sender<Revision>,
    /// Set while the feed is gone and the store could not be read again.
    detached: Option<Detached>,
}

/// Why a replica is detached from the store, and when it tries again.
struct Detached {
    error: String,
    retry_at: tokio::time::Instant,
    /// The wait before `retry_at`; the next one doubles it.
    wait: Duration,
}

impl Replica {
    /// Follows `feed` from a state loaded with `meta_revision` on its metadata key; must be
    /// called on the runtime.
    pub fn new(feed: Feed, meta_revision: Revision) -> (Replica, Barrier) {
        let (published, rx) = tokio::sync::watch::channel(meta_revision);
        let replica = Replica {
            runtime: tokio::runtime::Handle::current(),
            feed,
            meta_revision,
            own: VecDeque::new(),
            published,
            detached: None,
        };
        (replica, Barrier { published: rx })
    }

    /// Tells `?consistent` readers what the published state now holds.
    fn announce(&self) {
        self.published.send_if_modified(|r| {
            let newer = self.meta_revision != *r;
            *r = self.meta_revision;
            newer
        });
    }
}

/// What a `?consistent` read waits on: Consul's consistent mode has the leader confirm it still
/// leads before answering; a replica instead makes sure its state holds every batch the store
/// has committed by the time the read arrived.
pub struct Barrier {
    published: tokio::sync::watch::Receiver<Revision>,
}

impl Barrier {
    /// The metadata key's revision in the published state.
    pub fn published(&self) -> Revision {
        *self.published.borrow()
    }

    /// Waits until the published state holds revision `rev`, for at most `limit`.
    pub async fn wait_for_revision(&self, rev: Revision, limit: Duration) -> Result<(), String> {
        let mut rx = self.published.clone();
        match tokio::time::timeout(limit, rx.wait_for(|r| *r >= rev)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err("catalogd is shutting down".into()),
            Err(_) => Err(format!(
                "this replica did not reach store revision {rev} within {limit:?}"
            )),
        }
    }

    /// Waits until the published state holds the store's newest batch (a linearizable read
    /// of the metadata key says which), for at most `limit`.
    pub async fn wait(
        &self,
        store: std::sync::Arc<dyn cairn_store::Store>,
        limit: Duration,
    ) -> Result<(), String> {
        let newest = tokio::task::spawn_blocking(move || store.get(persist::META))
            .await
            .map_err(|e| format!("reading the store failed: {e}"))?
            .map_err(|e| e.to_string())?
            .map_or(0, |e| e.mod_revision);
        self.wait_for_revision(newest, limit).await
    }
}

/// What woke the writer.
enum Input {
    Request(Box<Request>),
    Changeset(Changeset),
    FeedEnded,
    /// Time for a detached replica to try the store again.
    Reattach,
    Closed,
}

async fn next_input(rx: &mut mpsc::Receiver<Request>, replica: &mut Replica) -> Input {
    if let Some(d) = &replica.detached {
        // No feed to read: an ended one would wake this loop at once, again and again.
        return tokio::select! {
            () = tokio::time::sleep_until(d.retry_at) => Input::Reattach,
            req = rx.recv() => req.map_or(Input::Closed, |r| Input::Request(Box::new(r))),
        };
    }
    tokio::select! {
        // Other replicas' batches first: a group applied on top of them is less likely to be
        // refused by the store.
        biased;
        cs = replica.feed.recv() => cs.map_or(Input::FeedEnded, Input::Changeset),
        req = rx.recv() => req.map_or(Input::Closed, |r| Input::Request(Box::new(r))),
    }
}

pub(super) fn run(parts: &WriterParts, mut rx: mpsc::Receiver<Request>, mut replica: Replica) {
    let mut delays = LockDelays::default();
    let mut group: Vec<Request> = Vec::new();
    loop {
        // The writer is a thread of its own, outside the runtime's workers.
        let runtime = replica.runtime.clone();
        match runtime.block_on(next_input(&mut rx, &mut replica)) {
            Input::Closed => return,
            Input::FeedEnded | Input::Reattach => resync(parts, &mut delays, &mut replica),
            Input::Changeset(cs) => absorb(parts, &mut delays, &mut replica, vec![cs]),
            Input::Request(first) => {
                group.push(*first);
                gather(&mut rx, &mut group);
                debug_assert!(group.len() <= MAX_GROUP);
                commit_group(parts, &mut delays, &mut replica, &mut group);
            }
        }
    }
}

/// Applies whatever the feed holds already (resynchronising if it ended).
fn absorb_ready(parts: &WriterParts, delays: &mut LockDelays, replica: &mut Replica) {
    let mut ready = Vec::new();
    loop {
        match replica.feed.try_recv() {
            Ok(cs) => ready.push(cs),
            Err(mpsc::error::TryRecvError::Empty) => break,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                absorb(parts, delays, replica, ready);
                return resync(parts, delays, replica);
            }
        }
    }
    absorb(parts, delays, replica, ready);
}

/// Applies other replicas' batches to the state, publishes it once and wakes what they touched.
fn absorb(
    parts: &WriterParts,
    delays: &mut LockDelays,
    replica: &mut Replica,
    batches: Vec<Changeset>,
) {
    let mut state: Option<State> = None;
    let mut changes = Changes::default();
    for cs in batches {
        // Our own batches come back in commit order; anything older than the next of ours that
        // is still out was somebody else's.
        while replica.own.front().is_some_and(|r| *r < cs.revision) {
            replica.own.pop_front();
        }
        if replica.own.front() == Some(&cs.revision) {
            replica.own.pop_front();
            continue;
        }
        let next = state.get_or_insert_with(|| (**parts.current.load()).clone());
        if cs
            .entries
            .iter()
            .any(|(k, e)| k.as_slice() == persist::META && e.is_none())
        {
            // A snapshot restore: the whole state replaced in one batch.
            changes.replaced = true;
        }
        // Sessions another replica ended: their keys' lock-delays start here too, so a lock
        // stays delayed whichever replica (or next leader) takes the next acquisition.
        for (key, entry) in &cs.entries {
            if entry.is_none()
                && let Some(id) = key.strip_prefix(persist::SESSION_PREFIX)
            {
                let id = String::from_utf8_lossy(id);
                changes.lock_delays.extend(next.lock_delays_of(&id));
            }
        }
        if let Err(e) = persist::apply_changeset(next, &cs.entries, &mut changes) {
            tracing::error!(error = %e, revision = cs.revision,
                "a batch of another replica does not decode; reading the whole store again");
            return resync(parts, delays, replica);
        }
        if let Some((_, Some(meta))) = cs
            .entries
            .iter()
            .find(|(k, _)| k.as_slice() == persist::META)
        {
            replica.meta_revision = meta.mod_revision;
        }
    }
    let Some(state) = state else {
        return;
    };
    publish(
        parts,
        delays,
        Applied {
            state,
            changes,
            results: Vec::new(),
        },
        Vec::new(),
    );
    replica.announce();
}

/// Replaces the state with a fresh read of the whole store and follows it from there; when
/// that read fails, the replica is detached until the next attempt.
fn resync(parts: &WriterParts, delays: &mut LockDelays, replica: &mut Replica) {
    let error = match persist::load_at(parts.store.as_ref()) {
        Ok(loaded) => match parts.store.feed(loaded.revision) {
            Some(feed) => {
                replica.feed = feed;
                replica.meta_revision = loaded.meta_revision;
                replica.own.clear();
                replica.detached = None;
                let changes = Changes {
                    replaced: true,
                    ..Default::default()
                };
                tracing::info!(
                    revision = loaded.revision,
                    "following the shared store again"
                );
                return publish(
                    parts,
                    delays,
                    Applied {
                        state: loaded.state,
                        changes,
                        results: Vec::new(),
                    },
                    Vec::new(),
                );
            }
            None => "the shared store offers no feed".to_string(),
        },
        Err(e) => {
            parts.store_health.failed(&e.to_string());
            format!("reading the shared store failed: {e}")
        }
    };
    let wait = replica
        .detached
        .as_ref()
        .map_or(REATTACH_FIRST, |d| (d.wait * 2).min(REATTACH_MAX));
    if replica.detached.is_none() {
        tracing::warn!(%error, "lost the shared store; writes are refused until it is back");
    } else {
        tracing::debug!(%error, "the shared store is still out of reach");
    }
    // The runtime's clock (paused in tests), read from the writer's own thread.
    let _runtime = replica.runtime.enter();
    replica.detached = Some(Detached {
        error,
        retry_at: tokio::time::Instant::now() + wait,
        wait,
    });
}

/// Blocks until the feed delivers a batch that moves the metadata key past `stale` (the batch
/// that made our compare fail), applying everything on the way; false at the deadline.
fn catch_up(
    parts: &WriterParts,
    delays: &mut LockDelays,
    replica: &mut Replica,
    stale: Revision,
) -> bool {
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    while replica.meta_revision == stale {
        if replica.detached.is_some() {
            return false;
        }
        let runtime = replica.runtime.clone();
        // The timer is made inside block_on: it needs the runtime's context.
        let next = runtime
            .block_on(async { tokio::time::timeout_at(deadline, replica.feed.recv()).await });
        match next {
            Ok(Some(cs)) => absorb(parts, delays, replica, vec![cs]),
            Ok(None) => resync(parts, delays, replica),
            Err(_) => return false,
        }
    }
    true
}

fn commit_group(
    parts: &WriterParts,
    delays: &mut LockDelays,
    replica: &mut Replica,
    group: &mut Vec<Request>,
) {
    let now = Instant::now();
    let (commands, senders): (
        Vec<Command>,
        Vec<oneshot::Sender<Result<Reply, WriteError>>>,
    ) = group.drain(..).unzip();
    for _ in 0..MAX_ATTEMPTS {
        if replica.detached.is_some() {
            // One attempt now, not at the backoff's time: callers are waiting.
            resync(parts, delays, replica);
        }
        if let Some(d) = &replica.detached {
            let error = d.error.clone();
            return fail_group(parts, senders, &error);
        }
        absorb_ready(parts, delays, replica);
        let base: State = (**parts.current.load()).clone();
        let applied = apply_group(parts, delays, now, base, commands.clone());
        let writes_records = !applied.changes.is_empty();
        let mut batch = if writes_records {
            batch_of(&applied)
        } else {
            cairn_store::Batch::default()
        };
        persist::heartbeat_ops(&applied.changes.ttl, &mut batch);
        batch.compares.push(Compare {
            key: persist::META.to_vec(),
            revision: replica.meta_revision,
        });
        let writes = !batch.ops.is_empty();
        let ops = batch.ops.len();
        let started = Instant::now();
        let outcome = parts.store.commit(batch);
        parts
            .metrics
            .record_commit(senders.len(), ops, started.elapsed());
        match outcome {
            Ok(Outcome::Applied(rev)) => {
                parts.store_health.succeeded();
                if writes {
                    replica.own.push_back(rev);
                }
                if writes_records {
                    replica.meta_revision = rev;
                }
                // Announced before the callers are answered: a forwarded write's follower waits
                // for the revision the answer carries.
                return publish_with(parts, delays, applied, senders, || replica.announce());
            }
            Ok(Outcome::CompareFailed(_)) => {
                let stale = replica.meta_revision;
                if !catch_up(parts, delays, replica, stale) {
                    return fail_group(
                        parts,
                        senders,
                        "another replica's write did not reach this one in time",
                    );
                }
            }
            Err(e) => return fail_group(parts, senders, &e.to_string()),
        }
    }
    fail_group(
        parts,
        senders,
        "other replicas' writes got in first too many times; retry",
    );
}

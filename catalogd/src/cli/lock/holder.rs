//! The lock and semaphore protocols over the catalog API, step for step as Consul's
//! `api.Lock` / `api.Semaphore` run them (the decisions themselves are in [`super::protocol`]):
//! a session renewed in the background, acquisition with Consul's waits and retries, a monitor
//! that returns when the lock is gone, then release and best-effort cleanup.

use std::time::{Duration, Instant};

use cairn_client::{CatalogClient, ClientError, IndexStep, KvPutOptions, QueryOptions, index_step};
use cairn_wire::{SessionBehavior, SessionRequest};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::protocol::{
    self, Cleanup, LOCK_FLAG, LOCK_KEY, LOCK_RETRY, LOCK_WAIT, LayoutError, LockStep,
    MONITOR_RETRY_TIME, SEMAPHORE_FLAG, SESSION_TTL, SemaphoreStep,
};

/// Why acquiring, holding or releasing failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("failed to make contender entry {0}: the key is held by another session")]
    Contender(String),
}

/// Longest a renewal may take before it counts as failed: well inside the TTL, so a hung server
/// cannot make us miss the TTL waiting on one request.
const RENEW_TIMEOUT: Duration = Duration::from_secs(5);

/// A session kept alive by a background task, as Consul's `RenewPeriodic` does: renewed every
/// TTL/2; after a failed renewal, retried every second until the TTL has passed since the last
/// good one. The task reports why the session is gone, if it goes.
pub struct Session {
    pub id: String,
    client: CatalogClient,
    renewer: JoinHandle<()>,
    lost: watch::Receiver<Option<String>>,
}

impl Session {
    /// Creates a session on the server's node (default checks: `serfHealth`), TTL 15s.
    pub async fn create(
        client: &CatalogClient,
        name: &str,
        behavior: SessionBehavior,
    ) -> Result<Session, ClientError> {
        let req = SessionRequest {
            name: name.to_string(),
            ttl: cairn_wire::format_go_duration(SESSION_TTL),
            behavior: (behavior == SessionBehavior::Delete).then(|| "delete".to_string()),
            ..Default::default()
        };
        let id = client.session_create(&req).await?;
        let (tx, lost) = watch::channel(None);
        let renewer = tokio::spawn(renew(client.with_timeout(RENEW_TIMEOUT), id.clone(), tx));
        Ok(Session {
            id,
            client: client.clone(),
            renewer,
            lost,
        })
    }

    /// Returns (only) once the session is gone, with the reason.
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The renewer only ends after reporting (or when aborted by `destroy`).
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops renewing and destroys the session (its locks are released, its contender key
    /// deleted). A session already gone is not an error.
    pub async fn destroy(self) -> Result<(), ClientError> {
        self.renewer.abort();
        match self.client.session_destroy(&self.id).await {
            Err(e) if e.status() == Some(404) => Ok(()),
            other => other,
        }
    }
}

async fn renew(client: CatalogClient, id: String, lost: watch::Sender<Option<String>>) {
    let mut ttl = SESSION_TTL;
    let mut pause = ttl / 2;
    let mut last_renewal = Instant::now();
    let mut last_error = String::new();
    loop {
        if last_renewal.elapsed() > ttl {
            // No receiver left means the lock was already given up: nobody to tell.
            let _ = lost.send(Some(format!(
                "session {id} could not be renewed within its TTL of {}: {last_error}",
                cairn_wire::format_go_duration(ttl)
            )));
            return;
        }
        tokio::time::sleep(pause).await;
        match client.session_renew(&id).await {
            Ok(Some(entry)) => {
                // The server may have changed the TTL.
                if let Ok(t) = cairn_wire::parse_go_duration(&entry.ttl) {
                    ttl = t;
                }
                pause = ttl / 2;
                last_renewal = Instant::now();
            }
            Ok(None) => {
                // No receiver left means the lock was already given up: nobody to tell.
                let _ = lost.send(Some(format!("session {id} was invalidated or destroyed")));
                return;
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "session renewal failed; retrying");
                last_error = e.to_string();
                pause = Duration::from_secs(1);
            }
        }
    }
}

/// How an acquisition ended without an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Acquired {
    Held,
    /// The `--timeout`/`--try` window ran out; the sessions that held the lock (or the slots).
    GaveUp {
        holders: Vec<String>,
    },
}

/// One lock (`limit` 1) or semaphore (`limit` > 1) at a KV prefix.
pub struct Holder {
    client: CatalogClient,
    /// The prefix as given (less a leading `/`): a semaphore lists it as Consul does.
    prefix: String,
    pub lock_key: String,
    limit: u32,
    /// `Some(window)`: give up once this much time has passed (Consul's `LockTryOnce` with
    /// `LockWaitTime`); `None`: wait as long as it takes.
    try_window: Option<Duration>,
    monitor_retries: u32,
}

/// The next index to block on after an answer at `new`.
fn next_index(last: u64, new: u64) -> u64 {
    match index_step(last, new) {
        IndexStep::Advanced(i) => i,
        IndexStep::Unchanged => last,
        IndexStep::Reset => 0,
    }
}

/// The pacing of one acquisition: the blocking index, and Consul's try-once window
/// (`LockTryOnce` + `LockWaitTime`): the first read never blocks, later ones block at most for
/// what is left of the window, and once it has passed the acquisition gives up.
struct Pace {
    window: Option<Duration>,
    start: Instant,
    attempts: u32,
    index: u64,
    /// Who held the lock (or the slots) at the last read, for the give-up message.
    holders: Vec<String>,
}

impl Pace {
    fn new(window: Option<Duration>) -> Pace {
        Pace {
            window,
            start: Instant::now(),
            attempts: 0,
            index: 0,
            holders: Vec::new(),
        }
    }

    /// The options of the next read, or `None` when the window has run out.
    fn next_read(&mut self) -> Option<QueryOptions> {
        let wait = match self.window {
            None => LOCK_WAIT,
            Some(window) if self.attempts == 0 => window,
            Some(window) => window.checked_sub(self.start.elapsed())?,
        };
        self.attempts += 1;
        Some(QueryOptions {
            index: self.index,
            wait: Some(wait),
            ..Default::default()
        })
    }

    /// The lock is taken: block on `index` (0 = read again without blocking) next time.
    fn blocked(&mut self, holders: Vec<String>, index: u64) {
        self.holders = holders;
        self.index = if index == 0 {
            0
        } else {
            next_index(self.index, index)
        };
    }

    /// Read again at once, without counting an attempt.
    fn retry_now(&mut self) {
        self.attempts = self.attempts.saturating_sub(1);
        self.index = 0;
    }

    /// `pause`, cut to what is left of the window.
    fn pause(&self, pause: Duration) -> Duration {
        match self.window {
            Some(w) => pause.min(w.saturating_sub(self.start.elapsed())),
            None => pause,
        }
    }

    fn gave_up(self) -> Acquired {
        Acquired::GaveUp {
            holders: self.holders,
        }
    }
}

impl Holder {
    pub fn new(
        client: CatalogClient,
        prefix: &str,
        limit: u32,
        try_window: Option<Duration>,
        monitor_retries: u32,
    ) -> Holder {
        Holder {
            client,
            prefix: prefix.to_string(),
            lock_key: protocol::join(prefix, LOCK_KEY),
            limit,
            try_window,
            monitor_retries,
        }
    }

    pub fn is_semaphore(&self) -> bool {
        self.limit > 1
    }

    /// The session behaviour Consul uses: a semaphore's contender key goes with its session.
    pub fn session_behavior(&self) -> SessionBehavior {
        if self.is_semaphore() {
            SessionBehavior::Delete
        } else {
            SessionBehavior::Release
        }
    }

    /// Acquires the lock or a slot for `session`.
    pub async fn acquire(&self, session: &str) -> Result<Acquired, LockError> {
        if self.is_semaphore() {
            self.acquire_slot(session).await
        } else {
            self.acquire_lock(session).await
        }
    }

    async fn acquire_lock(&self, session: &str) -> Result<Acquired, LockError> {
        let mut pace = Pace::new(self.try_window);
        loop {
            let Some(opts) = pace.next_read() else {
                return Ok(pace.gave_up());
            };
            let (pair, meta) = self.client.kv_get(&self.lock_key, &opts).await?;
            match protocol::lock_step(pair.as_ref(), session)? {
                LockStep::Held => return Ok(Acquired::Held),
                LockStep::Wait { holder } => {
                    pace.blocked(vec![holder], meta.index);
                    continue;
                }
                LockStep::Acquire => {}
            }
            let put = KvPutOptions {
                flags: Some(LOCK_FLAG),
                acquire: Some(session.to_string()),
                ..Default::default()
            };
            if self.client.kv_put(&self.lock_key, &[], &put).await? {
                return Ok(Acquired::Held);
            }
            // Refused: either someone took it first (wait on them), or the key is free but a
            // lock-delay from an invalidated holder is in force (wait it out, without spinning).
            let (pair, meta) = self
                .client
                .kv_get(&self.lock_key, &QueryOptions::default())
                .await?;
            match pair.filter(|p| !p.session.is_empty()) {
                Some(p) => pace.blocked(vec![p.session], meta.index),
                None => {
                    pace.blocked(Vec::new(), 0);
                    tokio::time::sleep(pace.pause(LOCK_RETRY)).await;
                }
            }
        }
    }

    async fn acquire_slot(&self, session: &str) -> Result<Acquired, LockError> {
        let contender = protocol::join(&self.prefix, session);
        let put = KvPutOptions {
            flags: Some(SEMAPHORE_FLAG),
            acquire: Some(session.to_string()),
            ..Default::default()
        };
        if !self.client.kv_put(&contender, &[], &put).await? {
            return Err(LockError::Contender(contender));
        }
        let mut pace = Pace::new(self.try_window);
        loop {
            let Some(opts) = pace.next_read() else {
                return Ok(pace.gave_up());
            };
            let (pairs, meta) = self.client.kv_list(&self.prefix, &opts).await?;
            match protocol::semaphore_step(&pairs, &self.lock_key, session, self.limit.into())? {
                SemaphoreStep::Wait { holders } => pace.blocked(holders, meta.index),
                SemaphoreStep::Take { value, cas } => {
                    let put = KvPutOptions {
                        flags: Some(SEMAPHORE_FLAG),
                        cas: Some(cas),
                        ..Default::default()
                    };
                    if self.client.kv_put(&self.lock_key, &value, &put).await? {
                        return Ok(Acquired::Held);
                    }
                    // Another contender wrote the record first: read it again at once. This
                    // re-read is not a new attempt, so a `--try` is not lost to a race while a
                    // slot may still be free.
                    pace.retry_now();
                }
            }
        }
    }

    /// Returns once `session` no longer holds the lock (or its slot), with the reason. Errors the
    /// server may recover from are retried `monitor_retries` times, a second apart (Consul's
    /// `MonitorRetries`), before the lock counts as lost.
    pub async fn monitor(&self, session: &str) -> String {
        let mut index = 0;
        loop {
            let mut retries = self.monitor_retries;
            let held = loop {
                let opts = QueryOptions {
                    index,
                    ..Default::default()
                };
                match self.read_holds(session, &opts).await {
                    Ok(r) => break r,
                    Err(LockError::Client(e)) if retries > 0 && e.is_transient() => {
                        tracing::warn!(error = %e, "reading the lock failed; retrying");
                        retries -= 1;
                        index = 0;
                        tokio::time::sleep(MONITOR_RETRY_TIME).await;
                    }
                    Err(e) => return format!("cannot read the lock {}: {e}", self.lock_key),
                }
            };
            match held {
                (true, new_index) => index = next_index(index, new_index),
                (false, _) => return self.why_lost(session).await,
            }
        }
    }

    async fn read_holds(
        &self,
        session: &str,
        opts: &QueryOptions,
    ) -> Result<(bool, u64), LockError> {
        if self.is_semaphore() {
            let (pairs, meta) = self.client.kv_list(&self.prefix, opts).await?;
            Ok((
                protocol::semaphore_holds(&pairs, &self.lock_key, session)?,
                meta.index,
            ))
        } else {
            let (pair, meta) = self.client.kv_get(&self.lock_key, opts).await?;
            Ok((pair.is_some_and(|p| p.session == session), meta.index))
        }
    }

    /// Names why the lock is gone: the session ended, or the key changed under a live session.
    async fn why_lost(&self, session: &str) -> String {
        match self
            .client
            .session_info(session, &QueryOptions::default())
            .await
        {
            Ok((None, _)) => format!("session {session} was invalidated or destroyed"),
            _ if self.is_semaphore() => format!(
                "session {session} no longer holds a slot in {} (its contender key or its place in the holders was removed)",
                self.lock_key
            ),
            _ => format!(
                "session {session} no longer holds {} (the key was released, deleted or taken over)",
                self.lock_key
            ),
        }
    }

    /// Gives the lock (or the slot) back.
    pub async fn release(&self, session: &str) -> Result<(), LockError> {
        if !self.is_semaphore() {
            let put = KvPutOptions {
                flags: Some(LOCK_FLAG),
                release: Some(session.to_string()),
                ..Default::default()
            };
            self.client.kv_put(&self.lock_key, &[], &put).await?;
            return Ok(());
        }
        loop {
            let (pair, _) = self
                .client
                .kv_get(&self.lock_key, &QueryOptions::default())
                .await?;
            let Some((value, cas)) = protocol::semaphore_release(pair.as_ref(), session)? else {
                break;
            };
            let put = KvPutOptions {
                flags: Some(SEMAPHORE_FLAG),
                cas: Some(cas),
                ..Default::default()
            };
            if self.client.kv_put(&self.lock_key, &value, &put).await? {
                break;
            }
        }
        let contender = protocol::join(&self.prefix, session);
        self.client.kv_delete(&contender, false, None).await?;
        Ok(())
    }

    /// Deletes the lock key when nobody holds it any more (Consul's `Destroy`); `false` when it
    /// is still in use, which is not an error.
    pub async fn cleanup(&self) -> Result<bool, LockError> {
        let step = if self.is_semaphore() {
            let (pairs, _) = self
                .client
                .kv_list(&self.prefix, &QueryOptions::default())
                .await?;
            protocol::semaphore_cleanup(&pairs, &self.lock_key)?
        } else {
            let (pair, _) = self
                .client
                .kv_get(&self.lock_key, &QueryOptions::default())
                .await?;
            protocol::lock_cleanup(pair.as_ref())?
        };
        match step {
            Cleanup::Keep => Ok(false),
            Cleanup::Delete { cas } => Ok(self
                .client
                .kv_delete(&self.lock_key, false, Some(cas))
                .await?),
        }
    }
}

//! [`Watch`]: a blocking-query loop over any read endpoint, the piece every long-running cairn
//! consumer (dnsbridge, tmpl, lbconf, taskrun) is built on. It owns the rules Consul clients must
//! follow and often get wrong:
//!
//! - the first read is non-blocking (`index=0`) and always yields;
//! - later reads send `index=<last>&wait=<wait>`; an answer with the same index is a timeout, not
//!   a change, and is not yielded;
//! - a higher index yields; an index that goes backwards (or is 0) resets the tracked index to 0
//!   and yields the fresh data, so the next read is non-blocking again (Consul's documented rule);
//!   an index of 0 is a server bug that would otherwise busy-loop, so repeated zeros back off;
//! - failures back off exponentially with jitter and are logged once per failure streak;
//! - two reads are never closer than `min_interval`;
//! - with several replicas ([`Endpoints`](crate::Endpoints)), a read whose replica fails is sent
//!   to the next one with the same index (replicas agree on `X-Consul-Index` for the same
//!   state, so nothing is lost or repeated). A lower index from a replica other than the one
//!   the held index came from means that replica is behind, not that the data went backwards:
//!   the watch keeps its index and asks the same blocking query again after a backoff delay
//!   until the replica catches up, instead of resetting to 0 and refetching. A lower index from
//!   the replica that gave the held index is Consul's reset, as with one address.
//!
//! The decision on each answer is the pure [`index_step`] after [`replica_behind`]; the delays
//! are [`Backoff`].

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cairn_wire::{CatalogService, KvPair, Node, ServiceEntry, WholeCatalog};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::client::CatalogClient;
use crate::error::ClientError;
use crate::options::{QueryMeta, QueryOptions};

/// Timing of a [`Watch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// How long each blocking read may be held by the server (default 5 min; the server caps it
    /// at 10 min). Zero leaves it to the server's default.
    pub wait: Duration,
    /// Least time between the starts of two successive reads (default 50 ms). This bounds the
    /// load one watch can cause when the server answers immediately every time.
    pub min_interval: Duration,
    /// First retry delay after a failure (default 250 ms).
    pub backoff_min: Duration,
    /// Largest retry delay (default 30 s).
    pub backoff_max: Duration,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            wait: Duration::from_secs(300),
            min_interval: Duration::from_millis(50),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl WatchConfig {
    fn backoff(&self) -> Backoff {
        Backoff {
            min: self.backoff_min,
            max: self.backoff_max,
        }
    }
}

/// What one answer's index means for a watch that last saw `last`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexStep {
    /// Same index: the blocking read timed out without a change. Do not yield; read again.
    Unchanged,
    /// The index moved forward: yield, and block on the new index next.
    Advanced(u64),
    /// The index went backwards or is 0: yield, and make the next read a non-blocking one
    /// (index 0), as Consul's documentation requires.
    Reset,
}

/// Decides what an answer with index `new` means after `last` (0 = nothing seen yet).
pub fn index_step(last: u64, new: u64) -> IndexStep {
    if new == 0 || new < last {
        IndexStep::Reset
    } else if new == last {
        IndexStep::Unchanged
    } else {
        IndexStep::Advanced(new)
    }
}

/// Whether an answer at index `new` from endpoint `from` comes from a replica that is behind:
/// the held index `held` came from another endpoint (`held_from`), so the two differ only in how
/// far each has got, and the watch must wait rather than reset. An index of 0 is never "behind"
/// (it is a server bug, handled by [`index_step`]).
pub fn replica_behind(held: u64, held_from: Option<usize>, new: u64, from: usize) -> bool {
    new > 0 && new < held && held_from.is_some_and(|e| e != from)
}

/// A snapshot of a watch's health, published on [`Watch::status`] so others can observe a
/// watch while a task is blocked in [`Watch::next`].
#[derive(Clone, Debug, Default)]
pub struct WatchStatus {
    /// The index the next read blocks on (0 = the next read is non-blocking).
    pub index: u64,
    /// Consecutive failed reads (0 while healthy).
    pub failures: u32,
    /// The error of the current failure streak; `None` once a read succeeds.
    pub last_error: Option<ClientError>,
    /// How many times the watch has yielded data.
    pub updates: u64,
    /// When the server last answered successfully.
    pub last_success: Option<Instant>,
}

type FetchFuture<T> = Pin<Box<dyn Future<Output = Result<(T, QueryMeta), ClientError>> + Send>>;
type FetchFn<T> = Box<dyn FnMut(CatalogClient, QueryOptions) -> FetchFuture<T> + Send>;

/// A blocking-query watch over one read. Create it with [`Watch::new`] (any fetch function) or a
/// convenience constructor ([`Watch::kv`], [`Watch::health_service`], [`Watch::whole_catalog`],
/// ...), then call [`Watch::next`] in a loop, or hand it to [`Watch::spawn`].
///
/// Dropping a pending `next()` (e.g. in `tokio::select!`) is safe: only the in-flight read is
/// lost, and the next call starts it again from the same index.
pub struct Watch<T> {
    name: String,
    client: CatalogClient,
    opts: QueryOptions,
    config: WatchConfig,
    fetch: FetchFn<T>,
    /// Index the next read blocks on.
    index: u64,
    last_meta: Option<QueryMeta>,
    /// Start of the last read (for `min_interval`).
    last_start: Option<Instant>,
    /// End of the last read (backoff counts from the failure).
    last_end: Option<Instant>,
    failures: u32,
    /// Consecutive answers with index 0.
    zero_streak: u32,
    /// The endpoint whose answer gave `index` (see [`replica_behind`]).
    index_from: Option<usize>,
    /// Consecutive answers from a replica that is behind.
    behind_streak: u32,
    last_error: Option<ClientError>,
    status: watch::Sender<WatchStatus>,
}

impl<T> std::fmt::Debug for Watch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("name", &self.name)
            .field("index", &self.index)
            .field("failures", &self.failures)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Watch<T> {
    /// A watch that calls `fetch(client, opts)` for every read, with `opts.index`/`opts.wait`
    /// set by the watch (whatever `opts` carried there is ignored).
    pub fn new<F, Fut>(
        client: CatalogClient,
        opts: QueryOptions,
        config: WatchConfig,
        mut fetch: F,
    ) -> Self
    where
        F: FnMut(CatalogClient, QueryOptions) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(T, QueryMeta), ClientError>> + Send + 'static,
    {
        let fetch: FetchFn<T> = Box::new(move |c, o| Box::pin(fetch(c, o)));
        let (status, _) = watch::channel(WatchStatus::default());
        Watch {
            name: "catalog watch".to_string(),
            client,
            opts,
            config,
            fetch,
            index: 0,
            last_meta: None,
            last_start: None,
            last_end: None,
            failures: 0,
            zero_streak: 0,
            index_from: None,
            behind_streak: 0,
            last_error: None,
            status,
        }
    }

    /// Names the watch in log lines (`kv app/config`, `health service web`).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replaces the timing.
    pub fn with_config(mut self, config: WatchConfig) -> Self {
        self.config = config;
        self
    }

    /// Waits for the next change and returns the data. Transient failures (connection errors,
    /// timeouts, 5xx) are retried with backoff for as long as it takes; they are visible
    /// meanwhile through [`Watch::status`]. An error is returned only for answers that retrying
    /// cannot fix (a 4xx, a missing `X-Consul-Index`, an undecodable body); calling `next()` again
    /// after one retries after a backoff delay.
    pub async fn next(&mut self) -> Result<T, ClientError> {
        self.run(None).await
    }

    /// Like [`Watch::next`], but gives up with the error after `max_failures` consecutive failed
    /// reads (at least 1) — for one-shot callers such as `tmpl --once`.
    pub async fn next_or_error(&mut self, max_failures: u32) -> Result<T, ClientError> {
        self.run(Some(max_failures.max(1))).await
    }

    /// The index the next read blocks on (0 before the first answer and after a reset).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Headers of the last successful answer.
    pub fn last_meta(&self) -> Option<QueryMeta> {
        self.last_meta
    }

    /// Consecutive failed reads so far (0 while healthy).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The error of the current failure streak, `None` while healthy.
    pub fn last_error(&self) -> Option<&ClientError> {
        self.last_error.as_ref()
    }

    /// The watch's name, as it appears in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timing in use.
    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// A receiver of [`WatchStatus`] snapshots, updated after every read.
    pub fn status(&self) -> watch::Receiver<WatchStatus> {
        self.status.subscribe()
    }

    async fn run(&mut self, max_failures: Option<u32>) -> Result<T, ClientError> {
        loop {
            self.pace().await;
            let opts = self.read_options();
            self.last_start = Some(Instant::now());
            let result = (self.fetch)(self.client.clone(), opts).await;
            self.last_end = Some(Instant::now());
            match result {
                Ok((_, meta))
                    if replica_behind(self.index, self.index_from, meta.index, meta.endpoint) =>
                {
                    self.on_behind(meta);
                }
                Ok((value, meta)) => {
                    self.on_success(meta);
                    self.index_from = Some(meta.endpoint);
                    match index_step(self.index, meta.index) {
                        IndexStep::Unchanged => {
                            tracing::trace!(watch = %self.name, index = meta.index, "no change");
                            self.publish(false);
                        }
                        IndexStep::Advanced(index) => {
                            self.index = index;
                            self.publish(true);
                            return Ok(value);
                        }
                        IndexStep::Reset => {
                            tracing::debug!(
                                watch = %self.name,
                                last = self.index,
                                new = meta.index,
                                "index went backwards or is 0; resetting to 0"
                            );
                            self.index = 0;
                            self.publish(true);
                            return Ok(value);
                        }
                    }
                }
                Err(err) => {
                    let give_up = !err.is_transient()
                        || max_failures.is_some_and(|max| self.failures.saturating_add(1) >= max);
                    self.on_failure(&err, give_up);
                    if give_up {
                        return Err(err);
                    }
                }
            }
        }
    }

    /// The options of the next read: the caller's filters plus the watch's index and wait.
    fn read_options(&self) -> QueryOptions {
        let mut opts = self.opts.clone();
        opts.index = self.index;
        opts.wait = (self.index > 0 && !self.config.wait.is_zero()).then_some(self.config.wait);
        opts
    }

    /// Sleeps until the next read may start: `min_interval` after the last start, and, in a
    /// failure (or zero-index, or replica-behind) streak, a backoff delay after the last answer.
    async fn pace(&mut self) {
        let mut not_before = self.last_start.map(|t| t + self.config.min_interval);
        let streak = if self.failures > 0 {
            self.failures
        } else if self.zero_streak > 0 {
            self.zero_streak
        } else {
            self.behind_streak
        };
        if streak > 0 {
            let delay = self.config.backoff().delay(streak);
            let after_end = self.last_end.map(|t| t + delay);
            not_before = not_before.max(after_end);
        }
        if let Some(at) = not_before {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Records an answer from a replica that is behind the held index: not yielded, the index
    /// kept, the same read asked again after a backoff delay. Logged at info once per streak.
    fn on_behind(&mut self, meta: QueryMeta) {
        self.failures = 0;
        self.last_error = None;
        self.behind_streak = self.behind_streak.saturating_add(1);
        if self.behind_streak == 1 {
            let replica = self.client.endpoints().get(meta.endpoint).map_or_else(
                || format!("endpoint {}", meta.endpoint),
                ToString::to_string,
            );
            tracing::info!(
                watch = %self.name,
                %replica,
                held = self.index,
                answered = meta.index,
                "the replica failed over to is behind; waiting for it to catch up"
            );
        } else {
            tracing::debug!(
                watch = %self.name,
                held = self.index,
                answered = meta.index,
                "replica still behind"
            );
        }
        self.publish(false);
    }

    fn on_success(&mut self, meta: QueryMeta) {
        if self.behind_streak > 0 {
            tracing::info!(watch = %self.name, index = meta.index, "the replica caught up");
            self.behind_streak = 0;
        }
        if self.failures > 0 {
            tracing::info!(watch = %self.name, failures = self.failures, "catalog watch recovered");
        }
        self.failures = 0;
        self.last_error = None;
        self.last_meta = Some(meta);
        if meta.index == 0 {
            self.zero_streak += 1;
            if self.zero_streak == 1 {
                tracing::warn!(
                    watch = %self.name,
                    "server answered X-Consul-Index 0 (a server bug); resetting and slowing down"
                );
            }
        } else {
            self.zero_streak = 0;
        }
    }

    /// Records a failed read. Logged at `warn` once per failure streak (the first failure), then
    /// at `debug`: a server down for an hour must not flood the log.
    fn on_failure(&mut self, err: &ClientError, give_up: bool) {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(err.clone());
        if self.failures == 1 {
            if give_up {
                tracing::warn!(watch = %self.name, error = %err, "catalog watch failed");
            } else {
                tracing::warn!(
                    watch = %self.name,
                    error = %err,
                    "catalog watch failed; retrying with backoff"
                );
            }
        } else {
            tracing::debug!(
                watch = %self.name,
                error = %err,
                failures = self.failures,
                "catalog watch still failing"
            );
        }
        self.publish(false);
    }

    fn publish(&self, yielded: bool) {
        let now = Instant::now();
        self.status.send_modify(|s| {
            s.index = self.index;
            s.failures = self.failures;
            s.last_error = self.last_error.clone();
            if self.failures == 0 {
                s.last_success = Some(now);
            }
            if yielded {
                s.updates += 1;
            }
        });
    }
}

impl<T: PartialEq + Send + Sync + 'static> Watch<T> {
    /// Runs the watch in a background task and publishes each new value on the returned
    /// receiver (`None` until the first read succeeds). Values equal to the current one are not
    /// re-announced, so receivers wake only on real changes. The task keeps following through
    /// failures (see [`Watch::status`], subscribed before spawning, to observe them) and ends
    /// when every receiver is dropped. Must be called inside a Tokio runtime.
    pub fn spawn(mut self) -> watch::Receiver<Option<T>> {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    next = self.next() => {
                        // Errors are logged and published on the status channel by the watch;
                        // the next call backs off before retrying.
                        if let Ok(value) = next {
                            tx.send_if_modified(|current| {
                                if current.as_ref() == Some(&value) {
                                    false
                                } else {
                                    *current = Some(value);
                                    true
                                }
                            });
                        }
                    }
                }
            }
        });
        rx
    }
}

impl Watch<Option<KvPair>> {
    /// Watches one KV key; `None` while it does not exist.
    pub fn kv(client: CatalogClient, key: impl Into<String>) -> Self {
        let key = key.into();
        let name = format!("kv {key}");
        Watch::new(
            client,
            QueryOptions::default(),
            WatchConfig::default(),
            move |c, o| {
                let key = key.clone();
                async move { c.kv_get(&key, &o).await }
            },
        )
        .named(name)
    }
}

impl Watch<Vec<KvPair>> {
    /// Watches every KV entry under a prefix (`?recurse`).
    pub fn kv_tree(client: CatalogClient, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        let name = format!("kv tree {prefix}");
        Watch::new(
            client,
            QueryOptions::default(),
            WatchConfig::default(),
            move |c, o| {
                let prefix = prefix.clone();
                async move { c.kv_list(&prefix, &o).await }
            },
        )
        .named(name)
    }
}

impl Watch<Vec<String>> {
    /// Watches the KV key names under a prefix (`?keys`, optionally folded at `separator`).
    pub fn kv_keys(
        client: CatalogClient,
        prefix: impl Into<String>,
        separator: Option<String>,
    ) -> Self {
        let prefix = prefix.into();
        let name = format!("kv keys {prefix}");
        Watch::new(
            client,
            QueryOptions::default(),
            WatchConfig::default(),
            move |c, o| {
                let prefix = prefix.clone();
                let separator = separator.clone();
                async move { c.kv_keys(&prefix, separator.as_deref(), &o).await }
            },
        )
        .named(name)
    }
}

impl Watch<Vec<ServiceEntry>> {
    /// Watches `/v1/health/service/:name` (use `opts` for `passing`, `tag`, `filter`).
    pub fn health_service(
        client: CatalogClient,
        name: impl Into<String>,
        opts: QueryOptions,
    ) -> Self {
        let service = name.into();
        let name = format!("health service {service}");
        Watch::new(client, opts, WatchConfig::default(), move |c, o| {
            let service = service.clone();
            async move { c.health_service(&service, &o).await }
        })
        .named(name)
    }
}

impl Watch<Vec<CatalogService>> {
    /// Watches `/v1/catalog/service/:name`.
    pub fn catalog_service(
        client: CatalogClient,
        name: impl Into<String>,
        opts: QueryOptions,
    ) -> Self {
        let service = name.into();
        let name = format!("catalog service {service}");
        Watch::new(client, opts, WatchConfig::default(), move |c, o| {
            let service = service.clone();
            async move { c.catalog_service(&service, &o).await }
        })
        .named(name)
    }
}

impl Watch<BTreeMap<String, Vec<String>>> {
    /// Watches `/v1/catalog/services` (names and tags).
    pub fn catalog_services(client: CatalogClient, opts: QueryOptions) -> Self {
        Watch::new(client, opts, WatchConfig::default(), |c, o| async move {
            c.catalog_services(&o).await
        })
        .named("catalog services")
    }
}

impl Watch<Vec<Node>> {
    /// Watches `/v1/catalog/nodes`.
    pub fn catalog_nodes(client: CatalogClient, opts: QueryOptions) -> Self {
        Watch::new(client, opts, WatchConfig::default(), |c, o| async move {
            c.catalog_nodes(&o).await
        })
        .named("catalog nodes")
    }
}

impl Watch<WholeCatalog> {
    /// Watches the whole catalog through cairn's `/v1/cairn/catalog` (one watch instead of one
    /// per service).
    pub fn whole_catalog(client: CatalogClient) -> Self {
        Watch::new(
            client,
            QueryOptions::default(),
            WatchConfig::default(),
            |c, o| async move { c.whole_catalog(&o).await },
        )
        .named("whole catalog")
    }

    /// What changes in the whole catalog, as deltas (`/v1/cairn/catalog?delta`): each answer
    /// applies to the catalog the previous ones built ([`cairn_wire::WholeCatalog::apply`]); the
    /// first, and any after the index went back (a restore, another catalog), is whole.
    pub fn catalog_deltas(client: CatalogClient) -> Watch<cairn_wire::CatalogDelta> {
        Watch::new(
            client,
            QueryOptions::default(),
            WatchConfig::default(),
            |c, o| async move { c.whole_catalog_delta(&o).await },
        )
        .named("whole catalog (deltas)")
    }

    /// Every prepared query (`/v1/query`).
    pub fn prepared_queries(client: CatalogClient) -> Watch<Vec<serde_json::Value>> {
        Watch::new(
            client,
            QueryOptions::default(),
            WatchConfig::default(),
            |c, o| async move { c.prepared_queries(&o).await },
        )
        .named("prepared queries")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn index_rules() {
        assert_eq!(
            index_step(0, 5),
            IndexStep::Advanced(5),
            "first answer yields"
        );
        assert_eq!(
            index_step(5, 5),
            IndexStep::Unchanged,
            "timeout without change"
        );
        assert_eq!(index_step(5, 7), IndexStep::Advanced(7));
        assert_eq!(index_step(7, 3), IndexStep::Reset, "backwards resets");
        assert_eq!(index_step(7, 0), IndexStep::Reset, "zero resets");
        assert_eq!(
            index_step(0, 0),
            IndexStep::Reset,
            "zero on a fresh read still yields"
        );
    }

    /// A fetch that answers from a script and records the options of every read.
    #[allow(clippy::type_complexity)]
    fn scripted(
        script: Vec<Result<u64, u16>>,
    ) -> (
        impl FnMut(CatalogClient, QueryOptions) -> FetchFuture<u64> + Send + 'static,
        Arc<Mutex<Vec<QueryOptions>>>,
    ) {
        scripted_on(script.into_iter().map(|r| r.map(|i| (i, 0))).collect())
    }

    /// [`scripted`] with the endpoint that answers each read: `Ok((index, endpoint))`.
    #[allow(clippy::type_complexity)]
    fn scripted_on(
        script: Vec<Result<(u64, usize), u16>>,
    ) -> (
        impl FnMut(CatalogClient, QueryOptions) -> FetchFuture<u64> + Send + 'static,
        Arc<Mutex<Vec<QueryOptions>>>,
    ) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut script = script.into_iter();
        let fetch = move |_c: CatalogClient, o: QueryOptions| -> FetchFuture<u64> {
            log.lock().unwrap().push(o);
            let step = script.next().expect("script exhausted");
            Box::pin(async move {
                match step {
                    Ok((index, endpoint)) => Ok((
                        index,
                        QueryMeta {
                            index,
                            known_leader: true,
                            last_contact_ms: 0,
                            endpoint,
                        },
                    )),
                    Err(status) => Err(ClientError::Status {
                        status,
                        url: "u".into(),
                        body: "b".into(),
                    }),
                }
            })
        };
        (fetch, seen)
    }

    #[test]
    fn a_lower_index_is_behind_only_from_another_replica() {
        // (held, held_from, new, from, behind?)
        let cases = [
            (9, Some(0), 5, 1, true),
            (9, Some(1), 5, 0, true),
            (9, Some(0), 5, 0, false),
            (9, Some(0), 9, 1, false),
            (9, Some(0), 12, 1, false),
            (9, Some(0), 0, 1, false),
            (0, Some(0), 5, 1, false),
            (9, None, 5, 1, false),
        ];
        for (held, held_from, new, from, want) in cases {
            assert_eq!(
                replica_behind(held, held_from, new, from),
                want,
                "{held} from {held_from:?}, {new} from {from}"
            );
        }
    }

    /// After a failover (answers from endpoint 1 after endpoint 0's), lower indexes are not a
    /// reset: the watch keeps asking with the index it held, backing off, until the replica
    /// catches up; it then yields only the newer data.
    #[tokio::test(start_paused = true)]
    async fn a_replica_behind_is_waited_for_not_reset() {
        let (fetch, seen) = scripted_on(vec![
            Ok((10, 0)),
            Ok((7, 1)),
            Ok((8, 1)),
            Ok((10, 1)),
            Ok((12, 1)),
            Ok((4, 1)),
        ]);
        let mut w = Watch::new(client(), QueryOptions::default(), fast(), fetch);
        assert_eq!(w.next().await.unwrap(), 10);
        let start = Instant::now();
        assert_eq!(
            w.next().await.unwrap(),
            12,
            "7, 8 and the equal 10 not yielded"
        );
        assert!(
            start.elapsed() >= Duration::from_millis(10 + 15),
            "backed off while behind: {:?}",
            start.elapsed()
        );
        assert_eq!(w.index(), 12);
        // The replica answering now is the one the index came from: Consul's reset again.
        assert_eq!(w.next().await.unwrap(), 4);
        assert_eq!(w.index(), 0);
        let sent: Vec<_> = seen.lock().unwrap().iter().map(|o| o.index).collect();
        assert_eq!(sent, [0, 10, 10, 10, 10, 12]);
    }

    fn fast() -> WatchConfig {
        WatchConfig {
            wait: Duration::from_secs(60),
            min_interval: Duration::ZERO,
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
        }
    }

    fn client() -> CatalogClient {
        CatalogClient::new("127.0.0.1:1", None).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn follows_consul_index_rules() {
        let (fetch, seen) = scripted(vec![Ok(5), Ok(5), Ok(7), Ok(3), Ok(9)]);
        let mut w = Watch::new(client(), QueryOptions::default(), fast(), fetch);
        assert_eq!(w.next().await.unwrap(), 5);
        assert_eq!(w.next().await.unwrap(), 7, "the equal index was skipped");
        assert_eq!(w.next().await.unwrap(), 3, "backwards yields fresh data");
        assert_eq!(w.index(), 0);
        assert_eq!(w.next().await.unwrap(), 9);
        let sent: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|o| (o.index, o.wait))
            .collect();
        let wait = Some(Duration::from_secs(60));
        assert_eq!(
            sent,
            vec![(0, None), (5, wait), (5, wait), (7, wait), (0, None)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_back_off_and_recover() {
        let (fetch, seen) = scripted(vec![Ok(2), Err(503), Err(500), Err(502), Ok(4)]);
        let mut w = Watch::new(client(), QueryOptions::default(), fast(), fetch);
        let status = w.status();
        assert_eq!(w.next().await.unwrap(), 2);
        let start = Instant::now();
        assert_eq!(w.next().await.unwrap(), 4);
        // Backoff 10, 20, 40 ms (±25 %, clamped to [10, 40]).
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(10 + 15 + 30), "{waited:?}");
        assert!(
            waited <= Duration::from_millis(13 + 25 + 40) + Duration::from_millis(5),
            "{waited:?}"
        );
        assert_eq!(seen.lock().unwrap().len(), 5);
        assert_eq!(w.failures(), 0);
        assert!(w.last_error().is_none());
        let s = status.borrow().clone();
        assert_eq!((s.index, s.failures, s.updates), (4, 0, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn next_or_error_gives_up_after_max_failures() {
        let (fetch, seen) = scripted(vec![Err(503), Err(503), Err(503), Ok(8)]);
        let mut w = Watch::new(client(), QueryOptions::default(), fast(), fetch);
        let status = w.status();
        let err = w.next_or_error(3).await.unwrap_err();
        assert_eq!(err.status(), Some(503));
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(w.failures(), 3);
        assert_eq!(w.last_error().and_then(ClientError::status), Some(503));
        assert_eq!(status.borrow().failures, 3);
        assert_eq!(w.next().await.unwrap(), 8, "still usable afterwards");
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_returned_and_retried_with_backoff() {
        let (fetch, _seen) = scripted(vec![Err(403), Ok(1)]);
        let mut w = Watch::new(client(), QueryOptions::default(), fast(), fetch);
        assert_eq!(w.next().await.unwrap_err().status(), Some(403));
        let start = Instant::now();
        assert_eq!(w.next().await.unwrap(), 1);
        assert!(
            start.elapsed() >= Duration::from_millis(10),
            "backed off before retrying"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn min_interval_spaces_reads() {
        let (fetch, _seen) = scripted(vec![Ok(1), Ok(1), Ok(1), Ok(1), Ok(2)]);
        let config = WatchConfig {
            min_interval: Duration::from_millis(100),
            ..fast()
        };
        let mut w = Watch::new(client(), QueryOptions::default(), config, fetch);
        let start = Instant::now();
        assert_eq!(w.next().await.unwrap(), 1);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "the first read is immediate"
        );
        assert_eq!(w.next().await.unwrap(), 2);
        assert_eq!(start.elapsed(), Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_index_yields_but_slows_down() {
        let (fetch, seen) = scripted(vec![Ok(0), Ok(0), Ok(0), Ok(6)]);
        let mut w = Watch::new(client(), QueryOptions::default(), fast(), fetch);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(w.next().await.unwrap(), 0);
            assert_eq!(w.index(), 0);
        }
        assert_eq!(w.next().await.unwrap(), 6);
        assert!(
            start.elapsed() >= Duration::from_millis(10 + 15 + 30),
            "{:?}",
            start.elapsed()
        );
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .all(|o| o.index == 0 && o.wait.is_none())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spawn_publishes_only_changes() {
        // Index 3 then a reset to 2 with the same value: receivers see one change, then 9.
        let seen_values = vec![(3, 10), (2, 10), (4, 10), (9, 11)];
        let mut it = seen_values.into_iter();
        let config = WatchConfig {
            min_interval: Duration::from_millis(100),
            ..fast()
        };
        let w = Watch::new(client(), QueryOptions::default(), config, move |_c, _o| {
            let next = it.next();
            async move {
                match next {
                    Some((index, value)) => Ok((
                        value,
                        QueryMeta {
                            index,
                            ..Default::default()
                        },
                    )),
                    None => std::future::pending().await,
                }
            }
        });
        let mut rx = w.spawn();
        assert_eq!(*rx.borrow(), None);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), Some(10));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), Some(11));
    }
}

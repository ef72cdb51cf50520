//! One running catalog without its listener: open the store, rebuild the state, start the
//! writer and the TTL sweeper, make sure catalogd's own node is registered ([`Catalog::start`]),
//! and the [`Core`] every HTTP handler shares.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use cairn_store::{MemStore, RedbStore, Store};

use crate::metrics::Metrics;
use crate::state::State;
use crate::store_health::StoreHealth;
use crate::timers::Timers;
use crate::watch::Registry;
use crate::writer::{self, Command, Writer, WriterConfig, WriterParts};

/// Settings of `catalogd serve`.
#[derive(Clone, Debug)]
pub struct Config {
    pub http_addr: SocketAddr,
    /// Where the store lives; None keeps everything in memory (lost on exit).
    pub data_dir: Option<PathBuf>,
    pub node: String,
    pub datacenter: String,
    /// Address catalogd's own node is registered with.
    pub advertise: IpAddr,
    /// Shortest session TTL accepted (Consul: 10s).
    pub min_session_ttl: Duration,
    /// Whether script checks may be registered and run (Consul's `enable_script_checks`).
    pub enable_script_checks: bool,
    /// Writes queued for the writer at most; more are refused (503).
    pub max_pending_writes: usize,
    /// Bounds of the HTTP server.
    pub http: cairn_http::Limits,
    /// The process's log, streamed by `/v1/agent/monitor`.
    pub log_tap: cairn_cli::LogTap,
    /// Consul's ACL settings.
    pub acl: crate::acl::AclConfig,
    /// `/metrics` answers without a token even with ACLs on.
    pub unauthenticated_metrics: bool,
    /// One of several replicas on etcd instead of the embedded store.
    pub etcd: Option<crate::ha::EtcdConfig>,
    /// A replica sends clients' writes to the leader (replicas speaking plain HTTP).
    pub forward_writes: bool,
    /// Whether the API speaks HTTPS (`--tls-cert`): how Prometheus reaches catalogd's metrics.
    pub https: bool,
}

/// Everything the HTTP handlers share.
pub struct Core {
    pub current: Arc<ArcSwap<State>>,
    /// Whole catalogs (`/v1/cairn/catalog`) being built and the last one.
    pub whole_catalog: crate::whole_catalog::WholeCatalogCache,
    pub registry: Arc<Registry>,
    pub writer: Writer,
    pub timers: Arc<Timers>,
    pub metrics: Arc<Metrics>,
    /// Whether the store takes writes (readiness: no leader while it does not).
    pub store_health: Arc<StoreHealth>,
    pub config: Config,
    pub log_tap: cairn_cli::LogTap,
    /// When this catalogd started (autopilot's `StableSince`).
    pub started: std::time::SystemTime,
    /// User events this agent accepted (in memory, as Consul keeps them).
    pub events: crate::events::EventBuffer,
    /// Token resolution (everything allowed while ACLs are off).
    pub acl: crate::acl::Acl,
    /// Peers presenting unknown ACL tokens, to slow down guessing.
    pub auth_failures: cairn_http::FailureLimiter,
    /// Who runs the once-only work, and the replicas `/v1/status/*` names.
    pub leadership: crate::leader::Leadership,
    /// Whether other replicas write the same store (renewals then go through the writer).
    pub replicated: bool,
    /// Replicas only: what `?consistent` reads wait on, and the store it asks.
    pub barrier: Option<(writer::replica::Barrier, Arc<dyn Store>)>,
    /// Replicas only (plain HTTP): the client that sends writes to the leader.
    pub forwarder: Option<reqwest::Client>,
    /// Cancelled when catalogd is asked to stop (`/v1/agent/leave`, or a signal once serving).
    shutdown: tokio_util::sync::CancellationToken,
}

impl Core {
    /// The current catalog index (never 0).
    pub fn index(&self) -> u64 {
        self.current.load().index.max(1)
    }

    /// The ID of catalogd's own node (as registered; empty before that).
    pub fn node_id(&self) -> String {
        self.current
            .load()
            .nodes
            .get(&self.config.node)
            .map(|n| n.id.clone())
            .unwrap_or_default()
    }

    /// For a `?consistent` read on a replica: waits until this replica's state holds every
    /// write the store had committed when the read arrived (at once without replicas).
    pub async fn catch_up(&self) -> Result<(), String> {
        match &self.barrier {
            Some((barrier, store)) => barrier.wait(store.clone(), Duration::from_secs(5)).await,
            None => Ok(()),
        }
    }

    /// The store revision the published state holds (replicas only).
    pub fn published_revision(&self) -> Option<u64> {
        self.barrier.as_ref().map(|(b, _)| b.published())
    }

    /// Waits until this replica's state holds store revision `rev` (at once without replicas).
    pub async fn caught_up_to(&self, rev: u64, limit: Duration) -> Result<(), String> {
        match &self.barrier {
            Some((barrier, _)) => barrier.wait_for_revision(rev, limit).await,
            None => Ok(()),
        }
    }

    /// Asks the server to stop as SIGTERM does.
    pub fn request_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Cancelled once a stop is requested.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.shutdown.clone()
    }
}

fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.data_dir {
        Some(dir) => {
            let path = dir.join("catalog.redb");
            Arc::new(RedbStore::open(&path).with_context(|| format!("opening {}", path.display()))?)
        }
        None => Arc::new(MemStore::new()),
    })
}

/// Makes sure the state holds what catalogd keeps as a Consul server (its node with the
/// `consul` service and `serfHealth`, its coordinate, the autopilot configuration and the
/// cluster identity): at startup, and after a snapshot of another catalog was restored.
pub async fn ensure_server_records(
    writer: &Writer,
    state: &State,
    config: &Config,
) -> anyhow::Result<()> {
    let existing = state.nodes.get(&config.node).cloned();
    let id = existing
        .as_ref()
        .map(|n| n.id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let reg =
        crate::server_node::registration(&config.node, config.advertise, id, existing.as_ref());
    writer
        .submit_waiting(Command::Register(Box::new(reg)))
        .await
        .context("registering catalogd's own node")?;
    if state
        .doc(crate::state::Table::Coordinates, &config.node)
        .is_none()
    {
        writer
            .submit_waiting(Command::CoordinateUpdate {
                node: config.node.clone(),
                coord: crate::server_node::origin_coordinate(),
            })
            .await
            .context("setting catalogd's own coordinate")?;
    }
    for (key, value) in [
        (
            crate::state::AUTOPILOT_KEY,
            crate::server_node::default_autopilot(),
        ),
        (
            crate::state::CLUSTER_KEY,
            serde_json::json!({ "ID": uuid::Uuid::new_v4().to_string() }),
        ),
    ] {
        writer
            .submit_waiting(Command::SeedSetting { key, value })
            .await
            .with_context(|| format!("storing the initial {key} setting"))?;
    }
    if config.acl.enabled {
        let seed = crate::state::AclOp::Seed {
            initial_management: config.acl.initial_management.clone(),
            accessor: uuid::Uuid::new_v4().to_string(),
            now: jiff::Timestamp::now().to_string(),
        };
        writer
            .submit_waiting(Command::Acl(Box::new(seed)))
            .await
            .context("storing the builtin ACL policies and tokens")?;
    }
    Ok(())
}

/// A running catalog without its HTTP listener (tests and benchmarks use this directly).
pub struct Catalog {
    pub core: Arc<Core>,
    writer_thread: std::thread::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    store_probe: tokio::task::JoinHandle<()>,
}

impl Catalog {
    /// Opens the store, restores the state and starts the writer and the TTL sweeper.
    pub async fn start(config: Config) -> anyhow::Result<Catalog> {
        let store = open_store(&config)?;
        let leadership =
            crate::leader::Leadership::alone(crate::http::raft_addr_of(config.advertise));
        Self::start_on(config, store, leadership).await
    }

    /// Starts a catalog on `store`: the embedded one, or a store other replicas share, whose
    /// once-only work runs while `leadership` says this replica leads.
    pub async fn start_on(
        config: Config,
        store: Arc<dyn Store>,
        leadership: crate::leader::Leadership,
    ) -> anyhow::Result<Catalog> {
        let loaded = crate::persist::load_at(store.as_ref()).context("restoring the catalog")?;
        let (replica, barrier) = match store.feed(loaded.revision) {
            Some(feed) => {
                let (r, b) = writer::replica::Replica::new(feed, loaded.meta_revision);
                (Some(r), Some((b, store.clone())))
            }
            None => (None, None),
        };
        let state = loaded.state;
        tracing::info!(
            index = state.index,
            nodes = state.nodes.len(),
            services = state.services.len(),
            kv = state.kv.len(),
            "catalog restored"
        );
        let catalog_log = Arc::new(crate::whole_catalog::ChangeLog::new(state.catalog_index()));
        let current = Arc::new(ArcSwap::from_pointee(state));
        let registry = Arc::new(Registry::default());
        let timers = Arc::new(Timers::default());
        let metrics = Arc::new(Metrics::default());
        let store_health = Arc::new(StoreHealth::default());
        timers.arm_all(&current.load(), Instant::now());
        let store_probe = tokio::spawn(crate::store_health::probe(
            store.clone(),
            store_health.clone(),
        ));
        let replicated = replica.is_some();
        let (writer, writer_thread) = writer::spawn(
            config.max_pending_writes,
            WriterParts {
                store,
                current: current.clone(),
                registry: registry.clone(),
                timers: timers.clone(),
                metrics: metrics.clone(),
                store_health: store_health.clone(),
                config: WriterConfig {
                    node: config.node.clone(),
                    datacenter: config.datacenter.clone(),
                    min_session_ttl: config.min_session_ttl,
                    enable_script_checks: config.enable_script_checks,
                },
                replica,
                catalog_log: catalog_log.clone(),
            },
        );
        ensure_server_records(&writer, &current.load(), &config).await?;
        let sweeper = tokio::spawn(sweep(
            timers.clone(),
            writer.clone(),
            leadership.clone(),
            current.clone(),
        ));
        let log_tap = config.log_tap.clone();
        let acl = crate::acl::Acl::new(config.acl.clone(), config.datacenter.clone());
        let forwarder = (barrier.is_some() && config.forward_writes)
            .then(|| {
                let client = crate::http::forward::client();
                if client.is_none() {
                    tracing::warn!("no HTTP client to reach the leader; this replica commits clients' writes itself");
                }
                client
            })
            .flatten();
        let core = Arc::new(Core {
            whole_catalog: crate::whole_catalog::WholeCatalogCache::new(catalog_log),
            current,
            registry,
            writer,
            timers,
            metrics,
            store_health,
            config,
            log_tap,
            events: Default::default(),
            acl,
            auth_failures: cairn_http::FailureLimiter::default(),
            leadership,
            replicated,
            forwarder,
            barrier,
            started: std::time::SystemTime::now(),
            shutdown: tokio_util::sync::CancellationToken::new(),
        });
        Ok(Catalog {
            core,
            writer_thread,
            sweeper,
            store_probe,
        })
    }

    /// Stops the sweeper and waits for the writer to finish what it was given.
    pub async fn stop(self) {
        self.sweeper.abort();
        self.store_probe.abort();
        // Both were aborted just now: their join errors say "cancelled", nothing to report.
        let _ = self.sweeper.await;
        // Same: aborted just now.
        let _ = self.store_probe.await;
        let Catalog {
            core,
            writer_thread,
            ..
        } = self;
        // The writer stops once the last handle is gone; HTTP handlers have finished by now.
        drop(core);
        match tokio::task::spawn_blocking(move || writer_thread.join()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!("the writer thread had panicked before shutdown"),
            Err(e) => tracing::error!(error = %e, "waiting for the writer thread failed"),
        }
    }
}

/// The TTL sweeper: while this replica leads, sends expired checks and sessions to the writer
/// as they expire, until the writer is gone. A replica that comes to lead restarts every TTL
/// from that moment (as a new Consul leader resets its session timers): the old leader's
/// deadlines died with it, and a client gets a full TTL to reach the new one.
async fn sweep(
    timers: Arc<Timers>,
    writer: Writer,
    leadership: crate::leader::Leadership,
    current: Arc<ArcSwap<State>>,
) {
    let mut view = leadership.subscribe();
    view.mark_unchanged();
    loop {
        let (checks, sessions) = tokio::select! {
            changed = view.changed() => {
                if changed.is_err() {
                    return;
                }
                if view.borrow_and_update().is_self {
                    tracing::info!("this replica leads: TTL checks and sessions are enforced here");
                    timers.arm_all(&current.load(), Instant::now());
                }
                continue;
            }
            expired = timers.next_expired() => expired,
        };
        if !leadership.is_leader() {
            continue;
        }
        if !checks.is_empty()
            && writer
                .submit_waiting(Command::ExpireChecks(checks))
                .await
                .is_err()
        {
            return;
        }
        if !sessions.is_empty()
            && writer
                .submit_waiting(Command::ExpireSessions(sessions))
                .await
                .is_err()
        {
            return;
        }
    }
}

//! `offerd serve`: read the auth file, open the store, load the state, serve the API, run the
//! scheduler's timer (agent timeouts, backoff expiry) and follow task health in the catalog,
//! until SIGTERM. SIGHUP re-reads the auth file (when one is set). With `--etcd` the state is
//! on etcd and the replica leads or stands by ([`crate::ha`]); the leader's duties are the
//! same [`Duties`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_client::CatalogClient;
use cairn_store::{RedbStore, Store};

use crate::auth::Access;
use crate::core::Core;
use crate::http::{AppState, router};
use crate::scheduler::SchedulerConfig;

/// How often the scheduler runs without a request (timeouts, backoff delays).
const TICK: Duration = Duration::from_millis(250);

/// Settings of `offerd serve`.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub http_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub agent_timeout: Duration,
    /// A lost agent silent this long is forgotten.
    pub lost_agent_retention: Duration,
    /// Finished runs each job keeps, per outcome.
    pub job_history: usize,
    /// Where task health is read from; `None` runs without health (running = healthy).
    pub catalog: Option<CatalogClient>,
    /// Bounds of the HTTP server.
    pub http: cairn_http::Limits,
    /// What apps may ask of the agents' hosts.
    pub host_policy: cairn_marathon::HostPolicy,
    /// The token taskrun agents must present to register, poll and report.
    pub agent_token: Option<cairn_http::SharedSecret>,
    /// Principals and node-bound agent tokens (`--auth-file`); `None`: the API is open.
    pub auth_file: Option<PathBuf>,
    /// Failed authentications a peer may make per window before it is answered 429 (0: no
    /// limit), and that window.
    pub auth_failures: (u32, Duration),
    /// HTTPS (`--tls-cert`, `--tls-key`, `--tls-client-ca`); `None`: plain HTTP.
    pub tls: Option<cairn_http::Tls>,
    /// One replica of several on etcd (`--etcd`); `None`: the embedded store in `data_dir`.
    pub replication: Option<crate::ha::HaConfig>,
    /// Autoscaling and the capacity watch.
    pub autoscale: crate::autoscale::AutoscaleConfig,
}

/// The access rules `cfg` asks for: the auth file read (an error names the file and the
/// problem), warnings logged.
fn access(cfg: &ServeConfig) -> anyhow::Result<Arc<Access>> {
    let limiter = Arc::new(cairn_http::FailureLimiter::new(
        cfg.auth_failures.0,
        cfg.auth_failures.1,
    ));
    let agent_token = cfg
        .agent_token
        .clone()
        .map(|s| s.with_limiter(limiter.clone()));
    let Some(path) = &cfg.auth_file else {
        return Ok(Arc::new(Access::open(agent_token, limiter)));
    };
    let (file, warnings) = crate::auth::load(path).map_err(|e| anyhow::anyhow!(e))?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    tracing::info!(
        auth_file = %path.display(),
        principals = file.principals.len(),
        agents = file.agents.len(),
        "principals loaded: anonymous access is off"
    );
    let access = Access::with_file(path, file, agent_token, limiter);
    if !access.agents_guarded() {
        tracing::warn!(
            "the agents' routes are open: set --agent-token or [[agent]] tokens in the auth file"
        );
    }
    Ok(Arc::new(access))
}

/// Re-reads the auth file at each SIGHUP; a file that does not load leaves the rules as they
/// were.
async fn reload_on_hangup(access: Arc<Access>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        match access.reload() {
            Ok(r) => {
                for w in r.warnings {
                    tracing::warn!("{w}");
                }
                tracing::info!(
                    principals = r.principals,
                    agents = r.agents,
                    "SIGHUP: auth file reloaded"
                );
                if !access.agents_guarded() {
                    tracing::warn!(
                        "the agents' routes are open: set --agent-token or [[agent]] tokens in the auth file"
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: auth file not reloaded; the previous principals stay")
            }
        }
    }
}

/// How long requests may finish after SIGTERM: parked agent polls and event streams are
/// closed after it.
pub const DRAIN: Duration = Duration::from_secs(2);

/// What only the leader does, around its [`Core`]: the scheduler's timer (agent timeouts,
/// backoff expiry), task health from the catalog, and the clean-up of lost tasks' catalog
/// services. One offerd runs them for as long as it serves; a replica for as long as it leads.
pub struct Duties {
    stop: tokio_util::sync::CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What the autoscaler and the capacity watch last found.
    pub board: Arc<crate::autoscale::Board>,
}

impl Duties {
    /// Starts the duties of `core`; `catalog`: where task health is read (none: no health).
    pub fn start(
        core: &Arc<Core>,
        catalog: Option<&CatalogClient>,
        autoscale: &crate::autoscale::AutoscaleConfig,
    ) -> Duties {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut tasks = Vec::new();
        let board = Arc::new(crate::autoscale::Board::default());
        tasks.push(tokio::spawn(crate::autoscale::run(
            core.clone(),
            autoscale.clone(),
            board.clone(),
            stop.clone(),
        )));
        tasks.push({
            let core = core.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(TICK);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        _ = every.tick() => {
                            match core.tick().await {
                                Ok(()) => {}
                                // The replica steps down; nothing to add here.
                                Err(crate::core::CoreError::Deposed) => return,
                                Err(e) => tracing::error!(error = %e, "scheduling round failed"),
                            }
                        }
                    }
                }
            })
        });
        if let (Some(client), Some(rx)) = (catalog, core.stale_services()) {
            tasks.push(tokio::spawn(crate::health::deregister_stale(
                rx,
                client.clone(),
            )));
        }
        if let Some(client) = catalog {
            tasks.push(tokio::spawn(crate::health::sweep_lost(
                core.clone(),
                client.clone(),
            )));
            tasks.push(tokio::spawn(crate::health::follow(
                core.clone(),
                client.clone(),
                stop.clone().cancelled_owned(),
            )));
        }
        Duties { stop, tasks, board }
    }

    /// Stops the scheduler's timer and the health follower (the clean-ups go on until
    /// [`Duties::stop`]).
    pub fn halt(&self) {
        self.stop.cancel();
    }

    /// Stops every duty and waits until none runs.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for t in std::mem::take(&mut self.tasks) {
            t.abort();
            // Aborted (or ended): how is of no interest.
            let _ = t.await;
        }
    }
}

/// Dropped duties stop (without waiting).
impl Drop for Duties {
    fn drop(&mut self) {
        self.stop.cancel();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts announcing offerd at `addr` in the catalog (none without a catalog or an address
/// to announce); cancel the token to deregister, then await the task.
fn announce(
    catalog: Option<&CatalogClient>,
    addr: &str,
) -> Option<(
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
)> {
    let client = catalog?.clone();
    let who = cairn_cli::announce::Announcement::for_addr("cairn-offerd", addr)?;
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(cairn_cli::announce::announce(client, who, stop.clone()));
    Some((stop, task))
}

/// Deregisters what [`announce`] registered (bounded by its own timeout).
async fn withdraw(
    announced: Option<(
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
    )>,
) {
    if let Some((stop, task)) = announced {
        stop.cancel();
        // Ends after its bounded deregistration; a panic in it was logged already.
        let _ = task.await;
    }
}

/// Runs offerd until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let access = access(&cfg)?;
    // Before the listener: a SIGHUP from the moment offerd answers must reload, not kill it.
    let hup = match access.auth_file() {
        Some(_) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .context("installing the SIGHUP handler")?,
        ),
        None => None,
    };
    let reload = hup.map(|hup| tokio::spawn(reload_on_hangup(access.clone(), hup)));
    if cfg.replication.is_some() {
        let r = serve_replica(cfg, access, shutdown).await;
        if let Some(r) = reload {
            r.abort();
        }
        return r;
    }
    cairn_cli::create_private_dir(&cfg.data_dir)
        .with_context(|| format!("creating --data-dir {}", cfg.data_dir.display()))?;
    let store: Arc<dyn Store> =
        Arc::new(RedbStore::open(&cfg.data_dir.join("offerd.redb")).context("opening the store")?);
    let core = Arc::new(
        Core::open(
            store,
            SchedulerConfig {
                agent_timeout: cfg.agent_timeout,
                lost_agent_retention: cfg.lost_agent_retention,
                job_history: cfg.job_history,
            },
        )
        .context("loading the state")?,
    );
    cairn_http::raise_fd_limit(cfg.http.max_connections);
    let listener = cairn_http::listen(cfg.http_addr, cairn_http::LISTEN_BACKLOG)
        .with_context(|| format!("binding HTTP on {}", cfg.http_addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        addr = %local,
        data_dir = %cfg.data_dir.display(),
        tls = cfg.tls.is_some(),
        client_certs = cfg.tls.as_ref().is_some_and(cairn_http::Tls::requires_client_certs),
        "offerd serving HTTP"
    );

    let duties = Arc::new(Duties::start(&core, cfg.catalog.as_ref(), &cfg.autoscale));
    let announced = announce(cfg.catalog.as_ref(), &local.to_string());
    let app = router(AppState {
        core: core.clone(),
        advertise: local.to_string(),
        offers: Arc::default(),
        host_policy: Arc::new(cfg.host_policy.clone()),
        access,
        replicated: false,
        autoscale: duties.board.clone(),
        catalog: cfg.catalog.clone(),
    });
    let graceful = {
        let duties = duties.clone();
        async move {
            shutdown.await;
            duties.halt();
        }
    };
    cairn_http::Server::new(cfg.http)
        .with_tls(cfg.tls.clone())
        .serve(listener, move |_| app.clone(), graceful)
        .await;
    drop(duties);
    withdraw(announced).await;
    if let Some(r) = reload {
        r.abort();
    }
    tracing::info!("offerd stopped");
    Ok(())
}

/// `offerd serve --etcd`: one replica of several (see [`crate::ha`]).
async fn serve_replica(
    cfg: ServeConfig,
    access: Arc<Access>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    cairn_http::raise_fd_limit(cfg.http.max_connections);
    let listener = cairn_http::listen(cfg.http_addr, cairn_http::LISTEN_BACKLOG)
        .with_context(|| format!("binding HTTP on {}", cfg.http_addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let replica = crate::ha::Replica::start(&cfg, access, local).await?;
    tracing::info!(
        addr = %local,
        advertised = %replica.name(),
        tls = cfg.tls.is_some(),
        client_certs = cfg.tls.as_ref().is_some_and(cairn_http::Tls::requires_client_certs),
        "offerd serving HTTP as a replica"
    );
    let app = replica.router();
    let announced = announce(cfg.catalog.as_ref(), replica.name());
    let stopping = replica.clone();
    let graceful = async move {
        shutdown.await;
        // Hands over at once: duties stopped, the election lease revoked.
        stopping.stop().await;
    };
    cairn_http::Server::new(cfg.http)
        .with_tls(cfg.tls.clone())
        .serve(listener, move |_| app.clone(), graceful)
        .await;
    replica.stop().await;
    withdraw(announced).await;
    tracing::info!("offerd stopped");
    Ok(())
}

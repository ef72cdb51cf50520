//! `offerd serve`: open the store, load the state, serve the API, run the scheduler's timer
//! (agent timeouts, backoff expiry) and follow task health in the catalog, until SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_client::CatalogClient;
use cairn_store::{RedbStore, Store};

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
    /// Where task health is read from; `None` runs without health (running = healthy).
    pub catalog: Option<CatalogClient>,
    /// Bounds of the HTTP server.
    pub http: cairn_http::Limits,
    /// What apps may ask of the agents' hosts.
    pub host_policy: cairn_marathon::HostPolicy,
    /// The token taskrun agents must present to register, poll and report.
    pub agent_token: Option<cairn_http::SharedSecret>,
}

/// How long requests may finish after SIGTERM: parked agent polls and event streams are
/// closed after it.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Runs offerd until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
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
            },
        )
        .context("loading the state")?,
    );
    cairn_http::raise_fd_limit(cfg.http.max_connections);
    let listener = cairn_http::listen(cfg.http_addr, cairn_http::LISTEN_BACKLOG)
        .with_context(|| format!("binding HTTP on {}", cfg.http_addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %local, data_dir = %cfg.data_dir.display(), "offerd serving HTTP");

    let stop = tokio_util::sync::CancellationToken::new();
    let tick = {
        let core = core.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = every.tick() => {
                        let r: Result<(), crate::core::CoreError> = core.mutate(|_, _| Ok(())).await;
                        if let Err(e) = r {
                            tracing::error!(error = %e, "scheduling round failed");
                        }
                    }
                }
            }
        })
    };
    let deregister = match (cfg.catalog.clone(), core.stale_services()) {
        (Some(client), Some(rx)) => Some(tokio::spawn(crate::health::deregister_stale(rx, client))),
        _ => None,
    };
    let sweep = cfg
        .catalog
        .clone()
        .map(|client| tokio::spawn(crate::health::sweep_lost(core.clone(), client)));
    let health = cfg.catalog.clone().map(|client| {
        tokio::spawn(crate::health::follow(
            core.clone(),
            client,
            stop.clone().cancelled_owned(),
        ))
    });

    let app = router(AppState {
        core: core.clone(),
        advertise: local.to_string(),
        offers: Arc::default(),
        host_policy: Arc::new(cfg.host_policy.clone()),
        agent_token: cfg.agent_token.clone(),
    });
    let graceful = {
        let stop = stop.clone();
        async move {
            shutdown.await;
            stop.cancel();
        }
    };
    cairn_http::Server::new(cfg.http)
        .serve(listener, move |_| app.clone(), graceful)
        .await;
    tick.abort();
    if let Some(h) = health {
        h.abort();
    }
    if let Some(d) = deregister {
        d.abort();
    }
    if let Some(w) = sweep {
        w.abort();
    }
    tracing::info!("offerd stopped");
    Ok(())
}

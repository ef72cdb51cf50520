//! offerd as one of several replicas on etcd (`offerd serve --etcd URL,...`), as Marathon runs
//! with standbys on ZooKeeper: one leader schedules and is the only writer; the others stand by
//! and forward every API request to it ([`proxy`]).
//!
//! Layout under the prefix (`/cairn/offerd/` by default): the election's `leader` and
//! `members/` keys ([`cairn_etcd::campaign`]), and the store under `data/` ([`EtcdStore`]):
//! the same records as the embedded store, plus `data/term`.
//!
//! Why a term key: the election says who *should* lead, but a leader that was paused (a long
//! GC-like stall, SIGSTOP, a partition) may still have a write on its way when its successor
//! starts. So a replica that wins the election first writes `data/term` (its name and a fresh
//! uuid) in a transaction guarded by its election term (the leader key's create revision:
//! only the lease holder can write it), and remembers the revision R of that write; then it
//! loads the whole state from etcd (the start-up load path: every agent gets a full
//! `--agent-timeout` to be heard from, the agents' desired-set index starts past R) and starts
//! the scheduler. Every batch it commits compares `data/term` with R, so once a successor has
//! written its own term key, every write of the old leader fails in etcd: two schedulers never
//! both launch, and tasks already running are matched by id as after a restart.
//!
//! Stepping down: when the election term ends (the lease could not be renewed in time), or a
//! fenced write fails (refused by a newer term, or etcd unreachable: maybe applied, maybe not),
//! the replica stops its duties, drops the state and stands by; after a failed write it also
//! resigns from the election (its lease revoked), so another replica, or itself after a
//! pause, takes over from what etcd holds.
//!
//! Answered by every replica itself: `/ping`, `/metrics` (`offerd_leader` 0 or 1) and
//! `GET /v2/leader` (the election's leader, 404 with none, as Marathon; `DELETE` makes the
//! leader abdicate). Everything else is the leader's: served by it (with `X-Marathon-Leader`
//! naming itself), forwarded by a standby behind the same authentication.

pub mod proxy;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwapOption;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cairn_cli::LockOrExit as _;
use cairn_client::CatalogClient;
use cairn_etcd::{ElectionConfig, ElectionView, EtcdArgs, EtcdClient, EtcdStore, Op, Term, Txn};
use cairn_store::{Compare, Store};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Caller};
use crate::core::Core;
use crate::http::{AppState, guard};
use crate::scheduler::SchedulerConfig;
use crate::serve::{Duties, ServeConfig};

/// The default key prefix of offerd's replicas.
pub const DEFAULT_PREFIX: &str = "/cairn/offerd/";
/// The term key, in the store (under `<prefix>data/`).
pub const TERM_KEY: &str = "term";
/// How long a replica that resigned waits before it campaigns again: the others go first.
const RESIGN_PAUSE: Duration = Duration::from_secs(1);

/// How offerd joins its replicas.
#[derive(Clone, Debug)]
pub struct HaConfig {
    pub etcd: EtcdArgs,
    /// `--advertise-addr`: the address the other replicas and clients reach this one at (its
    /// name in the election and `/v2/leader`); `None`: the bound HTTP address.
    pub advertise: Option<String>,
    /// TLS of the forwarded requests (the `--offerd-ca-cert` settings).
    pub peer_tls: cairn_client::TlsOptions,
}

/// This replica's name: `--advertise-addr` (HOST:PORT), or the bound address when it is one
/// the others can reach.
pub fn advertised_name(advertise: Option<&str>, bound: SocketAddr) -> anyhow::Result<String> {
    let Some(a) = advertise else {
        if bound.ip().is_unspecified() {
            anyhow::bail!(
                "--advertise-addr HOST:PORT is needed: --http-addr {bound} listens on every address, and the other replicas need one they can reach"
            );
        }
        return Ok(bound.to_string());
    };
    let url = url::Url::parse(&format!("http://{a}/"))
        .ok()
        .filter(|u| u.host().is_some() && u.port().is_some() && u.path() == "/")
        .filter(|u| u.username().is_empty() && u.password().is_none());
    match url {
        Some(_) if !a.contains(['/', '?', '#']) => Ok(a.to_string()),
        _ => anyhow::bail!("--advertise-addr {a:?} is not HOST:PORT"),
    }
}

/// One replica: who leads, the leader's API while this one leads, the proxy while it stands by.
pub struct Replica {
    name: String,
    /// `X-Marathon-Leader` of this replica's own answers while it leads.
    my_url: HeaderValue,
    view: watch::Receiver<ElectionView>,
    /// The leader's API while this replica leads and has loaded the state.
    serving: ArcSwapOption<Router>,
    /// `/ping`, `/metrics`, `/v2/leader` and the proxy.
    standby: Router,
    stop: CancellationToken,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// What a leader's term needs, kept from start-up.
struct Office {
    client: EtcdClient,
    store: Arc<dyn Store>,
    /// The term key's full etcd key.
    term_key: Vec<u8>,
    sched: SchedulerConfig,
    catalog: Option<CatalogClient>,
    host_policy: Arc<cairn_marathon::HostPolicy>,
    access: Arc<Access>,
    autoscale: crate::autoscale::AutoscaleConfig,
}

/// A leader's term in progress.
struct Leading {
    core: Arc<Core>,
    duties: Duties,
    router: Router,
}

impl Replica {
    /// Connects to etcd, opens the store, starts campaigning and the leadership loop.
    pub async fn start(
        cfg: &ServeConfig,
        access: Arc<Access>,
        bound: SocketAddr,
    ) -> anyhow::Result<Arc<Replica>> {
        let ha = cfg
            .replication
            .as_ref()
            .context("serving as a replica needs --etcd")?;
        let name = advertised_name(ha.advertise.as_deref(), bound)?;
        let client = ha
            .etcd
            .client(cairn_etcd::DEFAULT_REQUEST_TIMEOUT)
            .context("the --etcd settings")?
            .context("--etcd names no endpoint")?;
        let prefix = ha.etcd.prefix_or(DEFAULT_PREFIX);
        let data = format!("{prefix}data/");
        let store = EtcdStore::open(client.clone(), data.clone())
            .await
            .with_context(|| {
                format!(
                    "opening the store in etcd at {}",
                    ha.etcd
                        .endpoints
                        .iter()
                        .map(url::Url::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })?;
        let (view_tx, view) = watch::channel(ElectionView::default());
        let proxy = proxy::Proxy::new(
            &name,
            cfg.tls.is_some(),
            &ha.peer_tls,
            view.clone(),
            cfg.http.body.max_bytes,
        )?;
        let my_url = HeaderValue::from_str(&proxy.url_of(&name))
            .with_context(|| format!("--advertise-addr {name:?} in a header"))?;
        let resign = Arc::new(Notify::new());
        let standby = standby_router(
            Arc::new(Standby {
                proxy,
                view: view.clone(),
                resign: resign.clone(),
            }),
            access.clone(),
        );
        let replica = Arc::new(Replica {
            name: name.clone(),
            my_url,
            view,
            serving: ArcSwapOption::empty(),
            standby,
            stop: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
        });
        let election = tokio::spawn(campaigns(
            client.clone(),
            ElectionConfig {
                prefix: prefix.into_bytes(),
                name,
                ttl: ha.etcd.lease_ttl,
            },
            view_tx,
            resign.clone(),
            replica.stop.clone(),
        ));
        let office = Office {
            client,
            store: Arc::new(store),
            term_key: format!("{data}{TERM_KEY}").into_bytes(),
            sched: SchedulerConfig {
                agent_timeout: cfg.agent_timeout,
                lost_agent_retention: cfg.lost_agent_retention,
                job_history: cfg.job_history,
            },
            catalog: cfg.catalog.clone(),
            host_policy: Arc::new(cfg.host_policy.clone()),
            access,
            autoscale: cfg.autoscale.clone(),
        };
        let leading = tokio::spawn(lead(replica.clone(), office, resign));
        replica
            .tasks
            .lock_or_exit("replica tasks")
            .extend([election, leading]);
        Ok(replica)
    }

    /// This replica's name (its advertised address).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole HTTP API of this replica.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }

    /// Steps down (if leading) and leaves the election, its lease revoked so that another
    /// replica takes over at once; waits for both. Idempotent.
    pub async fn stop(&self) {
        self.stop.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock_or_exit("replica tasks"));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "a replica task failed");
            }
        }
    }
}

/// Every request: the leader's API while this replica leads, else the standby's routes.
async fn dispatch(State(r): State<Arc<Replica>>, req: Request) -> Response {
    use tower_service::Service as _;
    let leading = (req.uri().path() != "/v2/leader")
        .then(|| r.serving.load_full())
        .flatten();
    let (mut app, lead) = match leading {
        Some(app) => ((*app).clone(), true),
        None => (r.standby.clone(), false),
    };
    let mut resp = match app.call(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    if lead {
        resp.headers_mut().insert(
            HeaderName::from_static(proxy::LEADER_HEADER),
            r.my_url.clone(),
        );
    }
    resp
}

/// What the standby's routes share.
struct Standby {
    proxy: proxy::Proxy,
    view: watch::Receiver<ElectionView>,
    /// Asks the election loop to leave the election (`DELETE /v2/leader`).
    resign: Arc<Notify>,
}

/// The standby's routes: answered here (`/ping`, `/metrics`, `/v2/leader`) or forwarded,
/// behind the same authentication as the leader's (so a client's failed attempts count
/// against the client, not against this replica at the leader).
fn standby_router(st: Arc<Standby>, access: Arc<Access>) -> Router {
    let agents = Router::new()
        .route("/v1/agents/register", post(forward))
        .route("/v1/agents/{node}/tasks", get(forward))
        .route("/v1/agents/{node}/status", post(forward))
        .route_layer(axum::middleware::from_fn_with_state(
            access.clone(),
            guard::agents,
        ));
    let api = Router::new()
        .route("/v2/leader", get(leader).delete(abdicate))
        .route("/metrics", get(metrics))
        .fallback(forward)
        .layer(axum::middleware::from_fn_with_state(
            access,
            guard::principals,
        ));
    Router::new()
        .route("/ping", get(ping))
        .merge(agents)
        .merge(api)
        .with_state(st)
}

async fn forward(State(st): State<Arc<Standby>>, req: Request) -> Response {
    st.proxy.forward(req).await
}

async fn ping() -> &'static str {
    "pong"
}

/// `GET /v2/leader`: `{"leader": "host:port"}`, or 404 as Marathon's without a leader.
async fn leader(State(st): State<Arc<Standby>>) -> Response {
    let leader = st.view.borrow().leader.clone();
    if leader.is_empty() {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({ "message": "There is no leader" })),
        )
            .into_response();
    }
    axum::Json(json!({ "leader": leader })).into_response()
}

/// `DELETE /v2/leader`, as Marathon's: the leader abdicates (an admin's right) and another
/// replica takes over (this one campaigns again after a pause); a standby forwards it.
async fn abdicate(State(st): State<Arc<Standby>>, caller: Caller, req: Request) -> Response {
    let view = st.view.borrow().clone();
    if !view.is_leader() {
        if view.leader.is_empty() {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(json!({ "message": "There is no leader" })),
            )
                .into_response();
        }
        return st.proxy.forward(req).await;
    }
    if let Err(e) = guard::require_admin(&caller, "make the leader abdicate") {
        return e.into_response();
    }
    tracing::warn!(
        principal = caller.name(),
        "DELETE /v2/leader: abdicating; another replica takes over"
    );
    st.resign.notify_one();
    axum::Json(json!({ "message": "Leadership abdicated" })).into_response()
}

/// A standby's `/metrics`: only that it stands by (the state is the leader's).
async fn metrics() -> Response {
    let mut e = cairn_metrics::Exposition::new();
    e.gauge(
        crate::http::LEADER_METRIC,
        crate::http::LEADER_METRIC_HELP,
        0.0,
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            cairn_metrics::CONTENT_TYPE,
        )],
        e.render(),
    )
        .into_response()
}

/// Runs the election until `stop`; on `resign`, leaves it (the lease revoked: the leader key
/// goes at once) and, after [`RESIGN_PAUSE`], campaigns again.
async fn campaigns(
    client: EtcdClient,
    config: ElectionConfig,
    view: watch::Sender<ElectionView>,
    resign: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        let token = stop.child_token();
        let mut campaign = tokio::spawn(cairn_etcd::campaign(
            client.clone(),
            config.clone(),
            view.clone(),
            token.clone(),
        ));
        let ended = tokio::select! {
            () = stop.cancelled() => None,
            () = resign.notified() => None,
            r = &mut campaign => Some(r),
        };
        token.cancel();
        match ended {
            None => {
                if let Err(e) = campaign.await {
                    tracing::warn!(error = %e, "the election task failed");
                }
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "the election task failed; campaigning again")
            }
            Some(Ok(())) => {}
        }
        view.send_modify(|v| {
            v.term = None;
            v.leader.clear();
        });
        if stop.is_cancelled() {
            return;
        }
        tracing::info!(
            pause_ms = RESIGN_PAUSE.as_millis() as u64,
            "left the election; campaigning again after a pause"
        );
        tokio::select! {
            () = tokio::time::sleep(RESIGN_PAUSE) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Why a term of this replica ended.
enum Why {
    WriteFailed,
    TermEnded,
    Stopping,
}

/// The leadership loop: waits for a term of this replica, takes office (term key, state,
/// duties, API), serves until the term ends or a write fails, and steps down.
async fn lead(replica: Arc<Replica>, office: Office, resign: Arc<Notify>) {
    let mut view = replica.view.clone();
    // The term a failed write ended: never led again (a new campaign brings a new term).
    let mut refused: Option<Term> = None;
    loop {
        let term = tokio::select! {
            t = next_term(&mut view, refused.as_ref()) => match t {
                Some(t) => t,
                None => return,
            },
            () = replica.stop.cancelled() => return,
        };
        let began = Instant::now();
        let leading = match take_office(&replica, &office, &term).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "taking over as leader failed; resigning from the election");
                refused = Some(term);
                resign.notify_one();
                continue;
            }
        };
        replica
            .serving
            .store(Some(Arc::new(leading.router.clone())));
        tracing::info!(
            took_ms = began.elapsed().as_millis() as u64,
            tasks = leading.core.read(|s| s.tasks.len()),
            "leading: the state is loaded from etcd and the scheduler runs"
        );
        let why = tokio::select! {
            () = leading.core.deposed() => Why::WriteFailed,
            () = term_ends(&mut view, &term) => Why::TermEnded,
            () = replica.stop.cancelled() => Why::Stopping,
        };
        // No request reaches this state any more; none of its writes can land.
        replica.serving.store(None);
        leading.core.depose();
        leading.duties.stop().await;
        drop(leading.router);
        drop(leading.core);
        match why {
            Why::WriteFailed => {
                tracing::warn!(
                    "stepped down: a fenced write failed; the state is dropped, and this replica resigns from the election and stands by"
                );
                refused = Some(term);
                resign.notify_one();
            }
            Why::TermEnded => tracing::warn!(
                "stepped down: the election term ended (the lease could not be renewed in time); the state is dropped and this replica stands by"
            ),
            Why::Stopping => {
                tracing::info!("stepped down: stopping");
                return;
            }
        }
    }
}

/// The next term of this replica other than `refused`; `None` once the election is over.
async fn next_term(
    view: &mut watch::Receiver<ElectionView>,
    refused: Option<&Term>,
) -> Option<Term> {
    loop {
        let term = view.borrow_and_update().term.clone();
        if let Some(t) = term
            && Some(&t) != refused
        {
            return Some(t);
        }
        view.changed().await.ok()?;
    }
}

/// Resolves once the election no longer gives this replica `term`.
async fn term_ends(view: &mut watch::Receiver<ElectionView>, term: &Term) {
    // Err: the election is over, which ends the term too.
    let _ = view.wait_for(|v| v.term.as_ref() != Some(term)).await;
}

/// Takes office for `term`: the term key, the state, the duties and the API.
async fn take_office(replica: &Replica, office: &Office, term: &Term) -> anyhow::Result<Leading> {
    let fence = write_term(&office.client, &office.term_key, term, &replica.name).await?;
    tracing::info!(
        term_revision = fence.revision,
        "elected: term key written; loading the state from etcd"
    );
    let (store, sched) = (office.store.clone(), office.sched.clone());
    let core = tokio::task::spawn_blocking(move || Core::open_fenced(store, sched, fence))
        .await
        .context("loading the state")?
        .context("loading the state from etcd")?;
    let core = Arc::new(core);
    let duties = Duties::start(&core, office.catalog.as_ref(), &office.autoscale);
    let router = crate::http::router(AppState {
        core: core.clone(),
        advertise: replica.name.clone(),
        offers: Arc::default(),
        host_policy: office.host_policy.clone(),
        access: office.access.clone(),
        replicated: true,
        autoscale: duties.board.clone(),
        catalog: office.catalog.clone(),
    });
    Ok(Leading {
        core,
        duties,
        router,
    })
}

/// Writes the term key (`name uuid`), guarded by the election term: only the holder of the
/// leader key can. The fence every later batch carries: the key at that write's revision.
async fn write_term(
    client: &EtcdClient,
    key: &[u8],
    term: &Term,
    name: &str,
) -> anyhow::Result<Compare> {
    let value = format!("{name} {}", uuid::Uuid::new_v4());
    let resp = client
        .txn(&Txn {
            compare: vec![term.guard()],
            success: vec![Op::put(key.to_vec(), value.into_bytes())],
            failure: vec![],
        })
        .await
        .context("writing the term key to etcd")?;
    if !resp.succeeded {
        anyhow::bail!("the election term ended before its term key was written");
    }
    Ok(Compare {
        key: TERM_KEY.as_bytes().to_vec(),
        revision: u64::try_from(resp.revision).context("etcd answered a negative revision")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn the_name_is_the_advertised_address_or_a_reachable_bound_one() {
        let any = bound("0.0.0.0:5050");
        assert_eq!(
            advertised_name(Some("10.0.0.1:5050"), any).expect("valid"),
            "10.0.0.1:5050"
        );
        assert_eq!(
            advertised_name(Some("offerd-1.example:8080"), any).expect("valid"),
            "offerd-1.example:8080"
        );
        assert_eq!(
            advertised_name(Some("[fd00::1]:5050"), any).expect("valid"),
            "[fd00::1]:5050"
        );
        assert_eq!(
            advertised_name(None, bound("127.0.0.1:4000")).expect("valid"),
            "127.0.0.1:4000"
        );
        let e = advertised_name(None, any).expect_err("unreachable");
        assert!(e.to_string().contains("--advertise-addr"), "{e}");
        assert!(advertised_name(None, bound("[::]:5050")).is_err());
        for bad in [
            "offerd-1",
            "10.0.0.1",
            "http://10.0.0.1:5050",
            "10.0.0.1:5050/x",
            "u:p@10.0.0.1:5050",
            "10.0.0.1:99999",
            "",
        ] {
            assert!(advertised_name(Some(bad), any).is_err(), "{bad:?} accepted");
        }
    }
}

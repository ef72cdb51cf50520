//! offerd's HTTP API: Marathon's `/v2` (apps, tasks, deployments, queue, events, info) and the
//! agents' `/v1/agents`. Handlers translate requests into [`crate::core::Core::mutate`] calls
//! and state into Marathon's JSON (see [`render`]). Query strings are read by Marathon's rules
//! through [`cairn_http::QueryParams`]: a value is the last one given, a flag (`?force`) is
//! `QueryParams::last_is_true`.
//!
//! # Who may call what
//!
//! Without `--auth-file` every route but the agents' is open (and those are open too without
//! an agent token). With one, every route below needs a principal's credentials (401
//! otherwise) except `/ping`, and the agents' routes need an agent token, never a principal's.
//! Rights (403 when missing; "change X" = admin, or a deployer with a path covering app X;
//! "read" = any principal; env = app `env` values shown only where the caller may change the
//! app, [`crate::auth::HIDDEN_ENV_VALUE`] elsewhere):
//!
//! | route | method | right |
//! |---|---|---|
//! | `/ping` | GET | open (load balancers' probes) |
//! | `/ui`, `/ui/`, `/ui/<file>` | GET | open (the web UI's files: no data; `cairn-ui`) |
//! | `/v1/auth/self` | GET | any principal: its name, role and paths (`http/ui.rs`) |
//! | `/ui/catalog/v1/...` | GET, PUT, DELETE, POST | read (writes: not a viewer); relayed with the caller's own `X-Consul-Token`, which the catalog judges (`http/ui.rs`) |
//! | `/metrics`, `/v2/info`, `/v2/leader` | GET | read |
//! | `/v2/leader` | DELETE | admin (replicas, [`crate::ha`]: the leader abdicates) |
//! | `/v2/apps` | GET | read; env per app |
//! | `/v2/apps` | POST | change the new app |
//! | `/v2/apps` | PUT | change every app of the array |
//! | `/v2/apps/{id}`, `.../versions`, `.../versions/{v}` | GET | read; env of `{id}` |
//! | `/v2/apps/{id}/tasks` | GET | read |
//! | `/v2/apps/{id}` | PUT, DELETE | change `{id}` |
//! | `/v2/apps/{id}/restart` | POST | change `{id}` |
//! | `/v2/apps/{id}/tasks`, `.../tasks/{task}` | DELETE | change `{id}` |
//! | `/v2/tasks` | GET | read |
//! | `/v2/tasks/delete` | POST | change the app of every task named |
//! | `/v2/deployments` | GET | read |
//! | `/v2/deployments/{id}` | DELETE | change the deployment's app (its `affectedApps`) |
//! | `/v2/queue` | GET | read; env per queued app |
//! | `/v2/queue/{id}/delay` | DELETE | change `{id}` |
//! | `/v2/events` | GET | read; env per app in each event; the stream ends when a reload removes or changes the principal |
//! | `/v1/agents` | GET | read |
//! | `/v1/autoscale/status` | GET | read |
//! | `/v1/agents/{node}` | DELETE | admin |
//! | `/v1/agents/{node}/drain` | POST, DELETE | admin |
//! | `/v1/offers?framework=F` | GET | change `/F/` (issuing offers acts as the framework) |
//! | `/v1/offers/{id}/accept`, `/decline` | POST | change `/F/` (the tasks are apps `/F/<name>`) |
//! | `/v1/tasks/{id}`, `/v1/frameworks/{name}/tasks` | GET | read |
//! | `/v1/jobs`, `/v1/jobs/{id}`, `.../schedules[/{s}]`, `.../runs[/{r}]`, `/v1/queue` | GET | read; a job's `run.env` shown where the caller may change the job |
//! | `/v1/jobs` | POST | change the new job (job `a.b` is at `/a/b`: `http/jobs.rs`) |
//! | `/v1/jobs/{id}`, `.../schedules[/{s}]`, `.../runs`, `.../runs/{r}/actions/stop` | PUT, POST, DELETE | change the job |
//! | `/v1/tasks/{id}/logs` | GET | read (the task's output, relayed from its agent: `http/logs.rs`) |
//! | `/v1/tasks/{id}/kill` | POST | change the task's app |
//! | `/v1/agents/register` | POST | agent token; a node-bound token only for its node |
//! | `/v1/agents/{node}/tasks` | GET | agent token; node-bound: only `{node}` |
//! | `/v1/agents/{node}/status` | POST | agent token; node-bound: only `{node}` |
//! | anything else | any | a principal (then 404 or 405) |
//!
//! A viewer's request with any method but GET or HEAD is refused (403) before its handler.

mod agents;
mod apps;
mod autoscale;
mod error;
mod events;
pub mod guard;
pub mod jobs;
mod logs;
mod misc;
mod offers;
pub mod render;
mod tasks;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::core::Core;

pub use error::ApiError;
pub use misc::{LEADER_METRIC, LEADER_METRIC_HELP};

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    /// `host:port` offerd answers on (for `/v2/leader` and `/v2/info`).
    pub advertise: String,
    /// Outstanding offers of the offers API.
    pub offers: Arc<crate::offers::OfferBook>,
    /// What apps may ask of the agents' hosts (checked on every new definition).
    pub host_policy: Arc<cairn_marathon::HostPolicy>,
    /// Who may call what: principals and agent tokens.
    pub access: Arc<crate::auth::Access>,
    /// This offerd is the leader of several replicas (`--etcd`; see [`crate::ha`]).
    pub replicated: bool,
    /// What the autoscaler and the capacity watch last found.
    pub autoscale: Arc<crate::autoscale::Board>,
    /// offerd's catalog, which the UI's relay reaches ([`ui`]); `None` without one.
    pub catalog: Option<cairn_client::CatalogClient>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let access = state.access.clone();
    let api = Router::new()
        .route(
            "/v2/apps",
            get(apps::list).post(apps::create).put(apps::put_bulk),
        )
        .route(
            "/v2/apps/{*rest}",
            get(apps::get_sub)
                .put(apps::put_one)
                .delete(apps::delete_sub)
                .post(apps::post_sub),
        )
        .route("/v2/tasks", get(tasks::list))
        .route("/v2/tasks/delete", post(tasks::delete_many))
        .route("/v2/deployments", get(misc::deployments))
        .route(
            "/v2/deployments/{id}",
            axum::routing::delete(misc::cancel_deployment),
        )
        .route("/v2/queue", get(misc::queue))
        .route(
            "/v2/queue/{*rest}",
            axum::routing::delete(misc::reset_delay),
        )
        .route("/v2/events", get(events::stream))
        .route("/v2/info", get(misc::info))
        .route("/v2/leader", get(misc::leader))
        .route("/metrics", get(misc::metrics))
        .route("/v1/autoscale/status", get(autoscale::status))
        .route("/v1/agents", get(agents::list))
        .route("/v1/agents/{node}", axum::routing::delete(agents::remove))
        .route(
            "/v1/agents/{node}/drain",
            post(agents::drain).delete(agents::drain),
        )
        .route("/v1/offers", get(offers::list))
        .route("/v1/offers/{id}/accept", post(offers::accept))
        .route("/v1/offers/{id}/decline", post(offers::decline))
        .route("/v1/tasks/{id}", get(offers::get_task))
        .route("/v1/tasks/{id}/kill", post(offers::kill_task))
        .route("/v1/tasks/{id}/logs", get(logs::task_logs))
        .route("/v1/frameworks/{name}/tasks", get(offers::framework_tasks))
        .route("/v1/jobs", get(jobs::list).post(jobs::create))
        .route(
            "/v1/jobs/{id}",
            get(jobs::get_one).put(jobs::update).delete(jobs::delete),
        )
        .route(
            "/v1/jobs/{id}/schedules",
            get(jobs::schedules).post(jobs::create_schedule),
        )
        .route(
            "/v1/jobs/{id}/schedules/{sid}",
            get(jobs::schedule)
                .put(jobs::update_schedule)
                .delete(jobs::delete_schedule),
        )
        .route("/v1/jobs/{id}/runs", get(jobs::runs).post(jobs::start))
        .route("/v1/jobs/{id}/runs/{run}", get(jobs::run))
        .route("/v1/jobs/{id}/runs/{run}/actions/stop", post(jobs::stop))
        .route("/v1/queue", get(jobs::queue))
        .route("/v1/auth/self", get(ui::whoami))
        .route(
            "/ui/catalog/{*path}",
            get(ui::relay)
                .head(ui::relay)
                .put(ui::relay)
                .delete(ui::relay)
                .post(ui::relay),
        )
        .fallback(misc::not_found)
        .layer(axum::middleware::from_fn_with_state(
            access.clone(),
            guard::principals,
        ));
    let ui = cairn_ui::UiConfig::offerd(state.catalog.is_some().then_some(ui::CATALOG_RELAY));
    Router::new()
        .route("/ping", get(misc::ping))
        .merge(cairn_ui::routes(ui))
        .merge(agent_routes(access))
        .merge(api)
        .with_state(state)
}

/// What only a taskrun agent calls: registration, the long poll for its tasks, their status.
/// With an agent token set (shared, or node-bound in the auth file), each needs one.
fn agent_routes(access: Arc<crate::auth::Access>) -> Router<AppState> {
    Router::new()
        .route("/v1/agents/register", post(agents::register))
        .route("/v1/agents/{node}/tasks", get(agents::desired))
        .route("/v1/agents/{node}/status", post(agents::status))
        .route_layer(axum::middleware::from_fn_with_state(access, guard::agents))
}

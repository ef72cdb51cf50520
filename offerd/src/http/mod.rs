//! offerd's HTTP API: Marathon's `/v2` (apps, tasks, deployments, queue, events, info) and the
//! agents' `/v1/agents`. Handlers translate requests into [`crate::core::Core::mutate`] calls
//! and state into Marathon's JSON (see [`render`]). Query strings are read by Marathon's rules
//! through [`cairn_http::QueryParams`]: a value is the last one given, a flag (`?force`) is
//! `QueryParams::last_is_true`.

mod agents;
mod apps;
mod error;
mod events;
mod misc;
mod offers;
pub mod render;
mod tasks;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::core::Core;

pub use error::ApiError;

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
    /// The token agents present on their routes (`--agent-token`); `None`: open.
    pub agent_token: Option<cairn_http::SharedSecret>,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
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
        .route("/ping", get(misc::ping))
        .route("/metrics", get(misc::metrics))
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
        .route("/v1/frameworks/{name}/tasks", get(offers::framework_tasks))
        .merge(agent_routes(state.agent_token.clone()))
        .fallback(misc::not_found)
        .with_state(state)
}

/// What only a taskrun agent calls: registration, the long poll for its tasks, their status.
/// With an agent token set, each needs it.
fn agent_routes(token: Option<cairn_http::SharedSecret>) -> Router<AppState> {
    let routes = Router::new()
        .route("/v1/agents/register", post(agents::register))
        .route("/v1/agents/{node}/tasks", get(agents::desired))
        .route("/v1/agents/{node}/status", post(agents::status));
    match token {
        Some(secret) => routes.route_layer(axum::middleware::from_fn_with_state(
            secret,
            cairn_http::require_secret,
        )),
        None => routes,
    }
}

//! `GET /v1/autoscale/status`: every app with an autoscaling policy, its latest reading and
//! decision (and why), its last scale, and the capacity shortfall if tasks wait for room.
//! `?app=/id` narrows it to one app (404 when that app has no policy or was not measured yet).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use serde_json::json;

use super::{ApiError, AppState};

pub async fn status(State(st): State<AppState>, q: QueryParams) -> Result<Response, ApiError> {
    let capacity = st.autoscale.shortfall();
    let apps = match q.last("app") {
        Some(id) => {
            let id = cairn_marathon::normalize_id(id);
            let one = st.autoscale.app(&id).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "App '{id}' has no autoscaling status (no cairn.autoscale.* labels, or not measured yet)"
                ))
            })?;
            vec![one]
        }
        None => st.autoscale.apps(),
    };
    Ok(Json(json!({ "apps": apps, "capacity": capacity })).into_response())
}

//! `/v1/snapshot`: save and restore the whole catalog (see [`crate::snapshot`]).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;

use super::respond::with_index;
use super::{HttpError, HttpResult, QueryParams};
use crate::core::{Core, ensure_server_records};
use crate::snapshot::{Server, restore, save};
use crate::writer::Command;

/// `GET /v1/snapshot`: the archive of the current state, with its index.
pub async fn get(State(core): State<Arc<Core>>) -> HttpResult {
    let st = core.current.load_full();
    let id = core.node_id();
    let address = super::misc::raft_addr(&core);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let index = st.index;
    // Compressing a large catalog is CPU work: keep it off the request workers.
    let archive = tokio::task::spawn_blocking(move || {
        save(
            &st,
            &Server {
                id: &id,
                address: &address,
            },
            now_ms,
        )
    })
    .await
    .map_err(|e| HttpError::internal(format!("snapshot task failed: {e}")))?
    .map_err(|e| HttpError::internal(format!("failed to write snapshot: {e}")))?;
    let resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-gzip"),
        )],
        archive,
    )
        .into_response();
    Ok(with_index(resp, index))
}

/// `PUT /v1/snapshot`: replaces the whole state with the archive's, durably and at once; every
/// blocking query answers, and catalogd's own server records are put back if the archive came
/// from another catalog.
pub async fn put(State(core): State<Arc<Core>>, RawQuery(q): RawQuery, body: Bytes) -> HttpResult {
    if QueryParams::parse(q.as_deref()).present("stale") {
        return Err(HttpError::internal("stale not allowed for restore"));
    }
    let (meta, state) = tokio::task::spawn_blocking(move || restore(&body))
        .await
        .map_err(|e| HttpError::internal(format!("restore task failed: {e}")))?
        .map_err(|e| HttpError::internal(e.to_string()))?;
    tracing::info!(index = meta.index, id = %meta.id, "restoring snapshot");
    core.writer
        .submit(Command::Restore(Box::new(state)))
        .await?;
    ensure_server_records(&core.writer, &core.current.load(), &core.config)
        .await
        .map_err(|e| HttpError::internal(format!("{e:#}")))?;
    Ok(StatusCode::OK.into_response())
}

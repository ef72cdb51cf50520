//! The agent's HTTP API (default 127.0.0.1:5051), what offerd links to and operators curl:
//!
//! - `GET /health` → `ok`;
//! - `GET /v1/tasks` → every known task (id, app_id, state, message, pid or container, ports,
//!   sandbox, started_at, finished_at);
//! - `GET /v1/tasks/{id}/logs?stream=stdout|stderr&offset=N&follow=true|false` → the log from
//!   `offset` (header `X-Taskrun-Offset` = the offset after it, to resume); with `follow`, the
//!   file and then whatever is appended, until the task is terminal and the file drained, the
//!   client leaves, or the agent stops.
//!
//! Errors are JSON `{"error": "..."}`: 404 for an unknown task, 400 for bad parameters.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_marathon::{TaskState, iso8601_millis};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::agent::Shared;
use crate::sandbox::{STDERR_FILE, STDOUT_FILE};

/// How often a followed log is polled for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

#[derive(Clone)]
struct App {
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// One task in `GET /v1/tasks`.
#[derive(Serialize)]
struct TaskView {
    id: String,
    app_id: String,
    state: TaskState,
    message: String,
    pid: Option<i32>,
    /// The Docker container's id, for a Docker task.
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<String>,
    ports: Vec<u16>,
    sandbox: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The API's routes.
fn router(app: App) -> axum::Router {
    axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/v1/tasks", get(list))
        .route("/v1/tasks/{id}/logs", get(logs))
        .with_state(app)
}

/// How long requests may finish after the agent is told to stop (followed logs end at once).
pub const DRAIN: Duration = Duration::from_secs(2);

/// Serves the API on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: cairn_http::Limits,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let until = stop.clone().cancelled_owned();
    let app = router(App { shared, stop });
    cairn_http::Server::new(limits)
        .serve(listener, move |_| app.clone(), until)
        .await;
}

async fn list(State(app): State<App>) -> Response {
    let tasks: Vec<TaskView> = app
        .shared
        .records()
        .into_iter()
        .map(|r| TaskView {
            sandbox: app.shared.sandbox(r.id()).display().to_string(),
            id: r.spec.id,
            app_id: r.spec.app_id,
            state: r.state,
            message: r.message,
            pid: r.pid,
            container: r.container,
            ports: r.ports,
            started_at: r.started_at.map(iso8601_millis),
            finished_at: r.finished_at.map(iso8601_millis),
        })
        .collect();
    Json(tasks).into_response()
}

/// Parses `true`/`false` (and `1`/`0`; a bare `follow` means true).
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "" | "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

async fn logs(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if app.shared.record(&id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("unknown task {id:?}"));
    }
    let file = match q.get("stream").map(String::as_str).unwrap_or("stdout") {
        "stdout" => STDOUT_FILE,
        "stderr" => STDERR_FILE,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("stream: {other:?} is not stdout or stderr"),
            );
        }
    };
    let offset = match q.get("offset").map(|o| o.parse::<u64>()) {
        None => 0,
        Some(Ok(o)) => o,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "offset: must be a non-negative number of bytes",
            );
        }
    };
    let follow = match q.get("follow").map(|f| parse_bool(f)) {
        None => false,
        Some(Some(f)) => f,
        Some(None) => {
            return error(StatusCode::BAD_REQUEST, "follow: must be true or false");
        }
    };
    let path = app.shared.sandbox(&id).join(file);
    if !follow {
        let read = tokio::task::spawn_blocking(move || crate::logs::read_from(&path, offset)).await;
        return match read {
            Ok(Ok((bytes, end))) => {
                let mut resp = text(Body::from(bytes));
                if let Ok(v) = HeaderValue::from_str(&end.to_string()) {
                    resp.headers_mut().insert("x-taskrun-offset", v);
                }
                resp
            }
            Ok(Err(e)) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {file}: {e}"),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    let state = FollowState {
        app,
        id,
        path,
        offset,
    };
    text(Body::from_stream(futures::stream::unfold(
        state, next_chunk,
    )))
}

fn text(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

struct FollowState {
    app: App,
    id: String,
    path: PathBuf,
    offset: u64,
}

/// The next chunk of a followed log, or the end of the stream.
async fn next_chunk(mut st: FollowState) -> Option<(std::io::Result<Bytes>, FollowState)> {
    loop {
        if st.app.stop.is_cancelled() {
            return None;
        }
        // Terminal-ness is read before the file, so the bytes written before the end are sent.
        let terminal = st
            .app
            .shared
            .record(&st.id)
            .is_none_or(|r| r.state.is_terminal());
        let (path, offset) = (st.path.clone(), st.offset);
        let read =
            tokio::task::spawn_blocking(move || crate::logs::read_chunk(&path, offset)).await;
        match read {
            Ok(Ok((chunk, next))) => {
                st.offset = next;
                if !chunk.is_empty() {
                    return Some((Ok(Bytes::from(chunk)), st));
                }
            }
            Ok(Err(e)) => return Some((Err(e), st)),
            Err(_) => return None,
        }
        if terminal {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            () = st.app.stop.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_values() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool(""), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}

//! The agent's HTTP API (default 127.0.0.1:5051), what offerd links to and operators curl:
//!
//! - `GET /health` → `ok`;
//! - `GET /v1/tasks` → every known task (id, app_id, state, message, pid or container, ports,
//!   sandbox, user when one was named, started_at, finished_at);
//! - `GET /v1/tasks/{id}/logs?stream=stdout|stderr&offset=N&length=N&follow=true|false` → the
//!   log from `offset` (in the current file; an offset past its end, left from before a
//!   rotation, reads from 0), at most `length` bytes: without `follow`, up to the size the file
//!   had when the request came (header `X-Taskrun-Offset` = the offset after it, to resume);
//!   with `follow`, the file and then whatever is appended, across rotations, until the task is
//!   terminal and the file drained, the client leaves, or the agent stops. Either way the file
//!   is streamed a chunk at a time as the client reads, so memory stays bounded whatever the
//!   log's size, and the reader is dropped when the client leaves. `since=<unix seconds |
//!   RFC 3339>` (instead of `offset`) starts at the first byte written in that second or later,
//!   by the file's time index (1 s granularity; see [`crate::logs`]); the answer then carries
//!   `X-Taskrun-Since: applied`, or `X-Taskrun-Since: not-indexed` when the file has no index
//!   (a task started by an older taskrun) and the log is read from offset 0 instead. Rotated
//!   generations are not reached: a time before the current file began starts at its
//!   beginning;
//! - `GET /metrics` → the tasks' and the node's figures in Prometheus' text format (see
//!   [`crate::metrics`]).
//!
//! Errors are JSON `{"error": "..."}`: 404 for an unknown task, 400 for bad parameters.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_http::QueryParams;
use cairn_marathon::{TaskState, iso8601_millis};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::logs::{LogReader, SinceAnswer};
use crate::sandbox::{STDERR_FILE, STDOUT_FILE, TaskRecord};

/// How often a followed log is polled for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Whether a `since` was applied: `applied`, or `not-indexed` (read from offset 0).
pub const SINCE_HEADER: &str = "x-taskrun-since";

/// What the API reads: the tasks the agent knows and where their sandboxes are (the agent's
/// task table implements it).
pub trait KnownTasks: Send + Sync + 'static {
    /// Every known task's record.
    fn records(&self) -> Vec<TaskRecord>;
    /// One task's record; `None` for a task the agent does not know.
    fn record(&self, id: &str) -> Option<TaskRecord>;
    /// The task's sandbox directory.
    fn sandbox(&self, id: &str) -> std::path::PathBuf;
    /// Every known task as `/metrics` reads it.
    fn targets(&self) -> Vec<crate::metrics::Target> {
        self.records()
            .iter()
            .map(crate::metrics::Target::of)
            .collect()
    }
}

#[derive(Clone)]
struct App {
    tasks: Arc<dyn KnownTasks>,
    metrics: Arc<crate::metrics::Collector>,
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
    /// The user the task runs as, when one was named (else taskrun's, or the image's).
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The API's routes.
fn router(app: App, token: Option<cairn_http::SharedSecret>) -> axum::Router {
    let tasks = axum::Router::new()
        .route("/v1/tasks", get(list))
        .route("/v1/tasks/{id}/logs", get(logs))
        .route("/metrics", get(metrics));
    // The tasks, their output (which may print their secrets) and their figures need the token
    // when one is set; the health probe stays open.
    let tasks = match token {
        Some(secret) => tasks.route_layer(axum::middleware::from_fn_with_state(
            secret,
            cairn_http::require_secret,
        )),
        None => tasks,
    };
    axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(tasks)
        .with_state(app)
}

/// How long requests may finish after the agent is told to stop (followed logs end at once).
pub const DRAIN: Duration = Duration::from_secs(2);

/// Serves the API on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    limits: cairn_http::Limits,
    tls: Option<cairn_http::Tls>,
    tasks: Arc<dyn KnownTasks>,
    metrics: Arc<crate::metrics::Collector>,
    token: Option<cairn_http::SharedSecret>,
    stop: CancellationToken,
) {
    let until = stop.clone().cancelled_owned();
    let app = router(
        App {
            tasks,
            metrics,
            stop,
        },
        token,
    );
    cairn_http::Server::new(limits)
        .with_tls(tls)
        .serve(listener, move |_| app.clone(), until)
        .await;
}

async fn metrics(State(app): State<App>) -> Response {
    let tasks = app.tasks.clone();
    let text = app.metrics.scrape(move || tasks.targets()).await;
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(cairn_metrics::CONTENT_TYPE),
    );
    resp
}

async fn list(State(app): State<App>) -> Response {
    let tasks: Vec<TaskView> = app
        .tasks
        .records()
        .into_iter()
        .map(|r| TaskView {
            sandbox: app.tasks.sandbox(r.id()).display().to_string(),
            id: r.spec.id,
            app_id: r.spec.app_id,
            state: r.state,
            message: r.message,
            pid: r.pid,
            container: r.container,
            user: r.run_as.map(|u| u.name),
            ports: r.ports,
            started_at: r.started_at.map(iso8601_millis),
            finished_at: r.finished_at.map(iso8601_millis),
        })
        .collect();
    Json(tasks).into_response()
}

/// What `GET /v1/tasks/{id}/logs` asks for.
#[derive(Debug)]
struct LogQuery {
    file: &'static str,
    offset: u64,
    /// Most bytes to send.
    length: Option<u64>,
    follow: bool,
    /// Start at the output of this second (Unix seconds) or later, instead of `offset`.
    since: Option<u64>,
}

/// `since`: Unix seconds, or an RFC 3339 time (taken to its whole second).
fn parse_since(raw: &str) -> Result<u64, String> {
    if let Ok(secs) = raw.parse::<u64>() {
        return Ok(secs);
    }
    let t: jiff::Timestamp = raw
        .parse()
        .map_err(|_| format!("since: {raw:?} is neither Unix seconds nor an RFC 3339 time"))?;
    Ok(u64::try_from(t.as_second()).unwrap_or(0))
}

impl LogQuery {
    fn parse(q: &QueryParams) -> Result<LogQuery, String> {
        let file = match q.first("stream").unwrap_or("stdout") {
            "stdout" => STDOUT_FILE,
            "stderr" => STDERR_FILE,
            other => return Err(format!("stream: {other:?} is not stdout or stderr")),
        };
        let offset = q.u64("offset").map_err(|e| e.to_string())?.unwrap_or(0);
        let length = q.u64("length").map_err(|e| e.to_string())?;
        let follow = q
            .bool("follow")
            .map_err(|e| e.to_string())?
            .unwrap_or(false);
        let since = q.first("since").map(parse_since).transpose()?;
        if since.is_some() && q.first("offset").is_some() {
            return Err("since and offset: give one of them".into());
        }
        Ok(LogQuery {
            file,
            offset,
            length,
            follow,
            since,
        })
    }
}

async fn logs(State(app): State<App>, Path(id): Path<String>, q: QueryParams) -> Response {
    if app.tasks.record(&id).is_none() {
        return error(StatusCode::NOT_FOUND, format!("unknown task {id:?}"));
    }
    let q = match LogQuery::parse(&q) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let path = app.tasks.sandbox(&id).join(q.file);
    let (offset, since) = (q.offset, q.since);
    let opened = tokio::task::spawn_blocking(move || {
        let (offset, since_header) = match since {
            None => (offset, None),
            Some(secs) => match crate::logs::since_offset(&path, secs)? {
                SinceAnswer::Offset(o) => (o, Some("applied")),
                SinceAnswer::NotIndexed => (0, Some("not-indexed")),
            },
        };
        let reader = LogReader::open(&path, offset)?;
        let len = reader.len()?;
        Ok::<_, std::io::Error>((reader, len, since_header))
    })
    .await;
    let (reader, len, since_header) = match opened {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading {}: {e}", q.file),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let start = reader.offset();
    let limit = q.length.map_or(u64::MAX, |l| start.saturating_add(l));
    if !q.follow {
        // What the file holds now, not what is written while it is sent.
        let end = len.max(start).min(limit);
        let mut resp = text(Body::from_stream(futures::stream::unfold(
            Some(reader),
            move |reader| read_until(reader, end),
        )));
        if let Ok(v) = HeaderValue::from_str(&end.to_string()) {
            resp.headers_mut().insert("x-taskrun-offset", v);
        }
        return with_since(resp, since_header);
    }
    let state = FollowState {
        app,
        id,
        reader: Some(reader),
        remaining: q.length.unwrap_or(u64::MAX),
    };
    let resp = text(Body::from_stream(futures::stream::unfold(
        state, next_chunk,
    )));
    with_since(resp, since_header)
}

/// Says whether `since` could be applied (`X-Taskrun-Since`), when it was asked for.
fn with_since(mut resp: Response, since: Option<&'static str>) -> Response {
    if let Some(v) = since {
        resp.headers_mut()
            .insert(SINCE_HEADER, HeaderValue::from_static(v));
    }
    resp
}

fn text(body: Body) -> Response {
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Runs one read on the blocking pool; the reader comes back with its result (`None` when the
/// read panicked).
async fn blocking_read(
    mut reader: LogReader,
    read: impl FnOnce(&mut LogReader) -> std::io::Result<Vec<u8>> + Send + 'static,
) -> Option<(std::io::Result<Vec<u8>>, LogReader)> {
    tokio::task::spawn_blocking(move || {
        let r = read(&mut reader);
        (r, reader)
    })
    .await
    .ok()
}

/// The next chunk of a log read up to `end`; the stream ends there (or at an error).
async fn read_until(
    reader: Option<LogReader>,
    end: u64,
) -> Option<(std::io::Result<Bytes>, Option<LogReader>)> {
    let (read, reader) = blocking_read(reader?, move |r| r.read_chunk_until(end)).await?;
    match read {
        Ok(chunk) if chunk.is_empty() => None,
        Ok(chunk) => Some((Ok(Bytes::from(chunk)), Some(reader))),
        Err(e) => Some((Err(e), None)),
    }
}

/// A followed log: the reader (held across rotations) and what may still be sent. Dropped —
/// file and all — when the client leaves.
struct FollowState {
    app: App,
    id: String,
    reader: Option<LogReader>,
    remaining: u64,
}

/// The next chunk of a followed log, or the end of the stream.
async fn next_chunk(mut st: FollowState) -> Option<(std::io::Result<Bytes>, FollowState)> {
    loop {
        if st.app.stop.is_cancelled() || st.remaining == 0 {
            return None;
        }
        // Terminal-ness is read before the file, so the bytes written before the end are sent.
        let terminal = st
            .app
            .tasks
            .record(&st.id)
            .is_none_or(|r| r.state.is_terminal());
        let (read, reader) = blocking_read(st.reader.take()?, LogReader::read_chunk).await?;
        st.reader = Some(reader);
        match read {
            Ok(mut chunk) => {
                if !chunk.is_empty() {
                    chunk.truncate(usize::try_from(st.remaining).unwrap_or(usize::MAX));
                    st.remaining -= chunk.len() as u64;
                    return Some((Ok(Bytes::from(chunk)), st));
                }
            }
            Err(e) => {
                st.reader = None;
                return Some((Err(e), st));
            }
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
    fn log_queries() {
        let q = |raw: &str| LogQuery::parse(&QueryParams::parse(Some(raw)));
        let all = q("").unwrap();
        assert_eq!(
            (all.file, all.offset, all.length, all.follow),
            (STDOUT_FILE, 0, None, false)
        );
        let some = q("stream=stderr&offset=5&length=10&follow").unwrap();
        assert_eq!(
            (some.file, some.offset, some.length, some.follow),
            (STDERR_FILE, 5, Some(10), true)
        );
        for (raw, follow) in [
            ("follow=true", true),
            ("follow=0", false),
            ("follow=False", false),
        ] {
            assert_eq!(q(raw).unwrap().follow, follow, "{raw}");
        }
        let refused = |raw: &str| q(raw).unwrap_err();
        assert!(refused("length=-1").starts_with("query parameter length:"));
        assert!(refused("offset=x").starts_with("query parameter offset:"));
        assert!(refused("follow=yes").starts_with("query parameter follow:"));
        assert!(refused("stream=both").starts_with("stream:"));
        // since: Unix seconds or RFC 3339 (to its second); never with an offset.
        assert_eq!(q("since=1778188176").unwrap().since, Some(1_778_188_176));
        assert_eq!(
            q("since=2026-05-07T21:09:36.9Z").unwrap().since,
            Some(1_778_188_176)
        );
        assert_eq!(
            q("since=2026-05-07T23:09:36%2B02:00").unwrap().since,
            Some(1_778_188_176)
        );
        assert_eq!(q("").unwrap().since, None);
        assert!(refused("since=yesterday").starts_with("since:"));
        assert!(refused("since=-5").starts_with("since:"));
        assert!(refused("since=5&offset=3").starts_with("since and offset"));
    }
}

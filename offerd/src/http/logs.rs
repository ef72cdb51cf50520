//! `GET /v1/tasks/{id}/logs?stream=&offset=&length=&follow=&since=`: a task's output through
//! offerd, so that operators need offerd's access only (and offerd's rules decide who reads).
//! offerd finds the task (live, or among the recently ended), asks the task's agent for the
//! same read on its API (taskrun's `/v1/tasks/{id}/logs`, with the agent token that agent
//! requires: its node-bound token, else the shared one) and streams the answer back as it
//! comes, a chunk at a time, never holding the log: a followed log ends when the agent ends it
//! (the task terminal and its file drained), when the caller leaves (the agent's stream is
//! dropped with it) or when offerd stops. The agent's `X-Taskrun-Offset` and `X-Taskrun-Since`
//! headers are passed on; see taskrun's `http` module for the parameters.
//!
//! Answers: 404 for a task offerd does not know (or its agent no longer has), 400 for bad
//! parameters, 503 when the task's agent is not known any more or [`MAX_STREAMS`] reads are
//! under way (`Retry-After: 1`), 502 when the agent cannot be reached, refuses offerd's agent
//! token or answers otherwise (the message says which agent and why). Agents are reached over
//! plain HTTP at the address they registered (`http_addr`).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{ApiError, AppState};
use crate::auth::Caller;

/// Most log reads offerd carries at once (each holds a connection to an agent).
pub const MAX_STREAMS: usize = 256;
/// Connecting to an agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The agent's answer must begin (its status and headers) within this.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A read that is not followed must go on: a gap this long between chunks ends it.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest `since` passed on (an RFC 3339 time is ~35 characters).
const MAX_SINCE_LEN: usize = 64;
/// The agent's headers passed on to the caller.
const PASSED_HEADERS: [&str; 2] = ["x-taskrun-offset", "x-taskrun-since"];

/// The client offerd reads agents' logs with, and the cap on reads under way: one per
/// process, as the API's connection bounds are.
struct Proxy {
    client: Result<reqwest::Client, String>,
    slots: Arc<Semaphore>,
}

static PROXY: LazyLock<Proxy> = LazyLock::new(|| {
    // reqwest has TLS but no crypto provider of its own: a config is always handed over.
    let client = cairn_client::TlsOptions::default()
        .client_config(false)
        .map_err(|e| e.to_string())
        .and_then(|tls| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .no_proxy()
                .connect_timeout(CONNECT_TIMEOUT)
                .build()
                .map_err(|e| e.to_string())
        });
    Proxy {
        client,
        slots: Arc::new(Semaphore::new(MAX_STREAMS)),
    }
});

/// What the request asks of the agent: the parameters it takes, checked here so a bad one is
/// offerd's 400 rather than the agent's.
fn agent_query(q: &QueryParams) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut out = Vec::new();
    if let Some(stream) = q.last("stream") {
        if !matches!(stream, "stdout" | "stderr") {
            return Err(ApiError::BadRequest(format!(
                "stream: {stream:?} is not stdout or stderr"
            )));
        }
        out.push(("stream", stream.to_string()));
    }
    for name in ["offset", "length"] {
        if let Some(n) = q.u64(name)? {
            out.push((name, n.to_string()));
        }
    }
    if let Some(follow) = q.bool("follow")? {
        out.push(("follow", follow.to_string()));
    }
    if let Some(since) = q.last("since") {
        if since.is_empty()
            || since.len() > MAX_SINCE_LEN
            || !since
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '+' | '.'))
        {
            return Err(ApiError::BadRequest(format!(
                "since: {since:?} is neither Unix seconds nor an RFC 3339 time"
            )));
        }
        out.push(("since", since.to_string()));
    }
    Ok(out)
}

/// A 502 naming the agent.
fn bad_gateway(message: String) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        axum::Json(json!({ "message": message })),
    )
        .into_response()
}

/// `GET /v1/tasks/{id}/logs`: read (any principal) of the task's app.
pub async fn task_logs(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let query = agent_query(&q)?;
    let found = st.core.read(|s| {
        let task = s
            .tasks
            .get(&id)
            .cloned()
            .or_else(|| s.finished.iter().rev().find(|t| t.id == id).cloned())?;
        let agent = s.agents.get(&task.node).cloned();
        Some((task.app_id.clone(), task.node.clone(), agent))
    });
    let Some((app_id, node, agent)) = found else {
        return Err(ApiError::NotFound(format!("Task '{id}' does not exist")));
    };
    tracing::debug!(principal = caller.name(), task = %id, app = %app_id, "reading a task's log");
    let Some(agent) = agent.filter(|a| !a.http_addr.is_empty()) else {
        return Err(ApiError::Unavailable(format!(
            "the agent of task '{id}' ({node}) is not known any more"
        )));
    };
    let client = PROXY
        .client
        .as_ref()
        .map_err(|e| ApiError::Internal(format!("the log client: {e}")))?;
    let Ok(permit) = PROXY.slots.clone().try_acquire_owned() else {
        return Err(ApiError::Unavailable(format!(
            "{MAX_STREAMS} task logs are being read through offerd; try again later"
        )));
    };
    let base = if agent.http_addr.contains("://") {
        agent.http_addr.clone()
    } else {
        format!("http://{}", agent.http_addr)
    };
    let mut url = match url::Url::parse(&base) {
        Ok(u) => u,
        Err(e) => {
            return Ok(bad_gateway(format!(
                "agent {node} registered an API address offerd cannot use ({:?}): {e}",
                agent.http_addr
            )));
        }
    };
    url.path_segments_mut()
        .map_err(|()| ApiError::Internal(format!("agent {node}'s address has no path")))?
        .extend(["v1", "tasks", id.as_str(), "logs"]);
    url.query_pairs_mut().extend_pairs(query.iter());
    let mut req = client.get(url);
    if let Some(token) = st.access.agent_token_of(&node) {
        let mut value = Vec::with_capacity(token.expose().len() + 7);
        value.extend_from_slice(b"Bearer ");
        value.extend_from_slice(token.expose());
        match HeaderValue::from_bytes(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                req = req.header(header::AUTHORIZATION, v);
            }
            Err(_) => {
                return Err(ApiError::Internal(
                    "the agent token cannot be sent in a header".into(),
                ));
            }
        }
    }
    let resp = match tokio::time::timeout(ANSWER_TIMEOUT, req.send()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Ok(bad_gateway(format!(
                "cannot reach agent {node} at {}: {}",
                agent.http_addr,
                cause_chain(&e)
            )));
        }
        Err(_) => {
            return Ok(bad_gateway(format!(
                "agent {node} at {} did not answer within {}s",
                agent.http_addr,
                ANSWER_TIMEOUT.as_secs()
            )));
        }
    };
    let status = resp.status();
    if !status.is_success() {
        return Ok(agent_refusal(&node, &id, status, resp).await);
    }
    let follow = query.iter().any(|(k, v)| *k == "follow" && v == "true");
    let passed: Vec<(&'static str, HeaderValue)> = PASSED_HEADERS
        .iter()
        .filter_map(|name| Some((*name, resp.headers().get(*name)?.clone())))
        .collect();
    let mut out = Response::new(Body::from_stream(futures::stream::unfold(
        Relay {
            resp: Some(resp),
            follow,
            _permit: permit,
        },
        relay,
    )));
    let headers = out.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in passed {
        headers.insert(name, value);
    }
    Ok(out)
}

/// An agent's answer other than 2xx, as offerd's.
async fn agent_refusal(
    node: &str,
    id: &str,
    status: reqwest::StatusCode,
    resp: reqwest::Response,
) -> Response {
    // The agent's `{"error": ...}`, at most a few KiB of it.
    let body = tokio::time::timeout(ANSWER_TIMEOUT, resp.bytes())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let said = serde_json::from_slice::<Value>(&body[..body.len().min(4096)])
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned());
    match status.as_u16() {
        404 => ApiError::NotFound(format!("agent {node} has no logs of task '{id}': {said}"))
            .into_response(),
        400 => ApiError::BadRequest(said).into_response(),
        401 | 403 => bad_gateway(format!(
            "agent {node} refused offerd's agent token ({status}): offerd and the agent need the same --agent-token"
        )),
        _ => bad_gateway(format!("agent {node} answered {status}: {said}")),
    }
}

/// reqwest's error with its causes (its own text says only "error sending request").
fn cause_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

/// A log being relayed: the agent's answer and the slot it holds (given back when the caller
/// leaves or the stream ends).
struct Relay {
    resp: Option<reqwest::Response>,
    follow: bool,
    _permit: OwnedSemaphorePermit,
}

/// The next chunk from the agent, as it comes.
async fn relay(mut st: Relay) -> Option<(std::io::Result<Bytes>, Relay)> {
    let resp = st.resp.as_mut()?;
    let next = if st.follow {
        // A followed log may be quiet for as long as the task is.
        Ok(resp.chunk().await)
    } else {
        tokio::time::timeout(CHUNK_TIMEOUT, resp.chunk()).await
    };
    match next {
        Ok(Ok(Some(chunk))) => Some((Ok(chunk), st)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            st.resp = None;
            Some((Err(std::io::Error::other(cause_chain(&e))), st))
        }
        Err(_) => {
            st.resp = None;
            Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the agent stopped sending the log",
                )),
                st,
            ))
        }
    }
}

//! `GET /v2/events`: Marathon's event stream as Server-Sent Events, optionally filtered by
//! `?event_type=` (repeatable). A subscriber too slow to keep up skips the events it missed.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use cairn_http::QueryParams;
use cairn_marathon::now_millis;
use futures::Stream;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::events::Event;

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default()
        .event(e.event_type)
        .data(e.data.to_string())
}

pub async fn stream(
    State(st): State<AppState>,
    q: QueryParams,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let types: Arc<Vec<String>> = Arc::new(q.all("event_type").map(str::to_string).collect());
    let rx = st.core.events.subscribe();
    let attached = Event::new(
        "event_stream_attached",
        now_millis(),
        json!({ "remoteAddress": "" }),
    );
    let first =
        (types.is_empty() || types.iter().any(|t| t == attached.event_type)).then_some(attached);
    let stream = futures::stream::unfold((rx, first, types), |(mut rx, first, types)| async move {
        if let Some(e) = first {
            return Some((Ok(to_sse(&e)), (rx, None, types)));
        }
        loop {
            match rx.recv().await {
                Ok(e) if types.is_empty() || types.iter().any(|t| t == e.event_type) => {
                    return Some((Ok(to_sse(&e)), (rx, None, types)));
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "event subscriber lagging; events skipped")
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

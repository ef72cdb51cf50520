//! `GET /v2/events`: Marathon's event stream as Server-Sent Events, optionally filtered by
//! `?event_type=` (repeatable). A subscriber too slow to keep up skips the events it missed.
//! App definitions in events (`api_post_event`, deployment plans) carry `env` values only for
//! apps the subscriber may change; a subscriber whose principal a reload removed or changed is
//! disconnected at its next event.

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
use crate::auth::Caller;
use crate::events::Event;

fn to_sse(e: &Event, caller: &Caller) -> SseEvent {
    let sse = SseEvent::default().event(e.event_type);
    if caller.is_admin() {
        return sse.data(e.data.to_string());
    }
    let mut data = e.data.clone();
    caller.hide_env(&mut data);
    sse.data(data.to_string())
}

pub async fn stream(
    State(st): State<AppState>,
    caller: Caller,
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
    let access = st.access.clone();
    let who = Arc::new(caller);
    let state = (rx, first, types, who);
    let stream = futures::stream::unfold(state, move |(mut rx, first, types, who)| {
        let access = access.clone();
        async move {
            if let Some(e) = first {
                return Some((Ok(to_sse(&e, &who)), (rx, None, types, who)));
            }
            loop {
                match rx.recv().await {
                    Ok(_) if !access.still_valid(&who) => {
                        tracing::info!(
                            principal = who.name(),
                            "event stream closed: the principal changed in the auth file"
                        );
                        return None;
                    }
                    Ok(e) if types.is_empty() || types.iter().any(|t| t == e.event_type) => {
                        return Some((Ok(to_sse(&e, &who)), (rx, None, types, who)));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event subscriber lagging; events skipped")
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

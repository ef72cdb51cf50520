//! The event bus behind `/v2/events`: Marathon's event types as JSON, fanned out to every SSE
//! subscriber. Events are published only after the change they describe is durable.

use cairn_marathon::{TaskState, iso8601_millis};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::model::Task;

/// One event: its Marathon `eventType` and its JSON (which carries `eventType` too).
#[derive(Clone, Debug)]
pub struct Event {
    pub event_type: &'static str,
    pub data: Value,
}

impl Event {
    pub fn new(event_type: &'static str, now_ms: u64, mut data: Value) -> Event {
        if let Value::Object(m) = &mut data {
            m.insert("eventType".into(), json!(event_type));
            m.insert("timestamp".into(), json!(iso8601_millis(now_ms)));
        }
        Event { event_type, data }
    }

    /// `status_update_event` for a task entering `state`.
    pub fn status_update(task: &Task, state: TaskState, message: &str, now_ms: u64) -> Event {
        Event::new(
            "status_update_event",
            now_ms,
            json!({
                "slaveId": task.node,
                "taskId": task.id,
                "taskStatus": state.as_str(),
                "message": message,
                "appId": task.app_id,
                "host": task.host,
                "ipAddresses": task.ip_addresses(),
                "ports": task.ports,
                "version": task.version,
            }),
        )
    }
}

/// Fan-out of events to subscribers; slow subscribers lose the oldest events, never block
/// offerd.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(4096).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: Event) {
        // No subscriber is not an error.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

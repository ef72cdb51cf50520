//! User events (`/v1/event/*`): Consul's fire-and-forget messages for scripts and watches.
//!
//! Consul gossips an event to every agent, and each agent keeps the last 256 it accepted in
//! memory, after matching the event's node, service and tag filters against itself. catalogd is
//! the agent of its own node: it keeps, in memory as Consul does (events are not durable there
//! either), the events whose filters match its node and the services registered on it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_cli::LockOrExit as _;
use tokio::sync::Notify;

/// Events an agent keeps (Consul's `eventBuf`).
pub const BUFFER: usize = 256;
/// Serf's `UserEventSizeLimit`: name, payload and framing together.
pub const SIZE_LIMIT: usize = 512;
/// Bytes of Serf's framing and msgpack encoding around a name and payload (an estimate of the
/// "before encoding" size Serf checks).
const FRAMING: usize = 64;

/// An event as Consul's API shows it.
pub use cairn_wire::UserEvent;

/// Why an event cannot be fired (the texts are Consul's).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FireError {
    #[error("Cannot provide tag filter without service filter")]
    TagWithoutService,
    #[error("Invalid {0} filter: {1}")]
    BadFilter(&'static str, String),
    #[error(
        "error broadcasting event: user event exceeds configured limit of {SIZE_LIMIT} bytes before encoding"
    )]
    TooLarge,
}

/// What a local service looks like to an event's filters.
pub struct LocalService<'a> {
    pub name: &'a str,
    pub tags: &'a [String],
}

/// Compiles an event filter the way Go's `regexp.Compile` would be given it.
fn filter(kind: &'static str, pattern: &str) -> Result<Option<regex::Regex>, FireError> {
    if pattern.is_empty() {
        return Ok(None);
    }
    regex::Regex::new(pattern)
        .map(Some)
        .map_err(|e| FireError::BadFilter(kind, e.to_string()))
}

/// The last events this agent accepted, and a wake-up for blocking lists.
#[derive(Default)]
pub struct EventBuffer {
    events: Mutex<VecDeque<UserEvent>>,
    /// Serf's Lamport clock for user events.
    clock: AtomicU64,
    pub changed: Notify,
}

impl EventBuffer {
    /// Validates and fires an event; it is kept when its filters match `node` and `services`.
    /// Returns the event as fired (LTime 0, as Consul's fire answer shows it).
    pub fn fire(
        &self,
        event: UserEvent,
        payload_len: usize,
        node: &str,
        services: &[LocalService<'_>],
    ) -> Result<UserEvent, FireError> {
        if !event.tag_filter.is_empty() && event.service_filter.is_empty() {
            return Err(FireError::TagWithoutService);
        }
        let node_re = filter("node", &event.node_filter)?;
        let service_re = filter("service", &event.service_filter)?;
        let tag_re = filter("tag", &event.tag_filter)?;
        let size = "consul:event:".len()
            + event.name.len()
            + payload_len
            + event.node_filter.len()
            + event.service_filter.len()
            + event.tag_filter.len()
            + event.id.len()
            + FRAMING;
        if size > SIZE_LIMIT {
            return Err(FireError::TooLarge);
        }
        let node_ok = node_re.is_none_or(|re| re.is_match(node));
        let service_ok = service_re.is_none_or(|re| {
            services.iter().any(|s| {
                re.is_match(s.name)
                    && tag_re
                        .as_ref()
                        .is_none_or(|t| s.tags.iter().any(|tag| t.is_match(tag)))
            })
        });
        if node_ok && service_ok && event.name != "_rexec" {
            let mut kept = event.clone();
            kept.ltime = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
            let mut events = self.events.lock_or_exit("event buffer");
            if events.len() == BUFFER {
                events.pop_front();
            }
            events.push_back(kept);
            drop(events);
            self.changed.notify_waiters();
        }
        Ok(event)
    }

    /// Events kept, oldest first, optionally only those named `name`.
    pub fn list(&self, name: Option<&str>) -> Vec<UserEvent> {
        self.events
            .lock_or_exit("event buffer")
            .iter()
            .filter(|e| name.is_none_or(|n| e.name == n))
            .cloned()
            .collect()
    }
}

/// Consul's event-list index: not monotonic, clients compare it for equality.
pub use cairn_wire::event_list_index as list_index;

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, node: &str, service: &str, tag: &str) -> UserEvent {
        UserEvent {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.into(),
            payload: None,
            node_filter: node.into(),
            service_filter: service.into(),
            tag_filter: tag.into(),
            version: 1,
            ltime: 0,
        }
    }

    #[test]
    fn filters_decide_what_this_agent_keeps() {
        let buf = EventBuffer::default();
        let tags = vec!["prod".to_string()];
        let services = [LocalService {
            name: "web",
            tags: &tags,
        }];
        let cases = [
            (event("a", "", "", ""), true),
            (event("b", "^node1$", "", ""), true),
            (event("c", "^other$", "", ""), false),
            (event("d", "", "^web$", "prod"), true),
            (event("e", "", "^web$", "canary"), false),
            (event("f", "", "^db$", ""), false),
        ];
        for (e, kept) in cases {
            let name = e.name.clone();
            buf.fire(e, 0, "node1", &services).unwrap();
            assert_eq!(
                buf.list(Some(&name)).len(),
                usize::from(kept),
                "event {name}"
            );
        }
        let all = buf.list(None);
        assert_eq!(all.iter().map(|e| e.ltime).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            buf.fire(event("x", "", "", "t"), 0, "node1", &services),
            Err(FireError::TagWithoutService)
        );
        assert!(matches!(
            buf.fire(event("x", "(", "", ""), 0, "node1", &services),
            Err(FireError::BadFilter("node", _))
        ));
        assert_eq!(
            buf.fire(event("x", "", "", ""), 600, "node1", &services),
            Err(FireError::TooLarge)
        );
    }

    #[test]
    fn the_buffer_keeps_the_last_256() {
        let buf = EventBuffer::default();
        for i in 0..300 {
            buf.fire(event(&format!("e{i}"), "", "", ""), 0, "n", &[])
                .unwrap();
        }
        let all = buf.list(None);
        assert_eq!(all.len(), BUFFER);
        assert_eq!(all[0].name, "e44");
        assert_ne!(list_index(&all), 1);
        assert_eq!(list_index(&[]), 1);
    }
}

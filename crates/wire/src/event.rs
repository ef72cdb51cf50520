//! User events (`/v1/event/fire/:name`, `/v1/event/list`): the event as Consul's API shows it and
//! the index Consul derives from an event's ID.

use serde::{Deserialize, Serialize};

/// An event as Consul's API shows it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct UserEvent {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    /// Base64 of the payload; `null` when there was none.
    pub payload: Option<String>,
    pub node_filter: String,
    pub service_filter: String,
    pub tag_filter: String,
    pub version: u32,
    #[serde(rename = "LTime")]
    pub ltime: u64,
}

impl UserEvent {
    /// The decoded payload (empty when there is none or it is not valid base64).
    pub fn payload_bytes(&self) -> Vec<u8> {
        self.payload
            .as_deref()
            .and_then(|p| crate::b64_decode(p).ok())
            .unwrap_or_default()
    }
}

/// Consul's `IDToIndex`: an event's UUID folded into 64 bits (its halves XORed), the index of an
/// event list whose newest event it is. `None` for an ID that is not a UUID.
pub fn event_id_to_index(id: &str) -> Option<u64> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let lo = u64::from_str_radix(&hex[..16], 16).ok()?;
    let hi = u64::from_str_radix(&hex[16..], 16).ok()?;
    Some(lo ^ hi)
}

/// The index of an event list: that of its newest (last) event, or 1 for an empty list (and
/// never 0, which a client would read as "do not block").
pub fn event_list_index(events: &[UserEvent]) -> u64 {
    events
        .last()
        .and_then(|e| event_id_to_index(&e.id))
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_folds_the_uuid_halves() {
        let id = "00000000-0000-0001-0000-000000000003";
        assert_eq!(event_id_to_index(id), Some(1 ^ 3));
        assert_eq!(event_id_to_index("not-a-uuid"), None);
        assert_eq!(
            event_id_to_index("zz000000-0000-0001-0000-000000000003"),
            None
        );
    }

    #[test]
    fn list_index_is_the_newest_event_or_one() {
        assert_eq!(event_list_index(&[]), 1);
        let ev = |id: &str| UserEvent {
            id: id.into(),
            ..Default::default()
        };
        let same = "12345678-9abc-def0-1234-56789abcdef0";
        assert_eq!(
            event_list_index(&[ev(same)]),
            1,
            "halves equal: 0 reads as 1"
        );
        let other = "00000000-0000-0000-0000-000000000007";
        assert_eq!(event_list_index(&[ev(same), ev(other)]), 7);
    }

    #[test]
    fn decodes_consul_answer() {
        let body = r#"{"ID":"b54fe110-7af5-cafc-d1fb-afc8ba432b1c","Name":"deploy","Payload":"MQ==","NodeFilter":"","ServiceFilter":"","TagFilter":"","Version":1,"LTime":3}"#;
        let e: UserEvent = serde_json::from_str(body).unwrap();
        assert_eq!(e.name, "deploy");
        assert_eq!(e.payload_bytes(), b"1");
        assert_eq!(e.ltime, 3);
        assert_eq!(serde_json::to_string(&e).unwrap(), body);
    }
}

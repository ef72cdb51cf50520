//! The gateway's JSON (proto3's JSON mapping, as etcd 3.4's grpc-gateway writes it): `bytes` are
//! base64, 64-bit integers are strings (`"2"`), enums are names (`"DELETE"`), and a field holding
//! its default value (0, false, empty, the first enum value) is left out. Every field here is
//! therefore `#[serde(default)]`, integers are read from strings or numbers, and unknown fields
//! are ignored. Requests are built as `serde_json::Value`s with only the non-default fields.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::types::{EventKind, KeyValue};

/// Base64 of bytes, as the gateway wants them.
pub(crate) fn b64(bytes: &[u8]) -> Value {
    Value::String(STANDARD.encode(bytes))
}

/// A JSON request object: `field` set only when not its default.
#[derive(Default)]
pub(crate) struct Obj(pub(crate) Map<String, Value>);

impl Obj {
    pub(crate) fn bytes(mut self, name: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            self.0.insert(name.into(), b64(v));
        }
        self
    }
    pub(crate) fn int(mut self, name: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(name.into(), Value::String(v.to_string()));
        }
        self
    }
    pub(crate) fn flag(mut self, name: &str, v: bool) -> Self {
        if v {
            self.0.insert(name.into(), Value::Bool(true));
        }
        self
    }
    pub(crate) fn value(mut self, name: &str, v: Value) -> Self {
        self.0.insert(name.into(), v);
        self
    }
    pub(crate) fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// Integers as proto3 JSON writes them: a string, or (leniently) a number; `null` is 0.
pub(crate) mod int {
    use super::*;

    pub(crate) fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr + TryFrom<i64> + TryFrom<u64> + Default,
    {
        struct V<T>(std::marker::PhantomData<T>);
        impl<T> Visitor<'_> for V<T>
        where
            T: std::str::FromStr + TryFrom<i64> + TryFrom<u64> + Default,
        {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer or a string holding one")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
                v.parse()
                    .map_err(|_| E::custom(format_args!("{v:?} is not an integer in range")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
                T::try_from(v).map_err(|_| E::custom(format_args!("{v} out of range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
                T::try_from(v).map_err(|_| E::custom(format_args!("{v} out of range")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<T, E> {
                Ok(T::default())
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Bytes as base64; `null` is empty.
pub(crate) mod bytes {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => STANDARD
                .decode(s.as_bytes())
                .map_err(|e| de::Error::custom(format_args!("bad base64: {e}"))),
        }
    }
}

/// A list of base64 byte strings; `null` is empty.
pub(crate) mod bytes_list {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let list: Option<Vec<String>> = Option::deserialize(d)?;
        list.unwrap_or_default()
            .into_iter()
            .map(|s| {
                STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| de::Error::custom(format_args!("bad base64: {e}")))
            })
            .collect()
    }
}

impl<'de> Deserialize<'de> for EventKind {
    /// `"PUT"`/`"DELETE"`, or the numbers 0/1; absent is PUT (the enum's default).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(EventKind::Put),
            Value::String(s) if s == "PUT" => Ok(EventKind::Put),
            Value::String(s) if s == "DELETE" => Ok(EventKind::Delete),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(EventKind::Put),
            Value::Number(n) if n.as_u64() == Some(1) => Ok(EventKind::Delete),
            other => Err(de::Error::custom(format_args!(
                "unknown event type {other}"
            ))),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Header {
    #[serde(with = "int")]
    pub(crate) cluster_id: u64,
    #[serde(with = "int")]
    pub(crate) member_id: u64,
    #[serde(with = "int")]
    pub(crate) revision: i64,
    #[serde(with = "int")]
    pub(crate) raft_term: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireKv {
    #[serde(with = "bytes")]
    key: Vec<u8>,
    #[serde(with = "int")]
    create_revision: i64,
    #[serde(with = "int")]
    mod_revision: i64,
    #[serde(with = "int")]
    version: i64,
    #[serde(with = "bytes")]
    value: Vec<u8>,
    #[serde(with = "int")]
    lease: i64,
}

impl From<WireKv> for KeyValue {
    fn from(w: WireKv) -> Self {
        KeyValue {
            key: w.key,
            value: w.value,
            create_revision: w.create_revision,
            mod_revision: w.mod_revision,
            version: w.version,
            lease: w.lease,
        }
    }
}

pub(crate) fn kvs(list: Vec<WireKv>) -> Vec<KeyValue> {
    list.into_iter().map(KeyValue::from).collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RangeResponse {
    pub(crate) header: Header,
    pub(crate) kvs: Vec<WireKv>,
    pub(crate) more: bool,
    #[serde(with = "int")]
    pub(crate) count: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PutResponse {
    pub(crate) header: Header,
    pub(crate) prev_kv: Option<WireKv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeleteResponse {
    pub(crate) header: Header,
    #[serde(with = "int")]
    pub(crate) deleted: i64,
    pub(crate) prev_kvs: Vec<WireKv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ResponseOp {
    pub(crate) response_range: Option<RangeResponse>,
    pub(crate) response_put: Option<PutResponse>,
    pub(crate) response_delete_range: Option<DeleteResponse>,
    pub(crate) response_txn: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TxnResponse {
    pub(crate) header: Header,
    pub(crate) succeeded: bool,
    pub(crate) responses: Vec<ResponseOp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct HeaderOnly {
    pub(crate) header: Header,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireEvent {
    #[serde(rename = "type")]
    pub(crate) kind: EventKind,
    pub(crate) kv: WireKv,
    pub(crate) prev_kv: Option<WireKv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WatchResponse {
    pub(crate) header: Header,
    pub(crate) created: bool,
    pub(crate) canceled: bool,
    #[serde(with = "int")]
    pub(crate) compact_revision: i64,
    pub(crate) cancel_reason: String,
    pub(crate) events: Vec<WireEvent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseGrantResponse {
    #[serde(rename = "ID", with = "int")]
    pub(crate) id: i64,
    #[serde(rename = "TTL", with = "int")]
    pub(crate) ttl: i64,
    pub(crate) error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseKeepAliveResponse {
    #[serde(rename = "ID", with = "int")]
    pub(crate) id: i64,
    #[serde(rename = "TTL", with = "int")]
    pub(crate) ttl: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LeaseTimeToLiveResponse {
    #[serde(rename = "ID", with = "int")]
    pub(crate) id: i64,
    #[serde(rename = "TTL", with = "int")]
    pub(crate) ttl: i64,
    #[serde(rename = "grantedTTL", with = "int")]
    pub(crate) granted_ttl: i64,
    #[serde(with = "bytes_list")]
    pub(crate) keys: Vec<Vec<u8>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Member {
    #[serde(rename = "ID", with = "int")]
    pub(crate) id: u64,
    pub(crate) name: String,
    #[serde(rename = "peerURLs")]
    pub(crate) peer_urls: Vec<String>,
    #[serde(rename = "clientURLs")]
    pub(crate) client_urls: Vec<String>,
    #[serde(rename = "isLearner")]
    pub(crate) is_learner: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MemberListResponse {
    pub(crate) header: Header,
    pub(crate) members: Vec<Member>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StatusResponse {
    pub(crate) header: Header,
    pub(crate) version: String,
    #[serde(rename = "dbSize", with = "int")]
    pub(crate) db_size: i64,
    #[serde(rename = "dbSizeInUse", with = "int")]
    pub(crate) db_size_in_use: i64,
    #[serde(with = "int")]
    pub(crate) leader: u64,
    #[serde(rename = "raftIndex", with = "int")]
    pub(crate) raft_index: u64,
    #[serde(rename = "raftTerm", with = "int")]
    pub(crate) raft_term: u64,
    #[serde(rename = "raftAppliedIndex", with = "int")]
    pub(crate) raft_applied_index: u64,
    pub(crate) errors: Vec<String>,
    #[serde(rename = "isLearner")]
    pub(crate) is_learner: bool,
}

/// An error body: `{"error": "...", "code": 14, "message": "..."}` (unary calls and, in etcd
/// 3.4, streams too); grpc-gateway's other stream form `{"error": {"grpc_code": 14, "message":
/// "..."}}` is read as well.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorBody {
    pub(crate) error: Value,
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl ErrorBody {
    /// `(code, message)` when this is an error at all.
    pub(crate) fn status(&self) -> Option<(i32, String)> {
        match &self.error {
            Value::Null => None,
            Value::Object(inner) => {
                let code = inner
                    .get("grpc_code")
                    .or_else(|| inner.get("code"))
                    .and_then(Value::as_i64)
                    .unwrap_or(2) as i32;
                let message = inner
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                Some((code, message))
            }
            Value::String(error) => {
                let message = if self.message.is_empty() {
                    error.clone()
                } else {
                    self.message.clone()
                };
                Some((self.code, message))
            }
            other => Some((self.code, other.to_string())),
        }
    }
}

/// One message of a gateway stream (watch, lease keep-alive): `{"result": {...}}` or an error.
#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
pub(crate) struct StreamItem<T> {
    pub(crate) result: Option<T>,
    #[serde(flatten)]
    pub(crate) error: ErrorBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn omitted_defaults_decode_as_zero() {
        // A txn whose compare failed and that had no failure ops: `succeeded` and `responses`
        // are absent, as is everything in a default header.
        let t: TxnResponse = serde_json::from_str(r#"{"header":{}}"#).unwrap();
        assert!(!t.succeeded);
        assert!(t.responses.is_empty());
        assert_eq!(t.header.revision, 0);

        // A range that matched nothing: no kvs, no count, no more.
        let r: RangeResponse =
            serde_json::from_str(r#"{"header":{"revision":"7","raft_term":"2"}}"#).unwrap();
        assert_eq!((r.header.revision, r.count, r.more), (7, 0, false));
        assert!(r.kvs.is_empty());

        // A key put with an empty value and no lease, version 1.
        let r: RangeResponse = serde_json::from_str(
            r#"{"kvs":[{"key":"/w==","create_revision":"5","mod_revision":"5","version":"1"}],"count":"1"}"#,
        )
        .unwrap();
        let kv = KeyValue::from(r.kvs.into_iter().next().unwrap());
        assert_eq!(kv.key, vec![0xff]);
        assert!(kv.value.is_empty());
        assert_eq!(
            (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
            (5, 5, 1, 0)
        );

        // Big unsigned IDs (member ids) do not fit an i64; numbers are accepted too.
        let m: Member =
            serde_json::from_str(r#"{"ID":"13668033151171901709","name":"a"}"#).unwrap();
        assert_eq!(m.id, 13668033151171901709);
        let h: Header = serde_json::from_str(r#"{"revision":12,"member_id":null}"#).unwrap();
        assert_eq!((h.revision, h.member_id), (12, 0));
        assert!(serde_json::from_str::<Header>(r#"{"revision":"x"}"#).is_err());
    }

    #[test]
    fn txn_sub_responses() {
        let t: TxnResponse = serde_json::from_str(
            r#"{"header":{"revision":"8"},"succeeded":true,"responses":[
                {"response_put":{"header":{"revision":"8"},"prev_kv":{"key":"YQ==","value":"MQ=="}}},
                {"response_delete_range":{"header":{"revision":"8"}}},
                {"response_range":{"header":{"revision":"8"},"kvs":[{"key":"Yg=="}],"count":"1"}}]}"#,
        )
        .unwrap();
        assert!(t.succeeded);
        let [put, del, range] = &t.responses[..] else {
            panic!("three responses")
        };
        assert_eq!(
            put.response_put
                .as_ref()
                .unwrap()
                .prev_kv
                .as_ref()
                .unwrap()
                .value,
            b"1"
        );
        assert_eq!(del.response_delete_range.as_ref().unwrap().deleted, 0);
        assert_eq!(range.response_range.as_ref().unwrap().count, 1);
    }

    #[test]
    fn watch_events_default_to_put() {
        let item: StreamItem<WatchResponse> = serde_json::from_str(
            r#"{"result":{"header":{"revision":"9"},"events":[
                {"kv":{"key":"YQ==","mod_revision":"8","version":"1","value":"MQ=="}},
                {"type":"DELETE","kv":{"key":"Yg==","mod_revision":"9"},"prev_kv":{"key":"Yg==","value":"eA=="}},
                {"type":1,"kv":{"key":"Yw==","mod_revision":"9"}}]}}"#,
        )
        .unwrap();
        assert_eq!(item.error.status(), None);
        let w = item.result.unwrap();
        let kinds: Vec<_> = w.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Put, EventKind::Delete, EventKind::Delete]
        );
        assert!(w.events[0].prev_kv.is_none());
        assert!(!w.created && !w.canceled && w.compact_revision == 0);

        let compacted: StreamItem<WatchResponse> = serde_json::from_str(
            r#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"6"}}"#,
        )
        .unwrap();
        let w = compacted.result.unwrap();
        assert!(w.canceled);
        assert_eq!(w.compact_revision, 6);
    }

    #[test]
    fn error_bodies() {
        let e: ErrorBody = serde_json::from_str(
            r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#,
        )
        .unwrap();
        assert_eq!(e.status(), Some((14, "etcdserver: no leader".into())));
        let e: StreamItem<WatchResponse> = serde_json::from_str(
            r#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#,
        )
        .unwrap();
        assert!(e.result.is_none());
        assert_eq!(e.error.status(), Some((14, "etcdserver: no leader".into())));
        let ok: ErrorBody = serde_json::from_str(r#"{"header":{}}"#).unwrap();
        assert_eq!(ok.status(), None);
    }

    #[test]
    fn lease_and_status_field_names() {
        let k: StreamItem<LeaseKeepAliveResponse> =
            serde_json::from_str(r#"{"result":{"header":{},"ID":"123"}}"#).unwrap();
        let k = k.result.unwrap();
        assert_eq!((k.id, k.ttl), (123, 0), "TTL absent: the lease is gone");
        let s: StatusResponse = serde_json::from_str(
            r#"{"header":{"member_id":"7"},"version":"3.4.23","dbSize":"20480","leader":"7","raftIndex":"8","raftTerm":"2"}"#,
        )
        .unwrap();
        assert_eq!(
            (s.db_size, s.leader, s.raft_term, s.raft_index),
            (20480, 7, 2, 8)
        );
        let t: LeaseTimeToLiveResponse =
            serde_json::from_str(r#"{"ID":"5","TTL":"3","grantedTTL":"4","keys":["YQ=="]}"#)
                .unwrap();
        assert_eq!(t.keys, vec![b"a".to_vec()]);
    }

    #[test]
    fn requests_leave_defaults_out() {
        let v = Obj::default()
            .bytes("key", b"foo")
            .bytes("range_end", b"")
            .int("revision", 0)
            .int("limit", 10)
            .flag("keys_only", false)
            .flag("serializable", true)
            .done();
        assert_eq!(
            v,
            serde_json::json!({"key": "Zm9v", "limit": "10", "serializable": true})
        );
    }
}

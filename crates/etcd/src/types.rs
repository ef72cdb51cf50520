//! The requests and answers of the KV, watch, lease and cluster calls, as plain Rust values:
//! keys and values are bytes, revisions `i64` (etcd's `int64`), member ids `u64`. A field etcd
//! left out of its JSON (its default) is 0, `false` or empty here.

use serde_json::Value;
use url::Url;

use crate::json::{Obj, b64};

/// The end of the range holding every key that starts with `prefix`, etcd's rule (clientv3's
/// `GetPrefixRangeEnd`): drop trailing 0xff bytes, then add one to the last byte. A prefix that
/// is empty or only 0xff bytes has no such end: `[0]` is returned, which etcd reads as "every
/// key from `key` on" (with an empty or `[0]` key: all keys).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One key as etcd stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    /// Empty in `keys_only` answers.
    pub value: Vec<u8>,
    /// The revision that created the key (since its last deletion).
    pub create_revision: i64,
    /// The revision of its last change; in a DELETE event, the revision of the deletion.
    pub mod_revision: i64,
    /// Number of changes since creation (1 when created; 0 in DELETE events).
    pub version: i64,
    /// The lease the key is attached to, 0 for none.
    pub lease: i64,
}

/// A read of one key (`range_end` empty) or of `[key, range_end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub key: Vec<u8>,
    /// Empty: only `key`. `[0]`: every key >= `key`. [`prefix_end`]: every key with the prefix.
    pub range_end: Vec<u8>,
    /// Read as of this revision (0: the newest). A compacted one is refused (code 11).
    pub revision: i64,
    /// Only keys changed at or after this revision (0: all).
    pub min_mod_revision: i64,
    /// At most this many keys (0: no limit); `more` says whether some were left out.
    pub limit: i64,
    pub keys_only: bool,
    /// Only the count, no keys.
    pub count_only: bool,
    /// Answer from the member's local state, without a round through the leader: faster and
    /// possibly stale (the default, linearizable, is what a reader after a write wants).
    pub serializable: bool,
}

impl RangeRequest {
    /// Exactly `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            key: key.into(),
            ..Default::default()
        }
    }

    /// Every key starting with `prefix` (every key at all for an empty prefix).
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        let key = prefix.into();
        let range_end = prefix_end(&key);
        let key = if key.is_empty() { vec![0] } else { key };
        RangeRequest {
            key,
            range_end,
            ..Default::default()
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        Obj::default()
            .bytes("key", &self.key)
            .bytes("range_end", &self.range_end)
            .int("limit", self.limit)
            .int("revision", self.revision)
            .flag("serializable", self.serializable)
            .flag("keys_only", self.keys_only)
            .flag("count_only", self.count_only)
            .int("min_mod_revision", self.min_mod_revision)
            .done()
    }
}

/// The answer to a [`RangeRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store's revision when the read was served.
    pub revision: i64,
    /// In key order; empty with `count_only`.
    pub kvs: Vec<KeyValue>,
    /// Whether `limit` left keys out.
    pub more: bool,
    /// How many keys are in the range (regardless of `limit`).
    pub count: i64,
}

/// The answer to a put.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// The revision the put created (inside a txn: the txn's).
    pub revision: i64,
    /// The key before the put, when asked for (`prev_kv`) and it existed.
    pub prev_kv: Option<KeyValue>,
}

/// The answer to a delete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResponse {
    /// The store's revision after the delete (unchanged when nothing was deleted).
    pub revision: i64,
    /// How many keys were deleted.
    pub deleted: i64,
    /// The deleted keys, when asked for (`prev_kv`).
    pub prev_kvs: Vec<KeyValue>,
}

/// One operation: alone ([`EtcdClient::request`](crate::EtcdClient::request)) or in a [`Txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        /// Lease to attach the key to (0: none).
        lease: i64,
        /// Return the key as it was before.
        prev_kv: bool,
    },
    Delete {
        key: Vec<u8>,
        /// As [`RangeRequest::range_end`].
        range_end: Vec<u8>,
        prev_kv: bool,
    },
    Range(RangeRequest),
}

impl Op {
    /// A put without lease.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
            prev_kv: false,
        }
    }

    /// A delete of one key.
    pub fn delete(key: impl Into<Vec<u8>>) -> Op {
        Op::Delete {
            key: key.into(),
            range_end: Vec::new(),
            prev_kv: false,
        }
    }

    /// A read of one key.
    pub fn get(key: impl Into<Vec<u8>>) -> Op {
        Op::Range(RangeRequest::key(key))
    }

    /// The gateway path of this op alone and its body.
    pub(crate) fn path_and_body(&self) -> (&'static str, Value) {
        match self {
            Op::Put {
                key,
                value,
                lease,
                prev_kv,
            } => (
                "/v3/kv/put",
                Obj::default()
                    .bytes("key", key)
                    .bytes("value", value)
                    .int("lease", *lease)
                    .flag("prev_kv", *prev_kv)
                    .done(),
            ),
            Op::Delete {
                key,
                range_end,
                prev_kv,
            } => (
                "/v3/kv/deleterange",
                Obj::default()
                    .bytes("key", key)
                    .bytes("range_end", range_end)
                    .flag("prev_kv", *prev_kv)
                    .done(),
            ),
            Op::Range(range) => ("/v3/kv/range", range.to_json()),
        }
    }

    /// The op as a txn's `RequestOp`.
    pub(crate) fn to_txn_json(&self) -> Value {
        let (path, body) = self.path_and_body();
        let name = match path {
            "/v3/kv/put" => "request_put",
            "/v3/kv/deleterange" => "request_delete_range",
            _ => "request_range",
        };
        Obj::default().value(name, body).done()
    }

    pub(crate) fn is_write(&self) -> bool {
        !matches!(self, Op::Range(_))
    }
}

/// The answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResponse {
    Range(RangeResponse),
    Put(PutResponse),
    Delete(DeleteResponse),
}

/// What a [`Compare`] looks at, with the value it is compared to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0 when absent).
    Version(i64),
    /// Its create revision (0 when absent).
    Create(i64),
    /// Its mod revision (0 when absent).
    Mod(i64),
    /// Its value (an absent key makes the compare false).
    Value(Vec<u8>),
    /// Its lease (0 for none or absent).
    Lease(i64),
}

/// How the key's field compares to the target's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// A guard of a [`Txn`]: "`key`'s `target` field is `result` the given value". With a
/// `range_end`, every key of the range must satisfy it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub target: CompareTarget,
    pub result: CompareResult,
}

impl Compare {
    pub fn new(key: impl Into<Vec<u8>>, target: CompareTarget, result: CompareResult) -> Self {
        Compare {
            key: key.into(),
            range_end: Vec::new(),
            target,
            result,
        }
    }

    /// The usual compare-and-swap guard: `key`'s mod revision is `revision` (0: `key` is
    /// absent).
    pub fn mod_revision_is(key: impl Into<Vec<u8>>, revision: i64) -> Self {
        Compare::new(key, CompareTarget::Mod(revision), CompareResult::Equal)
    }

    pub(crate) fn to_json(&self) -> Value {
        let result = match self.result {
            CompareResult::Equal => "EQUAL",
            CompareResult::Greater => "GREATER",
            CompareResult::Less => "LESS",
            CompareResult::NotEqual => "NOT_EQUAL",
        };
        // The target's value is written even when 0: it is a oneof, present means set.
        let (target, field, value) = match &self.target {
            CompareTarget::Version(v) => ("VERSION", "version", Value::String(v.to_string())),
            CompareTarget::Create(v) => ("CREATE", "create_revision", Value::String(v.to_string())),
            CompareTarget::Mod(v) => ("MOD", "mod_revision", Value::String(v.to_string())),
            CompareTarget::Value(v) => ("VALUE", "value", b64(v)),
            CompareTarget::Lease(v) => ("LEASE", "lease", Value::String(v.to_string())),
        };
        Obj::default()
            .value("result", Value::String(result.into()))
            .value("target", Value::String(target.into()))
            .value("key", b64(&self.key))
            .value(field, value)
            .bytes("range_end", &self.range_end)
            .done()
    }
}

/// A transaction: if every compare holds, `success` is applied, else `failure`; atomically, at
/// one new revision (when anything is written). A key may be written at most once per txn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    pub(crate) fn to_json(&self) -> Value {
        let list = |ops: &[Op]| Value::Array(ops.iter().map(Op::to_txn_json).collect());
        let mut obj = Obj::default();
        if !self.compare.is_empty() {
            obj = obj.value(
                "compare",
                Value::Array(self.compare.iter().map(Compare::to_json).collect()),
            );
        }
        if !self.success.is_empty() {
            obj = obj.value("success", list(&self.success));
        }
        if !self.failure.is_empty() {
            obj = obj.value("failure", list(&self.failure));
        }
        obj.done()
    }

    pub(crate) fn writes(&self) -> bool {
        self.success.iter().chain(&self.failure).any(Op::is_write)
    }
}

/// The answer to a [`Txn`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (and `success` was applied).
    pub succeeded: bool,
    /// The store's revision after the txn.
    pub revision: i64,
    /// One per op of the branch applied, in order.
    pub responses: Vec<OpResponse>,
}

/// What happened to a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EventKind {
    #[default]
    Put,
    Delete,
}

/// One change seen by a watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// The key after the change; for a DELETE, the key with `mod_revision` = the deletion's
    /// revision and no value.
    pub kv: KeyValue,
    /// The key before the change, when the watch asked for it (`prev_kv`) and it existed.
    pub prev_kv: Option<KeyValue>,
}

/// What to watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchRequest {
    pub key: Vec<u8>,
    /// As [`RangeRequest::range_end`].
    pub range_end: Vec<u8>,
    /// The first revision to report (inclusive); 0: changes after now.
    pub start_revision: i64,
    /// Events carry the key as it was before.
    pub prev_kv: bool,
    /// etcd sends an empty [`WatchResponse`] (its revision only) now and then when nothing
    /// changes (every 10 minutes by default).
    pub progress_notify: bool,
}

impl WatchRequest {
    /// Every key starting with `prefix`, from `start_revision` (0: from now).
    pub fn prefix(prefix: impl Into<Vec<u8>>, start_revision: i64) -> Self {
        let range = RangeRequest::prefix(prefix);
        WatchRequest {
            key: range.key,
            range_end: range.range_end,
            start_revision,
            ..Default::default()
        }
    }

    pub(crate) fn to_json(&self, start_revision: i64) -> Value {
        let create = Obj::default()
            .bytes("key", &self.key)
            .bytes("range_end", &self.range_end)
            .int("start_revision", start_revision)
            .flag("progress_notify", self.progress_notify)
            .flag("prev_kv", self.prev_kv)
            .done();
        Obj::default().value("create_request", create).done()
    }
}

/// A batch of changes from a watch, in revision order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The store's revision when etcd sent this (>= every event's).
    pub revision: i64,
    /// Empty in a progress notification.
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// The events grouped by revision: each group is one transaction (or one put/delete),
    /// whose events share a `mod_revision`. etcd never splits a revision across responses, so a
    /// group is always whole.
    pub fn by_revision(&self) -> impl Iterator<Item = (i64, &[Event])> {
        group_by_revision(&self.events)
    }
}

/// `events` (in revision order) grouped by `kv.mod_revision`: one group per transaction.
pub fn group_by_revision(events: &[Event]) -> impl Iterator<Item = (i64, &[Event])> {
    events
        .chunk_by(|a, b| a.kv.mod_revision == b.kv.mod_revision)
        .map(|group| (group[0].kv.mod_revision, group))
}

/// A lease's remaining time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseTimeToLive {
    pub id: i64,
    /// Seconds left (the lease ends in under `ttl + 1` seconds).
    pub ttl: i64,
    /// The TTL it was granted (or last renewed with).
    pub granted_ttl: i64,
    /// The keys attached to it, when asked for.
    pub keys: Vec<Vec<u8>>,
}

/// A member of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty for a member added but not started yet.
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Empty for a member added but not started yet.
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// The cluster's members, as one of them sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberList {
    /// The endpoint that answered.
    pub endpoint: Url,
    /// The id of the member that answered.
    pub member_id: u64,
    pub cluster_id: u64,
    pub members: Vec<Member>,
}

impl MemberList {
    /// The member that answered.
    pub fn answering(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.id == self.member_id)
    }
}

/// One member's view of itself and of the cluster (`/v3/maintenance/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The endpoint that answered.
    pub endpoint: Url,
    /// The id of the member that answered.
    pub member_id: u64,
    pub cluster_id: u64,
    /// The leader's member id, 0 when the member knows none.
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    /// Bytes of the member's database file, and of the part in use.
    pub db_size: i64,
    pub db_size_in_use: i64,
    /// The server's version, e.g. "3.4.23".
    pub version: String,
    /// Alarms and problems the member reports (e.g. "etcdserver: no leader").
    pub errors: Vec<String>,
    /// The store's revision.
    pub revision: i64,
    pub is_learner: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"/svc/"), b"/svc0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"a\xfe\xff\xff"), b"a\xff");
        assert_eq!(prefix_end(b"\x00"), b"\x01");
        assert_eq!(prefix_end(b""), b"\x00");
        assert_eq!(prefix_end(b"\xff\xff"), b"\x00");
    }

    #[test]
    fn prefix_of_nothing_is_everything() {
        let all = RangeRequest::prefix("");
        assert_eq!((all.key, all.range_end), (vec![0], vec![0]));
        let some = RangeRequest::prefix("k");
        assert_eq!((some.key, some.range_end), (b"k".to_vec(), b"l".to_vec()));
    }

    #[test]
    fn compare_json_names_its_target() {
        let absent = Compare::mod_revision_is("k", 0).to_json();
        assert_eq!(
            absent,
            serde_json::json!({"result": "EQUAL", "target": "MOD", "key": "aw==", "mod_revision": "0"})
        );
        let value = Compare::new(
            vec![0xff],
            CompareTarget::Value(b"x".to_vec()),
            CompareResult::NotEqual,
        )
        .to_json();
        assert_eq!(
            value,
            serde_json::json!({"result": "NOT_EQUAL", "target": "VALUE", "key": "/w==", "value": "eA=="})
        );
    }

    #[test]
    fn txn_json() {
        let txn = Txn {
            compare: vec![],
            success: vec![Op::put("a", "1"), Op::delete("b"), Op::get("c")],
            failure: vec![],
        };
        assert!(txn.writes());
        assert_eq!(
            txn.to_json(),
            serde_json::json!({"success": [
                {"request_put": {"key": "YQ==", "value": "MQ=="}},
                {"request_delete_range": {"key": "Yg=="}},
                {"request_range": {"key": "Yw=="}},
            ]})
        );
        let read_only = Txn {
            success: vec![Op::get("c")],
            ..Default::default()
        };
        assert!(!read_only.writes());
    }

    #[test]
    fn events_group_per_revision() {
        let ev = |rev| Event {
            kv: KeyValue {
                mod_revision: rev,
                ..Default::default()
            },
            ..Default::default()
        };
        let resp = WatchResponse {
            revision: 9,
            events: vec![ev(5), ev(7), ev(7), ev(7), ev(9)],
        };
        let groups: Vec<(i64, usize)> = resp.by_revision().map(|(r, g)| (r, g.len())).collect();
        assert_eq!(groups, [(5, 1), (7, 3), (9, 1)]);
    }
}

//! `cairn-etcd`: an async etcd v3 client, the store underneath cairn's highly available mode
//! (`../shared/DESIGN.md`, "High availability").
//!
//! # Why the JSON gateway
//!
//! etcd's gRPC clients for Rust need `protoc` (and the .proto files) at build time; cairn must
//! build on a fresh machine with cargo alone. Every etcd v3 server also answers its gRPC API as
//! JSON over HTTP/1.1 on its client URL (grpc-gateway): `POST /v3/kv/range`, `/v3/kv/txn`,
//! `/v3/watch`, ... This crate speaks that, with the workspace's reqwest and the same rustls
//! configuration as every cairn client ([`cairn_client::TlsOptions`]).
//!
//! What the gateway does differently from gRPC, and what this crate does about it:
//! - Its JSON is proto3's: bytes are base64, 64-bit integers strings, and every field holding
//!   its default (0, false, empty, the first enum value such as the PUT event type) is left
//!   out: a failed txn has no `succeeded`, an empty range no `kvs` and no `count`. Decoding
//!   defaults every field; the public types are plain Rust values.
//! - Streams (watch, lease keep-alive) are one-way: the request body is sent once, the answer
//!   is a stream of `{"result": ...}` objects. One watch per HTTP connection (no multiplexing,
//!   no cancel or progress requests on it: drop the [`Watch`] to cancel); one keep-alive per
//!   request ([`EtcdClient::lease_keepalive`] renews once).
//! - gRPC metadata travels as `Grpc-Metadata-*` headers: every KV, lease and watch call sends
//!   `hasleader: true` (clientv3's `WithRequireLeader`), so a member cut off from its leader
//!   refuses at once ("etcdserver: no leader") instead of serving a dead watch or timing out.
//!
//! # Failover
//!
//! [`EtcdClient`] holds several endpoints and remembers the one that answered last. Each call
//! starts there and, on a connection error, a timeout, or gRPC code 14 (unavailable: "no
//! leader", "leader changed", ...), tries the next one, round robin, once around; when none
//! answers it is [`EtcdError::Unavailable`], naming each endpoint and why. A write (put, delete,
//! txn with a write, lease grant and revoke, compaction) is sent again only when it certainly
//! was not applied: the connection was refused (the request never left) or etcd refused it
//! before proposing it ("no leader"). Otherwise (a timeout, a connection lost after sending,
//! etcd's "request timed out") it is [`EtcdError::Indeterminate`]: read to find out.
//!
//! A [`Watch`] whose connection breaks (its member died, lost its leader, or the stream was cut)
//! is created again on the next endpoint from the revision after the last one it yielded: no
//! gap and no duplicate. See [`Watch`] for what ends a watch.
//!
//! Every response body (and every watch message) is bounded ([`DEFAULT_MAX_BODY`], 64 MiB,
//! [`EtcdClient::with_max_body`]): a larger one is an error, not an allocation.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_etcd::EtcdError> {
//! use std::time::Duration;
//! use cairn_etcd::{Compare, EtcdClient, Op, Txn, WatchRequest};
//!
//! let endpoints = vec!["http://10.0.0.1:2379".parse().unwrap(), "http://10.0.0.2:2379".parse().unwrap()];
//! let etcd = EtcdClient::new(endpoints, None, Duration::from_secs(5))?;
//! let put = etcd.put("/svc/web", "v1").await?;
//! // Compare-and-swap: only if nobody changed the key since.
//! let cas = etcd
//!     .txn(&Txn {
//!         compare: vec![Compare::mod_revision_is("/svc/web", put.revision)],
//!         success: vec![Op::put("/svc/web", "v2")],
//!         failure: vec![],
//!     })
//!     .await?;
//! assert!(cas.succeeded);
//! let mut watch = etcd.watch(WatchRequest::prefix("/svc/", put.revision + 1)).await?;
//! while let Some(changes) = watch.next().await {
//!     for (revision, txn_events) in changes?.by_revision() {
//!         println!("{revision}: {} changes", txn_events.len());
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod args;
mod client;
mod election;
mod error;
mod json;
mod lease;
mod store;
mod types;
mod watch;

#[cfg(feature = "testing")]
pub mod testing;

pub use cairn_client::TlsOptions;
pub use client::{CONNECT_TIMEOUT, DEFAULT_MAX_BODY, EtcdClient};
pub use error::{CODE_UNAVAILABLE, EtcdError};
pub use types::{
    Compare, CompareResult, CompareTarget, DeleteResponse, Event, EventKind, KeyValue,
    LeaseTimeToLive, Member, MemberList, Op, OpResponse, PutResponse, RangeRequest, RangeResponse,
    Status, Txn, TxnResponse, WatchRequest, WatchResponse, group_by_revision, prefix_end,
};
pub use watch::Watch;

pub use args::EtcdArgs;
pub use election::{ElectionConfig, ElectionView, Term, campaign};
pub use store::{DEFAULT_REQUEST_TIMEOUT, EtcdStore};

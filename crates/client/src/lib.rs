//! `cairn-client`: the async HTTP client every cairn binary uses to talk to catalogd (or to a
//! real Consul, since catalogd speaks Consul's API).
//!
//! - [`CatalogClient`]: typed calls for the KV store, catalog, health, agent, session and
//!   event endpoints. Reads take [`QueryOptions`] and return the data with its [`QueryMeta`]
//!   (`X-Consul-Index` and friends); non-2xx answers become [`ClientError::Status`] carrying the
//!   server's message.
//! - [`Endpoints`]: several replicas (`http://a:8500,http://b:8500`); a request that cannot
//!   reach one is sent to the next (a write only when it was never sent), and the one that
//!   answered is kept for the next requests.
//! - [`TlsOptions`]: https with Consul's TLS settings (CA file, client certificate and key,
//!   server name), given to [`CatalogClient::with_tls`]; every client, http or https, is
//!   built on a rustls configuration with the ring provider.
//! - [`Watch`]: a blocking-query loop over any read that follows Consul's index rules, backs off
//!   on failure and rate-limits itself; after a failover it resumes on the next replica with the
//!   index it held, waiting for a replica that is behind to catch up; [`Watch::spawn`] turns it
//!   into a `tokio::sync::watch::Receiver`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_client::ClientError> {
//! use cairn_client::{CatalogClient, QueryOptions, Watch};
//!
//! let client = CatalogClient::new("http://127.0.0.1:8500", None)?;
//! let (web, meta) = client.health_service("web", &QueryOptions { passing: true, ..Default::default() }).await?;
//! println!("{} passing instances at index {}", web.len(), meta.index);
//!
//! let mut watch = Watch::health_service(client, "web", QueryOptions::default());
//! loop {
//!     let instances = watch.next().await?; // returns when the index moves
//!     println!("{} instances", instances.len());
//! }
//! # }
//! ```

mod agent;
mod backoff;
mod catalog;
mod client;
mod endpoints;
mod error;
mod event;
mod kv;
mod options;
mod session;
mod snapshot;
mod tls;
mod watch;

pub use backoff::Backoff;
pub use client::{
    CONNECT_TIMEOUT, CatalogClient, DEFAULT_TIMEOUT, Response, TOKEN_HEADER, parse_base_url,
};
pub use endpoints::{Endpoints, Failed, may_fail_over};
pub use error::ClientError;
pub use event::EventFilters;
pub use options::{
    DEFAULT_BLOCKING_WAIT, KvPutOptions, MAX_BLOCKING_WAIT, QueryMeta, QueryOptions,
    TIMEOUT_MARGIN, format_wait,
};
pub use reqwest::Method;
pub use tls::TlsOptions;
pub use watch::{IndexStep, Watch, WatchConfig, WatchStatus, index_step, replica_behind};

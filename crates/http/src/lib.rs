//! The HTTP/1 serving loop every cairn daemon shares (catalogd, offerd, taskrun), bounded so that
//! no client can take the process's memory or descriptors:
//!
//! - a connection cap: past `--max-connections` a new connection is closed at once (counted,
//!   logged at most once per [`REFUSAL_LOG_EVERY`]), so open descriptors stay below the limit
//!   and connections already in stay served;
//! - `--http-idle-timeout`: a connection with no request in flight is closed once it has been
//!   idle that long, whether its client is still sending a request head (slow headers) or sends
//!   nothing between requests on a keep-alive connection (the `idle` module);
//! - request bodies ([`body`]): at most `--max-body-bytes` (413), no stall longer than
//!   `--http-body-stall` and the whole body within `--http-body-timeout` (408); a refused
//!   body's connection is closed, and its bytes are dropped with the handler's buffer;
//! - graceful shutdown: on the stop signal the listener closes, idle connections close, open
//!   requests finish, and whatever is still open after the drain deadline is closed;
//! - HTTPS ([`tls`], `--tls-cert`/`--tls-key`, mutual TLS with `--tls-client-ca`): the
//!   handshake in the connection's task, under its slot and `--tls-handshake-timeout`.
//!
//! The application is an axum service made per connection from the peer's address ([`serve`]).
//! Handlers read their query string through [`QueryParams`] ([`query`]), one decoding with
//! accessors for Consul's and Marathon's rules.

mod auth;
pub mod body;
mod conn;
mod fdlimit;
mod idle;
pub mod query;
pub mod ratelimit;
#[cfg(test)]
mod testing;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use auth::{
    AgentTokenArgs, BasicCredentials, Secret, SharedSecret, basic_credentials, peer_of,
    presented_token, require_secret, retry_after_secs, token_required, too_many_failures,
};
pub use body::{BodyBounds, BodyError, Refusal};
pub use conn::AppService;
pub use fdlimit::raise_fd_limit;
pub use query::{ParamError, QueryParams};
pub use ratelimit::FailureLimiter;
pub use tls::{Tls, TlsArgs, TlsError};

/// How often, at most, refused connections are logged (with their count since the last line).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(5);

/// Bounds of one HTTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Longest a connection stays open with no request in flight (a head not yet complete, or
    /// nothing sent since the last answer).
    pub idle_timeout: Duration,
    /// Request body bounds.
    pub body: BodyBounds,
    /// How long open requests may finish after the stop signal before their connections close.
    pub drain: Duration,
}

/// The flags of [`Limits`], flattened into each daemon's serve flags with the daemon's own
/// defaults for the connection cap and the body size.
#[derive(clap::Args, Clone, Debug)]
pub struct HttpArgs<const MAX_CONNECTIONS: usize, const MAX_BODY_BYTES: u64> {
    /// Connections served at once; past it a new connection is closed at once
    #[arg(long, value_name = "N", default_value_t = MAX_CONNECTIONS, value_parser = parse_cap)]
    pub max_connections: usize,
    /// A client must send a complete request head within this, on a new connection and between
    /// requests on a kept-alive one (Go duration)
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = parse_timeout)]
    pub http_idle_timeout: Duration,
    /// Largest request body, in bytes (413 past it)
    #[arg(long, value_name = "BYTES", default_value_t = MAX_BODY_BYTES)]
    pub max_body_bytes: u64,
    /// A request body that sends nothing for this long is refused with 408 (Go duration)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub http_body_stall: Duration,
    /// A request body must be complete within this (408 past it; Go duration)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub http_body_timeout: Duration,
}

impl<const C: usize, const B: u64> HttpArgs<C, B> {
    /// The limits these flags give, with the daemon's drain deadline.
    pub fn limits(&self, drain: Duration) -> Limits {
        Limits {
            max_connections: self.max_connections,
            idle_timeout: self.http_idle_timeout,
            body: BodyBounds {
                max_bytes: self.max_body_bytes,
                stall: self.http_body_stall,
                total: self.http_body_timeout,
            },
            drain,
        }
    }
}

fn parse_cap(s: &str) -> Result<usize, String> {
    match s.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n as usize),
        Err(e) => Err(format!("{s:?} is not a count: {e}")),
    }
}

pub(crate) fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = cairn_wire::parse_go_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

/// What a server counted.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections closed at accept because the cap was reached.
    pub refused_connections: AtomicU64,
    /// TLS handshakes that failed or timed out (nothing served on those connections).
    pub tls_handshake_failures: AtomicU64,
}

/// One HTTP server: its limits and counters.
pub struct Server {
    limits: Limits,
    stats: Arc<Stats>,
    tls: Option<Tls>,
}

impl Server {
    pub fn new(limits: Limits) -> Server {
        Server {
            limits,
            stats: Arc::default(),
            tls: None,
        }
    }

    /// The same server speaking HTTPS with `tls` (plain HTTP with `None`).
    pub fn with_tls(mut self, tls: Option<Tls>) -> Server {
        self.tls = tls;
        self
    }

    /// The counters, for a daemon's metrics.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Serves `listener` until `shutdown` resolves, then drains: no new connections, idle ones
    /// closed, open requests given [`Limits::drain`] to finish, the rest closed. `app` makes the
    /// service of one connection from the peer's address.
    pub async fn serve<A, S>(
        self,
        listener: TcpListener,
        mut app: A,
        shutdown: impl Future<Output = ()>,
    ) where
        A: FnMut(SocketAddr) -> S,
        S: AppService,
    {
        let limits = self.limits;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let graceful = CancellationToken::new();
        let hard = CancellationToken::new();
        let builder = Arc::new(conn::builder());
        let mut refusals = RefusalLog::default();
        let handshakes = Arc::new(tls::HandshakeLog::new());
        tokio::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        if !is_per_connection(&e) {
                            // Out of descriptors or memory: give the open connections a moment
                            // to finish instead of spinning on accept.
                            tracing::warn!(error = %e, "accepting a connection failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                self.stats
                    .refused_connections
                    .fetch_add(1, Ordering::Relaxed);
                refusals.refused(limits.max_connections);
                continue;
            };
            let service = conn::ConnService::new(app(peer), peer, &limits);
            // A child token per connection: each connection polls its own token's lock and
            // wake-up list, not one shared by every connection (10,000 connections woken at
            // once by one write contended on it).
            let (stop, kill) = (graceful.child_token(), hard.child_token());
            match &self.tls {
                None => tokio::spawn(conn::run(
                    builder.clone(),
                    stream,
                    service,
                    slot,
                    stop,
                    kill,
                )),
                // The handshake runs in the connection's task, never in this loop.
                Some(tls) => tokio::spawn(tls::run(
                    tls.clone(),
                    builder.clone(),
                    stream,
                    peer,
                    service,
                    slot,
                    stop,
                    kill,
                    self.stats.clone(),
                    handshakes.clone(),
                )),
            };
        }
        drop(listener);
        graceful.cancel();
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(limits.drain, slots.acquire_many(all)).await;
        if drained.is_err() {
            let open = limits
                .max_connections
                .saturating_sub(slots.available_permits());
            tracing::warn!(
                open,
                drain = ?limits.drain,
                "connections still open after the drain deadline; closing them"
            );
            hard.cancel();
            // Closing is immediate once each connection task runs again; this bound only
            // guards against a handler that blocks its worker thread.
            if tokio::time::timeout(Duration::from_secs(1), slots.acquire_many(all))
                .await
                .is_err()
            {
                tracing::warn!("some connections did not close within 1s of being told to");
            }
        }
    }
}

/// Accept errors that concern one connection (it was reset before we took it), not the
/// listener.
fn is_per_connection(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionRefused
    )
}

/// Logs refused connections at most once per [`REFUSAL_LOG_EVERY`], with their count.
#[derive(Default)]
struct RefusalLog {
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn refused(&mut self, cap: usize) {
        self.since_last += 1;
        let now = Instant::now();
        if self
            .last
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY)
        {
            tracing::warn!(
                refused = self.since_last,
                max_connections = cap,
                "connection cap reached: closing new connections at once (--max-connections)"
            );
            self.since_last = 0;
            self.last = Some(now);
        }
    }
}

/// Binds `addr` with a listen backlog of `backlog` (a fleet of clients reconnecting after a
/// restart must not overflow tokio's default of 128: overflowed SYNs retry after 1 s).
pub fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// The listen backlog the daemons use.
pub const LISTEN_BACKLOG: u32 = 4096;

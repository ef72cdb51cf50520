//! Peer addresses for the few endpoints that use them. axum's `ConnectInfo` layer puts the
//! peer's address in every request's extensions (two allocations per request); catalogd's hot
//! reads do not need it, so it is added only to requests under `/v1/query/` (prepared queries'
//! `Near: "_ip"`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use tower_service::Service;

use super::front::Front;

/// The router of one connection, knowing the peer's address.
#[derive(Clone)]
pub struct PeerAware {
    router: Front,
    peer: SocketAddr,
}

impl PeerAware {
    /// The shared router (`Arc`s: nothing is copied per connection) for one peer.
    pub fn new(router: Front, peer: SocketAddr) -> Self {
        PeerAware { router, peer }
    }
}

/// Whether a request's handler reads the peer's address.
fn wants_peer(path: &str) -> bool {
    path.starts_with("/v1/query/")
}

impl Service<Request> for PeerAware {
    type Response = <Front as Service<Request>>::Response;
    type Error = Infallible;
    type Future = <Front as Service<Request>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        if wants_peer(req.uri().path()) {
            req.extensions_mut().insert(ConnectInfo(self.peer));
        }
        self.router.call(req)
    }
}

//! A daemon's own catalog service (`cairn-offerd`, `cairn-lbconf`) on this host's node, so
//! Prometheus finds its `/metrics` through catalogd's service discovery as it finds the agents
//! (which keep `cairn-taskrun` in their own reconciliation) and catalogd itself. Registered at
//! start and again every [`REFRESH`] (a catalog restored from an older snapshot gets it back),
//! retried with a backoff while the catalog does not answer or refuses, and deregistered on a
//! clean stop.

use std::time::Duration;

use cairn_client::{Backoff, CatalogClient};
use cairn_wire::{CatalogDeregistration, CatalogRegistration};
use tokio_util::sync::CancellationToken;

/// How often the registration is renewed.
const REFRESH: Duration = Duration::from_secs(60);
/// How long a clean stop waits for the deregistration.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a daemon announces: its service name (also the ID), its node (this host's name) and the
/// address others reach its metrics on.
#[derive(Clone, Debug)]
pub struct Announcement {
    pub service: String,
    pub node: String,
    pub api_host: String,
    pub api_port: u16,
}

impl Announcement {
    /// `service` for an API bound or advertised at `addr` (`host:port`); a wildcard host is
    /// replaced by this host's name, which is what other hosts can resolve.
    pub fn for_addr(service: &str, addr: &str) -> Option<Announcement> {
        let (host, port) = addr.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let node = crate::hostname().unwrap_or_else(|| "localhost".to_string());
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let api_host = match host {
            "0.0.0.0" | "::" | "" => node.clone(),
            h => h.to_string(),
        };
        Some(Announcement {
            service: service.to_string(),
            node,
            api_host,
            api_port: port,
        })
    }

    fn registration(&self) -> CatalogRegistration {
        CatalogRegistration::daemon_service(
            &self.service,
            &self.node,
            &self.api_host,
            &self.api_host,
            self.api_port,
        )
    }
}

/// Keeps the service registered until `stop`, then deregisters it.
pub async fn announce(client: CatalogClient, who: Announcement, stop: CancellationToken) {
    let backoff = Backoff {
        min: Duration::from_millis(500),
        max: REFRESH,
    };
    let mut failures = 0u32;
    loop {
        let wait = match client.catalog_register(&who.registration()).await {
            Ok(()) => {
                tracing::debug!(service = %who.service, node = %who.node, "registered in the catalog");
                failures = 0;
                REFRESH
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, service = %who.service, "cannot register in the catalog; retrying");
                }
                failures = failures.saturating_add(1);
                backoff.delay(failures)
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
    let dereg = CatalogDeregistration {
        node: who.node.clone(),
        service_id: who.service.clone(),
        ..CatalogDeregistration::default()
    };
    match tokio::time::timeout(DEREGISTER_TIMEOUT, client.catalog_deregister(&dereg)).await {
        Ok(Ok(())) => tracing::info!(service = %who.service, "deregistered from the catalog"),
        Ok(Err(e)) => tracing::warn!(error = %e, service = %who.service, "deregistration failed"),
        Err(_) => tracing::warn!(service = %who.service, "deregistration timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_announced_address_is_the_bound_one_unless_it_is_a_wildcard() {
        let a = Announcement::for_addr("cairn-offerd", "10.0.0.7:5050").expect("an address");
        assert_eq!((a.api_host.as_str(), a.api_port), ("10.0.0.7", 5050));
        let reg = a.registration();
        let svc = reg.service.expect("a service");
        assert_eq!((svc.id.as_str(), svc.port), ("cairn-offerd", 5050));
        assert_eq!(svc.meta["prometheus_port"], "5050");
        assert!(reg.skip_node_update);
        let wild = Announcement::for_addr("s", "0.0.0.0:5050").expect("an address");
        assert_eq!(wild.api_host, wild.node);
        let v6 = Announcement::for_addr("s", "[::1]:5050").expect("an address");
        assert_eq!(v6.api_host, "::1");
        assert!(Announcement::for_addr("s", "no-port").is_none());
    }
}

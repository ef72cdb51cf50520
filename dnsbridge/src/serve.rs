//! `dnsbridge serve`: UDP on one reuseport socket per core ([`crate::udp`]), TCP through
//! hickory-server, the view kept current by one blocking watch on the whole catalog
//! (reconnecting with backoff, answering from the last view meanwhile); stops cleanly.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use cairn_client::{CatalogClient, Watch, WatchConfig};
use hickory_proto::rr::Name;
use hickory_server::Server;

use crate::answer::Zone;
use crate::handler::Handler;
use crate::held::Held;
use crate::resolve::Resolver;
use crate::view::View;

/// Settings of `dnsbridge serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub dns_addr: SocketAddr,
    pub domain: String,
    pub datacenter: String,
    pub ttl: u32,
    pub only_passing: bool,
    pub recursors: Vec<SocketAddr>,
    /// Questions forwarded at once (`--max-forwards`).
    pub max_forwards: usize,
}

/// Idle TCP connections are closed after this long.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Follows the catalog and the prepared queries forever, swapping in a new view whenever
/// either changes. While there are no prepared queries the catalog is held slim (what answers
/// read, [`Held::Slim`]); when queries appear the catalog is read again whole (a new
/// watch from index 0) and they are answered once it is in, and when the last one goes it is
/// read again to be held slim.
async fn follow(client: CatalogClient, view: Arc<ArcSwap<View>>, only_passing: bool) {
    // Reconnect quickly after a catalogd restart: answers are stale meanwhile.
    let config = WatchConfig {
        backoff_max: Duration::from_secs(2),
        ..WatchConfig::default()
    };
    // Deltas: catalogd sends what changed since the catalog this bridge holds, not all of it.
    let mut catalog_watch = Watch::catalog_deltas(client.clone()).with_config(config);
    let mut query_watch = Watch::prepared_queries(client.clone()).with_config(config);
    let mut catalog: Option<Held> = None;
    let mut queries: Vec<cairn_query::PreparedQuery> = Vec::new();
    // Whether the catalog is held slim (no prepared query needs the entries whole).
    let mut slim = true;
    loop {
        // What this round changed: part of the catalog, or (None) the prepared queries.
        let touched = tokio::select! {
            next = catalog_watch.next() => match next {
                // The first answer is whole (the watch starts from index 0, which catalogd
                // answers with the whole catalog).
                Ok(delta) => Some(
                    catalog
                        .get_or_insert_with(|| if slim { Held::slim() } else { Held::whole() })
                        .apply(delta),
                ),
                // The watch logged it (once per failure streak) and backs off before its next
                // read; meanwhile the last view keeps answering.
                Err(e) => {
                    tracing::debug!(error = %e, "catalog read failed; answering from the last view");
                    continue;
                }
            },
            next = query_watch.next() => match next {
                // A query the bridge cannot read is left out rather than failing the rest.
                Ok(list) => {
                    queries = list
                        .into_iter()
                        .filter_map(|q| serde_json::from_value(q).ok())
                        .collect();
                    if slim != queries.is_empty() {
                        // The held catalog is of the wrong kind: read it again whole. Until it
                        // is in, the last view answers (queries need what a slim one lacks).
                        slim = queries.is_empty();
                        catalog = None;
                        catalog_watch = Watch::catalog_deltas(client.clone()).with_config(config);
                        continue;
                    }
                    None
                }
                Err(e) => {
                    tracing::debug!(error = %e, "prepared query read failed; keeping the last ones");
                    continue;
                }
            },
        };
        let Some(c) = &catalog else { continue };
        let index = catalog_watch.index();
        let current = view.load();
        // The first view, and new prepared queries, are built whole; a catalog change redoes
        // only what it touched.
        let next = match &touched {
            Some(t) if current.loaded && !t.all => current.update(c, t, index),
            _ => View::build(c, queries.clone(), index, only_passing),
        };
        tracing::debug!(
            index,
            services = next.services.len(),
            queries = next.queries.len(),
            "view updated"
        );
        let whole = touched.as_ref().is_some_and(|t| t.all);
        view.store(Arc::new(next));
        if whole {
            // The whole answer is gone now; give back what decoding it took.
            crate::view::trim_heap();
        }
    }
}

/// Runs the DNS server until `shutdown` resolves.
pub async fn serve(
    config: Config,
    client: CatalogClient,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let fqdn = if config.domain.ends_with('.') {
        config.domain.clone()
    } else {
        format!("{}.", config.domain)
    };
    let domain = Name::from_ascii(fqdn.to_ascii_lowercase())
        .with_context(|| format!("--domain {:?}", config.domain))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let udp = crate::udp::bind(config.dns_addr, workers)
        .with_context(|| format!("binding UDP {}", config.dns_addr))?;
    let tcp = tokio::net::TcpListener::bind(config.dns_addr)
        .await
        .with_context(|| format!("binding TCP {}", config.dns_addr))?;
    let ns_addr: IpAddr = if config.dns_addr.ip().is_unspecified() {
        [127, 0, 0, 1].into()
    } else {
        config.dns_addr.ip()
    };
    let zone = Zone {
        domain,
        datacenter: config.datacenter.to_ascii_lowercase(),
        ttl: config.ttl,
        ns_addr,
    };
    let view = Arc::new(ArcSwap::from_pointee(View::default()));
    let watcher = tokio::spawn(follow(client, view.clone(), config.only_passing));

    let resolver = Arc::new(Resolver::new(
        zone,
        view.clone(),
        config.recursors.clone(),
        config.max_forwards,
    ));
    let stop = CancellationToken::new();
    let udp_workers = crate::udp::spawn(
        udp,
        resolver.clone(),
        tokio::runtime::Handle::current(),
        stop.clone(),
    )
    .context("starting the UDP workers")?;
    let mut server = Server::new(Handler::new(resolver));
    server.register_listener(tcp, TCP_IDLE, 64 * 1024);
    tracing::info!(addr = %config.dns_addr, domain = %fqdn, "dnsbridge serving DNS (udp+tcp)");
    shutdown.await;
    watcher.abort();
    stop.cancel();
    server
        .shutdown_gracefully()
        .await
        .context("stopping the DNS server")?;
    for w in udp_workers {
        match tokio::task::spawn_blocking(move || w.join()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => tracing::error!("a UDP worker thread had panicked before shutdown"),
            Err(e) => tracing::error!(error = %e, "waiting for a UDP worker thread failed"),
        }
    }
    tracing::info!("dnsbridge stopped");
    Ok(())
}

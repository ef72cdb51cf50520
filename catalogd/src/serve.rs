//! `catalogd serve`: binds the listener, starts the [`Catalog`], serves the HTTP API and
//! catalogd's own checks until shutdown, then drains connections and stops the catalog.

use std::time::Duration;

use anyhow::Context as _;

use crate::core::{Catalog, Config};

/// How long open requests may finish after a stop before their connections close: blocking
/// queries are released at once, so only a slow client or a long write is still there.
pub const DRAIN: Duration = Duration::from_secs(5);

/// `catalogd serve`: runs until `shutdown` resolves, then drains connections and stops. With
/// `tls` it speaks HTTPS only.
pub async fn serve(
    config: Config,
    tls: Option<cairn_http::Tls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    cairn_http::raise_fd_limit(config.http.max_connections);
    let listener = cairn_http::listen(config.http_addr, cairn_http::LISTEN_BACKLOG)
        .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let limits = config.http;
    // `--http-addr HOST:0` binds a free port: /v1/agent/self tells the one bound.
    let mut config = Config {
        http_addr: local,
        ..config
    };
    let replicated = match &mut config.etcd {
        Some(etcd) => {
            if etcd.name.is_empty() {
                etcd.name = local.to_string();
            }
            Some(crate::ha::Replicated::start(etcd).await?)
        }
        None => None,
    };
    let catalog = match &replicated {
        Some(r) => Catalog::start_on(config, r.store.clone(), r.leadership.clone()).await?,
        None => Catalog::start(config).await?,
    };
    tracing::info!(
        addr = %local,
        node = %catalog.core.config.node,
        tls = tls.is_some(),
        client_certs = tls.as_ref().is_some_and(cairn_http::Tls::requires_client_certs),
        "catalogd serving HTTP"
    );
    let app = crate::http::app(catalog.core.clone());
    let stop = catalog.core.shutdown_token();
    let checks = crate::agent_checks::spawn(&catalog.core, stop.clone());
    let core = catalog.core.clone();
    let leave = stop.clone();
    let graceful = async move {
        tokio::select! {
            _ = shutdown => {}
            () = leave.cancelled() => {}
        }
        core.request_shutdown();
        // Blocking queries answer at once with what they have, so connections drain quickly.
        core.registry.release_all();
    };
    let server = cairn_http::Server::new(limits).with_tls(tls);
    // One router shared by every connection; the peer's address reaches only the handlers
    // that use it.
    server
        .serve(
            listener,
            move |peer| crate::http::peer::PeerAware::new(app.clone(), peer),
            graceful,
        )
        .await;
    checks.abort();
    // The task was aborted: its JoinError (cancelled) is the expected outcome.
    let _ = checks.await;
    catalog.stop().await;
    if let Some(r) = replicated {
        r.stop().await;
    }
    tracing::info!("catalogd stopped");
    Ok(())
}

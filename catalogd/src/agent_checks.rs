//! The check half of catalogd's own agent: HTTP, TCP and (when enabled) script checks registered
//! on catalogd's node run in-process, as a Consul agent runs its local checks.
//!
//! The runner is the same one `healthcheck agent` and taskrun use; it follows the node's checks
//! over catalogd's own HTTP API and hands results to the writer as status updates of existing
//! checks, so a result that lands after its check was deregistered changes nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use cairn_client::CatalogClient;
use cairn_wire::HealthCheck;
use healthcheck::agent::{AgentConfig, StatusSink};
use tokio::task::JoinHandle;

use crate::core::Core;
use crate::writer::{Command, Writer};

/// Sends results to the writer as updates of checks on catalogd's node.
#[derive(Clone)]
struct WriterSink(Writer);

impl StatusSink for WriterSink {
    async fn push(&self, check: &HealthCheck) -> Result<(), String> {
        self.0
            .submit(Command::CheckResult {
                check_id: check.check_id.clone(),
                status: check.status,
                output: check.output.clone(),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Where catalogd can reach its own HTTP listener.
fn loopback(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// Starts the runner for catalogd's node; it stops when `stop` turns true.
pub fn spawn(
    core: &Arc<Core>,
    bound: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let client = CatalogClient::new(&format!("http://{}", loopback(bound)), None)
        .context("client of catalogd's own HTTP API")?;
    let cfg = AgentConfig {
        node: core.config.node.clone(),
        enable_script_checks: core.config.enable_script_checks,
        output_update_interval: Duration::from_secs(300),
    };
    let sink = WriterSink(core.writer.clone());
    Ok(tokio::spawn(healthcheck::agent::run(
        client,
        sink,
        cfg,
        async move {
            // An error means the sender is gone: shutting down either way.
            let _ = stop.wait_for(|s| *s).await;
        },
    )))
}

//! The check half of catalogd's own agent: HTTP, TCP and (when enabled) script checks registered
//! on catalogd's node run in-process, as a Consul agent runs its local checks.
//!
//! The runner is the same one `healthcheck agent` and taskrun use; here it reads the node's
//! checks straight from the state (woken by the watch registry, no HTTP round trip to itself)
//! and hands results to the writer as status updates of existing checks, so a result that lands
//! after its check was deregistered changes nothing.

use std::sync::Arc;
use std::time::Duration;

use cairn_checks::agent::{AgentConfig, ChecksSource, StatusSink};
use cairn_wire::HealthCheck;
use tokio::task::JoinHandle;

use crate::core::Core;
use crate::watch::Topic;
use crate::writer::{Command, Writer};

/// Sends results to the writer as updates of checks on catalogd's node.
#[derive(Clone)]
struct WriterSink(Writer);

impl StatusSink for WriterSink {
    async fn push(&self, check: &HealthCheck) -> Result<(), String> {
        self.0
            .submit_waiting(Command::CheckResult {
                check_id: check.check_id.clone(),
                status: check.status,
                output: check.output.clone(),
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The checks of catalogd's node, read from the current state whenever they changed.
struct NodeChecks {
    core: Arc<Core>,
    /// Index of the list handed out last (0 before the first).
    last: u64,
}

impl ChecksSource for NodeChecks {
    async fn next(&mut self) -> Result<Vec<HealthCheck>, String> {
        let node = self.core.config.node.clone();
        let sub = self.core.registry.subscribe(Topic::Node(node.clone()));
        loop {
            // Interest first, then the read: a write in between still wakes us.
            let notified = sub.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let changed = {
                let st = self.core.current.load();
                let idx = st.node_read_index(&node);
                (idx != self.last).then(|| {
                    self.last = idx;
                    st.node_checks(&node).map(|(_, c)| c.clone()).collect()
                })
            };
            if let Some(checks) = changed {
                return Ok(checks);
            }
            notified.await;
        }
    }
}

/// Starts the runner for catalogd's node; it stops when `stop` is cancelled.
pub fn spawn(core: &Arc<Core>, stop: tokio_util::sync::CancellationToken) -> JoinHandle<()> {
    let source = NodeChecks {
        core: core.clone(),
        last: 0,
    };
    let cfg = AgentConfig {
        node: core.config.node.clone(),
        script_checks: cairn_checks::agent::ScriptChecks::from_flag(
            core.config.enable_script_checks,
        ),
        output_update_interval: Duration::from_secs(300),
    };
    let sink = WriterSink(core.writer.clone());
    tokio::spawn(cairn_checks::agent::run(
        source,
        sink,
        cfg,
        stop.cancelled_owned(),
    ))
}

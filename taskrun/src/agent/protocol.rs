//! The offerd protocol from the agent's side: register (retrying with backoff until offerd
//! answers; the registration carries every task's latest status), then long-poll the desired
//! set — each poll is the heartbeat — and apply every answer to the task table; a 404 means
//! offerd lost the node, so register again. Status updates go the other way through
//! [`crate::status`].

use std::sync::Arc;
use std::time::Duration;

use cairn_client::{Backoff, Method, QueryOptions, Watch, WatchConfig};
use cairn_marathon::{AgentRegistration, DesiredTasks, RegisterResponse};
use tokio::sync::Notify;

use super::{AgentConfig, Shared};

/// Heartbeat assumed when offerd's answer does not say.
const DEFAULT_HEARTBEAT_MS: u64 = 20_000;

/// Registers with offerd, retrying with backoff for as long as it takes.
pub(super) async fn register(
    cfg: &AgentConfig,
    shared: &Shared,
    http_addr: &str,
) -> RegisterResponse {
    let backoff = Backoff {
        min: Duration::from_millis(200),
        max: Duration::from_secs(5),
    };
    let mut attempt = 0u32;
    loop {
        let reg = AgentRegistration {
            node: cfg.node.clone(),
            address: cfg.address.clone(),
            http_addr: http_addr.to_string(),
            resources: cfg.resources.clone(),
            attributes: cfg.attributes.clone(),
            tasks: shared.latest_statuses(),
        };
        match cfg
            .offerd
            .send_json(Method::POST, &["v1", "agents", "register"], Some(&reg))
            .await
        {
            Ok(resp) => {
                let answer = serde_json::from_slice::<RegisterResponse>(&resp.body)
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "offerd's registration answer is not understood; assuming a {DEFAULT_HEARTBEAT_MS} ms heartbeat");
                        RegisterResponse {
                            node: cfg.node.clone(),
                            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
                        }
                    });
                tracing::info!(node = %cfg.node, heartbeat_ms = answer.heartbeat_ms, tasks = reg.tasks.len(), "registered with offerd");
                return answer;
            }
            Err(e) => {
                attempt = attempt.saturating_add(1);
                if attempt == 1 || attempt.is_multiple_of(50) {
                    tracing::warn!(error = %e, attempt, "cannot register with offerd; retrying");
                } else {
                    tracing::debug!(error = %e, attempt, "cannot register with offerd; retrying");
                }
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
        }
    }
}

/// The blocking-query timing for a heartbeat: wait half of it (at least 1 s).
pub fn watch_config(heartbeat_ms: u64) -> WatchConfig {
    WatchConfig {
        wait: Duration::from_millis(heartbeat_ms / 2).max(Duration::from_secs(1)),
        min_interval: Duration::from_millis(10),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
    }
}

/// Follows the desired set until offerd needs a new registration.
pub(super) async fn follow(
    cfg: &AgentConfig,
    shared: &Arc<Shared>,
    heartbeat_ms: u64,
    reregister: &Notify,
) {
    let node = cfg.node.clone();
    let mut watch = Watch::new(
        cfg.offerd.clone(),
        QueryOptions::default(),
        watch_config(heartbeat_ms),
        move |client, opts| {
            let node = node.clone();
            async move {
                client
                    .get_json::<DesiredTasks>(&["v1", "agents", &node, "tasks"], &opts)
                    .await
            }
        },
    )
    .named(format!("desired tasks of node {}", cfg.node));
    loop {
        tokio::select! {
            _ = reregister.notified() => {
                tracing::info!("offerd does not know this node; registering again");
                return;
            }
            next = watch.next() => match next {
                Ok(desired) => shared.apply(&desired),
                Err(e) if e.status() == Some(404) => {
                    tracing::info!("offerd does not know this node; registering again");
                    return;
                }
                // Logged by the watch once per failure streak; its next read backs off.
                Err(e) => {
                    tracing::debug!(error = %e, "reading the desired tasks failed; retrying");
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_at_half_the_heartbeat() {
        assert_eq!(watch_config(20_000).wait, Duration::from_secs(10));
        assert_eq!(watch_config(500).wait, Duration::from_secs(1));
        assert_eq!(watch_config(0).wait, Duration::from_secs(1));
        assert_eq!(watch_config(20_000).backoff_max, Duration::from_secs(2));
    }
}

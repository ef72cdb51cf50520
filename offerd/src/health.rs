//! Task health from the catalog: taskrun registers each task's health checks as catalog checks
//! (service id = task id) and runs them; offerd follows `/v1/health/state/any` with a blocking
//! query and records, per task with checks, whether all of them pass. A change publishes
//! `health_status_changed_event` and lets the scheduler act on it (deployments wait for health).

use std::collections::HashMap;

use cairn_client::{CatalogClient, QueryOptions, Watch};
use cairn_wire::{CheckStatus, HealthCheck};
use serde_json::json;

use crate::core::Core;
use crate::events::Event;

/// Per task id: whether all its checks pass.
pub fn task_health(checks: &[HealthCheck]) -> HashMap<String, bool> {
    let mut out: HashMap<String, bool> = HashMap::new();
    for c in checks.iter().filter(|c| !c.service_id.is_empty()) {
        let passing = c.status == CheckStatus::Passing;
        out.entry(c.service_id.clone())
            .and_modify(|all| *all &= passing)
            .or_insert(passing);
    }
    out
}

/// Applies catalog health to the tasks; returns how many changed.
pub fn apply(core: &Core, health: &HashMap<String, bool>) -> usize {
    let r: Result<usize, std::convert::Infallible> = core.mutate(|s, tx| {
        let mut changed = Vec::new();
        for t in s.tasks.values_mut() {
            if t.spec.health_checks.is_empty() || !t.is_active() {
                continue;
            }
            let now = health.get(&t.id).copied();
            if now.is_some() && now != t.healthy {
                t.healthy = now;
                t.unhealthy_since = (now == Some(false)).then_some(tx.now_ms);
                changed.push((t.id.clone(), t.node.clone()));
                tx.event(Event::new(
                    "health_status_changed_event",
                    tx.now_ms,
                    json!({
                        "appId": t.app_id,
                        "taskId": t.id,
                        "instanceId": t.id,
                        "version": t.version,
                        "alive": now == Some(true),
                    }),
                ));
            }
        }
        for (id, node) in &changed {
            tx.task(id, node);
        }
        Ok(changed.len())
    });
    r.unwrap_or_default()
}

/// Deregisters the catalog services of lost tasks as they come, retrying while the catalog is
/// unreachable.
pub async fn deregister_stale(
    mut stale: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    client: CatalogClient,
) {
    while let Some((node, service_id)) = stale.recv().await {
        let dereg = cairn_wire::CatalogDeregistration {
            node: node.clone(),
            service_id: service_id.clone(),
            ..Default::default()
        };
        for attempt in 0u32.. {
            match client.catalog_deregister(&dereg).await {
                Ok(()) => {
                    tracing::info!(%node, service = %service_id, "lost task's service deregistered from the catalog");
                    break;
                }
                Err(e) if attempt < 30 => {
                    tracing::warn!(%node, service = %service_id, error = %e, "deregistering a lost task's service failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::error!(%node, service = %service_id, error = %e, "giving up deregistering a lost task's service");
                    break;
                }
            }
        }
    }
}

/// How often lost agents' catalog entries are swept.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// The meta key taskrun marks its task services with (value: the app id).
const TASK_SERVICE_META: &str = "marathon-app-id";

/// The level-triggered half of [`deregister_stale`]: every [`SWEEP_EVERY`], the task services
/// still registered on lost agents' nodes that are no active task are deregistered. This covers
/// what the immediate path can miss (offerd killed between declaring an agent lost and
/// deregistering, or the catalog down for long).
pub async fn sweep_lost(core: std::sync::Arc<Core>, client: CatalogClient) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let lost: Vec<String> = core.read(|s| {
            s.agents
                .values()
                .filter(|a| a.lost)
                .map(|a| a.node.clone())
                .collect()
        });
        for node in lost {
            let Ok((Some(entry), _)) = client.catalog_node(&node, &Default::default()).await else {
                continue;
            };
            for (id, svc) in entry.services {
                let is_task_service = svc.meta.contains_key(TASK_SERVICE_META);
                let active = core.read(|s| s.tasks.get(&id).is_some_and(|t| t.is_active()));
                if !is_task_service || active {
                    continue;
                }
                let dereg = cairn_wire::CatalogDeregistration {
                    node: node.clone(),
                    service_id: id.clone(),
                    ..Default::default()
                };
                match client.catalog_deregister(&dereg).await {
                    Ok(()) => {
                        tracing::info!(%node, service = %id, "stale task service of a lost agent deregistered")
                    }
                    Err(e) => {
                        tracing::warn!(%node, service = %id, error = %e, "sweeping a lost agent's service failed")
                    }
                }
            }
        }
    }
}

/// Follows the catalog's health until `shutdown`.
pub async fn follow(
    core: std::sync::Arc<Core>,
    client: CatalogClient,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut watch = Watch::new(
        client,
        QueryOptions::default(),
        Default::default(),
        |c, o| async move { c.health_state("any", &o).await },
    )
    .named("task health");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            next = watch.next() => match next {
                Ok(checks) => {
                    let n = apply(&core, &task_health(&checks));
                    if n > 0 {
                        tracing::debug!(changed = n, "task health updated from the catalog");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading health from the catalog failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            },
        }
    }
}

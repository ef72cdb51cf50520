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

/// The longest check output kept as a task's `lastFailureCause`.
const MAX_CAUSE: usize = 1024;

/// One task's health in the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// All its checks pass.
    pub passing: bool,
    /// The output of a failing check (Marathon's `lastFailureCause`).
    pub cause: Option<String>,
}

/// Per task id: whether all its checks pass, and why not.
pub fn task_health(checks: &[HealthCheck]) -> HashMap<String, Observed> {
    let mut out: HashMap<String, Observed> = HashMap::new();
    for c in checks.iter().filter(|c| !c.service_id.is_empty()) {
        let passing = c.status == CheckStatus::Passing;
        let o = out.entry(c.service_id.clone()).or_insert(Observed {
            passing: true,
            cause: None,
        });
        if !passing {
            o.passing = false;
            if o.cause.is_none() {
                let mut cause = c.output.trim().to_string();
                if cause.len() > MAX_CAUSE {
                    let mut end = MAX_CAUSE;
                    while !cause.is_char_boundary(end) {
                        end -= 1;
                    }
                    cause.truncate(end);
                }
                o.cause = Some(cause);
            }
        }
    }
    out
}

/// Applies catalog health to the tasks; returns how many changed.
pub async fn apply(core: &Core, health: &HashMap<String, Observed>) -> usize {
    let r: Result<usize, crate::core::CoreError> = core
        .mutate(|s, tx| {
            let mut changed = 0;
            // Only the tasks the catalog reports on are looked at (by id), and only those whose
            // health changed are copied (the state's maps are persistent).
            let mut turned: Vec<(&String, &Observed)> = health
                .iter()
                .filter(|(id, seen)| {
                    s.tasks.get(id).is_some_and(|t| {
                        !t.spec.health_checks.is_empty()
                            && t.is_active()
                            && Some(seen.passing) != t.healthy
                    })
                })
                .collect();
            // Events in task id order, whatever the map's order.
            turned.sort_by(|a, b| a.0.cmp(b.0));
            for (id, seen) in turned {
                let Some(mut t) = s.tasks.get_mut(id) else {
                    continue;
                };
                t.healthy = Some(seen.passing);
                t.unhealthy_since = (!seen.passing).then_some(tx.now_ms);
                t.health.record(seen.passing, seen.cause.clone(), tx.now_ms);
                changed += 1;
                tx.event(Event::new(
                    "health_status_changed_event",
                    tx.now_ms,
                    json!({
                        "appId": t.app_id,
                        "taskId": t.id,
                        "instanceId": t.id,
                        "version": t.version,
                        "alive": seen.passing,
                    }),
                ));
                // Health is not in the agent's desired set: its agent is not woken.
                tx.task_state(&t);
            }
            Ok(changed)
        })
        .await;
    r.unwrap_or_else(|e| {
        tracing::error!(error = %e, "recording task health failed");
        0
    })
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
                    let n = apply(&core, &task_health(&checks)).await;
                    if n > 0 {
                        tracing::debug!(changed = n, "task health updated from the catalog");
                    }
                }
                // Logged by the watch once per failure streak; its next read backs off.
                Err(e) => {
                    tracing::debug!(error = %e, "reading health from the catalog failed; retrying");
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(task: &str, status: CheckStatus, output: &str) -> HealthCheck {
        HealthCheck {
            service_id: task.into(),
            status,
            output: output.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_task_passes_when_all_its_checks_do_and_keeps_why_not() {
        let h = task_health(&[
            check("a", CheckStatus::Passing, "ok"),
            check("a", CheckStatus::Critical, "  connection refused\n"),
            check("b", CheckStatus::Passing, "ok"),
            check("", CheckStatus::Critical, "node check"),
            check("c", CheckStatus::Warning, &"x".repeat(5000)),
        ]);
        assert_eq!(
            h["a"],
            Observed {
                passing: false,
                cause: Some("connection refused".into())
            }
        );
        assert_eq!(
            h["b"],
            Observed {
                passing: true,
                cause: None
            }
        );
        assert_eq!(h["c"].cause.as_ref().map(String::len), Some(MAX_CAUSE));
        assert_eq!(h.len(), 3, "node checks belong to no task");
    }
}

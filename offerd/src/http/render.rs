//! State → Marathon's JSON. Only fields Marathon defines appear: strict clients (the Python
//! `marathon` package) build objects from every field they receive and reject unknown ones.

use cairn_marathon::iso8601_millis;
use serde_json::{Value, json};

use crate::model::{AppEntry, Deployment, QueueEntry, State, Task};
use crate::scheduler::is_healthy;

/// What `embed=` asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Embed {
    pub tasks: bool,
    pub counts: bool,
    pub deployments: bool,
    pub last_task_failure: bool,
}

impl Embed {
    pub fn parse<'a>(values: impl Iterator<Item = &'a str>, prefix: &str) -> Embed {
        let mut e = Embed::default();
        for v in values {
            match v.strip_prefix(prefix).unwrap_or(v) {
                "tasks" => e.tasks = true,
                "counts" => e.counts = true,
                "deployments" => e.deployments = true,
                "lastTaskFailure" => e.last_task_failure = true,
                _ => {}
            }
        }
        e
    }

    /// `GET /v2/apps/{id}` always carries counts, deployments and tasks, as Marathon's.
    pub fn single() -> Embed {
        Embed {
            tasks: true,
            counts: true,
            deployments: true,
            last_task_failure: true,
        }
    }
}

/// One Marathon health result per health check of the task. offerd knows the task's health as
/// a whole (all checks pass or not), so every result carries it; times that never happened are
/// left out, as Marathon 1.10 writes its `Health` (absent, not null).
fn health_results(t: &Task, now_ms: u64) -> Vec<Value> {
    let Some(alive) = t.healthy.filter(|_| !t.spec.health_checks.is_empty()) else {
        return Vec::new();
    };
    let h = &t.health;
    t.spec
        .health_checks
        .iter()
        .map(|hc| {
            // Failures since the checks started failing, one per interval (the catalog tells
            // changes, not each run).
            let failures = match t.unhealthy_since.filter(|_| !alive) {
                Some(since) => {
                    1 + now_ms.saturating_sub(since) / (hc.interval_seconds.max(1) * 1000)
                }
                None => 0,
            };
            let mut r = json!({
                "alive": alive,
                "consecutiveFailures": failures,
                "instanceId": t.id,
            });
            for (k, v) in [
                ("firstSuccess", h.first_success),
                ("lastSuccess", h.last_success),
                ("lastFailure", h.last_failure),
            ] {
                if let Some(ms) = v {
                    r[k] = json!(iso8601_millis(ms));
                }
            }
            if let Some(c) = &h.last_failure_cause {
                r["lastFailureCause"] = json!(c);
            }
            r
        })
        .collect()
}

pub fn task_json(t: &Task) -> Value {
    json!({
        "appId": t.app_id,
        "host": t.host,
        "id": t.id,
        "ipAddresses": t.ip_addresses(),
        "ports": t.ports,
        "servicePorts": t.service_ports,
        "slaveId": t.node,
        "stagedAt": iso8601_millis(t.staged_at),
        "startedAt": t.started_at.map(iso8601_millis),
        "state": t.state.as_str(),
        "version": t.version,
        "healthCheckResults": health_results(t, cairn_marathon::now_millis()),
    })
}

pub fn app_json(state: &State, e: &AppEntry, embed: Embed) -> Value {
    let mut v = serde_json::to_value(&e.app).unwrap_or(Value::Null);
    let Value::Object(m) = &mut v else {
        return v;
    };
    let tasks: Vec<&Task> = state.app_tasks(&e.app.id).collect();
    let count = |f: &dyn Fn(&Task) -> bool| tasks.iter().filter(|t| f(t)).count();
    m.insert(
        "tasksStaged".into(),
        json!(count(&|t| t.state == cairn_marathon::TaskState::Staging)),
    );
    m.insert(
        "tasksRunning".into(),
        json!(count(&|t| t.state == cairn_marathon::TaskState::Running)),
    );
    m.insert(
        "tasksHealthy".into(),
        json!(count(&|t| !t.spec.health_checks.is_empty() && is_healthy(t))),
    );
    m.insert(
        "tasksUnhealthy".into(),
        json!(count(
            &|t| !t.spec.health_checks.is_empty() && t.healthy == Some(false)
        )),
    );
    let deployments: Vec<Value> = state
        .deployments
        .of_app(&e.app.id)
        .map(|d| json!({ "id": d.id }))
        .collect();
    m.insert("deployments".into(), json!(deployments));
    if embed.tasks {
        m.insert(
            "tasks".into(),
            json!(tasks.iter().map(|t| task_json(t)).collect::<Vec<_>>()),
        );
    }
    if embed.last_task_failure
        && let Some(f) = &e.last_failure
    {
        m.insert(
            "lastTaskFailure".into(),
            serde_json::to_value(f).unwrap_or(Value::Null),
        );
    }
    v
}

pub fn deployment_json(d: &Deployment) -> Value {
    let steps = d.steps();
    let actions = |step: &[&str]| -> Vec<Value> {
        step.iter()
            .map(|a| json!({ "action": a, "app": d.app_id, "readinessCheckResults": [] }))
            .collect()
    };
    json!({
        "id": d.id,
        "version": d.version,
        "affectedApps": [d.app_id],
        "affectedPods": [],
        "steps": steps.iter().map(|s| json!({ "actions": s.iter().map(|a| json!({"action": a, "app": d.app_id})).collect::<Vec<_>>() })).collect::<Vec<_>>(),
        "currentActions": steps.last().map(|s| actions(s)).unwrap_or_default(),
        "currentStep": steps.len(),
        "totalSteps": steps.len(),
    })
}

pub fn queue_json(state: &State, app_id: &str, q: &QueueEntry, now_ms: u64) -> Value {
    let app = state
        .apps
        .get(app_id)
        .map(|e| serde_json::to_value(&e.app).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let left = q.delay_until_ms.saturating_sub(now_ms);
    let reasons: Vec<Value> = q
        .reason
        .iter()
        .map(|r| json!({ "reason": r, "declined": q.agents_considered, "processed": q.agents_considered }))
        .collect();
    json!({
        "count": q.count,
        "delay": { "timeLeftSeconds": left.div_ceil(1000), "overdue": left == 0 },
        "since": iso8601_millis(q.since_ms),
        "processedOffersSummary": {
            "processedOffersCount": q.agents_considered,
            "unusedOffersCount": q.agents_considered,
            "rejectSummaryLastOffers": reasons,
            "rejectSummaryLaunchAttempt": [],
        },
        "lastUnusedOffers": [],
        "app": app,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Deployment, DeploymentKind};
    use crate::scheduler::deployment_plan_json;

    fn task(healthy: Option<bool>) -> Task {
        serde_json::from_value(json!({
            "id": "shop_web.1", "app_id": "/shop/web", "version": "v", "config_version": "v",
            "node": "n1", "host": "10.0.0.5", "ports": [31000], "service_ports": [10000],
            "state": "TASK_RUNNING", "staged_at": 0, "started_at": 1000, "healthy": healthy,
            "spec": {
                "id": "shop_web.1", "app_id": "/shop/web", "version": "v", "cpus": 0.1,
                "mem": 16.0, "disk": 0.0, "kill_grace_seconds": 3.0, "service_name": "web-shop",
                "health_checks": [{"protocol": "TCP", "intervalSeconds": 10}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn health_results_carry_marathons_times() {
        // Never checked: no results at all.
        assert!(health_results(&task(None), 0).is_empty());
        let mut t = task(Some(true));
        t.health.record(true, None, 1_000);
        t.health.record(true, None, 2_000);
        let r = &health_results(&t, 3_000)[0];
        assert_eq!(r["alive"], true);
        assert_eq!(r["consecutiveFailures"], 0);
        assert_eq!(r["instanceId"], "shop_web.1");
        assert_eq!(r["firstSuccess"], "1970-01-01T00:00:01.000Z");
        assert_eq!(r["lastSuccess"], "1970-01-01T00:00:02.000Z");
        // What never happened is left out, as Marathon 1.10 writes it.
        assert!(r.get("lastFailure").is_none() && r.get("lastFailureCause").is_none());
        // Failing for 25 s with a 10 s interval: the first failure and two more runs.
        t.healthy = Some(false);
        t.unhealthy_since = Some(5_000);
        t.health
            .record(false, Some("connection refused".into()), 5_000);
        let r = &health_results(&t, 30_000)[0];
        assert_eq!(r["alive"], false);
        assert_eq!(r["consecutiveFailures"], 3);
        assert_eq!(r["lastFailure"], "1970-01-01T00:00:05.000Z");
        assert_eq!(r["lastFailureCause"], "connection refused");
        assert_eq!(r["firstSuccess"], "1970-01-01T00:00:01.000Z");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        for k in keys {
            assert!(
                [
                    "alive",
                    "consecutiveFailures",
                    "instanceId",
                    "firstSuccess",
                    "lastSuccess",
                    "lastFailure",
                    "lastFailureCause"
                ]
                .contains(&k.as_str()),
                "{k} is not a field of Marathon's Health"
            );
        }
    }

    #[test]
    fn ip_addresses_as_mesos_reports_them() {
        let ip_addresses = |host: &str| {
            Task {
                host: host.into(),
                ..task(None)
            }
            .ip_addresses()
        };
        assert_eq!(
            ip_addresses("10.0.0.5"),
            json!([{"ipAddress": "10.0.0.5", "protocol": "IPv4"}])
        );
        assert_eq!(
            ip_addresses("fd00::1"),
            json!([{"ipAddress": "fd00::1", "protocol": "IPv6"}])
        );
        assert_eq!(ip_addresses("node-1.example"), json!([]));
        assert_eq!(
            task_json(&task(None))["ipAddresses"][0]["ipAddress"],
            "10.0.0.5"
        );
    }

    #[test]
    fn plans_carry_the_groups_before_and_after() {
        let old = cairn_marathon::parse_app(json!({"id": "/shop/web", "cmd": "v1"}), None).unwrap();
        let new = cairn_marathon::parse_app(json!({"id": "/shop/web", "cmd": "v2"}), None).unwrap();
        let d = Deployment {
            id: "d1".into(),
            version: "2026-01-01T00:00:00.000Z".into(),
            app_id: "/shop/web".into(),
            kind: DeploymentKind::Restart,
            previous: Some(old),
            started_ms: 0,
        };
        let plan = deployment_plan_json(&d, Some(&new));
        for (side, cmd) in [("original", "v1"), ("target", "v2")] {
            let root = &plan[side];
            assert_eq!(root["id"], "/");
            assert_eq!(root["apps"], json!([]));
            let shop = &root["groups"][0];
            assert_eq!(shop["id"], "/shop");
            assert_eq!(shop["apps"][0]["id"], "/shop/web");
            assert_eq!(shop["apps"][0]["cmd"], cmd);
            // Only the fields the Python client's group model takes.
            let mut keys: Vec<&String> = root.as_object().unwrap().keys().collect();
            keys.sort();
            assert_eq!(
                keys,
                ["apps", "dependencies", "groups", "id", "pods", "version"]
            );
        }
        // A top-level app sits in the root; a new app has an empty original.
        let top = Deployment {
            app_id: "/web".into(),
            previous: None,
            kind: DeploymentKind::Start,
            ..d
        };
        let plan = deployment_plan_json(&top, Some(&new));
        assert_eq!(plan["original"]["apps"], json!([]));
        assert_eq!(plan["target"]["apps"][0]["cmd"], "v2");
        assert_eq!(plan["steps"][0]["actions"][0]["action"], "StartApplication");
    }
}

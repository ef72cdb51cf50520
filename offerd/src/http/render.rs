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

pub fn task_json(t: &Task) -> Value {
    let health: Vec<Value> = match t.healthy {
        Some(alive) if !t.spec.health_checks.is_empty() => t
            .spec
            .health_checks
            .iter()
            .map(|_| {
                json!({
                    "alive": alive,
                    "consecutiveFailures": if alive { 0 } else { 1 },
                    "firstSuccess": Value::Null,
                    "lastFailure": Value::Null,
                    "lastSuccess": Value::Null,
                    "lastFailureCause": Value::Null,
                    "taskId": t.id,
                    "instanceId": t.id,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    json!({
        "appId": t.app_id,
        "host": t.host,
        "id": t.id,
        "ipAddresses": [{ "ipAddress": t.host, "protocol": "IPv4" }],
        "ports": t.ports,
        "servicePorts": t.service_ports,
        "slaveId": t.node,
        "stagedAt": iso8601_millis(t.staged_at),
        "startedAt": t.started_at.map(iso8601_millis),
        "state": t.state.as_str(),
        "version": t.version,
        "healthCheckResults": health,
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
        .values()
        .filter(|d| d.app_id == e.app.id)
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

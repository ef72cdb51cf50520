//! Autoscaling: a leader duty that, every `--autoscale-interval`, reads the metric of each app
//! with a policy (Marathon labels `cairn.autoscale.*`, [`cairn_marathon::autoscale`]), decides
//! ([`decide`]) and scales the app through the same change an operator's scale makes (a Scale
//! deployment), and watches for tasks that no agent has room for ([`capacity`]).
//!
//! Every scale is a `scaling_event` on `/v2/events` (metric, target, value, from, to, reason),
//! published once the new count is durable; a hold whose reason changed is one too (`action`
//! `hold`), so a consumer sees why nothing happens without polling. The latest decision of
//! every app is on the [`Board`] (`/v1/autoscale/status`, `offerd apps`).
//!
//! The scale is applied only if the app is as the round saw it (same `instances`, no
//! deployment, still a policy): an operator's change in between wins and the next round starts
//! from it.

pub mod capacity;
pub mod decide;
pub mod sources;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_cli::LockOrExit as _;
use cairn_marathon::autoscale::Policy;
use cairn_marathon::{MAX_INSTANCES, now_millis};
use serde::Serialize;
use serde_json::json;

use crate::core::{Core, CoreError};
use crate::events::Event;
use crate::scheduler::{self, apps::AppError, is_healthy};
use decide::{Decision, Memory, Observed};
use sources::{Need, SourceConfig, Sources};

/// Settings of the autoscaler and the capacity watch (`offerd serve` flags).
#[derive(Clone, Debug)]
pub struct AutoscaleConfig {
    pub interval: Duration,
    pub sources: SourceConfig,
    pub capacity: capacity::CapacityConfig,
    /// CA and client certificate for https sources (the catalog's TLS settings).
    pub tls: cairn_client::TlsOptions,
}

impl Default for AutoscaleConfig {
    fn default() -> Self {
        AutoscaleConfig {
            interval: Duration::from_secs(10),
            sources: SourceConfig {
                rate_window: Duration::from_secs(30),
                interval: Duration::from_secs(10),
                ..SourceConfig::default()
            },
            capacity: capacity::CapacityConfig::default(),
            tls: cairn_client::TlsOptions::default(),
        }
    }
}

/// One app's latest autoscaling state, as `/v1/autoscale/status` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub app_id: String,
    pub metric: String,
    pub target: f64,
    pub min: u32,
    pub max: u32,
    pub instances: u32,
    pub ready: u32,
    /// The metric's value per instance at the last round (`null`: none could be read).
    pub value: Option<f64>,
    /// `scale`, `hold` or `steady`.
    pub decision: &'static str,
    pub reason: String,
    pub updated_at: String,
    pub last_scale: Option<ScaleRecord>,
}

/// The last scale the autoscaler applied to an app.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScaleRecord {
    pub at: String,
    pub from: u32,
    pub to: u32,
    pub reason: String,
}

/// What the autoscaler and the capacity watch last found: read by the HTTP API and `/metrics`.
#[derive(Default)]
pub struct Board {
    apps: std::sync::Mutex<BTreeMap<String, AppStatus>>,
    capacity: std::sync::Mutex<Option<capacity::Shortfall>>,
}

impl Board {
    /// Every app with a policy, by id.
    pub fn apps(&self) -> Vec<AppStatus> {
        self.apps_guard().values().cloned().collect()
    }

    /// One app's status.
    pub fn app(&self, id: &str) -> Option<AppStatus> {
        self.apps_guard().get(id).cloned()
    }

    /// The shortfall of the last capacity round (`None`: nothing waits for room).
    pub fn shortfall(&self) -> Option<capacity::Shortfall> {
        self.capacity.lock_or_exit("the capacity board").clone()
    }

    fn apps_guard(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AppStatus>> {
        self.apps.lock_or_exit("the autoscaling board")
    }

    fn set_shortfall(&self, s: Option<capacity::Shortfall>) {
        *self.capacity.lock_or_exit("the capacity board") = s;
    }
}

/// An app the round looks at.
struct Candidate {
    policy: Policy,
    observed: Observed,
    need: Need,
}

/// Runs the autoscaler and the capacity watch until cancelled (a leader's duty).
pub async fn run(
    core: Arc<Core>,
    cfg: AutoscaleConfig,
    board: Arc<Board>,
    stop: tokio_util::sync::CancellationToken,
) {
    let http = match http_client(&cfg) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "autoscaling is off: no HTTP client for its sources");
            return;
        }
    };
    let mut sources = Sources::new(cfg.sources.clone(), http);
    let mut memory: BTreeMap<String, Memory> = BTreeMap::new();
    let mut watch = capacity::Watch::new(cfg.capacity.clone());
    let mut every = tokio::time::interval(cfg.interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let now_ms = now_millis();
        let candidates = core.read(candidates);
        memory.retain(|id, _| candidates.contains_key(id));
        board
            .apps_guard()
            .retain(|id, _| candidates.contains_key(id));
        let needs: Vec<Need> = candidates.values().map(|c| c.need.clone()).collect();
        let readings = sources.read(&needs, now_ms).await;
        for (c, reading) in candidates.values().zip(readings) {
            let m = memory.entry(c.need.app_id.clone()).or_default();
            let value = reading.as_ref().ok().copied();
            let decision = decide::decide(&c.policy, m, c.observed, reading, now_ms);
            round_for_app(&core, &board, c, m, decision, value, now_ms).await;
        }
        let shortfall = core.read(|s| watch.observe(s, now_ms));
        if let Some(changed) = &shortfall.changed {
            watch.announce(&core, changed, now_ms);
        }
        board.set_shortfall(shortfall.current);
    }
}

/// The client the sources are read with: https when any configured source is.
fn http_client(cfg: &AutoscaleConfig) -> Result<reqwest::Client, String> {
    let https = cfg
        .sources
        .lbconf
        .iter()
        .chain(&cfg.sources.prometheus)
        .any(|u| u.scheme() == "https");
    let tls = cfg.tls.client_config(https).map_err(|e| e.to_string())?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

/// Every app with a valid policy, with what the round needs of it.
fn candidates(s: &crate::model::State) -> BTreeMap<String, Candidate> {
    let mut out = BTreeMap::new();
    for (id, entry) in &s.apps {
        let app = &entry.app;
        let Ok(Some(policy)) = Policy::from_labels(&app.labels, MAX_INSTANCES) else {
            continue;
        };
        let ready: Vec<(String, String)> = s
            .app_tasks(id)
            .filter(|t| is_healthy(t))
            .map(|t| {
                let addr = s
                    .agents
                    .get(&t.node)
                    .map(|a| a.http_addr.clone())
                    .unwrap_or_default();
                (t.id.to_string(), addr)
            })
            .collect();
        let observed = Observed {
            instances: u32::try_from(app.instances.max(0)).unwrap_or(u32::MAX),
            ready: u32::try_from(ready.len()).unwrap_or(u32::MAX),
            deploying: s.deployment_of(id).is_some(),
        };
        out.insert(
            id.clone(),
            Candidate {
                need: Need {
                    app_id: id.clone(),
                    metric: policy.metric.clone(),
                    cpus: app.cpus,
                    mem_mb: app.mem,
                    ready,
                },
                policy,
                observed,
            },
        );
    }
    out
}

/// Applies one app's decision and records it on the board.
async fn round_for_app(
    core: &Core,
    board: &Board,
    c: &Candidate,
    memory: &mut Memory,
    decision: Decision,
    value: Option<f64>,
    now_ms: u64,
) {
    let id = &c.need.app_id;
    let previous = board.app(id);
    let mut status = AppStatus {
        app_id: id.clone(),
        metric: c.policy.metric.to_string(),
        target: c.policy.target,
        min: c.policy.min,
        max: c.policy.max,
        instances: c.observed.instances,
        ready: c.observed.ready,
        value,
        decision: "steady",
        reason: String::new(),
        updated_at: cairn_marathon::iso8601_millis(now_ms),
        last_scale: previous.as_ref().and_then(|p| p.last_scale.clone()),
    };
    match decision {
        Decision::Scale { to, reason } => match scale(core, id, c, to, value, &reason).await {
            Ok(()) => {
                tracing::info!(app = %id, from = c.observed.instances, to, %reason, "autoscaled");
                memory.scaled(now_ms);
                status.decision = "scale";
                status.instances = to;
                status.last_scale = Some(ScaleRecord {
                    at: status.updated_at.clone(),
                    from: c.observed.instances,
                    to,
                    reason: reason.clone(),
                });
                status.reason = reason;
            }
            Err(why) => {
                status.decision = "hold";
                status.reason = format!("scale to {to} not applied: {why}");
            }
        },
        Decision::Hold { reason } => {
            status.decision = "hold";
            status.reason = reason;
        }
        Decision::Steady { reason } => status.reason = reason,
    }
    if status.decision == "hold"
        && previous
            .as_ref()
            .is_none_or(|p| p.decision != "hold" || p.reason != status.reason)
    {
        tracing::info!(app = %id, reason = %status.reason, "autoscaling holds");
        let held = Change {
            id,
            policy: &c.policy,
            value,
            from: c.observed.instances,
            to: c.observed.instances,
        };
        core.events
            .publish(held.event("hold", &status.reason, now_ms));
    }
    board.apps_guard().insert(id.clone(), status);
}

/// Why an autoscaler's scale was not applied.
#[derive(Debug, thiserror::Error)]
enum NotApplied {
    #[error("the app changed since the reading")]
    Changed,
    #[error(transparent)]
    App(#[from] AppError),
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Sets the app's `instances` to `to` if it is still as the round saw it.
async fn scale(
    core: &Core,
    id: &str,
    c: &Candidate,
    to: u32,
    value: Option<f64>,
    reason: &str,
) -> Result<(), NotApplied> {
    let version_ms = core.next_version_ms();
    let from = c.observed.instances;
    core.mutate(|s, tx| {
        let entry = s.apps.get(id).ok_or(NotApplied::Changed)?;
        let still = entry.app.instances == i64::from(from)
            && s.deployment_of(id).is_none()
            && Policy::from_labels(&entry.app.labels, MAX_INSTANCES)
                .ok()
                .flatten()
                .as_ref()
                == Some(&c.policy);
        if !still {
            return Err(NotApplied::Changed);
        }
        let mut app = entry.app.clone();
        app.instances = i64::from(to);
        scheduler::apps::install(s, tx, app, version_ms, false, false)?;
        let change = Change {
            id,
            policy: &c.policy,
            value,
            from,
            to,
        };
        tx.event(change.event("scale", reason, tx.now_ms));
        Ok(())
    })
    .await
}

/// A change of an app's count, as its `scaling_event` tells it.
struct Change<'a> {
    id: &'a str,
    policy: &'a Policy,
    value: Option<f64>,
    from: u32,
    to: u32,
}

impl Change<'_> {
    /// `action`: `scale` or `hold`.
    fn event(&self, action: &str, reason: &str, now_ms: u64) -> Event {
        Event::new(
            "scaling_event",
            now_ms,
            json!({
                "appId": self.id,
                "action": action,
                "metric": self.policy.metric.to_string(),
                "target": self.policy.target,
                "value": self.value,
                "from": self.from,
                "to": self.to,
                "reason": reason,
            }),
        )
    }
}

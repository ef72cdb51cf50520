//! "Hey, you need more nodes": tasks that no agent has had room for since longer than
//! `--capacity-after` make a shortfall — per app, the instances waiting, the cpus, mem, disk and
//! ports they need together, their constraints and the scheduler's reason. A new or changed
//! shortfall is a `capacity_needed` event on `/v2/events` and runs `--capacity-hook` (a shell
//! command: a Terraform or cloud CLI call) with the shortfall as JSON on its standard input; the
//! current one is on `/metrics` (`offerd_capacity_shortfall`) and `/v1/autoscale/status`.
//!
//! Only placement shortfalls count: tasks held back by a launch backoff (a crashing app) are not
//! a lack of machines. One hook runs at a time, within `--capacity-hook-timeout`; a shortfall
//! that changes while it runs is handed to the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::core::Core;
use crate::events::Event;
use crate::model::State;

/// Most bytes of a hook's output kept for the log.
const HOOK_OUTPUT: usize = 4096;

/// Settings of the capacity watch.
#[derive(Clone, Debug)]
pub struct CapacityConfig {
    /// Tasks waiting for room this long make a shortfall.
    pub after: Duration,
    /// `sh -c` command run with the shortfall on stdin.
    pub hook: Option<String>,
    pub hook_timeout: Duration,
}

impl Default for CapacityConfig {
    fn default() -> Self {
        CapacityConfig {
            after: Duration::from_secs(60),
            hook: None,
            hook_timeout: Duration::from_secs(60),
        }
    }
}

/// What is missing, over every app that waits.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Shortfall {
    pub apps: Vec<AppShortfall>,
    pub total: Needed,
}

/// What one app's waiting instances need.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AppShortfall {
    pub app_id: String,
    /// The scheduler's reason (which resource or constraint no agent satisfies).
    pub reason: String,
    pub constraints: Vec<String>,
    pub waiting_since: String,
    #[serde(flatten)]
    pub needed: Needed,
}

/// Resources for a number of instances.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Needed {
    pub instances: u32,
    pub cpus: f64,
    pub mem: f64,
    pub disk: f64,
    pub ports: u32,
}

impl Needed {
    fn add(&mut self, o: &Needed) {
        self.instances += o.instances;
        self.cpus += o.cpus;
        self.mem += o.mem;
        self.disk += o.disk;
        self.ports += o.ports;
    }
}

/// The shortfall of the apps in `state`'s launch queue that have waited `after` or longer.
pub fn shortfall(state: &State, after: Duration, now_ms: u64) -> Option<Shortfall> {
    let after_ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
    let mut apps = Vec::new();
    let mut total = Needed::default();
    for (id, q) in &state.queue {
        let (Some(reason), 0) = (&q.reason, q.delay_until_ms) else {
            continue;
        };
        if q.count == 0 || now_ms.saturating_sub(q.since_ms) < after_ms {
            continue;
        }
        let Some(entry) = state.apps.get(id) else {
            continue;
        };
        let app = &entry.app;
        let n = f64::from(q.count);
        let needed = Needed {
            instances: q.count,
            cpus: app.cpus * n,
            mem: app.mem * n,
            disk: app.disk * n,
            ports: u32::try_from(app.port_count())
                .unwrap_or(u32::MAX)
                .saturating_mul(q.count),
        };
        total.add(&needed);
        apps.push(AppShortfall {
            app_id: id.clone(),
            reason: reason.clone(),
            constraints: app.constraints.iter().map(ToString::to_string).collect(),
            waiting_since: cairn_marathon::iso8601_millis(q.since_ms),
            needed,
        });
    }
    (!apps.is_empty()).then_some(Shortfall { apps, total })
}

/// What a round found.
pub struct Observation {
    pub current: Option<Shortfall>,
    /// The shortfall, when it is new or differs (in what is needed) from the last announced.
    pub changed: Option<Shortfall>,
}

/// The capacity watch between rounds.
pub struct Watch {
    cfg: CapacityConfig,
    announced: Option<Shortfall>,
    /// Whether a hook is running (one at a time).
    hook_running: Arc<AtomicBool>,
}

impl Watch {
    pub fn new(cfg: CapacityConfig) -> Watch {
        Watch {
            cfg,
            announced: None,
            hook_running: Arc::default(),
        }
    }

    pub fn observe(&mut self, state: &State, now_ms: u64) -> Observation {
        let current = shortfall(state, self.cfg.after, now_ms);
        let same = |a: &Shortfall, b: &Shortfall| {
            a.total == b.total
                && a.apps.len() == b.apps.len()
                && a.apps
                    .iter()
                    .zip(&b.apps)
                    .all(|(x, y)| x.app_id == y.app_id && x.needed == y.needed)
        };
        let changed = match (&current, &self.announced) {
            (Some(c), Some(prev)) if same(c, prev) => None,
            (Some(c), _) => Some(c.clone()),
            (None, _) => None,
        };
        self.announced = current.clone();
        Observation { current, changed }
    }
}

impl Watch {
    /// Publishes `capacity_needed` and starts the hook (in the background) for a changed
    /// shortfall.
    pub fn announce(&self, core: &Core, s: &Shortfall, now_ms: u64) {
        let cfg = &self.cfg;
        tracing::warn!(
            instances = s.total.instances,
            cpus = s.total.cpus,
            mem = s.total.mem,
            apps = s.apps.len(),
            "capacity needed: tasks have waited {} s or more for room",
            cfg.after.as_secs()
        );
        let body = serde_json::to_value(s).unwrap_or_else(|_| json!({}));
        core.events
            .publish(Event::new("capacity_needed", now_ms, body.clone()));
        let Some(hook) = cfg.hook.clone() else {
            return;
        };
        if self.hook_running.swap(true, Ordering::SeqCst) {
            tracing::warn!("capacity hook still running: this shortfall goes to the next run");
            return;
        }
        let running = self.hook_running.clone();
        let timeout = cfg.hook_timeout;
        let input = body.to_string().into_bytes();
        tokio::spawn(async move {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(&hook);
            match cairn_proc::run_with_input(&mut cmd, input, timeout, HOOK_OUTPUT).await {
                Ok(f) if f.status.success() => {
                    tracing::info!(output = %f.stdout_text(), "capacity hook ran")
                }
                Ok(f) => tracing::error!(
                    status = %f.status,
                    stderr = %f.stderr_text(),
                    "capacity hook failed"
                ),
                Err(e) => tracing::error!(error = %e, "capacity hook did not run"),
            }
            running.store(false, Ordering::SeqCst);
        });
    }
}

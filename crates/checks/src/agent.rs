//! The check half of a Consul agent for one node, shared by `healthcheck agent`, taskrun and
//! catalogd: it follows the checks registered for the node (a [`ChecksSource`]: a blocking query
//! on a catalog, or catalogd's own state), runs every HTTP, TCP and (when enabled) script check on
//! its interval, and hands status changes to a [`StatusSink`] (the catalog register path, or
//! catalogd's writer). It never exits because the catalog is down: the watch and the pushes
//! retry.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Check, CheckSpec, Context, Kind};
use cairn_client::{CatalogClient, QueryOptions, Watch};
use cairn_wire::{CatalogRegistration, HealthCheck};
use tokio::task::JoinHandle;

/// Interval for a registered check that names none (Consul requires one; be forgiving).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest interval a registered check runs at, as Consul's `checks.MinInterval`: a definition
/// asking for less (`"Interval": 10` is 10 ns to Consul's decoder) must not spin.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Which script checks (`ScriptArgs`) the agent runs: anyone who can register a check for the
/// node chooses the command, so running every one is running anyone's command.
#[derive(Clone)]
pub enum ScriptChecks {
    /// None, as a Consul agent without `enable_script_checks`.
    Disabled,
    /// Every one registered for the node (`--enable-script-checks`).
    All,
    /// Only those the predicate vouches for: taskrun's checks of the tasks it launched, exactly
    /// as it registered them.
    Vouched(Arc<dyn Fn(&HealthCheck) -> bool + Send + Sync>),
}

impl ScriptChecks {
    /// `--enable-script-checks`: all or none.
    pub fn from_flag(enabled: bool) -> ScriptChecks {
        if enabled {
            ScriptChecks::All
        } else {
            ScriptChecks::Disabled
        }
    }

    fn allow(&self, c: &HealthCheck) -> bool {
        match self {
            ScriptChecks::Disabled => false,
            ScriptChecks::All => true,
            ScriptChecks::Vouched(vouch) => vouch(c),
        }
    }
}

impl std::fmt::Debug for ScriptChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScriptChecks::Disabled => "Disabled",
            ScriptChecks::All => "All",
            ScriptChecks::Vouched(_) => "Vouched",
        })
    }
}

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node: String,
    pub script_checks: ScriptChecks,
    /// An output-only change (same status) is pushed at most this often.
    pub output_update_interval: Duration,
}

/// What makes a running check the same check: changing any of it restarts its loop.
fn identity(c: &HealthCheck) -> String {
    serde_json::to_string(&(&c.definition, &c.service_id, &c.name)).unwrap_or_default()
}

/// A check loop and what it was started from.
struct Running {
    identity: String,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Turns a registered check into something runnable, or says why it is skipped.
pub fn runnable(c: &HealthCheck, scripts: &ScriptChecks) -> Result<(Check, Duration), String> {
    let spec = CheckSpec::from_consul(&c.check_id, &c.definition).ok_or_else(|| {
        "no HTTP, TCP or script definition (TTL or externally updated)".to_string()
    })?;
    if spec.kind == Some(Kind::Exec) && !scripts.allow(c) {
        return Err(match scripts {
            ScriptChecks::Vouched(_) => {
                "not a check of a task this agent runs, and other script checks are disabled \
                 (--enable-script-checks)"
            }
            _ => "script checks are disabled (--enable-script-checks)",
        }
        .into());
    }
    let every = spec
        .interval()
        .unwrap_or(DEFAULT_INTERVAL)
        .max(MIN_INTERVAL);
    let check = spec
        .build()
        .map_err(|e| format!("invalid definition: {e}"))?;
    Ok((check, every))
}

/// Where a check's new status and output go.
pub trait StatusSink: Clone + Send + Sync + 'static {
    fn push(
        &self,
        check: &HealthCheck,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send;
}

/// Writes results to a catalog over HTTP through the register path (the node must exist, so its
/// own fields are left alone).
#[derive(Clone)]
pub struct CatalogSink(pub CatalogClient);

impl StatusSink for CatalogSink {
    async fn push(&self, check: &HealthCheck) -> Result<(), String> {
        let reg = CatalogRegistration {
            node: check.node.clone(),
            skip_node_update: true,
            check: Some(HealthCheck {
                create_index: 0,
                modify_index: 0,
                ..check.clone()
            }),
            ..Default::default()
        };
        self.0
            .catalog_register(&reg)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Runs one registered check forever on its interval, pushing what changed.
async fn check_loop(
    sink: impl StatusSink,
    ctx: Context,
    mut registered: HealthCheck,
    check: Check,
    every: Duration,
    cfg: AgentConfig,
) {
    let mut last_output_push = Instant::now();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let result = check.run(&ctx).await;
        let status = result.status.to_consul();
        let output = result.nagios_line();
        let status_changed = status != registered.status;
        let output_due =
            output != registered.output && last_output_push.elapsed() >= cfg.output_update_interval;
        if !(status_changed || output_due) {
            continue;
        }
        let mut next = registered.clone();
        next.status = status;
        next.output = output;
        match sink.push(&next).await {
            Ok(()) => {
                if status_changed {
                    tracing::info!(check = %next.check_id, from = %registered.status, to = %status, output = %next.output, "check status changed");
                }
                registered = next;
                last_output_push = Instant::now();
            }
            // Not recorded as pushed: the next run tries again.
            Err(e) => {
                tracing::warn!(check = %next.check_id, error = %e, "cannot push the check result; will retry")
            }
        }
    }
}

/// Reconciles running loops with the checks now registered for the node.
fn reconcile(
    running: &mut HashMap<String, Running>,
    registered: Vec<HealthCheck>,
    sink: &impl StatusSink,
    ctx: &Context,
    cfg: &AgentConfig,
) {
    let mut seen = Vec::new();
    for c in registered {
        let id = identity(&c);
        if running.get(&c.check_id).is_some_and(|r| r.identity == id) {
            seen.push(c.check_id.clone());
            continue;
        }
        match runnable(&c, &cfg.script_checks) {
            Ok((check, every)) => {
                tracing::info!(check = %c.check_id, every = ?every, "running check");
                let task = tokio::spawn(check_loop(
                    sink.clone(),
                    ctx.clone(),
                    c.clone(),
                    check,
                    every,
                    cfg.clone(),
                ));
                seen.push(c.check_id.clone());
                running.insert(c.check_id.clone(), Running { identity: id, task });
            }
            Err(why) => {
                if running.remove(&c.check_id).is_some() {
                    tracing::info!(check = %c.check_id, %why, "check no longer runnable; stopped");
                } else {
                    tracing::debug!(check = %c.check_id, %why, "not running check");
                }
            }
        }
    }
    running.retain(|id, _| {
        let keep = seen.contains(id);
        if !keep {
            tracing::info!(check = %id, "check deregistered; stopped");
        }
        keep
    });
}

/// Where the node's registered checks come from: each call answers the current list once it
/// differs from the last one handed out. A source paces its own retries: after `next` returned
/// an error the agent calls it again at once.
pub trait ChecksSource: Send {
    fn next(
        &mut self,
    ) -> impl std::future::Future<Output = Result<Vec<HealthCheck>, String>> + Send;
}

/// Follows `/v1/health/node/:node` of a catalog over HTTP with a blocking watch.
pub struct CatalogChecks(Watch<Vec<HealthCheck>>);

impl CatalogChecks {
    pub fn new(client: CatalogClient, node: &str) -> Self {
        let name = node.to_string();
        let watch = Watch::new(
            client,
            QueryOptions::default(),
            Default::default(),
            move |c, o| {
                let node = name.clone();
                async move { c.health_node(&node, &o).await }
            },
        )
        .named(format!("checks of node {node}"));
        CatalogChecks(watch)
    }
}

impl ChecksSource for CatalogChecks {
    async fn next(&mut self) -> Result<Vec<HealthCheck>, String> {
        self.0.next().await.map_err(|e| e.to_string())
    }
}

/// Runs the agent until `shutdown` resolves: follows the node's checks from `source` and sends
/// results to `sink`.
pub async fn run(
    mut source: impl ChecksSource,
    sink: impl StatusSink,
    cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let ctx = Context::new();
    let mut running: HashMap<String, Running> = HashMap::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            next = source.next() => match next {
                Ok(checks) => reconcile(&mut running, checks, &sink, &ctx, &cfg),
                // A source paces its own retries (the catalog watch backs off and logs once
                // per failure streak), so the next read is asked for at once.
                Err(e) => {
                    tracing::debug!(error = %e, "reading the node's checks failed; retrying");
                }
            },
        }
    }
    running.clear();
    tracing::info!("healthcheck agent stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wire::{CheckDefinition, CheckStatus};

    fn check(def: CheckDefinition) -> HealthCheck {
        HealthCheck {
            node: "n".into(),
            check_id: "c".into(),
            definition: def,
            status: CheckStatus::Critical,
            ..Default::default()
        }
    }

    #[test]
    fn registered_definitions_become_checks() {
        let http = check(CheckDefinition {
            http: "http://127.0.0.1:1/".into(),
            interval: "3s".into(),
            ..Default::default()
        });
        let (c, every) = runnable(&http, &ScriptChecks::Disabled).unwrap();
        assert!(matches!(c, Check::Http(_)));
        assert_eq!(every, Duration::from_secs(3));
        let tcp = check(CheckDefinition {
            tcp: "127.0.0.1:1".into(),
            ..Default::default()
        });
        assert_eq!(
            runnable(&tcp, &ScriptChecks::Disabled).unwrap().1,
            DEFAULT_INTERVAL
        );
        let hot = check(CheckDefinition {
            tcp: "127.0.0.1:1".into(),
            interval: "10ns".into(),
            ..Default::default()
        });
        assert_eq!(
            runnable(&hot, &ScriptChecks::Disabled).unwrap().1,
            MIN_INTERVAL
        );
        let script = check(CheckDefinition {
            script_args: vec!["/bin/true".into()],
            interval: "1s".into(),
            ..Default::default()
        });
        assert!(
            runnable(&script, &ScriptChecks::Disabled)
                .unwrap_err()
                .contains("disabled")
        );
        assert!(runnable(&script, &ScriptChecks::All).is_ok());
        let vouch_for = |id: String| ScriptChecks::Vouched(Arc::new(move |c| c.check_id == id));
        assert!(runnable(&script, &vouch_for(script.check_id.clone())).is_ok());
        assert!(
            runnable(&script, &vouch_for("another".into()))
                .unwrap_err()
                .contains("not a check of a task")
        );
        let ttl = check(CheckDefinition {
            ttl: "10s".into(),
            ..Default::default()
        });
        assert!(runnable(&ttl, &ScriptChecks::All).is_err());
    }
}

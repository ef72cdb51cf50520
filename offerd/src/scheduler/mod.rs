//! The scheduler: after every change (and on a timer) it compares each app's tasks with what the
//! app asks for and acts — declares silent agents lost, launches missing tasks through
//! [`cairn_placement`] (after the app's backoff), kills extra and outdated ones within the
//! upgrade strategy, finishes deployments, and fills the launch queue with the reason a task
//! waits. It is level-triggered: it never remembers what it did, only what is.
//!
//! - [`plan`]: the pure steps for one app (classify, scale down, replace old, launch room,
//!   place), unit-tested on their own.
//! - [`apps`]: app lifecycle — install, delete, the deployment lock (`force` cancels).
//! - [`lifecycle`]: launch, kill, finish and status updates of a task.
//! - [`deployments`]: when a deployment is done; Marathon's plan JSON.
//! - [`versions`]: the next version of an app; whether a task runs a definition.
//!
//! The scheduler changes a [`State`] and records what it touched in a [`Tx`]; it knows nothing
//! of the store or of how a change is committed.

pub mod apps;
pub mod deployments;
pub mod jobs;
pub mod lifecycle;
pub mod plan;
#[cfg(test)]
mod testkit;
pub mod versions;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use cairn_marathon::TaskState;
use cairn_placement::Offer;
use serde_json::json;

pub use apps::{AppError, Started};
pub use deployments::deployment_plan_json;
pub use lifecycle::{apply_status, finish_task, kill_task, launch};
pub use versions::{next_version, runs_as};

use crate::events::Event;
use crate::model::{QueueEntry, State, Task};
use crate::tx::Tx;

/// Settings the scheduler needs.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// An agent silent this long is lost.
    pub agent_timeout: Duration,
    /// A lost agent silent this long is forgotten (`--lost-agent-retention`).
    pub lost_agent_retention: Duration,
    /// Finished runs a job keeps, per outcome (`--job-history`).
    pub job_history: usize,
}

impl SchedulerConfig {
    /// `--agent-timeout 15s`, `--lost-agent-retention 24h`.
    pub fn new(agent_timeout: Duration) -> SchedulerConfig {
        SchedulerConfig {
            agent_timeout,
            lost_agent_retention: DEFAULT_LOST_AGENT_RETENTION,
            job_history: jobs::DEFAULT_JOB_HISTORY,
        }
    }
}

/// How long a lost agent is kept (in `/v1/agents`, and to take back its tasks when it returns)
/// before it is forgotten. Mesos keeps unreachable agents for `--registry_max_agent_age`
/// (2 weeks); a day is enough to see one in the list and bounds the table when nodes come and
/// go.
pub const DEFAULT_LOST_AGENT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Runs one full round of scheduling: every agent, task, app and deployment (the timer's
/// round, so whatever a change did not touch is still looked at).
pub fn reconcile(state: &mut State, tx: &mut Tx, cfg: &SchedulerConfig) {
    expire_agents(state, tx, cfg);
    forget_lost_agents(state, tx, cfg);
    let orphaned: Vec<String> = state
        .tasks
        .app_ids()
        .filter(|id| !state.apps.contains_key(*id))
        .map(str::to_string)
        .collect();
    kill_orphans(state, tx, &orphaned);
    kill_unhealthy(state, tx);
    jobs::kill_orphan_run_tasks(state, tx);
    state.queue.clear();
    let ids: Vec<String> = state.apps.keys().cloned().collect();
    let mut offers = Offers::default();
    for id in &ids {
        reconcile_app(state, tx, id, &mut offers);
    }
    jobs::fire_schedules(state, tx);
    jobs::drive_runs(state, tx, &mut offers);
    let deployments: Vec<String> = state.deployments.values().map(|d| d.id.clone()).collect();
    deployments::finish_deployments(state, tx, &deployments);
}

/// The round after a change: agents' timeouts as in every round, then only the apps the change
/// touched (their definition, or one of their tasks) and the apps waiting in the launch queue;
/// every app when an agent changed (a new or returning agent may make room for anyone, a
/// draining one moves tasks of many apps). What only time changes (health kills) is left to
/// the timer's full round ([`reconcile`]), which runs every 250 ms anyway. A change to one task
/// of 100,000 so costs its app's tasks, not the fleet's.
pub fn reconcile_touched(state: &mut State, tx: &mut Tx, cfg: &SchedulerConfig) {
    expire_agents(state, tx, cfg);
    forget_lost_agents(state, tx, cfg);
    if !tx.agents.is_empty() {
        // Not expired agents alone: registrations, drains, forgets too.
        return reconcile(state, tx, cfg);
    }
    let mut visit: BTreeSet<String> = tx.touched_apps.clone();
    visit.extend(state.queue.keys().cloned());
    let orphaned: Vec<String> = visit
        .iter()
        .filter(|id| !state.apps.contains_key(*id))
        .cloned()
        .collect();
    kill_orphans(state, tx, &orphaned);
    let mut offers = Offers::default();
    for id in &visit {
        state.queue.remove(id);
        reconcile_app(state, tx, id, &mut offers);
    }
    // Runs are launched (or failed) right after the change that starts them; schedules fire
    // on the timer's round.
    jobs::drive_runs(state, tx, &mut offers);
    // The visited apps' deployments, and those of apps whose tasks this round touched.
    let deployments: Vec<String> = visit
        .iter()
        .chain(tx.touched_apps.iter())
        .flat_map(|app| state.deployments.of_app(app).map(|d| d.id.clone()))
        .collect::<BTreeSet<String>>()
        .into_iter()
        .collect();
    deployments::finish_deployments(state, tx, &deployments);
}

/// Agents silent past the timeout are lost, and so are their tasks.
fn expire_agents(state: &mut State, tx: &mut Tx, cfg: &SchedulerConfig) {
    let timeout = cfg.agent_timeout.as_millis() as u64;
    let lost: Vec<String> = state
        .agents
        .values()
        .filter(|a| !a.lost && tx.now_ms.saturating_sub(a.last_seen_ms) > timeout)
        .map(|a| a.node.clone())
        .collect();
    for node in lost {
        tracing::warn!(%node, "agent silent past the agent timeout: lost; replacing its tasks");
        if let Some(a) = state.agents.get_mut(&node) {
            a.lost = true;
        }
        tx.agent(&node);
        let tasks: Vec<String> = state
            .tasks
            .on_node(&node)
            .filter(|t| t.is_active())
            .map(|t| t.id.clone())
            .collect();
        for id in tasks {
            finish_task(
                state,
                tx,
                &id,
                TaskState::Lost,
                "agent lost: silent past --agent-timeout",
            );
            // Its agent cannot take it out of the catalog: DNS and load balancers must stop
            // sending traffic there now, not when the node's TTL check runs out.
            tx.stale_services.push((node.clone(), id));
        }
    }
}

/// Agents lost for longer than the retention are forgotten.
fn forget_lost_agents(state: &mut State, tx: &mut Tx, cfg: &SchedulerConfig) {
    let retention = cfg.lost_agent_retention.as_millis() as u64;
    let gone: Vec<String> = state
        .agents
        .values()
        .filter(|a| a.lost && tx.now_ms.saturating_sub(a.last_seen_ms) > retention)
        .map(|a| a.node.clone())
        .collect();
    for node in gone {
        tracing::info!(%node, "agent lost past --lost-agent-retention: forgotten");
        forget_agent(state, tx, &node);
    }
}

/// Removes an agent and any task still recorded on it (its tasks ended as lost when it was
/// declared lost; none is left unless the state says otherwise). Should the agent come back,
/// it registers anew and is told to run nothing it ran before.
pub fn forget_agent(state: &mut State, tx: &mut Tx, node: &str) {
    let tasks: Vec<String> = state.tasks.on_node(node).map(|t| t.id.clone()).collect();
    for id in tasks {
        finish_task(state, tx, &id, TaskState::Lost, "agent removed");
        tx.stale_services.push((node.to_string(), id));
    }
    state.agents.remove(node);
    tx.agent(node);
}

/// Tasks of these apps, which are gone, are killed (tasks launched by a framework through
/// offers are the framework's to end).
fn kill_orphans(state: &mut State, tx: &mut Tx, gone_apps: &[String]) {
    let orphans: Vec<String> = gone_apps
        .iter()
        .flat_map(|app| state.tasks.of_app(app))
        .filter(|t| t.is_desired() && t.framework.is_none())
        .map(|t| t.id.clone())
        .collect();
    for id in orphans {
        kill_task(state, tx, &id);
    }
}

/// When a task failing its health checks is killed: failures inside the grace period after its
/// start do not count; after it, `maxConsecutiveFailures` intervals of failing (0 = never).
/// The catalog reports status changes, not each run, so "consecutive failures" is measured as
/// time spent failing. `None` when the task is healthy or its health is unknown.
pub fn unhealthy_kill_at(t: &Task) -> Option<u64> {
    let since = t.unhealthy_since.filter(|_| t.healthy == Some(false))?;
    let started = t.started_at?;
    t.spec
        .health_checks
        .iter()
        .filter(|hc| hc.max_consecutive_failures > 0)
        .map(|hc| {
            let counted_from = since.max(started + hc.grace_period_seconds * 1000);
            counted_from + hc.max_consecutive_failures * hc.interval_seconds * 1000
        })
        .min()
}

/// Kills tasks that failed their health checks for too long (of those failing now, an index);
/// the app's scheduling replaces them.
fn kill_unhealthy(state: &mut State, tx: &mut Tx) {
    let doomed: Vec<(String, String, String, String, String)> = state
        .tasks
        .failing()
        .filter(|t| t.is_desired() && t.state == TaskState::Running)
        .filter(|t| unhealthy_kill_at(t).is_some_and(|at| at <= tx.now_ms))
        .map(|t| {
            (
                t.id.clone(),
                t.app_id.clone(),
                t.version.clone(),
                t.host.clone(),
                t.node.clone(),
            )
        })
        .collect();
    for (id, app_id, version, host, node) in doomed {
        tracing::warn!(task = %id, app = %app_id, "task failed its health checks past maxConsecutiveFailures; killing it");
        tx.event(Event::new(
            "unhealthy_instance_kill_event",
            tx.now_ms,
            json!({
                "appId": app_id, "taskId": id, "instanceId": id, "version": version,
                "reason": "health checks failed past maxConsecutiveFailures",
                "host": host, "slaveId": node,
            }),
        ));
        kill_task(state, tx, &id);
    }
}

/// Every active agent's unused resources, from the per-node usage the task table keeps (a
/// lookup per agent, no walk over the tasks). The offers count no app's tasks yet
/// ([`Offer::app_counts`] is empty): only the apps being placed need theirs, see
/// [`count_app_tasks`].
pub fn build_offers(state: &State) -> Vec<Offer> {
    state
        .agents
        .values()
        .filter(|a| !a.lost && !a.draining)
        .map(|a| {
            let used = state.tasks.usage_on(&a.node);
            let used_of = |f: fn(&crate::model::NodeUsage) -> f64| used.map_or(0.0, f);
            Offer {
                node: a.node.clone(),
                attributes: a.attributes.clone(),
                total_cpus: a.resources.cpus,
                total_mem: a.resources.mem,
                free_cpus: a.resources.cpus - used_of(|u| u.cpus()),
                free_mem: a.resources.mem - used_of(|u| u.mem()),
                free_disk: a.resources.disk - used_of(|u| u.disk()),
                port_ranges: a.resources.ports.clone(),
                used_ports: used.map(|u| u.ports().collect()).unwrap_or_default(),
                app_counts: HashMap::new(),
            }
        })
        .collect()
}

/// Counts `app_id`'s desired tasks into the offers' [`Offer::app_counts`] (what its
/// constraints are judged on): a walk over that app's tasks.
pub fn count_app_tasks(state: &State, offers: &mut [Offer], app_id: &str) {
    let mut per_node: HashMap<&str, u32> = HashMap::new();
    for t in state.tasks.of_app(app_id).filter(|t| t.is_desired()) {
        *per_node.entry(t.node.as_str()).or_insert(0) += 1;
    }
    for o in offers.iter_mut() {
        if let Some(&n) = per_node.get(o.node.as_str()) {
            o.app_counts.insert(app_id.to_string(), n);
        }
    }
}

/// The agents' offers of one round, built when the first app has something to place (a round
/// that launches nothing builds none); each placement takes from them. An app's task counts
/// are added the first time it places in the round.
#[derive(Default)]
pub struct Offers {
    offers: Option<Vec<Offer>>,
    counted: std::collections::HashSet<String>,
}

impl Offers {
    /// The offers, with `app_id`'s tasks counted in.
    pub fn for_app(&mut self, state: &State, app_id: &str) -> &mut Vec<Offer> {
        let offers = self.offers.get_or_insert_with(|| build_offers(state));
        if self.counted.insert(app_id.to_string()) {
            count_app_tasks(state, offers, app_id);
        }
        offers
    }
}

/// Agents placement may use (what an offer list would hold), without building the offers.
fn usable_agents(state: &State) -> usize {
    state
        .agents
        .values()
        .filter(|a| !a.lost && !a.draining)
        .count()
}

/// Running, and passing its health checks if it has any.
pub fn is_healthy(t: &Task) -> bool {
    t.state == TaskState::Running && (t.spec.health_checks.is_empty() || t.healthy == Some(true))
}

/// Applies the plan of one app: kills, then launches where placement finds room (after the
/// app's backoff), queueing what waits with the reason.
fn reconcile_app(state: &mut State, tx: &mut Tx, app_id: &str, offers: &mut Offers) {
    let Some(entry) = state.apps.get(app_id) else {
        return;
    };
    let app = entry.app.clone();
    let config_version = entry.config_version().to_string();
    let (delay_until, failures) = (entry.delay_until_ms, entry.failures);
    let plan = plan::plan(&app, &plan::classify(state, app_id, &config_version));
    for id in &plan.kills {
        kill_task(state, tx, id);
    }
    if plan.to_launch == 0 {
        return;
    }
    let since = state
        .deployment_of(app_id)
        .map_or(tx.now_ms, |d| d.started_ms);
    if tx.now_ms < delay_until {
        state.queue.insert(
            app_id.to_string(),
            QueueEntry {
                count: plan.to_launch as u32,
                delay_until_ms: delay_until,
                since_ms: since,
                reason: Some(format!(
                    "launch delayed by backoff after {failures} failed task(s)"
                )),
                agents_considered: usable_agents(state),
            },
        );
        return;
    }
    let offers = offers.for_app(state, app_id);
    let agents_considered = offers.len();
    let placed = plan::place(&app, plan.to_launch, offers);
    let launched = placed.tasks.len();
    for (node, ports) in placed.tasks {
        launch(state, tx, &app, &config_version, &node, ports, None);
    }
    if let Some(reason) = placed.short {
        state.queue.insert(
            app_id.to_string(),
            QueueEntry {
                count: (plan.to_launch - launched) as u32,
                delay_until_ms: 0,
                since_ms: since,
                reason: Some(reason),
                agents_considered,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::testkit::{self, NOW, agent, task};
    use super::*;

    fn cfg() -> SchedulerConfig {
        SchedulerConfig {
            agent_timeout: Duration::from_secs(10),
            lost_agent_retention: Duration::from_secs(60),
            job_history: jobs::DEFAULT_JOB_HISTORY,
        }
    }

    #[test]
    fn a_round_launches_what_fits_and_queues_the_rest_with_the_reason() {
        let web =
            testkit::app(json!({"id": "/web", "cmd": "x", "instances": 3, "cpus": 1, "mem": 16}));
        let mut s = testkit::state(&[agent("a1", 2.0, 1024.0)], &[web]);
        let mut tx = Tx::new(NOW);
        reconcile(&mut s, &mut tx, &cfg());
        assert_eq!(s.app_tasks("/web").count(), 2);
        assert!(tx.nodes.contains("a1"), "the agent's desired set changed");
        let q = &s.queue["/web"];
        assert_eq!(q.count, 1);
        assert!(
            q.reason.as_deref().is_some_and(|r| r.contains("cpus")),
            "{q:?}"
        );
    }

    #[test]
    fn a_failing_app_waits_out_its_backoff_in_the_queue() {
        let web =
            testkit::app(json!({"id": "/web", "cmd": "x", "instances": 1, "cpus": 0.1, "mem": 16}));
        let mut s = testkit::state(&[agent("a1", 2.0, 1024.0)], &[web]);
        let id = task(&mut s, "/web", "a1", NOW, TaskState::Running, None);
        finish_task(&mut s, &mut Tx::new(NOW), &id, TaskState::Failed, "exit 1");
        assert_eq!(s.apps["/web"].failures, 1);
        let mut tx = Tx::new(NOW + 1);
        reconcile(&mut s, &mut tx, &cfg());
        assert_eq!(s.app_tasks("/web").count(), 0);
        let q = &s.queue["/web"];
        assert!(q.delay_until_ms > NOW + 1);
        assert!(
            q.reason.as_deref().is_some_and(|r| r.contains("backoff")),
            "{q:?}"
        );

        let mut tx = Tx::new(q.delay_until_ms);
        reconcile(&mut s, &mut tx, &cfg());
        assert_eq!(
            s.app_tasks("/web").count(),
            1,
            "launched once the delay is over"
        );
    }

    #[test]
    fn a_silent_agent_is_lost_with_its_tasks() {
        let web =
            testkit::app(json!({"id": "/web", "cmd": "x", "instances": 1, "cpus": 0.1, "mem": 16}));
        let mut s = testkit::state(
            &[agent("a1", 2.0, 1024.0), agent("a2", 2.0, 1024.0)],
            &[web],
        );
        let id = task(&mut s, "/web", "a1", NOW, TaskState::Running, None);
        if let Some(a) = s.agents.get_mut("a2") {
            a.last_seen_ms = NOW + 20_000;
        }
        let mut tx = Tx::new(NOW + 20_000);
        reconcile(&mut s, &mut tx, &cfg());
        assert!(s.agents["a1"].lost);
        assert!(!s.agents["a2"].lost);
        assert!(!s.tasks.contains_key(&id));
        assert_eq!(s.finished.last().map(|t| t.state), Some(TaskState::Lost));
        assert_eq!(tx.stale_services, vec![("a1".to_string(), id)]);
        // Its replacement goes to the agent still heard from.
        assert!(s.app_tasks("/web").all(|t| t.node == "a2"));
        assert_eq!(s.app_tasks("/web").count(), 1);
    }

    #[test]
    fn an_agent_lost_past_the_retention_is_forgotten() {
        let mut s = testkit::state(&[agent("a1", 2.0, 1024.0), agent("a2", 2.0, 1024.0)], &[]);
        if let Some(a) = s.agents.get_mut("a1") {
            a.lost = true;
        }
        let seen = NOW;
        // Lost but within the retention (60 s here): kept.
        let mut tx = Tx::new(seen + 60_000);
        if let Some(a) = s.agents.get_mut("a2") {
            a.last_seen_ms = seen + 60_000;
        }
        reconcile(&mut s, &mut tx, &cfg());
        assert!(s.agents.contains_key("a1"));
        let mut tx = Tx::new(seen + 60_001);
        if let Some(a) = s.agents.get_mut("a2") {
            a.last_seen_ms = seen + 60_001;
        }
        reconcile(&mut s, &mut tx, &cfg());
        assert!(!s.agents.contains_key("a1"));
        assert!(
            tx.agents.contains("a1"),
            "its record is deleted in the same batch"
        );
        assert!(s.agents.contains_key("a2"), "an agent heard from stays");
    }

    /// xorshift64*: a reproducible sequence without a dependency.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
        }
    }

    /// The offers as a walk over every task gives them (every app's tasks counted).
    fn walked_offers(s: &State) -> Vec<Offer> {
        let mut offers = Vec::new();
        for a in s.agents.values().filter(|a| !a.lost && !a.draining) {
            let mut o = Offer {
                node: a.node.clone(),
                attributes: a.attributes.clone(),
                total_cpus: a.resources.cpus,
                total_mem: a.resources.mem,
                free_cpus: a.resources.cpus,
                free_mem: a.resources.mem,
                free_disk: a.resources.disk,
                port_ranges: a.resources.ports.clone(),
                used_ports: Default::default(),
                app_counts: HashMap::new(),
            };
            for t in s
                .tasks
                .values()
                .filter(|t| t.is_active() && t.node == a.node)
            {
                o.free_cpus -= t.spec.cpus;
                o.free_mem -= t.spec.mem;
                o.free_disk -= t.spec.disk;
                o.used_ports.extend(t.ports.iter().copied());
                if t.is_desired() {
                    *o.app_counts.entry(t.app_id.clone()).or_insert(0) += 1;
                }
            }
            offers.push(o);
        }
        offers
    }

    fn assert_indexes(s: &State, step: &str) {
        assert_eq!(
            s.tasks.indexes(),
            s.tasks.recomputed_indexes(),
            "task indexes after {step}"
        );
        assert!(
            s.deployments.index_is_consistent(),
            "deployment index after {step}"
        );
        // Offers from the usage index, each app counted in, are what a walk gives.
        let mut offers = build_offers(s);
        let app_ids: BTreeSet<String> = s.tasks.values().map(|t| t.app_id.clone()).collect();
        for app in &app_ids {
            count_app_tasks(s, &mut offers, app);
        }
        let walked = walked_offers(s);
        assert_eq!(offers.len(), walked.len(), "offers after {step}");
        for (o, w) in offers.iter().zip(&walked) {
            assert_eq!(o.node, w.node);
            for (a, b) in [
                (o.free_cpus, w.free_cpus),
                (o.free_mem, w.free_mem),
                (o.free_disk, w.free_disk),
            ] {
                assert!(
                    (a - b).abs() < 1e-9,
                    "{} free {a} != {b} after {step}",
                    o.node
                );
            }
            assert_eq!(o.used_ports, w.used_ports, "{} ports after {step}", o.node);
            assert_eq!(o.app_counts, w.app_counts, "{} counts after {step}", o.node);
        }
        // The failing index holds exactly the tasks failing their checks.
        let failing: Vec<&str> = s.tasks.failing().map(|t| t.id.as_str()).collect();
        let want: Vec<&str> = s
            .tasks
            .values()
            .filter(|t| t.healthy == Some(false) && t.unhealthy_since.is_some())
            .map(|t| t.id.as_str())
            .collect();
        assert_eq!(failing, want, "failing tasks after {step}");
    }

    fn any_task(s: &State, rng: &mut Rng) -> Option<Task> {
        let n = s.tasks.len();
        s.tasks.values().nth(rng.below(n)).cloned()
    }

    /// The indexes by node and by app, the desired sets, the agents' usage (and the offers
    /// built from it), the failing tasks (and deployments by app) are what a recomputation from
    /// the records gives, whatever the scheduler did: launches, kills, status reports, health
    /// turning, agents lost, forgotten and drained, apps installed and deleted, full and touched
    /// rounds. A change made on a clone and dropped leaves the original's indexes as they were.
    #[test]
    fn the_indexes_equal_a_recomputation_after_random_scheduler_operations() {
        let nodes = ["a0", "a1", "a2", "a3"];
        let agents: Vec<_> = nodes.iter().map(|n| agent(n, 4.0, 4096.0)).collect();
        let mut s = testkit::state(&agents, &[]);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut now = NOW;
        let mut silent: Option<&str> = None;
        let (mut saw_failing, mut saw_ports) = (false, false);
        for step in 0..3000 {
            now += 250;
            for node in nodes {
                if Some(node) != silent
                    && let Some(a) = s.agents.get_mut(node)
                {
                    a.last_seen_ms = now;
                }
            }
            let mut tx = Tx::new(now);
            let app_id = format!("/app{}", rng.below(4));
            let op = rng.below(10);
            match op {
                0 | 1 => {
                    // Resources that are not whole in binary (0.1, 0.3) add up inexactly in
                    // floats; the usage index must still agree with a walk.
                    let cpus = [0.5, 0.1, 0.3, 0.25][rng.below(4)];
                    let mut def = json!({"id": app_id, "cmd": format!("v{}", rng.below(2)),
                        "instances": rng.below(7), "cpus": cpus, "mem": 16.1,
                        "portDefinitions": vec![json!({"port": 0}); rng.below(3)]});
                    if rng.below(2) == 0 {
                        def["healthChecks"] = json!([{"protocol": "COMMAND",
                            "command": {"value": "true"}, "gracePeriodSeconds": 0,
                            "intervalSeconds": 1, "maxConsecutiveFailures": 2}]);
                    }
                    let _ = apps::install(&mut s, &mut tx, testkit::app(def), now, false, true);
                }
                2 => {
                    let _ = apps::delete(&mut s, &mut tx, &app_id, true);
                }
                3 | 4 => {
                    if let Some(t) = any_task(&s, &mut rng) {
                        let state = [
                            TaskState::Running,
                            TaskState::Running,
                            TaskState::Failed,
                            TaskState::Killed,
                            TaskState::Finished,
                        ][rng.below(5)];
                        let u = cairn_marathon::TaskStatusUpdate {
                            task_id: t.id.clone(),
                            state,
                            message: String::new(),
                            timestamp: now,
                            healthy: None,
                        };
                        apply_status(&mut s, &mut tx, &t.node, &u);
                    }
                }
                5 => {
                    if let Some(t) = any_task(&s, &mut rng) {
                        kill_task(&mut s, &mut tx, &t.id);
                    }
                }
                6 if rng.below(2) == 0 => {
                    let node = nodes[rng.below(nodes.len())];
                    if let Some(a) = s.agents.get_mut(node) {
                        a.draining = !a.draining;
                        tx.agent(node);
                    }
                }
                6 => {
                    // Health turns, as the catalog reports it (health.rs).
                    if let Some(t) = any_task(&s, &mut rng)
                        && let Some(mut t) = s.tasks.get_mut(&t.id)
                    {
                        let passing = rng.below(2) == 0;
                        t.healthy = Some(passing);
                        t.unhealthy_since = (!passing).then_some(now);
                        tx.task_state(&t);
                    }
                }
                7 => {
                    // One agent falls silent (and is lost past the timeout); another returns.
                    silent = match silent {
                        None => Some(nodes[rng.below(nodes.len())]),
                        Some(_) => None,
                    };
                    for node in nodes {
                        if Some(node) != silent
                            && let Some(a) = s.agents.get_mut(node)
                        {
                            a.lost = false;
                        }
                    }
                }
                8 => {
                    let node = nodes[rng.below(nodes.len())];
                    forget_agent(&mut s, &mut tx, node);
                    let mut back = agent(node, 4.0, 4096.0);
                    back.last_seen_ms = now;
                    s.agents.insert(node.to_string(), back);
                }
                _ => {
                    // A change tried on a clone and dropped (a refused request).
                    let before = s.tasks.indexes();
                    let mut clone = s.clone();
                    if let Some(t) = any_task(&clone, &mut rng) {
                        finish_task(&mut clone, &mut Tx::new(now), &t.id, TaskState::Failed, "x");
                    }
                    reconcile(&mut clone, &mut Tx::new(now), &cfg());
                    assert_indexes(&clone, "a change on a clone");
                    drop(clone);
                    assert_eq!(s.tasks.indexes(), before, "the original is untouched");
                }
            }
            if rng.below(2) == 0 {
                reconcile(&mut s, &mut tx, &cfg());
            } else {
                reconcile_touched(&mut s, &mut tx, &cfg());
            }
            assert_indexes(&s, &format!("step {step} (op {op})"));
            saw_failing |= s.tasks.failing().next().is_some();
            saw_ports |= s.tasks.values().any(|t| !t.ports.is_empty());
        }
        assert!(!s.tasks.is_empty(), "the sequence left tasks to check");
        assert!(
            saw_failing && saw_ports,
            "failing tasks and ports were indexed"
        );
    }

    /// What the touched round does not visit, the next full round does; a change's own app is
    /// visited at once: its deployment ends in the round of the report that completes it.
    #[test]
    fn a_touched_round_finishes_the_deployment_its_report_completes() {
        let mut s = testkit::state(&[agent("a1", 4.0, 4096.0)], &[]);
        for id in ["/web", "/db"] {
            let def = json!({"id": id, "cmd": "x", "instances": 1, "cpus": 0.1, "mem": 16});
            apps::install(
                &mut s,
                &mut Tx::new(NOW),
                testkit::app(def),
                NOW,
                false,
                false,
            )
            .expect("installed");
        }
        reconcile(&mut s, &mut Tx::new(NOW), &cfg());
        assert_eq!(s.deployments.len(), 2);
        let web = s.app_tasks("/web").next().expect("launched").id.clone();
        let mut tx = Tx::new(NOW + 1);
        let u = cairn_marathon::TaskStatusUpdate {
            task_id: web,
            state: TaskState::Running,
            message: String::new(),
            timestamp: NOW + 1,
            healthy: None,
        };
        apply_status(&mut s, &mut tx, "a1", &u);
        assert!(
            tx.nodes.is_empty(),
            "a state the agent reported leaves its desired set as it was"
        );
        reconcile_touched(&mut s, &mut tx, &cfg());
        assert!(s.deployment_of("/web").is_none(), "finished");
        assert!(
            s.deployment_of("/db").is_some(),
            "its task is not running yet"
        );
    }
}

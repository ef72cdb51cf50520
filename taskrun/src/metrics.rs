//! The agent's `GET /metrics` (Prometheus text 0.0.4): what each task uses and reserves, and
//! what the node offers and has left — the figures offerd's autoscaler scrapes from every agent.
//! The names are a contract with it:
//!
//! - per task (labels `app`, `task`, `node`), for live tasks with a process or a container:
//!   `taskrun_task_cpu_seconds_total`, `taskrun_task_memory_rss_bytes` (resident anonymous
//!   memory), `taskrun_task_memory_limit_bytes` (the app's `mem`; absent when unlimited),
//!   `taskrun_task_cpus` (the app's `cpus`);
//! - per app (`app`, `node`): `taskrun_app_restarts_total`, tasks that ended on their own
//!   (finished or failed, not killed by the agent) since the agent started;
//! - per node (`node`): `taskrun_node_cpus`, `taskrun_node_memory_bytes` (offered),
//!   `taskrun_node_cpus_free`, `taskrun_node_memory_free_bytes` (offered minus what live tasks
//!   reserve), `taskrun_node_tasks{state}`, `taskrun_node_cpu_seconds_total` (the tasks' CPU,
//!   including what tasks that have ended used while measured, so it does not fall when one
//!   ends), `taskrun_node_memory_rss_bytes`, `taskrun_metrics_collect_seconds`.
//!
//! Where the figures come from: a process task's cgroups in a cgroup mode
//! ([`crate::limits::LimitMode::usage`]), else its process group in /proc
//! ([`crate::procfs::groups_usage`], its supervisor left out); a container's one stats sample
//! from the engine ([`crate::docker::Engine::stats`]), at most [`DOCKER_CONCURRENCY`] at once,
//! each within [`DOCKER_TIMEOUT`], all within [`DOCKER_DEADLINE`].
//!
//! Collection runs at scrape time and is bounded: one at a time (scrapes arriving meanwhile wait
//! for it and share its text), its text reused for [`REUSE`]. A task whose figures cannot be
//! read is left out of that scrape (logged at debug), never an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use cairn_cli::LockOrExit as _;
use cairn_marathon::TaskState;
use cairn_metrics::Exposition;
use futures::StreamExt as _;

use crate::cgroupfs::Usage;
use crate::docker::Engine;
use crate::limits::LimitMode;
use crate::sandbox::TaskRecord;

/// How long a collection's text answers later scrapes.
pub const REUSE: Duration = Duration::from_secs(1);
/// Most Docker stats calls in flight.
pub const DOCKER_CONCURRENCY: usize = 8;
/// Longest one Docker stats call may take.
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest all Docker stats calls of one collection may take: containers not measured by then
/// are left out of that scrape.
pub const DOCKER_DEADLINE: Duration = Duration::from_secs(5);
/// Most apps whose restarts are counted (the count of an app beyond it is not kept).
pub const MAX_COUNTED_APPS: usize = 10_000;

const MIB: f64 = 1024.0 * 1024.0;

/// Every state, in the order `taskrun_node_tasks` lists them.
const STATES: [TaskState; 9] = [
    TaskState::Staging,
    TaskState::Starting,
    TaskState::Running,
    TaskState::Killing,
    TaskState::Finished,
    TaskState::Failed,
    TaskState::Killed,
    TaskState::Lost,
    TaskState::Error,
];

/// A task as the collector sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub id: String,
    pub app: String,
    pub state: TaskState,
    pub cpus: f64,
    pub mem_mb: f64,
    /// The supervisor's pid (= the task's process group), for a process task.
    pub pid: Option<i32>,
    /// The container's id, for a Docker task.
    pub container: Option<String>,
    /// The cgroup its record names.
    pub cgroup: Option<PathBuf>,
}

impl Target {
    pub fn of(r: &TaskRecord) -> Target {
        Target {
            id: r.spec.id.clone(),
            app: r.spec.app_id.clone(),
            state: r.state,
            cpus: r.spec.cpus,
            mem_mb: r.spec.mem,
            pid: r.pid,
            container: r.container.clone(),
            cgroup: r.cgroup.clone(),
        }
    }

    /// Whether it holds resources (not terminal).
    fn live(&self) -> bool {
        !self.state.is_terminal()
    }

    /// Whether its usage is measured: live, with a process or a container.
    fn measured(&self) -> bool {
        self.live() && (self.pid.is_some_and(|p| p > 1) || self.container.is_some())
    }
}

/// What the node offers.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub cpus: f64,
    pub mem_mb: f64,
}

/// Reads the figures at scrape time and keeps what must outlive one scrape (restart counts,
/// the CPU of tasks that ended).
pub struct Collector {
    node: Node,
    mode: LimitMode,
    docker: Engine,
    restarts: Mutex<BTreeMap<String, u64>>,
    /// Held for a whole collection: the one-at-a-time rule.
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<(Instant, Bytes)>,
    /// The last CPU seconds measured of each live task.
    cpu_seen: HashMap<String, f64>,
    /// CPU seconds of tasks no longer live, as last measured.
    cpu_gone: f64,
}

impl Collector {
    pub fn new(node: Node, mode: LimitMode, docker: Engine) -> Collector {
        Collector {
            node,
            mode,
            docker,
            restarts: Mutex::new(BTreeMap::new()),
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// Counts a task of `app` that ended on its own.
    pub fn count_restart(&self, app: &str) {
        let mut restarts = self.restarts.lock_or_exit("taskrun restart counts");
        if let Some(n) = restarts.get_mut(app) {
            *n += 1;
        } else if restarts.len() < MAX_COUNTED_APPS {
            restarts.insert(app.to_string(), 1);
        } else {
            tracing::debug!(app, "too many apps to count restarts of; not counted");
        }
    }

    /// The exposition text: the last collection's when younger than [`REUSE`], else a new one
    /// over the tasks `targets` gives (called only when a collection is made).
    pub async fn scrape(&self, targets: impl FnOnce() -> Vec<Target>) -> Bytes {
        let mut state = self.state.lock().await;
        if let Some((at, text)) = &state.last
            && at.elapsed() < REUSE
        {
            return text.clone();
        }
        let started = Instant::now();
        let targets = targets();
        let usage = self.measure(&targets).await;
        // The node's CPU: what live tasks have used, plus what ended ones had when last seen.
        let live: BTreeSet<&str> = targets
            .iter()
            .filter(|t| t.measured())
            .map(|t| t.id.as_str())
            .collect();
        let st = &mut *state;
        st.cpu_seen.retain(|id, cpu| {
            let keep = live.contains(id.as_str());
            if !keep {
                st.cpu_gone += *cpu;
            }
            keep
        });
        for (id, u) in &usage {
            st.cpu_seen.insert(id.clone(), u.cpu_seconds);
        }
        let node_cpu = st.cpu_gone + st.cpu_seen.values().sum::<f64>();
        let restarts = self.restarts.lock_or_exit("taskrun restart counts").clone();
        let text = Bytes::from(render(&Figures {
            node: &self.node,
            targets: &targets,
            usage: &usage,
            restarts: &restarts,
            node_cpu_seconds: node_cpu,
            collect_seconds: started.elapsed().as_secs_f64(),
        }));
        state.last = Some((Instant::now(), text.clone()));
        text
    }

    /// The usage of every measured task that could be read.
    async fn measure(&self, targets: &[Target]) -> HashMap<String, Usage> {
        let mut processes = Vec::new();
        let mut containers = Vec::new();
        for t in targets.iter().filter(|t| t.measured()) {
            match (&t.container, t.pid) {
                (Some(c), _) => containers.push((t.id.clone(), c.clone())),
                (None, Some(pid)) => processes.push((t.id.clone(), pid, t.cgroup.clone())),
                (None, None) => {}
            }
        }
        let mode = self.mode.clone();
        let local = async {
            if processes.is_empty() {
                return HashMap::new();
            }
            tokio::task::spawn_blocking(move || measure_processes(&mode, processes))
                .await
                .unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "measuring the tasks' processes failed");
                    HashMap::new()
                })
        };
        let (mut local, docker) = tokio::join!(local, self.measure_containers(containers));
        local.extend(docker);
        local
    }

    /// One stats sample per container, bounded in concurrency and time.
    async fn measure_containers(
        &self,
        containers: Vec<(String, String)>,
    ) -> HashMap<String, Usage> {
        let mut out = HashMap::new();
        if containers.is_empty() {
            return out;
        }
        let deadline = tokio::time::Instant::now() + DOCKER_DEADLINE;
        let mut samples = futures::stream::iter(containers)
            .map(|(task, container)| {
                let docker = self.docker.clone();
                async move {
                    let r = docker.stats(&container, DOCKER_TIMEOUT).await;
                    (task, r)
                }
            })
            .buffer_unordered(DOCKER_CONCURRENCY);
        loop {
            match tokio::time::timeout_at(deadline, samples.next()).await {
                Ok(Some((task, Ok(u)))) => {
                    out.insert(task, u);
                }
                Ok(Some((task, Err(e)))) => {
                    tracing::debug!(task = %task, error = %e, "no container stats; left out of this scrape");
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::debug!(
                        "container stats past {DOCKER_DEADLINE:?}; the rest left out of this scrape"
                    );
                    break;
                }
            }
        }
        out
    }
}

/// Usage of process tasks `(id, pid, recorded cgroup)`: from their cgroups, else (no cgroup
/// mode, or a task started in another mode) from their process groups in one /proc pass.
fn measure_processes(
    mode: &LimitMode,
    processes: Vec<(String, i32, Option<PathBuf>)>,
) -> HashMap<String, Usage> {
    let mut out = HashMap::new();
    let mut from_proc = Vec::new();
    for (id, pid, cgroup) in processes {
        match mode.usage(&id, cgroup.as_deref()) {
            Some(Ok(u)) => {
                out.insert(id, u);
            }
            Some(Err(e)) => {
                tracing::debug!(task = %id, error = %e, "no cgroup figures; reading /proc");
                from_proc.push((id, pid));
            }
            None => from_proc.push((id, pid)),
        }
    }
    if from_proc.is_empty() {
        return out;
    }
    let groups: BTreeSet<i32> = from_proc.iter().map(|(_, pid)| *pid).collect();
    let usage = crate::procfs::groups_usage(&groups);
    for (id, pid) in from_proc {
        match usage.get(&pid) {
            Some(u) => {
                out.insert(id, *u);
            }
            None => {
                tracing::debug!(task = %id, pid, "no process in the task's group; left out of this scrape")
            }
        }
    }
    out
}

/// Everything one exposition is made of.
pub struct Figures<'a> {
    pub node: &'a Node,
    pub targets: &'a [Target],
    /// Usage by task id (tasks missing here are left out of the per-task usage families).
    pub usage: &'a HashMap<String, Usage>,
    /// Restarts by app.
    pub restarts: &'a BTreeMap<String, u64>,
    pub node_cpu_seconds: f64,
    pub collect_seconds: f64,
}

/// A task's labels.
fn task_labels<'a>(t: &'a Target, node: &'a str) -> [(&'a str, &'a str); 3] {
    [("app", &t.app), ("task", &t.id), ("node", node)]
}

/// The exposition text of `f`.
pub fn render(f: &Figures<'_>) -> String {
    let node = f.node.name.as_str();
    let measured: Vec<&Target> = f.targets.iter().filter(|t| t.measured()).collect();
    let with_usage = || {
        measured
            .iter()
            .filter_map(|t| Some((task_labels(t, node), f.usage.get(&t.id)?)))
    };
    let mut e = Exposition::new();
    e.counters(
        "taskrun_task_cpu_seconds_total",
        "User and system CPU seconds used by the task (all its processes).",
        with_usage().map(|(l, u)| (l, u.cpu_seconds)),
    )
    .gauges(
        "taskrun_task_memory_rss_bytes",
        "Resident anonymous memory of the task in bytes.",
        with_usage().map(|(l, u)| (l, u.rss_bytes as f64)),
    )
    .gauges(
        "taskrun_task_memory_limit_bytes",
        "Memory limit of the task in bytes (the app's mem); absent when unlimited.",
        measured
            .iter()
            .filter(|t| t.mem_mb > 0.0)
            .map(|t| (task_labels(t, node), (t.mem_mb * MIB).round())),
    )
    .gauges(
        "taskrun_task_cpus",
        "CPUs the task reserved (the app's cpus).",
        measured.iter().map(|t| (task_labels(t, node), t.cpus)),
    );

    // Restarts: every app counted, and every app with a live task here (at 0), so a rate
    // sees the first restart.
    let mut restarts: BTreeMap<&str, u64> = f
        .targets
        .iter()
        .filter(|t| t.live())
        .map(|t| (t.app.as_str(), 0))
        .collect();
    for (app, n) in f.restarts {
        restarts.insert(app, *n);
    }
    e.counters(
        "taskrun_app_restarts_total",
        "Tasks of the app on this node that ended on their own (finished or failed, not killed by the agent) since the agent started.",
        restarts
            .iter()
            .map(|(app, n)| ([("app", *app), ("node", node)], *n as f64)),
    );

    let live = f.targets.iter().filter(|t| t.live());
    let (cpus_reserved, mem_reserved) = live.fold((0.0, 0.0), |(c, m), t| {
        (c + t.cpus.max(0.0), m + t.mem_mb.max(0.0))
    });
    let node_label = [("node", node)];
    let rss: u64 = f.usage.values().map(|u| u.rss_bytes).sum();
    e.gauges(
        "taskrun_node_cpus",
        "CPUs the agent offers.",
        [(node_label, f.node.cpus)],
    )
    .gauges(
        "taskrun_node_memory_bytes",
        "Memory the agent offers in bytes.",
        [(node_label, (f.node.mem_mb * MIB).round())],
    )
    .gauges(
        "taskrun_node_cpus_free",
        "CPUs offered minus those the node's live tasks reserve.",
        [(node_label, f.node.cpus - cpus_reserved)],
    )
    .gauges(
        "taskrun_node_memory_free_bytes",
        "Memory offered minus what the node's live tasks reserve, in bytes.",
        [(node_label, ((f.node.mem_mb - mem_reserved) * MIB).round())],
    )
    .gauges(
        "taskrun_node_tasks",
        "Tasks the agent knows, by state (terminal ones until their sandboxes are collected).",
        STATES.iter().map(|s| {
            let n = f.targets.iter().filter(|t| t.state == *s).count();
            ([("node", node), ("state", s.as_str())], n as f64)
        }),
    )
    .counters(
        "taskrun_node_cpu_seconds_total",
        "CPU seconds used by the node's tasks while they were measured.",
        [(node_label, f.node_cpu_seconds)],
    )
    .gauges(
        "taskrun_node_memory_rss_bytes",
        "Resident anonymous memory of the node's measured tasks in bytes.",
        [(node_label, rss as f64)],
    )
    .gauges(
        "taskrun_metrics_collect_seconds",
        "How long the last collection of these figures took.",
        [(node_label, f.collect_seconds)],
    );
    e.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(id: &str, app: &str, state: TaskState, pid: Option<i32>) -> Target {
        Target {
            id: id.into(),
            app: app.into(),
            state,
            cpus: 0.5,
            mem_mb: 64.0,
            pid,
            container: None,
            cgroup: None,
        }
    }

    fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn renders_the_contract() {
        let node = Node {
            name: "n1".into(),
            cpus: 4.0,
            mem_mb: 2048.0,
        };
        let mut unlimited = target("db.1", "/shop/db", TaskState::Running, Some(20));
        unlimited.mem_mb = 0.0;
        unlimited.cpus = 1.0;
        let mut docker = target("c.1", "/c", TaskState::Killing, None);
        docker.container = Some("abc".into());
        let targets = [
            target("web.1", "/shop/web", TaskState::Running, Some(10)),
            unlimited,
            docker,
            // Starting without a process yet: reserves, not measured.
            target("new.1", "/new", TaskState::Staging, None),
            target("old.1", "/old", TaskState::Failed, Some(30)),
        ];
        let usage: HashMap<String, Usage> = [
            (
                "web.1".to_string(),
                Usage {
                    cpu_seconds: 1.5,
                    rss_bytes: 1000,
                },
            ),
            (
                "c.1".to_string(),
                Usage {
                    cpu_seconds: 0.25,
                    rss_bytes: 24,
                },
            ),
        ]
        .into();
        let restarts: BTreeMap<String, u64> = [("/old".to_string(), 2)].into();
        let text = render(&Figures {
            node: &node,
            targets: &targets,
            usage: &usage,
            restarts: &restarts,
            node_cpu_seconds: 9.5,
            collect_seconds: 0.002,
        });
        let web = r#"{app="/shop/web",task="web.1",node="n1"}"#;
        let db = r#"{app="/shop/db",task="db.1",node="n1"}"#;
        let c = r#"{app="/c",task="c.1",node="n1"}"#;
        let cases: &[(String, Option<f64>)] = &[
            (format!("taskrun_task_cpu_seconds_total{web}"), Some(1.5)),
            (format!("taskrun_task_memory_rss_bytes{web}"), Some(1000.0)),
            (
                format!("taskrun_task_memory_limit_bytes{web}"),
                Some(64.0 * MIB),
            ),
            (format!("taskrun_task_cpus{web}"), Some(0.5)),
            // Not readable this time: left out of usage, still has its reservation.
            (format!("taskrun_task_cpu_seconds_total{db}"), None),
            (format!("taskrun_task_memory_limit_bytes{db}"), None),
            (format!("taskrun_task_cpus{db}"), Some(1.0)),
            (format!("taskrun_task_memory_rss_bytes{c}"), Some(24.0)),
            (
                r#"taskrun_task_cpus{app="/new",task="new.1",node="n1"}"#.into(),
                None,
            ),
            (
                r#"taskrun_task_cpus{app="/old",task="old.1",node="n1"}"#.into(),
                None,
            ),
            (
                r#"taskrun_app_restarts_total{app="/old",node="n1"}"#.into(),
                Some(2.0),
            ),
            (
                r#"taskrun_app_restarts_total{app="/shop/web",node="n1"}"#.into(),
                Some(0.0),
            ),
            (r#"taskrun_node_cpus{node="n1"}"#.into(), Some(4.0)),
            (
                r#"taskrun_node_memory_bytes{node="n1"}"#.into(),
                Some(2048.0 * MIB),
            ),
            // Live: web 0.5 + db 1 + c 0.5 + new 0.5; mem 64 + 0 + 64 + 64.
            (r#"taskrun_node_cpus_free{node="n1"}"#.into(), Some(1.5)),
            (
                r#"taskrun_node_memory_free_bytes{node="n1"}"#.into(),
                Some((2048.0 - 192.0) * MIB),
            ),
            (
                r#"taskrun_node_tasks{node="n1",state="TASK_RUNNING"}"#.into(),
                Some(2.0),
            ),
            (
                r#"taskrun_node_tasks{node="n1",state="TASK_FAILED"}"#.into(),
                Some(1.0),
            ),
            (
                r#"taskrun_node_tasks{node="n1",state="TASK_LOST"}"#.into(),
                Some(0.0),
            ),
            (
                r#"taskrun_node_cpu_seconds_total{node="n1"}"#.into(),
                Some(9.5),
            ),
            (
                r#"taskrun_node_memory_rss_bytes{node="n1"}"#.into(),
                Some(1024.0),
            ),
            (
                r#"taskrun_metrics_collect_seconds{node="n1"}"#.into(),
                Some(0.002),
            ),
        ];
        for (series, want) in cases {
            assert_eq!(sample(&text, series), *want, "{series} in\n{text}");
        }
        assert!(text.contains("# TYPE taskrun_task_cpu_seconds_total counter\n"));
        assert!(text.contains("# TYPE taskrun_task_memory_rss_bytes gauge\n"));
        assert!(text.contains("# TYPE taskrun_app_restarts_total counter\n"));
    }

    #[tokio::test]
    async fn scrapes_share_a_collection_for_a_second_and_count_restarts() {
        let c = Collector::new(
            Node {
                name: "n".into(),
                cpus: 1.0,
                mem_mb: 100.0,
            },
            LimitMode::Rlimit,
            Engine::new(),
        );
        c.count_restart("/a");
        c.count_restart("/a");
        let mut calls = 0;
        let first = c
            .scrape(|| {
                calls += 1;
                Vec::new()
            })
            .await;
        let second = c
            .scrape(|| {
                calls += 1;
                Vec::new()
            })
            .await;
        assert_eq!(
            calls, 1,
            "the second scrape within a second reuses the first"
        );
        assert_eq!(first, second);
        let text = String::from_utf8(first.to_vec()).unwrap();
        assert_eq!(
            sample(&text, r#"taskrun_app_restarts_total{app="/a",node="n"}"#),
            Some(2.0)
        );
    }

    /// A process task in rlimit mode is measured from its process group: this test's own
    /// group stands in for a task (its leader, if it is this process, is left out as the
    /// supervisor would be, so only presence is asserted).
    #[tokio::test]
    async fn measures_a_process_group_without_cgroups() {
        let me = crate::procfs::read_stat(std::process::id() as i32)
            .unwrap()
            .unwrap();
        let c = Collector::new(
            Node {
                name: "n".into(),
                cpus: 1.0,
                mem_mb: 100.0,
            },
            LimitMode::Rlimit,
            Engine::new(),
        );
        let t = target("me.1", "/me", TaskState::Running, Some(me.pgrp));
        let gone = target("gone.1", "/gone", TaskState::Running, Some(i32::MAX));
        let usage = c.measure(&[t, gone]).await;
        assert!(usage.contains_key("me.1"), "{usage:?}");
        assert!(
            !usage.contains_key("gone.1"),
            "a task without processes is left out"
        );
    }
}

//! `cairn-bench agents`: offerd end to end at fleet size without a fleet. One process simulates
//! `--agents` taskrun agents that speak the real agent protocol over HTTP (the JSON types of
//! `cairn-marathon`): each registers its node (127.0.0.1, `--agent-cpus`/`--agent-mem`, ports
//! 31000-32000), long-polls its desired set (`GET /v1/agents/{node}/tasks?index=N&wait=D`, as
//! taskrun does: wait half the heartbeat offerd gave), and for every task newly in the set posts
//! `TASK_RUNNING` (for every task gone from it, `TASK_KILLED`) in one status batch, as taskrun's
//! batching does. Nothing is run: offerd is measured, not the agents.
//!
//! The run POSTs `--apps` apps of `--instances` tiny `sleep` tasks through `/v2/apps`, spread
//! over the agents by `["hostname","GROUP_BY"]` (one instance per agent per 1,000 instances,
//! as a fleet spreads its apps; `--constraint none` leaves offerd's bin-packing), and times the
//! POSTs to the moment every task is reported running. "Running" is counted from the agents'
//! own reports, each counted once offerd acknowledged it (offerd answers a status batch after
//! its commit, so an acknowledged report is durable in offerd); offerd's own view
//! (`tasksRunning` summed over `/v2/apps`) is read once at the end of each phase to confirm it.
//! Then the first app is scaled by `--scale` instances (PUT) and timed the same way.
//! With `--pid`, offerd's VmRSS is read from /proc after each phase.
//!
//! Output on stdout: one `phase ...` line per phase and a final `result key=value ...` line.
//! With `--linger`, the agents keep polling after the result (so offerd can be restarted under
//! them and its agents stay alive) until the process is stopped. Progress goes to stderr.
//!
//! Desired-set answers are read for their task ids only (the rest of each spec is skipped), so
//! the simulator's CPU stays small next to offerd's on a shared machine.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cairn_marathon::{
    AgentRegistration, PortRange, RegisterResponse, Resources, StatusBatch, TaskState,
    TaskStatusUpdate,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::http::{self, Conn, Response};
use crate::watchers::rss_kb;

/// Flags of `cairn-bench agents`.
#[derive(clap::Args, Debug)]
pub struct AgentsArgs {
    /// offerd to load: http://127.0.0.1:PORT (loopback only)
    #[arg(long, default_value = "http://127.0.0.1:5050")]
    offerd: String,
    /// Simulated agents (one node each)
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Apps POSTed (0: only register the agents)
    #[arg(long, default_value_t = 100)]
    apps: usize,
    /// Instances of each app
    #[arg(long, default_value_t = 1000)]
    instances: usize,
    /// Instances added to the first app once all run (0: no scale phase)
    #[arg(long, default_value_t = 1000)]
    scale: usize,
    /// How the apps spread: `group-by` (["hostname","GROUP_BY"]) or `none` (bin-packing)
    #[arg(long, default_value = "group-by", value_parser = ["group-by", "none"])]
    constraint: String,
    /// CPUs of each simulated agent
    #[arg(long, default_value_t = 64.0)]
    agent_cpus: f64,
    /// Memory of each simulated agent (MB)
    #[arg(long, default_value_t = 65536.0)]
    agent_mem: f64,
    /// Node names are PREFIX-NNNNN
    #[arg(long, default_value = "sim")]
    node_prefix: String,
    /// App ids are /PREFIX/app-NNN
    #[arg(long, default_value = "bench")]
    app_prefix: String,
    /// offerd's pid: its VmRSS is reported after each phase
    #[arg(long)]
    pid: Option<u32>,
    /// Give up on a phase after this many seconds
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// Registrations in flight at once (keep it below offerd's listen backlog)
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Keep the agents polling after the result line until the process is stopped
    #[arg(long)]
    linger: bool,
}

/// What every simulated agent shares: where offerd is and the running totals.
struct Shared {
    addr: SocketAddr,
    host: String,
    resources: Resources,
    /// Tasks the agents run whose `TASK_RUNNING` offerd acknowledged.
    running: AtomicUsize,
    /// Agents registered at least once.
    registered: AtomicUsize,
    /// Desired-set answers received and status batches acknowledged.
    answers: AtomicU64,
    status_posts: AtomicU64,
    /// Requests that failed (connection errors, 5xx) and were retried.
    retries: AtomicU64,
    stop: AtomicBool,
}

/// The task ids of a desired set; the rest of each spec is skipped.
#[derive(Deserialize)]
struct DesiredIds {
    tasks: Vec<TaskId>,
}

#[derive(Deserialize)]
struct TaskId {
    id: String,
}

/// One request's bytes with a JSON body.
fn json_request(method: &str, host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cairn-bench\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A keep-alive connection that reconnects after an error.
struct Client {
    addr: SocketAddr,
    conn: Option<Conn>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, conn: None }
    }

    async fn call(&mut self, req: &[u8]) -> anyhow::Result<Response> {
        if self.conn.is_none() {
            self.conn = Some(
                Conn::connect(self.addr)
                    .await
                    .with_context(|| format!("connecting to {}", self.addr))?,
            );
        }
        let Some(conn) = self.conn.as_mut() else {
            bail!("no connection");
        };
        let r = async {
            conn.send(req).await?;
            conn.read_response().await
        }
        .await;
        if r.is_err() {
            self.conn = None;
        }
        r
    }
}

/// One simulated agent, for as long as the run lasts.
async fn agent(shared: Arc<Shared>, node: String, gate: Arc<Semaphore>) {
    let mut client = Client::new(shared.addr);
    let mut status = Client::new(shared.addr);
    // Tasks it runs (offerd acknowledged their TASK_RUNNING).
    let mut running: HashSet<String> = HashSet::new();
    let mut first = true;
    while !shared.stop.load(Ordering::Relaxed) {
        let heartbeat_ms = {
            // Only the first registrations are paced; a re-registration goes at once.
            let _permit = if first {
                gate.acquire().await.ok()
            } else {
                None
            };
            register(&shared, &mut client, &node, &running).await
        };
        if first {
            shared.registered.fetch_add(1, Ordering::Relaxed);
            first = false;
        }
        // Returns once offerd does not know the node (404): register again.
        follow(
            &shared,
            &mut client,
            &mut status,
            &node,
            heartbeat_ms,
            &mut running,
        )
        .await;
    }
}

/// Registers `node` (carrying the tasks it runs, as taskrun does), retrying until offerd
/// answers; the heartbeat offerd asks for.
async fn register(
    shared: &Shared,
    client: &mut Client,
    node: &str,
    running: &HashSet<String>,
) -> u64 {
    let reg = AgentRegistration {
        node: node.to_string(),
        address: "127.0.0.1".into(),
        http_addr: String::new(),
        resources: shared.resources.clone(),
        attributes: Default::default(),
        tasks: running
            .iter()
            .map(|id| TaskStatusUpdate {
                task_id: id.clone(),
                state: TaskState::Running,
                message: String::new(),
                timestamp: 0,
                healthy: None,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&reg).unwrap_or_default();
    let req = json_request("POST", &shared.host, "/v1/agents/register", &body);
    loop {
        match client.call(&req).await {
            Ok(r) if r.status == 200 => {
                return serde_json::from_slice::<RegisterResponse>(&r.body)
                    .map(|a| a.heartbeat_ms)
                    .unwrap_or(10_000);
            }
            Ok(_) | Err(_) => {
                shared.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Long-polls the desired set and reports what changed in it, until offerd answers 404 (it
/// does not know the node).
async fn follow(
    shared: &Shared,
    client: &mut Client,
    status: &mut Client,
    node: &str,
    heartbeat_ms: u64,
    running: &mut HashSet<String>,
) {
    // As taskrun: wait half the heartbeat, at least 1 s.
    let wait_ms = (heartbeat_ms / 2).max(1000);
    let mut index = 0u64;
    loop {
        let path = format!("/v1/agents/{node}/tasks?index={index}&wait={wait_ms}ms");
        let resp = match client
            .call(&http::request("GET", &shared.host, &path, b"", None))
            .await
        {
            Ok(r) if r.status == 404 => return,
            Ok(r) if r.status == 200 => r,
            Ok(_) | Err(_) => {
                shared.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        shared.answers.fetch_add(1, Ordering::Relaxed);
        let next = resp.consul_index().unwrap_or(0);
        // A backwards index (offerd restarted) starts over, as the client's Watch does.
        index = if next < index { 0 } else { next };
        let Ok(desired) = serde_json::from_slice::<DesiredIds>(&resp.body) else {
            shared.retries.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let want: HashSet<String> = desired.tasks.into_iter().map(|t| t.id).collect();
        let now = cairn_marathon::now_millis();
        let update = |id: &String, state: TaskState| TaskStatusUpdate {
            task_id: id.clone(),
            state,
            message: String::new(),
            timestamp: now,
            healthy: None,
        };
        let started: Vec<String> = want.difference(running).cloned().collect();
        let stopped: Vec<String> = running.difference(&want).cloned().collect();
        if started.is_empty() && stopped.is_empty() {
            continue;
        }
        let batch = StatusBatch {
            updates: started
                .iter()
                .map(|id| update(id, TaskState::Running))
                .chain(stopped.iter().map(|id| update(id, TaskState::Killed)))
                .collect(),
        };
        let body = serde_json::to_vec(&batch).unwrap_or_default();
        let req = json_request(
            "POST",
            &shared.host,
            &format!("/v1/agents/{node}/status"),
            &body,
        );
        // Retried until acknowledged, as taskrun's status queue does.
        loop {
            match status.call(&req).await {
                Ok(r) if r.status == 200 => break,
                Ok(r) if r.status == 404 => return,
                Ok(_) | Err(_) => {
                    shared.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        shared.status_posts.fetch_add(1, Ordering::Relaxed);
        // This agent's share of the total only ever moves by what it added before, so the
        // total never goes below zero.
        shared.running.fetch_add(started.len(), Ordering::Relaxed);
        shared.running.fetch_sub(stopped.len(), Ordering::Relaxed);
        running.extend(started);
        for id in &stopped {
            running.remove(id);
        }
    }
}

/// The definition of bench app `i`.
fn app_def(args: &AgentsArgs, i: usize, instances: usize) -> serde_json::Value {
    let mut def = json!({
        "id": app_id(args, i),
        "cmd": "sleep 86399",
        "instances": instances,
        "cpus": 0.01,
        "mem": 8,
        "disk": 0,
    });
    if args.constraint == "group-by" {
        def["constraints"] = json!([["hostname", "GROUP_BY"]]);
    }
    def
}

fn app_id(args: &AgentsArgs, i: usize) -> String {
    format!("/{}/app-{i:03}", args.app_prefix)
}

/// Waits until the agents run `target` tasks; the time it took from `since`.
async fn all_running(
    shared: &Shared,
    target: usize,
    since: Instant,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<Duration> {
    let mut last_note = Instant::now();
    loop {
        let n = shared.running.load(Ordering::Relaxed);
        if n >= target {
            return Ok(since.elapsed());
        }
        if since.elapsed() > timeout {
            bail!(
                "{what}: {n} of {target} tasks running after {:.0} s",
                timeout.as_secs_f64()
            );
        }
        if last_note.elapsed() > Duration::from_secs(5) {
            last_note = Instant::now();
            eprintln!(
                "[agents] {what}: {n}/{target} running after {:.1} s ({} answers, {} status posts, {} retries)",
                since.elapsed().as_secs_f64(),
                shared.answers.load(Ordering::Relaxed),
                shared.status_posts.load(Ordering::Relaxed),
                shared.retries.load(Ordering::Relaxed),
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `tasksRunning` summed over the bench's apps, as offerd sees them.
async fn offerd_running(args: &AgentsArgs, client: &mut Client, host: &str) -> anyhow::Result<u64> {
    let path = format!("/v2/apps?id=/{}/", args.app_prefix);
    let r = client
        .call(&http::request("GET", host, &path, b"", None))
        .await?;
    if r.status != 200 {
        bail!("GET {path}: status {}", r.status);
    }
    let v: serde_json::Value = serde_json::from_slice(&r.body).context("GET /v2/apps: not JSON")?;
    Ok(v["apps"]
        .as_array()
        .map(|apps| apps.iter().filter_map(|a| a["tasksRunning"].as_u64()).sum())
        .unwrap_or(0))
}

/// ` rss_mb=N` when offerd's pid was given.
fn rss_field(pid: Option<u32>) -> String {
    pid.and_then(|p| rss_kb(p).ok())
        .map(|kb| format!(" rss_mb={}", kb / 1024))
        .unwrap_or_default()
}

pub async fn run(args: AgentsArgs) -> anyhow::Result<()> {
    let (addr, host) = http::loopback_addr(&args.offerd)?;
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    if args.apps > 0 && args.instances == 0 {
        bail!("--instances must be at least 1");
    }
    let timeout = Duration::from_secs(args.timeout_s);
    let shared = Arc::new(Shared {
        addr,
        host: host.clone(),
        resources: Resources {
            cpus: args.agent_cpus,
            mem: args.agent_mem,
            disk: 1_000_000.0,
            ports: vec![PortRange {
                begin: 31000,
                end: 32000,
            }],
        },
        running: AtomicUsize::new(0),
        registered: AtomicUsize::new(0),
        answers: AtomicU64::new(0),
        status_posts: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    // Every agent registers and takes up what offerd already wants it to run.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_parallel.max(1)));
    let mut agents = tokio::task::JoinSet::new();
    for i in 0..args.agents {
        let node = format!("{}-{i:05}", args.node_prefix);
        agents.spawn(agent(shared.clone(), node, gate.clone()));
    }
    while shared.registered.load(Ordering::Relaxed) < args.agents {
        if started.elapsed() > timeout {
            bail!(
                "only {} of {} agents registered after {} s",
                shared.registered.load(Ordering::Relaxed),
                args.agents,
                args.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let register_s = started.elapsed().as_secs_f64();
    // Let the first answers (an offerd that already has tasks for them) come in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = shared.running.load(Ordering::Relaxed);
    println!(
        "phase name=register agents={} s={register_s:.2} already_running={base}",
        args.agents
    );

    let mut control = Client::new(addr);
    let mut summary = format!(
        "result agents={} apps={} instances={} register_s={register_s:.2}",
        args.agents, args.apps, args.instances
    );
    if args.apps > 0 {
        let since = Instant::now();
        for i in 0..args.apps {
            let body = serde_json::to_vec(&app_def(&args, i, args.instances))?;
            let r = control
                .call(&json_request("POST", &host, "/v2/apps", &body))
                .await?;
            if r.status != 201 {
                bail!(
                    "POST /v2/apps {}: status {} {}",
                    app_id(&args, i),
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            }
        }
        let post_s = since.elapsed().as_secs_f64();
        let target = base + args.apps * args.instances;
        let took = all_running(&shared, target, since, timeout, "load").await?;
        let confirmed = offerd_running(&args, &mut control, &host).await?;
        let rss = rss_field(args.pid);
        println!(
            "phase name=load tasks={target} post_s={post_s:.2} all_running_s={:.2} offerd_running={confirmed}{rss}",
            took.as_secs_f64()
        );
        summary.push_str(&format!(
            " tasks={target} post_s={post_s:.2} all_running_s={:.2} offerd_running={confirmed}{rss}",
            took.as_secs_f64()
        ));

        if args.scale > 0 {
            let since = Instant::now();
            let body = serde_json::to_vec(&json!({ "instances": args.instances + args.scale }))?;
            let path = format!("/v2/apps{}", app_id(&args, 0));
            let r = control
                .call(&json_request("PUT", &host, &path, &body))
                .await?;
            if r.status != 200 {
                bail!(
                    "PUT {path}: status {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            }
            let target = target + args.scale;
            let took = all_running(&shared, target, since, timeout, "scale").await?;
            let confirmed = offerd_running(&args, &mut control, &host).await?;
            let rss = rss_field(args.pid);
            println!(
                "phase name=scale by={} tasks={target} all_running_s={:.2} offerd_running={confirmed}{rss}",
                args.scale,
                took.as_secs_f64()
            );
            summary.push_str(&format!(
                " scale_by={} scale_s={:.2} scaled_tasks={target} scaled_offerd_running={confirmed}",
                args.scale,
                took.as_secs_f64()
            ));
        }
    }
    println!(
        "{summary} answers={} status_posts={} retries={}",
        shared.answers.load(Ordering::Relaxed),
        shared.status_posts.load(Ordering::Relaxed),
        shared.retries.load(Ordering::Relaxed)
    );
    if args.linger {
        eprintln!("[agents] lingering: the agents keep polling until this process is stopped");
        std::future::pending::<()>().await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    agents.abort_all();
    Ok(())
}

//! A whole cairn cluster on loopback for the scheduler's tests: catalogd, offerd and N taskrun
//! agents, each agent with its own work dir, node name and host-port range. Dropping it kills
//! every daemon and every task process group the agents started (tasks outlive taskrun by
//! design, so the test must reap them).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::daemon::{ANY_PORT, Daemon};
use crate::{Catalogd, Resp};

pub struct Cluster {
    pub catalog: Catalogd,
    pub offerd: Daemon,
    pub agents: Vec<Daemon>,
    pub agent_dirs: Vec<PathBuf>,
    /// Extra flags every agent gets ([`ClusterOpts::agent_args`], and `--allow-root-tasks` with
    /// [`ClusterOpts::allow_root_tasks`]).
    pub agent_args: Vec<String>,
    pub offerd_data: PathBuf,
    pub tmp: tempfile::TempDir,
    /// First host port of agent 0's range (see [`Cluster::port_base`]).
    pub ports_from: u16,
}

/// A block of `len` loopback ports that are free now and not handed to another cluster of this
/// test process: tests run in parallel, and two clusters on the same host ports would see each
/// other's tasks (a health check passing against another test's server).
fn port_block(len: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        // Below Linux's ephemeral range (32768+), where outgoing connections take their ports.
        // Each test process starts at its own place, so parallel test runs rarely meet.
        let start = (std::process::id() % 12) as u16 * 1000;
        let offset = start.wrapping_add(NEXT.fetch_add(len, Ordering::Relaxed)) % 12000;
        let base = 20000 + offset;
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if (base..base + len).all(free) {
            return base;
        }
    }
}

/// Cluster settings.
#[derive(Clone, Debug)]
pub struct ClusterOpts {
    pub agents: usize,
    pub agent_timeout: &'static str,
    /// `--resources` of agent i (its port range is added).
    pub resources: &'static str,
    /// `--attributes` per agent (empty = none).
    pub attributes: Vec<String>,
    /// More `taskrun agent` flags, for every agent (e.g. `--kill-drain-delay 5s`).
    pub agent_args: Vec<String>,
    /// More `offerd serve` flags (e.g. `--allow-host-volumes /srv`).
    pub offerd_args: Vec<String>,
    /// Give every agent `--allow-root-tasks` (the default: the tests run as root, and apps
    /// without a `user` run as the agent's user); `false` for tests of who tasks run as.
    pub allow_root_tasks: bool,
    /// More `catalogd serve` flags (e.g. `--acl-enabled`).
    pub catalogd_args: Vec<String>,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            agents: 2,
            agent_timeout: "3s",
            resources: "cpus:4;mem:2048;disk:1000",
            attributes: Vec::new(),
            agent_args: Vec::new(),
            offerd_args: Vec::new(),
            catalogd_args: Vec::new(),
            allow_root_tasks: true,
        }
    }
}

impl Cluster {
    pub async fn start(opts: ClusterOpts) -> Cluster {
        let catalogd_args: Vec<&str> = opts.catalogd_args.iter().map(String::as_str).collect();
        let catalog = Catalogd::start_with(&catalogd_args).await;
        let tmp = tempfile::tempdir().expect("temp dir");
        let offerd_data = tmp.path().join("offerd");
        let mut offerd_args = vec![
            "serve".into(),
            "--http-addr".into(),
            ANY_PORT.into(),
            "--data-dir".into(),
            offerd_data.display().to_string(),
            "--agent-timeout".into(),
            opts.agent_timeout.into(),
            "--catalog".into(),
            catalog.url.clone(),
        ];
        offerd_args.extend(opts.offerd_args.iter().cloned());
        let offerd = Daemon::start_any_port(
            "offerd",
            offerd_args,
            "/ping",
            tmp.path().join("offerd.log"),
        )
        .await;
        let mut c = Cluster {
            catalog,
            offerd,
            agents: Vec::new(),
            agent_dirs: Vec::new(),
            agent_args: {
                let mut args = opts.agent_args.clone();
                if opts.allow_root_tasks {
                    args.insert(0, "--allow-root-tasks".into());
                }
                args
            },
            offerd_data,
            tmp,
            ports_from: port_block(1000),
        };
        for i in 0..opts.agents {
            let attrs = opts.attributes.get(i).cloned().unwrap_or_default();
            c.add_agent(i, opts.resources, &attrs).await;
        }
        // An agent answers its health endpoint before it has registered with offerd: a test
        // starts from a cluster whose agents offerd knows.
        c.wait_for("every agent to register with offerd", 60, || async {
            let agents = c.offerd.http.get("/v1/agents").await.value();
            (agents.as_array().map_or(0, Vec::len) == opts.agents).then_some(())
        })
        .await;
        c
    }

    /// The first host port of agent `i`'s range `[base, base+99]`.
    pub fn port_base(&self, i: usize) -> u16 {
        self.ports_from + 100 * i as u16
    }

    /// Starts agent `node-{i}` with the ports `[port_base(i), port_base(i)+99]`.
    pub async fn add_agent(&mut self, i: usize, resources: &str, attributes: &str) {
        let dir = self.tmp.path().join(format!("agent-{i}"));
        let base = self.port_base(i) as usize;
        let mut args = vec![
            "agent".to_string(),
            "--offerd".into(),
            self.offerd.url.clone(),
            "--catalog".into(),
            self.catalog.url.clone(),
            "--node".into(),
            format!("node-{i}"),
            "--address".into(),
            "127.0.0.1".into(),
            "--http-addr".into(),
            ANY_PORT.into(),
            "--work-dir".into(),
            dir.display().to_string(),
            "--resources".into(),
            format!("{resources};ports:[{base}-{}]", base + 99),
        ];
        if !attributes.is_empty() {
            args.push("--attributes".into());
            args.push(attributes.into());
        }
        args.extend(self.agent_args.iter().cloned());
        let agent = Daemon::start_any_port(
            "taskrun",
            args,
            "/health",
            self.tmp.path().join(format!("taskrun-{i}.log")),
        )
        .await;
        self.agents.push(agent);
        self.agent_dirs.push(dir);
    }

    /// Every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = format!("--- offerd ---\n{}", self.offerd.log_text());
        for (i, a) in self.agents.iter().enumerate() {
            out.push_str(&format!("\n--- taskrun node-{i} ---\n{}", a.log_text()));
        }
        out
    }

    pub async fn post_app(&self, app: &Value) -> Resp {
        self.offerd
            .http
            .send("POST", "/v2/apps", Some(app.to_string().into_bytes()))
            .await
    }

    pub async fn put_app(&self, id: &str, body: &Value, force: bool) -> Resp {
        let q = if force { "?force=true" } else { "" };
        self.offerd
            .http
            .send(
                "PUT",
                &format!("/v2/apps{id}{q}"),
                Some(body.to_string().into_bytes()),
            )
            .await
    }

    /// The app's active tasks.
    pub async fn tasks(&self, app: &str) -> Vec<Value> {
        let r = self.offerd.http.get(&format!("/v2/apps{app}/tasks")).await;
        r.value()["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// Ids of the app's TASK_RUNNING tasks, sorted.
    pub async fn running(&self, app: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .tasks(app)
            .await
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    }

    /// Waits (up to `secs`) for `check` to return Some, panicking with every log otherwise.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, secs: u64, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {secs}s waiting for {what}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the app has exactly `n` running tasks and no deployment; returns their ids.
    pub async fn wait_running(&self, app: &str, n: usize, secs: u64) -> Vec<String> {
        self.wait_for(
            &format!("{app} to have {n} running tasks and no deployment"),
            secs,
            || async {
                let running = self.running(app).await;
                let tasks = self.tasks(app).await;
                let deps = self.offerd.http.get("/v2/deployments").await.value();
                let busy = deps
                    .as_array()
                    .is_some_and(|d| d.iter().any(|d| d["affectedApps"][0] == app));
                (running.len() == n && tasks.len() == n && !busy).then_some(running)
            },
        )
        .await
    }

    /// Healthy-or-not instances of a catalog service: (task id, port, status of all checks).
    pub async fn catalog_instances(&self, service: &str) -> Vec<(String, u64, String)> {
        let v = self
            .catalog
            .http
            .get(&format!("/v1/health/service/{service}"))
            .await
            .value();
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let worst = e["Checks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|c| c["ServiceID"] != "")
                    .map(|c| c["Status"].as_str().unwrap_or("").to_string())
                    .max_by_key(|s| match s.as_str() {
                        "passing" => 0,
                        "warning" => 1,
                        _ => 2,
                    })
                    .unwrap_or_else(|| "none".into());
                (
                    e["Service"]["ID"].as_str().unwrap_or("").to_string(),
                    e["Service"]["Port"].as_u64().unwrap_or(0),
                    worst,
                )
            })
            .collect()
    }

    /// The pid of a task's process group, from its agent's work dir.
    pub fn task_pid(&self, task_id: &str) -> Option<i32> {
        self.agent_dirs
            .iter()
            .find_map(|d| read_pid(&d.join("tasks").join(task_id)))
    }
}

fn read_pid(sandbox: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(sandbox.join("task.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Kills every task process group recorded under `work_dir`, and every task supervisor whose
/// command line names it (a task launched just before its agent was killed may have no pid on
/// record yet).
pub fn reap_tasks(work_dir: &Path) {
    let needle = work_dir.display().to_string();
    for proc_entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(proc_entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) && pid > 1 {
            // SAFETY: kill(2) on a process group (the supervisor leads its own) and the process.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(work_dir.join("tasks")) else {
        return;
    };
    for e in entries.flatten() {
        if let Some(pid) = read_pid(&e.path())
            && pid > 1
        {
            // SAFETY: kill(2) on a process group the test's agents created.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            a.kill9();
        }
        self.offerd.kill9();
        for d in &self.agent_dirs {
            reap_tasks(d);
        }
        // The agents' cgroup v1 levels go when their Daemons are dropped, after this.
    }
}

/// The cgroup v1 levels an agent made for its tasks' cgroups, as it logged them at start
/// (`limiting tasks with cgroup v1 memory=... cpu=... cpuacct=...`); none without cgroup v1.
pub fn agent_cgroups(log: &str) -> Vec<PathBuf> {
    let Some(line) = log
        .lines()
        .find(|l| l.contains("limiting tasks with cgroup v1"))
    else {
        return Vec::new();
    };
    ["memory=", "cpu=", "cpuacct="]
        .iter()
        .filter_map(|k| {
            let at = line.find(&format!(" {k}"))?;
            let path = line[at + 1 + k.len()..].split_whitespace().next()?;
            Some(PathBuf::from(path))
        })
        .collect()
}

/// Removes the task cgroups under an agent's cgroup v1 levels, and the levels, once its tasks
/// are gone: an agent killed with `kill -9` releases none, and every test run would leave them
/// (a dropped taskrun [`crate::daemon::Daemon`] calls it).
/// The tasks were just SIGKILLed, so their cgroups empty within moments (waited up to 2 s).
pub fn remove_agent_cgroups(levels: &[PathBuf]) {
    for _ in 0..40 {
        let mut left = false;
        for level in levels {
            for entry in std::fs::read_dir(level).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().starts_with("task-") {
                    left |= std::fs::remove_dir(entry.path()).is_err();
                }
            }
            if level.exists() {
                left |= std::fs::remove_dir(level).is_err();
            }
        }
        if !left {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `sleep` app of `n` instances with small resources.
pub fn sleep_app(id: &str, n: usize) -> Value {
    json!({ "id": id, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": n })
}

//! taskrun's `/metrics` in a real cluster (catalogd, offerd, taskrun), from both of its sources
//! for process tasks — the task cgroups of the cgroup v1 mode (`--cgroups v1`) and the tasks'
//! process groups in /proc (`--cgroups off`) — and from the Docker engine's stats for a
//! container: a task burning CPU has its CPU seconds rise between two scrapes, one holding
//! memory has it resident, limits and reserved cpus are the app's, labels are right, the node's
//! free resources are what it offers minus what its tasks reserve, a task exiting on its own
//! counts as a restart of its app (a kill does not), and `promtool check metrics` accepts the
//! text. In v1 mode the task's three cgroups carry its limits and go with it; the route needs
//! the agent token, and a real Prometheus finds the agent through the catalog (catalogd's HTTP
//! service discovery, the agent's `cairn-taskrun` service) and scrapes it with the token.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn_tests::cluster::{Cluster, ClusterOpts, agent_cgroups};
use cairn_tests::docker::{DockerCluster, busybox_image, require_engine};
use cairn_tests::{Http, free_port};
use serde_json::{Value, json};

const MIB: f64 = 1024.0 * 1024.0;
const TOKEN: &str = "metrics-agent-token-0123456789";

/// The value of one series (`name{labels}` exactly as rendered) in an exposition text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn task_series(name: &str, app: &str, task: &str) -> String {
    format!(r#"{name}{{app="{app}",task="{task}",node="node-0"}}"#)
}

/// Whether cgroup v1 hierarchies this process could write are mounted (this machine and CI).
/// Under CI=true their absence fails the test; elsewhere it is skipped with a notice.
fn require_cgroup_v1() -> bool {
    let mounted = [
        "memory/memory.limit_in_bytes",
        "cpu/cpu.cfs_quota_us",
        "cpuacct/cpuacct.usage",
    ]
    .iter()
    .all(|f| Path::new("/sys/fs/cgroup").join(f).exists());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if mounted && root {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but this host has no writable cgroup v1 hierarchies (memory, cpu, cpuacct) for taskrun --cgroups v1"
        );
    }
    eprintln!("skipping: no writable cgroup v1 hierarchies here (set CI=true to make this fail)");
    false
}

/// Every app of the scenario on a single agent offering 4 cpus and 2048 MB.
fn apps() -> [Value; 3] {
    [
        json!({"id": "/m/burn", "cmd": "while :; do :; done", "cpus": 0.5, "mem": 32,
               "instances": 1, "portDefinitions": []}),
        // ~30 MB held in a shell variable while sleep runs.
        json!({"id": "/m/mem", "cmd": "x=$(head -c 30000000 /dev/zero | tr '\\0' a); sleep 600",
               "cpus": 0.2, "mem": 128, "instances": 1, "portDefinitions": []}),
        json!({"id": "/m/exits", "cmd": "sleep 0.5; exit 3", "cpus": 0.1, "mem": 16,
               "instances": 1, "portDefinitions": [], "backoffSeconds": 1}),
    ]
}

/// One scrape, once its text has every series in `want` (a collection is reused for 1 s, so
/// the deadline, not the number of scrapes, bounds the wait).
async fn scrape_until(
    c: &Cluster,
    agent: &Http,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    c.wait_for(what, 60, || async {
        let r = agent.get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = r.text();
        done(&text).then_some(text)
    })
    .await
}

/// The scenario, against an agent started with `--cgroups <mode>`.
async fn scenario(mode: &str, token: bool) {
    let mut agent_args = vec!["--cgroups".to_string(), mode.to_string()];
    let mut offerd_args = Vec::new();
    if token {
        for args in [&mut agent_args, &mut offerd_args] {
            args.extend(["--agent-token".to_string(), TOKEN.to_string()]);
        }
    }
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        resources: "cpus:4;mem:2048;disk:1000",
        agent_args,
        offerd_args,
        ..Default::default()
    })
    .await;
    let log = c.agents[0].log_text();
    // The agent's cgroup v1 levels (memory, cpu, cpuacct); removed when its Daemon is dropped.
    let levels = agent_cgroups(&log);
    if mode == "v1" {
        assert_eq!(
            levels.len(),
            3,
            "the agent did not say it uses cgroup v1:\n{log}"
        );
    } else {
        assert!(log.contains("cgroups off"), "{log}");
    }
    let agent = if token {
        c.agents[0]
            .http
            .clone()
            .with_header("authorization", &format!("Bearer {TOKEN}"))
    } else {
        c.agents[0].http.clone()
    };
    if token {
        assert_eq!(c.agents[0].http.get("/metrics").await.status, 401);
        assert_eq!(c.agents[0].http.get("/health").await.status, 200);
    }
    for app in apps() {
        assert_eq!(c.post_app(&app).await.status, 201);
    }
    let burn = c.wait_running("/m/burn", 1, 60).await.remove(0);
    let mem = c.wait_running("/m/mem", 1, 60).await.remove(0);

    let cpu = |text: &str| {
        sample(
            text,
            &task_series("taskrun_task_cpu_seconds_total", "/m/burn", &burn),
        )
    };
    let rss = |text: &str| {
        sample(
            text,
            &task_series("taskrun_task_memory_rss_bytes", "/m/mem", &mem),
        )
    };
    let first = scrape_until(
        &c,
        &agent,
        "figures of the burning and the allocating task",
        |t| cpu(t).is_some_and(|v| v > 0.0) && rss(t).is_some_and(|v| v >= 25e6),
    )
    .await;
    let before = cpu(&first).unwrap_or_default();
    let second = scrape_until(&c, &agent, "the burning task's CPU seconds to rise", |t| {
        cpu(t).is_some_and(|v| v > before + 0.1)
    })
    .await;
    for (app, task, mem_mb, cpus) in [("/m/burn", &burn, 32.0, 0.5), ("/m/mem", &mem, 128.0, 0.2)] {
        assert_eq!(
            sample(
                &second,
                &task_series("taskrun_task_memory_limit_bytes", app, task)
            ),
            Some(mem_mb * MIB),
            "{second}"
        );
        assert_eq!(
            sample(&second, &task_series("taskrun_task_cpus", app, task)),
            Some(cpus),
            "{second}"
        );
        assert!(
            sample(
                &second,
                &task_series("taskrun_task_memory_rss_bytes", app, task)
            )
            .is_some_and(|v| v > 0.0),
            "{second}"
        );
    }
    assert_eq!(
        sample(&second, r#"taskrun_node_cpus{node="node-0"}"#),
        Some(4.0)
    );
    assert_eq!(
        sample(&second, r#"taskrun_node_memory_bytes{node="node-0"}"#),
        Some(2048.0 * MIB)
    );
    assert!(
        sample(&second, r#"taskrun_node_memory_rss_bytes{node="node-0"}"#)
            .is_some_and(|v| v >= 25e6),
        "{second}"
    );
    assert!(
        sample(&second, r#"taskrun_node_cpu_seconds_total{node="node-0"}"#)
            .is_some_and(|v| v >= cpu(&second).unwrap_or(f64::MAX)),
        "{second}"
    );
    assert!(
        sample(&second, r#"taskrun_metrics_collect_seconds{node="node-0"}"#).is_some(),
        "{second}"
    );
    cairn_tests::prometheus::assert_promtool_accepts(&second);

    // The exiting app's task ended on its own at least once: a restart of its app.
    let restarts = r#"taskrun_app_restarts_total{app="/m/exits",node="node-0"}"#;
    scrape_until(&c, &agent, "a restart of /m/exits", |t| {
        sample(t, restarts).is_some_and(|v| v >= 1.0)
    })
    .await;
    assert_eq!(c.offerd.http.delete("/v2/apps/m/exits").await.status, 200);
    c.wait_for("/m/exits to have no task", 60, || async {
        c.tasks("/m/exits").await.is_empty().then_some(())
    })
    .await;

    // Free = offered - reserved by the two live tasks (0.5 + 0.2 cpus, 32 + 128 MB).
    let free = scrape_until(&c, &agent, "only the two tasks live", |t| {
        sample(
            t,
            r#"taskrun_node_tasks{node="node-0",state="TASK_RUNNING"}"#,
        ) == Some(2.0)
            && ["TASK_STAGING", "TASK_STARTING", "TASK_KILLING"]
                .iter()
                .all(|s| {
                    sample(
                        t,
                        &format!(r#"taskrun_node_tasks{{node="node-0",state="{s}"}}"#),
                    ) == Some(0.0)
                })
    })
    .await;
    let cpus_free = sample(&free, r#"taskrun_node_cpus_free{node="node-0"}"#).unwrap_or_default();
    assert!(
        (cpus_free - 3.3).abs() < 1e-9,
        "cpus free {cpus_free}\n{free}"
    );
    assert_eq!(
        sample(&free, r#"taskrun_node_memory_free_bytes{node="node-0"}"#),
        Some((2048.0 - 160.0) * MIB),
        "{free}"
    );

    if mode == "v1" {
        // The burning task's cgroups carry its limits, and it runs in them.
        let [memory, cpu_dir, cpuacct] = [0, 1, 2].map(|i| levels[i].join(format!("task-{burn}")));
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        assert_eq!(
            read(memory.join("memory.limit_in_bytes")).trim(),
            (32 << 20).to_string()
        );
        assert_eq!(read(cpu_dir.join("cpu.cfs_quota_us")).trim(), "50000");
        assert_eq!(read(cpu_dir.join("cpu.cfs_period_us")).trim(), "100000");
        let pid = c.task_pid(&burn).expect("the burning task's pid");
        for dir in [&memory, &cpu_dir, &cpuacct] {
            let procs = read(dir.join("cgroup.procs"));
            assert!(
                procs.lines().any(|l| l == pid.to_string()),
                "{}: {procs}",
                dir.display()
            );
        }
        // The quota holds: well under one CPU over a while (0.5 allowed; generous for a loaded
        // machine, where it gets less, never more).
        let t0 = (std::time::Instant::now(), cpu(&second).unwrap_or_default());
        let later = scrape_until(&c, &agent, "CPU figures 3 s later", |t| {
            t0.0.elapsed() > Duration::from_secs(3) && cpu(t).is_some()
        })
        .await;
        let used = cpu(&later).unwrap_or_default() - t0.1;
        let rate = used / t0.0.elapsed().as_secs_f64();
        assert!(
            rate < 0.75,
            "the task used {rate:.2} CPUs under a 0.5 quota"
        );

        prometheus_scrapes_through_the_catalog(&c).await;

        // A kill is not a restart, and the task's cgroups go with it.
        assert_eq!(c.offerd.http.delete("/v2/apps/m/burn").await.status, 200);
        c.wait_for("the burning task's cgroups to be removed", 60, || async {
            [&memory, &cpu_dir, &cpuacct]
                .iter()
                .all(|d| !d.exists())
                .then_some(())
        })
        .await;
        let after = scrape_until(&c, &agent, "the killed task out of the figures", |t| {
            cpu(t).is_none()
        })
        .await;
        assert_eq!(
            sample(
                &after,
                r#"taskrun_app_restarts_total{app="/m/burn",node="node-0"}"#
            )
            .unwrap_or(0.0),
            0.0,
            "{after}"
        );
        assert!(
            sample(&after, r#"taskrun_node_cpu_seconds_total{node="node-0"}"#)
                .is_some_and(|v| v >= cpu(&later).unwrap_or(f64::MAX)),
            "the node's CPU keeps what the killed task used\n{after}"
        );
    }
}

/// A real Prometheus finds the agent through catalogd (its HTTP service discovery endpoint,
/// which lists the agent's `cairn-taskrun` service: the agent's API address and port, path
/// from its meta) and scrapes `/metrics` with the agent token as its bearer credentials.
async fn prometheus_scrapes_through_the_catalog(c: &Cluster) {
    let svc = c
        .catalog
        .http
        .get("/v1/catalog/service/cairn-taskrun")
        .await
        .value();
    assert_eq!(svc[0]["Node"], "node-0", "{svc}");
    assert_eq!(svc[0]["ServicePort"], c.agents[0].port(), "{svc}");
    assert_eq!(svc[0]["ServiceTags"], json!(["cairn"]), "{svc}");
    assert_eq!(
        svc[0]["ServiceMeta"]["prometheus_port"],
        c.agents[0].port().to_string(),
        "{svc}"
    );
    assert_eq!(
        svc[0]["ServiceMeta"]["prometheus_path"], "/metrics",
        "{svc}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    // Debian's Prometheus has no consul_sd: catalogd's HTTP service discovery endpoint lists
    // every service with prometheus_port meta, the agent's among them.
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
         scrape_configs:\n  - job_name: taskrun\n    authorization:\n      credentials: {TOKEN}\n    \
         http_sd_configs:\n      - url: '{}/v1/cairn/prometheus/targets'\n        refresh_interval: 1s\n    \
         relabel_configs:\n      - source_labels: [__meta_cairn_service]\n        regex: cairn-taskrun\n        action: keep\n",
        c.catalog.url
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).expect("prometheus.yml");
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is not installed: run scripts/test (apt-get install prometheus)");
    let api = Http::new(&format!("http://127.0.0.1:{port}"));
    let found = cairn_tests::wait_for(
        "Prometheus to scrape taskrun_node_cpus from the agent it discovered",
        Duration::from_secs(60),
        || "Prometheus' /api/v1/targets shows why".to_string(),
        async || {
            let r = api
                .try_send("GET", "/api/v1/query?query=taskrun_node_cpus", None)
                .await
                .ok()?;
            // 503 while Prometheus starts.
            let v: Value = serde_json::from_slice(&r.body).ok()?;
            let result = v["data"]["result"][0].clone();
            result["value"][1].as_str()?;
            Some(result)
        },
    )
    .await;
    // Killed whether or not it still runs; the wait reaps it.
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(found["value"][1], "4", "{found}");
    assert_eq!(found["metric"]["node"], "node-0", "{found}");
    assert_eq!(found["metric"]["job"], "taskrun", "{found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_from_cgroup_v1() {
    if !require_cgroup_v1() {
        return;
    }
    scenario("v1", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_from_proc_without_cgroups() {
    scenario("off", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_of_a_docker_task() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    })
    .await;
    let app = json!({
        "id": "/m/box", "cmd": "while :; do :; done", "cpus": 0.2, "mem": 32, "instances": 1,
        "portDefinitions": [],
        "container": { "type": "DOCKER", "docker": { "image": image, "network": "NONE" } }
    });
    assert_eq!(c.post_app(&app).await.status, 201);
    let task = c.wait_running("/m/box", 1, 120).await.remove(0);
    let agent = c.agents[0].http.clone();
    let text = scrape_until(&c, &agent, "the container's figures", |t| {
        sample(
            t,
            &task_series("taskrun_task_cpu_seconds_total", "/m/box", &task),
        )
        .is_some_and(|v| v > 0.0)
            && sample(
                t,
                &task_series("taskrun_task_memory_rss_bytes", "/m/box", &task),
            )
            .is_some_and(|v| v > 0.0)
    })
    .await;
    assert_eq!(
        sample(
            &text,
            &task_series("taskrun_task_memory_limit_bytes", "/m/box", &task)
        ),
        Some(32.0 * MIB)
    );
    assert_eq!(
        sample(&text, &task_series("taskrun_task_cpus", "/m/box", &task)),
        Some(0.2)
    );
    cairn_tests::prometheus::assert_promtool_accepts(&text);
}

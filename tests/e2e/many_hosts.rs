//! cairn across several hosts: three Linux network namespaces on a bridge, each running a
//! `taskrun` agent, with catalogd, offerd, dnsbridge, `lbconf watch` and HAProxy in the root
//! namespace, all talking over the bridge as separate machines would.
//!
//! Proves that:
//! - an app with `["hostname","UNIQUE"]` runs one task per host, DNS answers its SRV name with
//!   the three hosts' addresses and HAProxy serves it by host name from all three;
//! - a host cut off the network is declared lost, its task replaced on the other hosts, DNS and
//!   HAProxy stop sending traffic to it, and once the replacement is healthy every request
//!   succeeds; back on the network, the host kills the task it should no longer run;
//! - a host killed outright (agent and tasks) is replaced on the others while offerd itself is
//!   killed and restarted twice (once right after the loss, once in the middle of a rolling
//!   restart): the deployment finishes and no task runs twice.
//!
//! The tests are skipped (with a notice) where network namespaces cannot be made, unless
//! `CI=true`, where that is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_tests::cluster::{alive, reap_tasks};
use cairn_tests::daemon::Daemon;
use cairn_tests::lb::{Balancer, BalancerOpts};
use cairn_tests::netns::Netns;
use cairn_tests::{bin, free_port};
use serde_json::{Value, json};

use crate::dnsbridge_common::{Bridge, dig};

const APP: &str = "/many/web";
/// The SRV name of the app's service (`/many/web` reversed, as DESIGN names services).
const SRV_NAME: &str = "_web-many._tcp.service.consul";
const VHOST: &str = "web.many";
/// How long the tests wait for something to happen (a deadline, not a timing assertion).
const DEADLINE: Duration = Duration::from_secs(60);
/// A request through HAProxy not answered within this counts as failed (generous: HAProxy
/// itself retries and redispatches a request whose server does not answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Client loops sending requests through HAProxy during the partition.
const LOAD_WORKERS: usize = 4;

/// A child process killed (and reaped) on drop.
/// The HTTP server every task runs: busybox httpd, else Python's (a bare `TCPServer`: the
/// `http.server` CLI resolves its own address's name before listening, which hangs where the
/// namespaces have no DNS).
fn server_cmd() -> String {
    let index = "mkdir -p www && echo \"$HOST\" > www/index.html";
    match busybox() {
        Some(bb) => format!("{index} && exec {bb} httpd -f -p \"$HOST:$PORT0\" -h www"),
        None => format!("{index} && cd www && exec python3 -c '{PY_SERVER}'"),
    }
}

const PY_SERVER: &str = "import os, socketserver, http.server as h; \
    socketserver.TCPServer((os.environ[\"HOST\"], int(os.environ[\"PORT0\"])), \
    h.SimpleHTTPRequestHandler).serve_forever()";

fn busybox() -> Option<&'static str> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

/// Whether a process's arguments are those of the server [`server_cmd`] starts (not the
/// shell or the supervisor whose arguments merely mention it).
fn is_server(args: &[String]) -> bool {
    match busybox() {
        Some(bb) => {
            args.first().is_some_and(|a| a == bb) && args.get(1).is_some_and(|a| a == "httpd")
        }
        None => args.windows(2).any(|w| w[0] == "-c" && w[1] == PY_SERVER),
    }
}

/// The app: 3 instances answering `/` with their host's address, an HTTP health check every
/// second, routed by HAProxy for `web.many`, placed with `constraint`.
fn web_app(constraint: &[&str]) -> Value {
    json!({
        "id": APP,
        "cmd": server_cmd(),
        "cpus": 0.1, "mem": 32, "instances": 3,
        "constraints": [constraint],
        "labels": { "lb_vhost": VHOST },
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "intervalSeconds": 1,
                           "timeoutSeconds": 1, "gracePeriodSeconds": 5 }]
    })
}

/// The whole stack. Fields drop in order: HAProxy and lbconf, dnsbridge, the agents, offerd,
/// catalogd, then the network (which kills whatever still runs in the namespaces) and the
/// temporary directory.
struct Site {
    _lb: Balancer,
    dns: Bridge,
    agents: Vec<Daemon>,
    offerd: Daemon,
    catalog: Daemon,
    /// HAProxy's shared HTTP frontend on 127.0.0.1.
    http_port: u16,
    admin_sock: PathBuf,
    lb_log: PathBuf,
    work_dirs: Vec<PathBuf>,
    net: Netns,
    tmp: tempfile::TempDir,
}

impl Drop for Site {
    fn drop(&mut self) {
        for a in &mut self.agents {
            a.kill9();
        }
        for d in &self.work_dirs {
            reap_tasks(d);
        }
    }
}

impl Site {
    /// Sets up three hosts and the root-side daemons; None when namespaces are unavailable.
    async fn start() -> Option<Site> {
        let net = Netns::create(3)?;
        let tmp = tempfile::tempdir().expect("temp dir");
        let gw = net.gateway;

        let port = free_port();
        let catalog_url = format!("http://{gw}:{port}");
        let catalog = Daemon::start(
            "catalogd",
            vec![
                "serve".into(),
                "--http-addr".into(),
                format!("{gw}:{port}"),
                "--data-dir".into(),
                tmp.path().join("catalog").display().to_string(),
                "--node".into(),
                "root".into(),
            ],
            catalog_url.clone(),
            "/v1/status/leader",
            tmp.path().join("catalogd.log"),
        )
        .await;

        let port = free_port();
        let offerd = Daemon::start(
            "offerd",
            vec![
                "serve".into(),
                "--http-addr".into(),
                format!("{gw}:{port}"),
                "--data-dir".into(),
                tmp.path().join("offerd").display().to_string(),
                "--agent-timeout".into(),
                "3s".into(),
                "--catalog".into(),
                catalog_url.clone(),
            ],
            format!("http://{gw}:{port}"),
            "/ping",
            tmp.path().join("offerd.log"),
        )
        .await;

        let taskrun = bin("taskrun");
        let mut agents = Vec::new();
        let mut work_dirs = Vec::new();
        for i in 1..=net.hosts.len() {
            let h = net.host(i).clone();
            let dir = tmp.path().join(&h.name);
            let mut args = net.exec_args(i, &taskrun);
            args.extend([
                "agent".into(),
                "--offerd".into(),
                offerd.url.clone(),
                "--catalog".into(),
                catalog_url.clone(),
                "--node".into(),
                h.name.clone(),
                "--address".into(),
                h.addr.to_string(),
                "--http-addr".into(),
                format!("{}:5051", h.addr),
                "--work-dir".into(),
                dir.display().to_string(),
                "--resources".into(),
                "cpus:2;mem:1024;disk:100;ports:[31000-31099]".into(),
                // As the harness's agents: the tests run as root and the apps name no user.
                "--allow-root-tasks".into(),
            ]);
            work_dirs.push(dir);
            agents.push(
                Daemon::start_program(
                    "taskrun",
                    PathBuf::from("ip"),
                    args,
                    format!("http://{}:5051", h.addr),
                    "/health",
                    tmp.path().join(format!("taskrun-{}.log", h.name)),
                )
                .await,
            );
        }

        let dns = Bridge::start(&catalog_url, &[]);

        let lb = Balancer::start(
            tmp.path(),
            &catalog_url,
            BalancerOpts {
                spare_slots: Some(4),
                ..Default::default()
            },
        )
        .await;
        let site = Site {
            http_port: lb.http_port,
            admin_sock: lb.admin_sock.clone(),
            lb_log: lb.lb_log.clone(),
            _lb: lb,
            dns,
            agents,
            offerd,
            catalog,
            work_dirs,
            net,
            tmp,
        };
        site.wait_for("all three agents registered with offerd", || async {
            let agents = site.offerd.http.get("/v1/agents").await.value();
            let agents = agents.as_array()?;
            (agents.len() == 3 && agents.iter().all(|a| a["state"] == "active")).then_some(())
        })
        .await;
        Some(site)
    }

    fn addr(&self, i: usize) -> String {
        self.net.host(i).addr.to_string()
    }

    /// The last lines of every daemon's log, for failure messages.
    fn logs(&self) -> String {
        fn tail(name: &str, text: &str) -> String {
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(40);
            format!("\n--- {name} ---\n{}", lines[from..].join("\n"))
        }
        let mut out = tail("offerd", &self.offerd.log_text());
        for (i, a) in self.agents.iter().enumerate() {
            out.push_str(&tail(&format!("taskrun h{}", i + 1), &a.log_text()));
        }
        out.push_str(&tail(
            "lbconf",
            &std::fs::read_to_string(&self.lb_log).unwrap_or_default(),
        ));
        out.push_str(&tail(
            "haproxy",
            &std::fs::read_to_string(self.tmp.path().join("haproxy.log")).unwrap_or_default(),
        ));
        out.push_str(&tail("dnsbridge", &self.dns.log_text()));
        out.push_str(&tail("catalogd", &self.catalog.log_text()));
        out
    }

    /// Waits (up to [`DEADLINE`]) for `check` to return Some, panicking with the logs otherwise.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let start = Instant::now();
        let deadline = start + DEADLINE;
        loop {
            if let Some(v) = check().await {
                if start.elapsed() > Duration::from_secs(5) {
                    eprintln!("note: waited {:.1?} for {what}", start.elapsed());
                }
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what}{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn post_app(&self, app: &Value) {
        let r = self
            .offerd
            .http
            .send("POST", "/v2/apps", Some(app.to_string().into_bytes()))
            .await;
        assert_eq!(r.status, 201, "POST /v2/apps: {}", r.text());
    }

    /// The app's active tasks.
    async fn tasks(&self) -> Vec<Value> {
        let r = self.offerd.http.get(&format!("/v2/apps{APP}/tasks")).await;
        r.value()["tasks"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the app has exactly 3 tasks, all running and healthy, only on `hosts`
    /// (node names), and no deployment; returns them sorted by host.
    async fn wait_settled(&self, hosts: &[&str]) -> Vec<Value> {
        self.wait_for(
            &format!("3 healthy running tasks on {hosts:?} and no deployment"),
            || async {
                let mut tasks = self.tasks().await;
                let healthy = tasks.len() == 3
                    && tasks.iter().all(|t| {
                        t["state"] == "TASK_RUNNING"
                            && t["healthCheckResults"][0]["alive"] == true
                            && hosts.iter().any(|h| t["slaveId"] == *h)
                    });
                let deps = self.offerd.http.get("/v2/deployments").await.value();
                let busy = deps.as_array().is_none_or(|d| !d.is_empty());
                tasks.sort_by_key(|t| t["host"].as_str().unwrap_or_default().to_string());
                (healthy && !busy).then_some(tasks)
            },
        )
        .await
    }

    /// `dig SRV _web-many._tcp.service.consul` against dnsbridge: (address, port) per answer,
    /// the address being the target's A record in the additional section.
    async fn srv(&self) -> Vec<(String, u16)> {
        let port = self.dns.port;
        let d = tokio::task::spawn_blocking(move || dig(port, &["SRV", SRV_NAME]))
            .await
            .expect("dig (see its panic above)");
        let glue: BTreeMap<String, String> = d
            .additional
            .iter()
            .filter(|r| r.rtype == "A")
            .map(|r| (r.name.clone(), r.data.clone()))
            .collect();
        let mut out: Vec<(String, u16)> = d
            .answer
            .iter()
            .filter(|r| r.rtype == "SRV")
            .map(|r| {
                let f: Vec<&str> = r.data.split_whitespace().collect();
                let (Some(port), Some(target)) = (f.get(2), f.get(3)) else {
                    panic!("unexpected SRV data {:?}:\n{}", r.data, d.out);
                };
                let addr = glue
                    .get(&target.to_ascii_lowercase())
                    .unwrap_or_else(|| panic!("no A record for SRV target {target}:\n{}", d.out))
                    .clone();
                (addr, port.parse().unwrap_or(0))
            })
            .collect();
        out.sort();
        out
    }

    /// Waits until DNS answers exactly the tasks' (host, port) pairs.
    async fn wait_dns_matches(&self, tasks: &[Value]) -> Vec<(String, u16)> {
        let mut want: Vec<(String, u16)> = tasks
            .iter()
            .map(|t| {
                (
                    t["host"].as_str().unwrap_or_default().to_string(),
                    t["ports"][0].as_u64().unwrap_or(0) as u16,
                )
            })
            .collect();
        want.sort();
        self.wait_for(&format!("SRV {SRV_NAME} to answer {want:?}"), || async {
            let got = self.srv().await;
            (got == want).then_some(got)
        })
        .await
    }

    /// The addresses of HAProxy's servers in service (from the runtime API), and the answer.
    fn haproxy_servers(&self) -> (BTreeSet<String>, String) {
        let mut text = String::new();
        let asked = UnixStream::connect(&self.admin_sock).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"show servers state\n")?;
            s.read_to_string(&mut text)
        });
        if let Err(e) = asked {
            return (BTreeSet::new(), format!("runtime API: {e}"));
        }
        // Columns: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ...
        // A server is in maintenance when its admin state has a MAINT flag (forced 0x01,
        // inherited 0x02, resolution 0x20); 0x04 only records that the config disabled it.
        let routed = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (addr, admin) = (f.get(4)?, f.get(6)?.parse::<u32>().ok()?);
                (admin & 0x23 == 0).then(|| addr.to_string())
            })
            .collect();
        (routed, text)
    }

    /// Waits until HAProxy routes to exactly the hosts `addrs`.
    async fn wait_haproxy_routes(&self, addrs: &[String]) {
        let want: BTreeSet<String> = addrs.iter().cloned().collect();
        let last = std::sync::Mutex::new(String::new());
        let start = Instant::now();
        let deadline = start + DEADLINE;
        loop {
            let (got, raw) = self.haproxy_servers();
            if got == want {
                if start.elapsed() > Duration::from_secs(5) {
                    eprintln!(
                        "note: waited {:.1?} for HAProxy to route to {want:?}",
                        start.elapsed()
                    );
                }
                return;
            }
            // The last answer, replaced whole: a panic cannot leave it half-written.
            *last.lock().unwrap_or_else(|p| p.into_inner()) = raw;
            if Instant::now() > deadline {
                panic!(
                    "timed out after {DEADLINE:?} waiting for HAProxy to route to {want:?} only; \
                     last `show servers state`:\n{}{}",
                    last.lock().unwrap_or_else(|p| p.into_inner()),
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Live processes of the app's HTTP server per host (h1, h2, h3).
    fn servers_per_host(&self) -> Vec<usize> {
        (1..=self.net.hosts.len())
            .map(|i| {
                self.net
                    .processes(i)
                    .iter()
                    .filter(|(_, args)| is_server(args))
                    .count()
            })
            .collect()
    }

    /// Live task processes recorded in the hosts' work dirs (task.json pids).
    fn live_task_pids(&self) -> Vec<i32> {
        self.work_dirs
            .iter()
            .flat_map(|d| std::fs::read_dir(d.join("tasks")).into_iter().flatten())
            .flatten()
            .filter_map(|e| task_pid(&e.path()))
            .filter(|p| alive(*p))
            .collect()
    }
}

/// The pid in a task sandbox's task.json.
fn task_pid(sandbox: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(sandbox.join("task.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

fn lb_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("building the HTTP client")
}

/// One request through HAProxy for `web.many`: the body (a host address), or what went wrong.
async fn lb_get(client: &reqwest::Client, port: u16) -> Result<String, String> {
    let r = client
        .get(format!("http://127.0.0.1:{port}/"))
        .header("Host", VHOST)
        .send()
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = r.status().as_u16();
    let body = r.text().await.map_err(|e| format!("body: {e}"))?;
    if status != 200 {
        return Err(format!("status {status}: {}", body.trim()));
    }
    Ok(body.trim().to_string())
}

/// `n` requests through HAProxy: the bodies seen and the failures.
async fn batch(port: u16, n: usize) -> (BTreeSet<String>, Vec<String>) {
    let client = lb_client();
    let (mut seen, mut failed) = (BTreeSet::new(), Vec::new());
    for _ in 0..n {
        match lb_get(&client, port).await {
            Ok(body) => {
                seen.insert(body);
            }
            Err(e) => failed.push(e),
        }
    }
    (seen, failed)
}

/// One request of the load: when it started, how long it took, what came back.
struct Sample {
    start: Instant,
    took: Duration,
    outcome: Result<String, String>,
}

/// [`LOAD_WORKERS`] loops sending requests through HAProxy, each one after the other, until
/// stopped; every request is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    /// Requests answered so far, by all loops.
    done: Arc<std::sync::atomic::AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers = (0..LOAD_WORKERS)
            .map(|_| {
                let stop = stop.clone();
                let done = done.clone();
                tokio::spawn(async move {
                    let client = lb_client();
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let outcome = lb_get(&client, port).await;
                        samples.push(Sample {
                            start,
                            took: start.elapsed(),
                            outcome,
                        });
                        done.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    samples
                })
            })
            .collect();
        Load {
            stop,
            done,
            workers,
        }
    }

    /// How many requests have been answered (well or not) so far.
    fn answered(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Stops the loops; every request, in start order.
    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.await.expect("a load loop panicked"));
        }
        all.sort_by_key(|s| s.start);
        all
    }
}

/// Requests started in `[from, to)`: "N ok, M failed, slowest T", and the first failures.
fn phase(samples: &[Sample], from: Instant, to: Instant) -> (usize, String) {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.start >= from && s.start < to)
        .collect();
    let failed: Vec<&str> = mine
        .iter()
        .filter_map(|s| s.outcome.as_ref().err().map(String::as_str))
        .collect();
    let slowest = mine.iter().map(|s| s.took).max().unwrap_or_default();
    let text = format!(
        "{} ok, {} failed, slowest {slowest:.2?}{}",
        mine.len() - failed.len(),
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" (first failures: {:?})", &failed[..failed.len().min(3)])
        }
    );
    (failed.len(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn many_hosts_one_task_per_host_in_dns_and_haproxy() {
    let Some(site) = Site::start().await else {
        return;
    };
    site.post_app(&web_app(&["hostname", "UNIQUE"])).await;
    let tasks = site.wait_settled(&["h1", "h2", "h3"]).await;

    // One task per host, each at its host's address, each a server process in its namespace.
    let hosts: Vec<&str> = tasks.iter().filter_map(|t| t["slaveId"].as_str()).collect();
    assert_eq!(hosts, ["h1", "h2", "h3"], "{tasks:?}");
    let addrs: Vec<String> = (1..=3).map(|i| site.addr(i)).collect();
    let task_hosts: Vec<&str> = tasks.iter().filter_map(|t| t["host"].as_str()).collect();
    assert_eq!(task_hosts, addrs);
    assert_eq!(site.servers_per_host(), [1, 1, 1]);

    // DNS: three SRV targets, the three hosts' addresses and the tasks' ports.
    let srv = site.wait_dns_matches(&tasks).await;
    let srv_addrs: Vec<&str> = srv.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(srv_addrs, addrs);

    // HAProxy, by host name: every host answers.
    site.wait_haproxy_routes(&addrs).await;
    let want: BTreeSet<String> = addrs.iter().cloned().collect();
    site.wait_for("HAProxy to serve web.many from all three hosts", || async {
        let (seen, failed) = batch(site.http_port, 12).await;
        (seen == want && failed.is_empty()).then_some(())
    })
    .await;
    // Another host name is not routed to the app.
    let other = lb_client()
        .get(format!("http://127.0.0.1:{}/", site.http_port))
        .header("Host", "other.many")
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(
        matches!(other, Ok(s) if s != 200),
        "other.many must not reach the app: {other:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn many_hosts_partitioned_host_is_replaced_and_traffic_moves() {
    let Some(site) = Site::start().await else {
        return;
    };
    // GROUP_BY spreads the three tasks one per host, and lets the replacement of a lost one
    // land on a host that already runs one.
    site.post_app(&web_app(&["hostname", "GROUP_BY"])).await;
    let tasks = site.wait_settled(&["h1", "h2", "h3"]).await;
    let hosts: Vec<&str> = tasks.iter().filter_map(|t| t["slaveId"].as_str()).collect();
    assert_eq!(
        hosts,
        ["h1", "h2", "h3"],
        "GROUP_BY did not spread: {tasks:?}"
    );
    let (a1, a2, a3) = (site.addr(1), site.addr(2), site.addr(3));
    site.wait_dns_matches(&tasks).await;
    site.wait_haproxy_routes(&[a1.clone(), a2.clone(), a3.clone()])
        .await;
    let lost_id = tasks[1]["id"].as_str().expect("task id").to_string();
    let lost_pid = task_pid(&site.work_dirs[1].join("tasks").join(&lost_id))
        .expect("the h2 task's pid in its task.json");
    assert!(alive(lost_pid));

    // Clients keep sending requests through HAProxy the whole time.
    let load_at = Instant::now();
    let load = Load::start(site.http_port);
    // A baseline of traffic before the cut.
    site.wait_for("100 requests through HAProxy before the cut", || async {
        (load.answered() >= 100).then_some(())
    })
    .await;

    let cut_at = Instant::now();
    site.net.cut(2);

    // offerd: h2 lost, its task TASK_LOST and replaced on h1 or h3.
    site.wait_for("offerd to mark h2 lost", || async {
        let agents = site.offerd.http.get("/v1/agents").await.value();
        agents
            .as_array()?
            .iter()
            .any(|a| a["node"] == "h2" && a["state"] == "lost")
            .then_some(())
    })
    .await;
    let lost_at = cut_at.elapsed();
    let app = site
        .offerd
        .http
        .get(&format!("/v2/apps{APP}"))
        .await
        .value();
    let failure = &app["app"]["lastTaskFailure"];
    assert_eq!(failure["taskId"], lost_id.as_str(), "{failure}");
    assert_eq!(failure["state"], "TASK_LOST", "{failure}");
    let after = site.wait_settled(&["h1", "h3"]).await;
    assert!(
        after.iter().all(|t| t["id"] != lost_id.as_str()),
        "{after:?}"
    );
    let replaced_at = cut_at.elapsed();

    // DNS and HAProxy stop sending traffic to h2: only the replacement and the survivors.
    site.wait_dns_matches(&after).await;
    let dns_at = cut_at.elapsed();
    site.wait_haproxy_routes(&[a1.clone(), a3.clone()]).await;
    let routed_at = cut_at.elapsed();
    let routed_out = Instant::now();

    // From now on, every request succeeds, from h1 and h3.
    let (seen, failed) = batch(site.http_port, 30).await;
    assert!(
        failed.is_empty(),
        "failures after the replacement: {failed:?}"
    );
    assert_eq!(seen, BTreeSet::from([a1.clone(), a3.clone()]));

    // h2 comes back: its agent learns the task is no longer desired and kills it.
    let back_at = Instant::now();
    site.net.reconnect(2);
    site.wait_for("the stale task on h2 to be killed", || async {
        (!alive(lost_pid) && site.servers_per_host()[1] == 0).then_some(())
    })
    .await;
    site.wait_for("offerd to see h2 active again", || async {
        let agents = site.offerd.http.get("/v1/agents").await.value();
        agents
            .as_array()?
            .iter()
            .any(|a| a["node"] == "h2" && a["state"] == "active" && a["tasks"] == 0)
            .then_some(())
    })
    .await;
    let killed_at = back_at.elapsed();
    // Nothing else changed: the same three tasks, DNS and HAProxy still without h2.
    let final_tasks = site.wait_settled(&["h1", "h3"]).await;
    let ids = |ts: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = ts
            .iter()
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&final_tasks), ids(&after));
    site.wait_dns_matches(&final_tasks).await;
    site.wait_haproxy_routes(&[a1.clone(), a3.clone()]).await;
    let (seen, failed) = batch(site.http_port, 30).await;
    assert!(failed.is_empty(), "failures after h2 returned: {failed:?}");
    assert_eq!(seen, BTreeSet::from([a1, a3]));

    let end = Instant::now();
    let samples = load.finish().await;
    let (failed_before, before) = phase(&samples, load_at, cut_at);
    let (_, transition) = phase(&samples, cut_at, routed_out);
    let (_, replaced) = phase(&samples, routed_out, back_at);
    let (_, returned) = phase(&samples, back_at, end);
    eprintln!(
        "partition figures ({LOAD_WORKERS} client loops through HAProxy): h2 lost {lost_at:.2?} \
         after the cut, replacement healthy after {replaced_at:.2?}, out of DNS after \
         {dns_at:.2?}, out of HAProxy after {routed_at:.2?}; requests started before the cut: \
         {before}; during the transition: {transition}; after it: {replaced}; while h2 \
         returned: {returned} (its stale task killed {killed_at:.2?} after the reconnect)"
    );
    assert_eq!(failed_before, 0, "failures before the partition: {before}");
}

#[tokio::test(flavor = "multi_thread")]
async fn many_hosts_killed_host_is_replaced_across_offerd_restarts() {
    let Some(mut site) = Site::start().await else {
        return;
    };
    site.post_app(&web_app(&["hostname", "GROUP_BY"])).await;
    let tasks = site.wait_settled(&["h1", "h2", "h3"]).await;
    let hosts: Vec<&str> = tasks.iter().filter_map(|t| t["slaveId"].as_str()).collect();
    assert_eq!(
        hosts,
        ["h1", "h2", "h3"],
        "GROUP_BY did not spread: {tasks:?}"
    );
    let (a1, a2) = (site.addr(1), site.addr(2));
    site.wait_dns_matches(&tasks).await;
    let survivors: BTreeSet<String> = tasks[..2]
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();

    // h3 dies outright: its agent and its task, kill -9.
    site.agents[2].kill9();
    reap_tasks(&site.work_dirs[2]);
    site.wait_for("h3's task process to be gone", || async {
        (site.servers_per_host()[2] == 0).then_some(())
    })
    .await;
    // offerd dies too, before it noticed, and comes back on the same data dir.
    site.offerd.kill9();
    site.offerd.restart().await;

    // h3 is lost after the restart as well; its task is replaced on h1/h2, the others kept.
    let after = site.wait_settled(&["h1", "h2"]).await;
    let kept: BTreeSet<String> = after
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .filter(|id| survivors.contains(id))
        .collect();
    assert_eq!(
        kept, survivors,
        "the survivors' tasks were replaced: {after:?}"
    );
    let agents = site.offerd.http.get("/v1/agents").await.value();
    assert!(
        agents
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["node"] == "h3" && a["state"] == "lost")),
        "{agents}"
    );
    site.wait_dns_matches(&after).await;
    site.wait_haproxy_routes(&[a1.clone(), a2.clone()]).await;
    let (seen, failed) = batch(site.http_port, 20).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(seen, BTreeSet::from([a1.clone(), a2.clone()]));
    // Nothing runs twice: exactly three server processes, on h1 and h2, the ones offerd knows.
    let per_host = site.servers_per_host();
    assert_eq!(per_host.iter().sum::<usize>(), 3, "{per_host:?}");
    assert_eq!(per_host[2], 0);
    assert_eq!(site.live_task_pids().len(), 3);
    assert_eq!(site.tasks().await.len(), 3);

    // A rolling restart, with offerd killed in the middle of it: the deployment finishes,
    // with three new tasks and still no task running twice.
    let r = site
        .offerd
        .http
        .send("POST", &format!("/v2/apps{APP}/restart"), None)
        .await;
    assert_eq!(r.status, 200, "restart: {}", r.text());
    let deployments = site.offerd.http.get("/v2/deployments").await.value();
    assert!(
        deployments.as_array().is_some_and(|d| d.len() == 1),
        "the rolling restart is under way: {deployments}"
    );
    site.offerd.kill9();
    site.offerd.restart().await;
    let restarted = site.wait_settled(&["h1", "h2"]).await;
    assert!(
        restarted
            .iter()
            .all(|t| after.iter().all(|old| old["id"] != t["id"])),
        "the restart left old tasks: {restarted:?}"
    );
    // The old tasks' processes end after their drain; then exactly three remain, on h1 and h2.
    let per_host = site
        .wait_for("exactly three task processes", || async {
            let per_host = site.servers_per_host();
            (per_host.iter().sum::<usize>() == 3 && site.live_task_pids().len() == 3)
                .then_some(per_host)
        })
        .await;
    assert_eq!(per_host[2], 0);
    site.wait_dns_matches(&restarted).await;
    site.wait_haproxy_routes(&[a1.clone(), a2.clone()]).await;
    let (seen, failed) = batch(site.http_port, 20).await;
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(seen, BTreeSet::from([a1, a2]));
}

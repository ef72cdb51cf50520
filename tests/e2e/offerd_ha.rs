//! offerd replicas on a real etcd cluster (issue 16): two `offerd serve --etcd` processes on a
//! three-member etcd, real taskrun agents given both offerd addresses. One replica leads
//! (`/v2/leader` names it on both), the standby forwards the API and the agent protocol to it,
//! a successor takes over within the lease TTL plus 2 s when the leader is killed mid-deployment
//! (no task lost, launched twice or restarted), and a leader that was paused past its lease
//! finds its writes refused by etcd and steps down without launching anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_etcd::testing::EtcdCluster;
use cairn_tests::cluster::reap_tasks;
use cairn_tests::daemon::{ANY_PORT, Daemon};
use cairn_tests::netns::Netns;
use cairn_tests::{Catalogd, Http, Resp, bin, free_port, read_stream_until, wait_for};
use serde_json::{Value, json};

use crate::offerd_jobs as jobs_time;

/// Lease TTL of the replicas: a dead leader is replaced within it plus 2 s.
const LEASE_TTL: Duration = Duration::from_secs(2);
/// The takeover bound the issue sets.
const TAKEOVER_BOUND: Duration = Duration::from_secs(4);

/// etcd, a catalog, offerd replicas and taskrun agents; every process and task is killed on drop.
struct Ha {
    etcd: EtcdCluster,
    catalog_url: String,
    offerds: Vec<Daemon>,
    agents: Vec<Daemon>,
    agent_dirs: Vec<PathBuf>,
    tmp: tempfile::TempDir,
    /// What keeps the catalog running (a [`Catalogd`] on loopback, or a [`Daemon`] on the
    /// namespaces' bridge).
    _catalog: Box<dyn std::any::Any + Send>,
    /// The hosts of a partition test, torn down after every process ([`Netns`]).
    net: Option<Netns>,
    /// The relays from the bridge to etcd's loopback ports, aborted on drop.
    relays: Vec<tokio::task::JoinHandle<()>>,
}

impl Ha {
    /// `replicas` offerd replicas on a fresh three-member etcd; `None` without etcd (outside
    /// CI, where a missing etcd fails instead).
    async fn start(replicas: usize, agent_timeout: &str) -> Option<Ha> {
        let etcd = EtcdCluster::start(3).await?;
        let urls = etcd.endpoints();
        let catalog = Catalogd::start().await;
        let tmp = tempfile::tempdir().expect("temp dir");
        let mut offerds = Vec::new();
        for i in 0..replicas {
            let args: Vec<String> = vec![
                "serve".into(),
                "--http-addr".into(),
                ANY_PORT.into(),
                "--data-dir".into(),
                tmp.path().join(format!("offerd-{i}")).display().to_string(),
                "--agent-timeout".into(),
                agent_timeout.into(),
                "--catalog".into(),
                catalog.url.clone(),
                "--etcd".into(),
                urls.clone(),
                "--etcd-lease-ttl".into(),
                format!("{}s", LEASE_TTL.as_secs()),
            ];
            offerds.push(
                Daemon::start_any_port(
                    "offerd",
                    args,
                    "/ping",
                    tmp.path().join(format!("offerd-{i}.log")),
                )
                .await,
            );
        }
        Some(Ha {
            etcd,
            catalog_url: catalog.url.clone(),
            offerds,
            agents: Vec::new(),
            agent_dirs: Vec::new(),
            tmp,
            _catalog: Box::new(catalog),
            net: None,
            relays: Vec::new(),
        })
    }

    /// Two offerd replicas as two machines: replica 0 on a host in a network namespace (h1),
    /// elected first, and replica 1 in the root namespace on the bridge's address, with etcd,
    /// the catalog and the agents (etcd through relays on the bridge's address, since its
    /// members listen on loopback). Cutting h1 off parts the leader from etcd, the agents and
    /// the other replica. (Both replicas cannot be in namespaces: hosts reach each other only
    /// through the root namespace's forwarding, which a Docker host's firewall drops.) `None`
    /// without etcd or namespaces (outside CI).
    async fn start_on_hosts(agent_timeout: &str) -> Option<Ha> {
        let etcd = EtcdCluster::start(3).await?;
        let net = Netns::create(1)?;
        let gw = net.gateway;
        let mut relays = Vec::new();
        let mut urls = Vec::new();
        for member in etcd.client_urls() {
            let target = (
                member.host_str().expect("etcd host").to_string(),
                member.port().expect("etcd port"),
            );
            let listener = tokio::net::TcpListener::bind((gw, 0))
                .await
                .expect("relay listener");
            urls.push(format!(
                "http://{}",
                listener.local_addr().expect("relay address")
            ));
            relays.push(tokio::spawn(relay(listener, target)));
        }
        let urls = urls.join(",");
        let tmp = tempfile::tempdir().expect("temp dir");
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
        let serve_args = |i: usize, addr: &str| -> Vec<String> {
            vec![
                "serve".into(),
                "--http-addr".into(),
                addr.to_string(),
                "--advertise-addr".into(),
                addr.to_string(),
                "--data-dir".into(),
                tmp.path().join(format!("offerd-{i}")).display().to_string(),
                "--agent-timeout".into(),
                agent_timeout.into(),
                "--catalog".into(),
                catalog_url.clone(),
                "--etcd".into(),
                urls.clone(),
                "--etcd-lease-ttl".into(),
                format!("{}s", LEASE_TTL.as_secs()),
            ]
        };
        let on_host = format!("{}:5050", net.host(1).addr);
        let mut args = net.exec_args(1, &bin("offerd"));
        args.extend(serve_args(0, &on_host));
        let root = format!("{gw}:{}", free_port());
        let root_args = serve_args(1, &root);
        let first = Daemon::start_program(
            "offerd",
            PathBuf::from("ip"),
            args,
            format!("http://{on_host}"),
            "/ping",
            tmp.path().join("offerd-0.log"),
        )
        .await;
        let mut ha = Ha {
            etcd,
            catalog_url,
            offerds: vec![first],
            agents: Vec::new(),
            agent_dirs: Vec::new(),
            _catalog: Box::new(catalog),
            net: None,
            relays,
            tmp,
        };
        ha.leader(&[0], Duration::from_secs(30)).await;
        let second = Daemon::start(
            "offerd",
            root_args,
            format!("http://{root}"),
            "/ping",
            ha.tmp.path().join("offerd-1.log"),
        )
        .await;
        ha.offerds.push(second);
        ha.net = Some(net);
        Some(ha)
    }

    fn http(&self, i: usize) -> &Http {
        &self.offerds[i].http
    }

    /// `host:port` of replica `i`: its name in the election.
    fn name(&self, i: usize) -> String {
        self.offerds[i]
            .url
            .trim_start_matches("http://")
            .to_string()
    }

    /// Starts agent `node-{i}` (`cpus` of them) talking to the replicas `order` (in that order).
    async fn add_agent(&mut self, i: usize, cpus: f64, order: &[usize]) {
        let dir = self.tmp.path().join(format!("agent-{i}"));
        let offerds = order
            .iter()
            .map(|&r| self.offerds[r].url.clone())
            .collect::<Vec<_>>()
            .join(",");
        let args: Vec<String> = vec![
            "agent".into(),
            "--offerd".into(),
            offerds,
            "--catalog".into(),
            self.catalog_url.clone(),
            "--node".into(),
            format!("node-{i}"),
            "--address".into(),
            "127.0.0.1".into(),
            "--http-addr".into(),
            ANY_PORT.into(),
            "--work-dir".into(),
            dir.display().to_string(),
            "--resources".into(),
            format!("cpus:{cpus};mem:1024;disk:1000"),
            "--allow-root-tasks".into(),
        ];
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

    /// Every process's log, for a failure's message.
    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, o) in self.offerds.iter().enumerate() {
            out.push_str(&format!("--- offerd {i}\n{}\n", o.log_text()));
        }
        for (i, a) in self.agents.iter().enumerate() {
            out.push_str(&format!("--- taskrun node-{i}\n{}\n", a.log_text()));
        }
        out
    }

    /// Waits until every replica of `live` names the same leader in `/v2/leader` and that
    /// leader serves the API (`/v2/apps` answers 200, not 503); its index.
    async fn leader(&self, live: &[usize], within: Duration) -> usize {
        wait_for(
            "the replicas to agree on a serving leader",
            within,
            || self.logs(),
            async || self.agreed_leader(live).await,
        )
        .await
    }

    async fn agreed_leader(&self, live: &[usize]) -> Option<usize> {
        let mut names = Vec::new();
        for &i in live {
            let r = self
                .http(i)
                .try_send("GET", "/v2/leader", None)
                .await
                .ok()?;
            if r.status != 200 {
                return None;
            }
            names.push(r.value()["leader"].as_str()?.to_string());
        }
        let first = names.first()?.clone();
        if names.iter().any(|n| *n != first) {
            return None;
        }
        let leader = live.iter().copied().find(|&i| self.name(i) == first)?;
        let apps = self
            .http(leader)
            .try_send("GET", "/v2/apps", None)
            .await
            .ok()?;
        (apps.status == 200).then_some(leader)
    }

    /// The app's tasks as replica `via` answers them: id → (state, startedAt).
    async fn tasks(&self, via: usize, app: &str) -> BTreeMap<String, (String, String)> {
        let r = self.http(via).get(&format!("/v2/apps{app}/tasks")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.value()["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["id"].as_str().unwrap_or_default().to_string(),
                    (
                        t["state"].as_str().unwrap_or_default().to_string(),
                        t["startedAt"].as_str().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect()
    }

    /// The app's running tasks (id → startedAt) once exactly `n` run, through replica `via`;
    /// with `settled`, also once no deployment is left.
    async fn running(
        &self,
        via: usize,
        app: &str,
        n: usize,
        settled: bool,
    ) -> BTreeMap<String, String> {
        wait_for(
            &format!("{app} to have {n} running tasks (settled: {settled})"),
            Duration::from_secs(60),
            || self.logs(),
            async || {
                let tasks = self.tasks(via, app).await;
                let running: BTreeMap<String, String> = tasks
                    .iter()
                    .filter(|(_, (state, _))| state == "TASK_RUNNING")
                    .map(|(id, (_, started))| (id.clone(), started.clone()))
                    .collect();
                if running.len() != n || tasks.len() != n {
                    return None;
                }
                if settled {
                    let deployments = self.http(via).get("/v2/deployments").await.value();
                    if deployments.as_array().is_none_or(|d| !d.is_empty()) {
                        return None;
                    }
                }
                Some(running)
            },
        )
        .await
    }

    /// Every sandbox the agents ever made for tasks of `app` (a task launched even once has
    /// one, and it stays while the test runs).
    fn sandboxes(&self, app: &str) -> Vec<String> {
        let prefix = format!("{}.", app.trim_start_matches('/').replace('/', "_"));
        let mut out = Vec::new();
        for d in &self.agent_dirs {
            for e in std::fs::read_dir(d.join("tasks"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    out.push(name);
                }
            }
        }
        out.sort();
        out
    }

    /// The task ids every agent runs now, as the agents list them (each agent's own view).
    async fn agents_tasks(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for a in &self.agents {
            let r = a.http.get("/v1/tasks").await;
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.value();
            let list = v
                .as_array()
                .cloned()
                .or_else(|| v["tasks"].as_array().cloned());
            for t in list.into_iter().flatten() {
                if t["state"] == "TASK_RUNNING" {
                    ids.push(t["id"].as_str().unwrap_or_default().to_string());
                }
            }
        }
        ids.sort();
        ids
    }

    /// Waits for replica `survivor` to lead and serve after the leader stopped at `since`;
    /// how long that took.
    async fn takeover(&self, survivor: usize, since: Instant) -> Duration {
        let leader = self.leader(&[survivor], Duration::from_secs(30)).await;
        assert_eq!(leader, survivor);
        since.elapsed()
    }
}

impl Drop for Ha {
    fn drop(&mut self) {
        for a in &mut self.agents {
            a.kill9();
        }
        for o in &mut self.offerds {
            // A SIGSTOPped replica is killed all the same.
            o.kill9();
        }
        for d in &self.agent_dirs {
            reap_tasks(d);
        }
        for r in &self.relays {
            r.abort();
        }
        self.etcd.stop();
        // Then `net` is dropped: whatever still runs in the namespaces is killed with them.
    }
}

/// Relays every connection accepted on `listener` to `target` (a TCP proxy), until aborted.
async fn relay(listener: tokio::net::TcpListener, target: (String, u16)) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                // Ends when either side closes (or the test's runtime does).
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The first line of `log` containing `what`, and its timestamp (the RFC 3339 time tracing
/// starts each line with, fixed width: comparable as text).
fn first_logged(log: &str, what: &str) -> Option<(String, String)> {
    let line = log.lines().find(|l| l.contains(what))?;
    let at = line.split_whitespace().next()?.to_string();
    Some((at, line.to_string()))
}

fn app(id: &str, instances: usize, cpus: f64) -> Value {
    json!({
        "id": id,
        "cmd": "sleep 600",
        "cpus": cpus,
        "mem": 16,
        "instances": instances,
        "portDefinitions": [],
    })
}

fn post(http: &Http, body: &Value) -> impl std::future::Future<Output = Resp> {
    http.send("POST", "/v2/apps", Some(body.to_string().into_bytes()))
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a process this test started.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standby_names_the_leader_and_forwards_the_api_and_the_agents_to_it() {
    let Some(mut ha) = Ha::start(2, "15s").await else {
        return;
    };
    let leader = ha.leader(&[0, 1], Duration::from_secs(30)).await;
    let standby = 1 - leader;
    // Both name it, and each answers /ping and /metrics itself.
    for i in [0, 1] {
        let r = ha.http(i).get("/v2/leader").await;
        assert_eq!(r.value(), json!({ "leader": ha.name(leader) }));
        assert_eq!(ha.http(i).get("/ping").await.text(), "pong");
        let metrics = ha.http(i).get("/metrics").await.text();
        let expected = if i == leader { 1 } else { 0 };
        assert!(
            metrics.contains(&format!("offerd_leader {expected}")),
            "replica {i}: {metrics}"
        );
    }

    // An agent given both addresses, the standby's first: registration, polls and status
    // reports all go through the standby.
    ha.add_agent(0, 4.0, &[standby, leader]).await;
    wait_for(
        "node-0 to register through the standby",
        Duration::from_secs(30),
        || ha.logs(),
        async || {
            let agents = ha.http(standby).get("/v1/agents").await.value();
            agents
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["node"] == "node-0"))
                .then_some(())
        },
    )
    .await;

    // The leader's event stream, through the standby.
    let mut events = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("{}/v2/events", ha.offerds[standby].url))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.status(), 200);
    // An app POSTed to the standby is created by the leader; the answer says who leads.
    let r = post(ha.http(standby), &app("/ha/web", 2, 0.1)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("x-marathon-leader"),
        Some(format!("http://{}", ha.name(leader)).as_str())
    );
    assert!(
        r.value()["deployments"][0]["id"].is_string(),
        "{}",
        r.text()
    );
    let running = ha.running(standby, "/ha/web", 2, true).await;
    assert_eq!(ha.running(leader, "/ha/web", 2, true).await, running);
    read_stream_until(&mut events, 30, |t| {
        [
            "event_stream_attached",
            "api_post_event",
            "deployment_success",
        ]
        .iter()
        .all(|w| t.contains(w))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ha.logs()));
    let ids: Vec<String> = running.keys().cloned().collect();
    assert_eq!(ha.agents_tasks().await, ids, "the agent runs exactly them");
    // The leader answers its own requests with its name too; errors pass through unchanged.
    let direct = ha.http(leader).get("/v2/apps/ha/web").await;
    assert_eq!(
        direct.header("x-marathon-leader"),
        Some(format!("http://{}", ha.name(leader)).as_str())
    );
    let missing = ha.http(standby).get("/v2/apps/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.value()["message"], "App '/nope' does not exist");
    // The agent's traffic went through the standby.
    assert!(
        ha.offerds[leader].log_text().contains("agent registered"),
        "{}",
        ha.logs()
    );

    // DELETE /v2/leader through the standby: the leader abdicates, the standby takes over,
    // and the app's tasks keep running, untouched.
    let r = ha.http(standby).delete("/v2/leader").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.value()["message"], "Leadership abdicated");
    let new = wait_for(
        "the standby to lead after the abdication",
        Duration::from_secs(15),
        || ha.logs(),
        async || {
            let l = ha.agreed_leader(&[0, 1]).await?;
            (l == standby).then_some(l)
        },
    )
    .await;
    assert_eq!(ha.running(new, "/ha/web", 2, true).await, running);
    assert_eq!(ha.agents_tasks().await, ids);
    // The stream forwarded from the old leader ended with its term (clients reconnect).
    let ended = read_stream_until(&mut events, 30, |_| false).await;
    assert!(
        ended.as_ref().is_err_and(|e| !e.starts_with("timed out")),
        "{ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_mid_deployment_and_nothing_is_lost_duplicated_or_restarted() {
    let Some(mut ha) = Ha::start(2, "15s").await else {
        return;
    };
    let leader = ha.leader(&[0, 1], Duration::from_secs(30)).await;
    let survivor = 1 - leader;
    // Room for 4 of the 6 instances: the deployment stays in flight with 2 queued.
    ha.add_agent(0, 1.0, &[0, 1]).await;
    wait_for(
        "node-0 to register",
        Duration::from_secs(30),
        || ha.logs(),
        async || {
            let agents = ha.http(leader).get("/v1/agents").await.value();
            (agents.as_array().map_or(0, Vec::len) == 1).then_some(())
        },
    )
    .await;
    let r = post(ha.http(survivor), &app("/ha/scale", 6, 0.25)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let before = ha.running(leader, "/ha/scale", 4, false).await;
    let deployments = ha.http(leader).get("/v2/deployments").await.value();
    assert_eq!(
        deployments.as_array().map(Vec::len),
        Some(1),
        "mid-deployment: {deployments}"
    );

    let killed = Instant::now();
    ha.offerds[leader].kill9();
    // A request reaching the standby while the dead leader's lease still runs is held until
    // the election names another leader, then answered 503 (retry now), not 502 at once: the
    // agents and clients retry when there is a leader instead of backing off further.
    let held = ha
        .http(survivor)
        .try_send("GET", "/v2/apps", None)
        .await
        .expect("the standby answers");
    assert_eq!(held.status, 503, "{}\n{}", held.text(), ha.logs());
    let names = ha.http(survivor).get("/v2/leader").await.value();
    assert_eq!(
        names["leader"].as_str(),
        Some(ha.name(survivor).as_str()),
        "answered before the election named the survivor"
    );
    let took = ha.takeover(survivor, killed).await;
    eprintln!("offerd takeover after kill -9 of the leader: {took:?}");
    assert!(
        took <= TAKEOVER_BOUND,
        "took over in {took:?}, more than TTL {LEASE_TTL:?} + 2s\n{}",
        ha.logs()
    );
    // The same four tasks, started when they were: nothing restarted, the deployment goes on.
    let tasks = ha.tasks(survivor, "/ha/scale").await;
    let still: BTreeMap<String, String> = tasks
        .iter()
        .map(|(id, (_, started))| (id.clone(), started.clone()))
        .collect();
    assert_eq!(still, before, "{}", ha.logs());
    let deployments = ha.http(survivor).get("/v2/deployments").await.value();
    assert_eq!(
        deployments.as_array().map(Vec::len),
        Some(1),
        "{deployments}"
    );

    // Room for the rest: a second agent registers with the new leader and the deployment
    // completes.
    ha.add_agent(1, 1.0, &[leader, survivor]).await;
    let after = ha.running(survivor, "/ha/scale", 6, true).await;
    for (id, started) in &before {
        assert_eq!(after.get(id), Some(started), "task {id} restarted or lost");
    }
    // Every task launched exactly once: six sandboxes for six distinct running tasks, on the
    // agents as in offerd.
    let ids: Vec<String> = after.keys().cloned().collect();
    assert_eq!(ha.sandboxes("/ha/scale"), ids, "{}", ha.logs());
    assert_eq!(ha.agents_tasks().await, ids);
    let survivor_log = ha.offerds[survivor].log_text();
    assert!(
        survivor_log.contains("leading: the state is loaded from etcd"),
        "{survivor_log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_finds_its_writes_fenced_and_steps_down_without_launching() {
    let Some(mut ha) = Ha::start(2, "20s").await else {
        return;
    };
    let leader = ha.leader(&[0, 1], Duration::from_secs(30)).await;
    let standby = 1 - leader;
    // The agent talks to the standby first: it never waits on the paused process.
    ha.add_agent(0, 4.0, &[standby, leader]).await;
    let mut body = app("/ha/fence", 2, 0.1);
    body["backoffSeconds"] = json!(6);
    let r = post(ha.http(standby), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let first = ha.running(standby, "/ha/fence", 2, true).await;

    // A task dies: the leader records the failure and delays its replacement by the backoff.
    let victim = first.keys().next().cloned().expect("a task");
    let pid = wait_for(
        "the victim's pid",
        Duration::from_secs(10),
        || ha.logs(),
        async || read_pid(&ha.agent_dirs[0].join("tasks").join(&victim)),
    )
    .await;
    // SAFETY: killing a process group this test's agent started.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    wait_for(
        "the failure to be recorded with a launch delay",
        Duration::from_secs(30),
        || ha.logs(),
        async || {
            let q = ha.http(leader).get("/v2/queue").await.value();
            let queued = q["queue"].as_array().is_some_and(|q| {
                q.iter()
                    .any(|e| e["app"]["id"] == "/ha/fence" && e["delay"]["overdue"] == false)
            });
            queued.then_some(())
        },
    )
    .await;

    // The leader is paused (it can neither renew its lease nor write) while its replacement
    // launch is due; the standby takes over and launches it once.
    let paused = Instant::now();
    signal(ha.offerds[leader].pid(), libc::SIGSTOP);
    let took = ha.takeover(standby, paused).await;
    eprintln!("offerd takeover after SIGSTOP of the leader: {took:?}");
    assert!(
        took <= TAKEOVER_BOUND,
        "took over in {took:?}\n{}",
        ha.logs()
    );
    let replaced = ha.running(standby, "/ha/fence", 2, true).await;
    assert!(!replaced.contains_key(&victim));

    // Resumed, the old leader still holds the state in which the replacement is due: its
    // writes are refused by etcd (or its term has ended first) and it steps down.
    signal(ha.offerds[leader].pid(), libc::SIGCONT);
    let resumed = Instant::now();
    wait_for(
        "the resumed leader to step down",
        Duration::from_secs(30),
        || ha.logs(),
        async || {
            let log = ha.offerds[leader].log_text();
            log.contains("stepped down").then_some(())
        },
    )
    .await;
    eprintln!(
        "the resumed leader stepped down {:?} after SIGCONT",
        resumed.elapsed()
    );
    let new = ha.leader(&[0, 1], Duration::from_secs(30)).await;
    assert_eq!(new, standby, "{}", ha.logs());
    let metrics = ha.http(leader).get("/metrics").await.text();
    assert!(metrics.contains("offerd_leader 0"), "{metrics}");

    // Exactly one replacement was ever launched: the two first sandboxes and one more.
    let now = ha.running(standby, "/ha/fence", 2, true).await;
    assert_eq!(now, replaced, "{}", ha.logs());
    let mut expected: BTreeSet<String> = first.keys().cloned().collect();
    expected.extend(now.keys().cloned());
    assert_eq!(
        ha.sandboxes("/ha/fence"),
        expected.into_iter().collect::<Vec<_>>(),
        "{}",
        ha.logs()
    );
    assert_eq!(
        ha.agents_tasks().await,
        now.keys().cloned().collect::<Vec<_>>()
    );
    // Requests through the old leader reach the new one.
    let r = ha.http(leader).get("/v2/apps/ha/fence").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-marathon-leader"),
        Some(format!("http://{}", ha.name(standby)).as_str())
    );
}

fn read_pid(sandbox: &std::path::Path) -> Option<i32> {
    let text = std::fs::read_to_string(sandbox.join("task.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["pid"].as_i64().map(|p| p as i32)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_cut_off_from_etcd_mid_deployment_stops_before_its_successor_starts() {
    let Some(mut ha) = Ha::start_on_hosts("30s").await else {
        return;
    };
    let leader = ha.leader(&[0, 1], Duration::from_secs(30)).await;
    assert_eq!(leader, 0, "the replica on h1 was elected first");
    let survivor = 1;
    // The agent talks to the leader first: when the leader's host is cut off, its polls time
    // out and it follows the new leader.
    ha.add_agent(0, 1.0, &[leader, survivor]).await;
    wait_for(
        "node-0 to register",
        Duration::from_secs(30),
        || ha.logs(),
        async || {
            let agents = ha.http(leader).get("/v1/agents").await.value();
            (agents.as_array().map_or(0, Vec::len) == 1).then_some(())
        },
    )
    .await;
    let r = post(ha.http(survivor), &app("/ha/cut", 6, 0.25)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let before = ha.running(leader, "/ha/cut", 4, false).await;

    // The leader's host loses the network: no etcd, no agents, no other replica.
    let cut = Instant::now();
    ha.net.as_ref().expect("hosts").cut(1);
    let took = ha.takeover(survivor, cut).await;
    eprintln!("offerd takeover after the leader was cut off from etcd: {took:?}");
    assert!(
        took <= TAKEOVER_BOUND,
        "took over in {took:?}
{}",
        ha.logs()
    );
    // The old leader stopped scheduling before the new one wrote its term.
    let (stopped, line) = wait_for(
        "the cut-off leader to step down",
        Duration::from_secs(10),
        || ha.logs(),
        async || first_logged(&ha.offerds[leader].log_text(), "stepped down"),
    )
    .await;
    let (elected, _) = first_logged(
        &ha.offerds[survivor].log_text(),
        "elected: term key written",
    )
    .expect("the survivor's election is logged");
    eprintln!(
        "the cut-off leader stepped down at {stopped}; its successor took office at {elected}"
    );
    assert!(
        stopped < elected,
        "the old leader stepped down at {stopped}, after its successor took office at {elected}: {line}\n{}",
        ha.logs()
    );
    let tasks = ha.tasks(survivor, "/ha/cut").await;
    let still: BTreeMap<String, String> = tasks
        .iter()
        .map(|(id, (_, started))| (id.clone(), started.clone()))
        .collect();
    assert_eq!(still, before, "{}", ha.logs());

    // The agent follows the new leader (its poll to the cut-off host times out), and a second
    // agent gives the deployment room to complete.
    wait_for(
        "node-0 to poll the new leader",
        Duration::from_secs(60),
        || ha.logs(),
        async || {
            let agents = ha.http(survivor).get("/v1/agents").await.value();
            agents.as_array()?.iter().find(|a| {
                a["node"] == "node-0"
                    && a["state"] == "active"
                    && a["last_seen_ms_ago"].as_u64().is_some_and(|ms| ms < 2_000)
            })?;
            Some(())
        },
    )
    .await;
    ha.add_agent(1, 1.0, &[survivor, leader]).await;
    let after = ha.running(survivor, "/ha/cut", 6, true).await;
    for (id, started) in &before {
        assert_eq!(after.get(id), Some(started), "task {id} restarted or lost");
    }

    // Back on the network, the old leader stands by and forwards.
    ha.net.as_ref().expect("hosts").reconnect(1);
    let agreed = ha.leader(&[0, 1], Duration::from_secs(30)).await;
    assert_eq!(agreed, survivor);
    let metrics = ha.http(leader).get("/metrics").await.text();
    assert!(metrics.contains("offerd_leader 0"), "{metrics}");
    let ids: Vec<String> = after.keys().cloned().collect();
    assert_eq!(ha.sandboxes("/ha/cut"), ids, "{}", ha.logs());
    assert_eq!(ha.agents_tasks().await, ids);
    assert_eq!(ha.running(leader, "/ha/cut", 6, true).await, after);
}

/// A job's ticks across a leader's kill -9: the successor reads each schedule's next tick from
/// etcd, where it was written with the run of the tick before, so every tick runs exactly once
/// (a tick that passed during the takeover runs late, once) and no run's task is launched twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_once_per_tick_across_a_leader_failover() {
    let Some(mut ha) = Ha::start(2, "15s").await else {
        return;
    };
    let leader = ha.leader(&[0, 1], Duration::from_secs(30)).await;
    let survivor = 1 - leader;
    ha.add_agent(0, 2.0, &[leader, survivor]).await;
    let ran = ha.tmp.path().join("ran");
    // Ticks at known seconds: A, B two seconds later (inside the takeover, most likely), C ten
    // seconds after A.
    let a = (jobs_time::now_ms() / 1000 + 8) * 1000;
    let (b, c) = (a + 2000, a + 10_000);
    let sec = |t: u64| (t / 1000) % 60;
    let job = json!({
        "id": "ha.tick",
        "run": {"cmd": format!("echo \"$MARATHON_APP_ID\" >> {}", ran.display()),
                "cpus": 0.1, "mem": 32},
        "schedules": [{"id": "abc", "cron": format!("{},{},{} * * * * *", sec(a), sec(b), sec(c)),
                       "startingDeadlineSeconds": 60}],
    });
    let r = post_job(ha.http(survivor), &job).await;
    assert_eq!(r.status, 201, "{}", r.text());
    wait_for(
        "the first tick's run",
        Duration::from_secs(60),
        || ha.logs(),
        async || {
            let runs = ha.http(leader).get("/v1/jobs/ha.tick/runs").await.value();
            runs.as_array().is_some_and(|r| !r.is_empty()).then_some(())
        },
    )
    .await;
    let killed = Instant::now();
    ha.offerds[leader].kill9();
    ha.takeover(survivor, killed).await;

    let path = "/v1/jobs/ha.tick?embed=history&embed=activeRuns";
    let info = wait_for(
        "the third tick's run to finish",
        Duration::from_secs(90),
        || ha.logs(),
        async || {
            let v = ha.http(survivor).get(path).await.value();
            let done = v["activeRuns"].as_array().is_some_and(Vec::is_empty)
                && v["history"]["successfulFinishedRuns"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| jobs_time::ms(&r["createdAt"]) >= c);
            done.then_some(v)
        },
    )
    .await;
    let h = &info["history"];
    let mut runs: Vec<Value> = h["successfulFinishedRuns"]
        .as_array()
        .into_iter()
        .chain(h["failedFinishedRuns"].as_array())
        .flatten()
        .cloned()
        .collect();
    runs.sort_by_key(|r| jobs_time::ms(&r["createdAt"]));
    // The tick a run is for: the latest of A, B, C at or before its creation.
    let ticks: Vec<u64> = runs
        .iter()
        .map(|r| {
            let created = jobs_time::ms(&r["createdAt"]);
            *[a, b, c]
                .iter()
                .rev()
                .find(|t| **t <= created)
                .unwrap_or_else(|| panic!("a run created before the first tick: {r}"))
        })
        .collect();
    assert_eq!(ticks, vec![a, b, c], "one run per tick: {h}\n{}", ha.logs());
    assert_eq!(h["successCount"], 3, "{h}");
    // Each run's task ran once.
    let mut lines: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    let mut expected: Vec<String> = runs
        .iter()
        .map(|r| {
            format!(
                "/metronome/ha.tick/{}",
                r["id"].as_str().unwrap_or_default()
            )
        })
        .collect();
    expected.sort();
    assert_eq!(lines, expected, "each run's task ran exactly once");
}

fn post_job(http: &Http, body: &Value) -> impl std::future::Future<Output = Resp> {
    http.send("POST", "/v1/jobs", Some(body.to_string().into_bytes()))
}

//! A rolling restart of the whole control plane under load (issue 16): three `catalogd serve
//! --etcd` replicas and two `offerd serve --etcd` replicas on a three-member etcd, a taskrun
//! agent running an app, and clients writing and reading all along, the way an operator upgrades
//! the control hosts one at a time. Every replica of both daemons is stopped (SIGTERM) and
//! started again in turn; the clients list every replica, as `--catalog URL,URL,URL` users do,
//! and retry what a restart may interrupt. Afterwards: no request failed beyond those retries,
//! every acknowledged write is on every replica, and the app's tasks are the ones that ran
//! before (none restarted, none launched again).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cairn_client::{CatalogClient, Endpoints, KvPutOptions, QueryOptions, may_fail_over};
use cairn_etcd::testing::EtcdCluster;
use cairn_tests::cluster::reap_tasks;
use cairn_tests::daemon::{ANY_PORT, Daemon};
use cairn_tests::{Catalogd, wait_for};
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Lease TTL of every replica: a stopped leader's successor is elected within it.
const LEASE_TTL: &str = "2s";
/// How long one client request is retried (transient errors only) before it counts as failed:
/// longer than a leader election, so only a request the control plane really lost fails.
const RETRY_FOR: Duration = Duration::from_secs(20);
/// Concurrent KV writers (each with its own key).
const WRITERS: usize = 4;
const APP: &str = "/rolling/web";

struct Plane {
    etcd: EtcdCluster,
    catalogs: Vec<Catalogd>,
    offerds: Vec<Daemon>,
    agent: Option<Daemon>,
    agent_dir: PathBuf,
    /// Holds the logs, the agent's work directory and offerd's data until the end.
    _tmp: tempfile::TempDir,
}

impl Plane {
    /// etcd, 3 catalogd replicas, 2 offerd replicas and one agent; `None` without etcd
    /// (outside CI, where a missing etcd fails instead).
    async fn start() -> Option<Plane> {
        let etcd = EtcdCluster::start(3).await?;
        let etcd_urls = etcd.endpoints();
        let mut catalogs = Vec::new();
        for i in 0..3 {
            let node = format!("server-{i}");
            catalogs.push(
                Catalogd::start_with(&[
                    "--node",
                    &node,
                    "--etcd",
                    &etcd_urls,
                    "--etcd-lease-ttl",
                    LEASE_TTL,
                ])
                .await,
            );
        }
        let tmp = tempfile::tempdir().expect("temp dir");
        let catalog_urls = catalogs
            .iter()
            .map(|c| c.url.clone())
            .collect::<Vec<_>>()
            .join(",");
        let mut offerds = Vec::new();
        for i in 0..2 {
            let args: Vec<String> = vec![
                "serve".into(),
                "--http-addr".into(),
                ANY_PORT.into(),
                "--data-dir".into(),
                tmp.path().join(format!("offerd-{i}")).display().to_string(),
                "--agent-timeout".into(),
                "15s".into(),
                "--catalog".into(),
                catalog_urls.clone(),
                "--etcd".into(),
                etcd_urls.clone(),
                "--etcd-lease-ttl".into(),
                LEASE_TTL.into(),
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
        let agent_dir = tmp.path().join("agent");
        let offerd_urls = offerds
            .iter()
            .map(|o| o.url.clone())
            .collect::<Vec<_>>()
            .join(",");
        let agent = Daemon::start_any_port(
            "taskrun",
            vec![
                "agent".into(),
                "--offerd".into(),
                offerd_urls,
                "--catalog".into(),
                catalog_urls,
                "--node".into(),
                "node-0".into(),
                "--address".into(),
                "127.0.0.1".into(),
                "--http-addr".into(),
                ANY_PORT.into(),
                "--work-dir".into(),
                agent_dir.display().to_string(),
                "--resources".into(),
                "cpus:4;mem:1024;disk:1000".into(),
                "--allow-root-tasks".into(),
            ],
            "/health",
            tmp.path().join("taskrun.log"),
        )
        .await;
        Some(Plane {
            etcd,
            catalogs,
            offerds,
            agent: Some(agent),
            agent_dir,
            _tmp: tmp,
        })
    }

    fn catalog_urls(&self) -> String {
        self.catalogs
            .iter()
            .map(|c| c.url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.catalogs.iter().enumerate() {
            out.push_str(&format!("--- catalogd {i}\n{}\n", tail(&c.log_text())));
        }
        for (i, o) in self.offerds.iter().enumerate() {
            out.push_str(&format!("--- offerd {i}\n{}\n", tail(&o.log_text())));
        }
        if let Some(a) = &self.agent {
            out.push_str(&format!("--- taskrun\n{}\n", tail(&a.log_text())));
        }
        out
    }

    /// Waits until every catalogd replica names the same, non-empty leader.
    async fn catalog_leader_agreed(&self) {
        wait_for(
            "the catalogd replicas to agree on a leader",
            Duration::from_secs(30),
            || self.logs(),
            async || {
                let mut names = Vec::new();
                for c in &self.catalogs {
                    let r = c.http.try_send("GET", "/v1/status/leader", None).await;
                    names.push(r.ok()?.json::<String>());
                }
                let first = names.first()?.clone();
                (!first.is_empty() && names.iter().all(|n| *n == first)).then_some(())
            },
        )
        .await
    }

    /// Waits until both offerd replicas name the same leader and it serves the API.
    async fn offerd_leader_agreed(&self) {
        wait_for(
            "the offerd replicas to agree on a serving leader",
            Duration::from_secs(30),
            || self.logs(),
            async || {
                let mut names = Vec::new();
                for o in &self.offerds {
                    let r = o.http.try_send("GET", "/v2/leader", None).await.ok()?;
                    if r.status != 200 {
                        return None;
                    }
                    names.push(r.value()["leader"].as_str()?.to_string());
                }
                let first = names.first()?.clone();
                if names.iter().any(|n| *n != first) {
                    return None;
                }
                let leader = self
                    .offerds
                    .iter()
                    .find(|o| o.url.trim_start_matches("http://") == first)?;
                let apps = leader.http.try_send("GET", "/v2/apps", None).await.ok()?;
                (apps.status == 200).then_some(())
            },
        )
        .await
    }

    /// The app's tasks as offerd replica `via` lists them: id → (state, startedAt).
    async fn tasks(&self, via: usize) -> Option<BTreeMap<String, (String, String)>> {
        let r = self.offerds[via]
            .http
            .try_send("GET", &format!("/v2/apps{APP}/tasks"), None)
            .await
            .ok()?;
        if r.status != 200 {
            return None;
        }
        Some(
            r.value()["tasks"]
                .as_array()?
                .iter()
                .map(|t| {
                    let s = |f: &str| t[f].as_str().unwrap_or_default().to_string();
                    (s("id"), (s("state"), s("startedAt")))
                })
                .collect(),
        )
    }

    /// The sandboxes the agent ever made for the app: one per task launched, kept while the test
    /// runs, so a task launched again (even one that is gone now) leaves one more.
    fn sandboxes(&self) -> Vec<String> {
        let prefix = format!("{}.", APP.trim_start_matches('/').replace('/', "_"));
        let mut out: Vec<String> = std::fs::read_dir(self.agent_dir.join("tasks"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        out.sort();
        out
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.kill9();
        }
        for o in &mut self.offerds {
            o.kill9();
        }
        for c in &mut self.catalogs {
            c.kill9();
        }
        reap_tasks(&self.agent_dir);
        self.etcd.stop();
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What the clients saw while the control plane restarted.
#[derive(Default)]
struct Tally {
    /// Requests that were retried after a transient error (a restart's doing), by what failed.
    retried: BTreeMap<String, u64>,
    /// Requests that failed for good: an answer that is not transient, or still failing after
    /// [`RETRY_FOR`].
    failed: Vec<String>,
}

/// Runs `attempt` until it succeeds, retrying transient errors (as the daemons' own clients do)
/// for at most [`RETRY_FOR`]; what happened goes to `tally`.
async fn with_retries<T, F, Fut>(what: &str, tally: &Mutex<Tally>, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (bool, String)>>,
{
    let deadline = tokio::time::Instant::now() + RETRY_FOR;
    loop {
        match attempt().await {
            Ok(v) => return Some(v),
            Err((transient, error)) => {
                let mut t = tally.lock().await;
                if !transient || tokio::time::Instant::now() > deadline {
                    t.failed.push(format!("{what}: {error}"));
                    return None;
                }
                let kind = error.split(':').next().unwrap_or_default().to_string();
                *t.retried.entry(format!("{what}: {kind}")).or_default() += 1;
                drop(t);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Writer `w`: puts increasing values to its own key until `stop`; the last value acknowledged.
async fn kv_writer(
    client: CatalogClient,
    w: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    tally: Arc<Mutex<Tally>>,
) {
    let key = format!("rolling/w{w}");
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let value = n.to_string();
        let put = with_retries("kv put", &tally, async || {
            client
                .kv_put(&key, value.as_bytes(), &KvPutOptions::default())
                .await
                .map_err(|e| (e.is_transient(), e.to_string()))
        })
        .await;
        match put {
            Some(true) => acked.store(n, Ordering::Relaxed),
            Some(false) => tally
                .lock()
                .await
                .failed
                .push(format!("kv put {key}={n}: answered false")),
            None => {}
        }
    }
}

/// A reader of every writer's key: each read must be answered (a value or, before the first
/// write, a 404) through whichever replica is up.
async fn kv_reader(client: CatalogClient, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    while !stop.load(Ordering::Relaxed) {
        for w in 0..WRITERS {
            let key = format!("rolling/w{w}");
            with_retries("kv get", &tally, async || {
                client
                    .kv_get(&key, &QueryOptions::default())
                    .await
                    .map_err(|e| (e.is_transient(), e.to_string()))
            })
            .await;
        }
    }
}

/// A Marathon API client listing both offerd replicas: reads the app until `stop`, failing over
/// as `cairn_client::Endpoints` does and retrying a 5xx (a leader change in progress).
async fn offerd_reader(urls: Vec<String>, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let endpoints = Endpoints::parse(&urls.join(",")).expect("offerd endpoints");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    while !stop.load(Ordering::Relaxed) {
        let got = with_retries("offerd get app", &tally, async || {
            let answer = endpoints
                .run(
                    |e: &reqwest::Error| may_fail_over(&reqwest::Method::GET, e),
                    |i| {
                        let url = format!(
                            "{}v2/apps{APP}",
                            endpoints.get(i).expect("endpoint").as_str()
                        );
                        http.get(url).send()
                    },
                )
                .await;
            match answer {
                Err(f) => Err((true, format!("transport: {}", f.error))),
                // A standby that knows no leader yet (503) or cannot reach the one that is
                // stopping (502, as Marathon's standbys answer): both pass with the election.
                Ok((_, r)) if r.status().is_server_error() => {
                    Err((true, format!("{}: leader unavailable", r.status().as_u16())))
                }
                Ok((_, r)) if !r.status().is_success() => Err((
                    false,
                    format!(
                        "status {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    ),
                )),
                Ok((_, r)) => r
                    .json::<Value>()
                    .await
                    .map_err(|e| (true, format!("body: {e}"))),
            }
        })
        .await;
        if let Some(app) = got
            && app["app"]["instances"] != 2
        {
            tally
                .lock()
                .await
                .failed
                .push(format!("offerd get app: unexpected app {app}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops a daemon with SIGTERM (it must exit within 15 s) without holding up the runtime's
/// workers, which run the clients meanwhile.
fn stop(kill: impl FnOnce() -> std::process::ExitStatus) {
    let status = tokio::task::block_in_place(kill);
    assert!(
        status.success(),
        "a replica exited with {status} on SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarting_every_replica_in_turn_under_load_fails_no_request_and_restarts_no_task() {
    let Some(mut plane) = Plane::start().await else {
        return;
    };
    plane.catalog_leader_agreed().await;
    plane.offerd_leader_agreed().await;

    // The app, launched before the upgrade: its tasks must be the same ones after.
    let post = plane.offerds[0]
        .http
        .send(
            "POST",
            "/v2/apps",
            Some(
                json!({"id": APP, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 2,
                       "portDefinitions": []})
                .to_string()
                .into_bytes(),
            ),
        )
        .await;
    assert_eq!(post.status, 201, "{}", post.text());
    let before = wait_for(
        "the app's 2 tasks running and its deployment done",
        Duration::from_secs(60),
        || plane.logs(),
        async || {
            let tasks = plane.tasks(0).await?;
            let deployments = plane.offerds[0].http.get("/v2/deployments").await.value();
            (tasks.len() == 2
                && tasks.values().all(|(s, _)| s == "TASK_RUNNING")
                && deployments.as_array().is_some_and(|d| d.is_empty()))
            .then_some(tasks)
        },
    )
    .await;
    let sandboxes_before = plane.sandboxes();
    assert_eq!(sandboxes_before.len(), 2, "{sandboxes_before:?}");

    // The load: writers and readers through clients that list every catalogd replica, and a
    // Marathon API reader listing both offerd replicas.
    let stop_load = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let acked: Vec<Arc<AtomicU64>> = (0..WRITERS).map(|_| Arc::default()).collect();
    let mut load = Vec::new();
    for (w, acked) in acked.iter().enumerate() {
        // Each client starts at a different replica, so every replica has clients to lose.
        let mut urls: Vec<String> = plane.catalogs.iter().map(|c| c.url.clone()).collect();
        urls.rotate_left(w % 3);
        let client = CatalogClient::new(&urls.join(","), None).expect("catalog client");
        load.push(tokio::spawn(kv_writer(
            client,
            w,
            stop_load.clone(),
            acked.clone(),
            tally.clone(),
        )));
    }
    let reader = CatalogClient::new(&plane.catalog_urls(), None).expect("catalog client");
    load.push(tokio::spawn(kv_reader(
        reader,
        stop_load.clone(),
        tally.clone(),
    )));
    let offerd_urls = plane.offerds.iter().map(|o| o.url.clone()).collect();
    load.push(tokio::spawn(offerd_reader(
        offerd_urls,
        stop_load.clone(),
        tally.clone(),
    )));

    // Writes must go on through every step: each step waits until every writer got a write
    // acknowledged after the restarted replica came back.
    let progress = async |plane: &Plane, what: &str| {
        let marks: Vec<u64> = acked.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        wait_for(
            &format!("every writer to get a write acknowledged after {what}"),
            Duration::from_secs(30),
            || plane.logs(),
            async || {
                acked
                    .iter()
                    .zip(&marks)
                    .all(|(a, m)| a.load(Ordering::Relaxed) > *m + 2)
                    .then_some(())
            },
        )
        .await;
    };
    progress(&plane, "the load started").await;

    // The upgrade: each catalogd replica in turn, then each offerd replica.
    for i in 0..plane.catalogs.len() {
        stop(|| plane.catalogs[i].sigterm(Duration::from_secs(15)));
        progress(&plane, &format!("catalogd {i} stopped")).await;
        plane.catalogs[i].restart().await;
        plane.catalog_leader_agreed().await;
        progress(&plane, &format!("catalogd {i} restarted")).await;
    }
    for i in 0..plane.offerds.len() {
        stop(|| plane.offerds[i].sigterm(Duration::from_secs(15)));
        plane.offerds[i].restart().await;
        plane.offerd_leader_agreed().await;
        progress(&plane, &format!("offerd {i} restarted")).await;
    }

    stop_load.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("a load task panicked");
    }
    let tally = tally.lock().await;
    assert!(
        tally.failed.is_empty(),
        "client requests failed beyond retries: {:#?}\n(retried: {:?})\n{}",
        tally.failed,
        tally.retried,
        plane.logs()
    );
    eprintln!(
        "requests retried during the rolling restart: {:?}",
        tally.retried
    );

    // Every acknowledged write is on every replica (a later, unacknowledged one may be too).
    for (w, acked) in acked.iter().enumerate() {
        let last = acked.load(Ordering::Relaxed);
        for (i, c) in plane.catalogs.iter().enumerate() {
            let got = c
                .http
                .get(&format!("/v1/kv/rolling/w{w}?raw&consistent"))
                .await;
            assert_eq!(got.status, 200, "catalogd {i}: {}", got.text());
            let value: u64 = got.text().parse().expect("a writer's value");
            assert!(
                value >= last,
                "catalogd {i} holds {value} for writer {w}, which was acknowledged {last}"
            );
        }
    }

    // The app's tasks are the ones from before: same ids, same start times, still running, and
    // no sandbox beyond the first two (nothing was launched again).
    for via in 0..plane.offerds.len() {
        let after = plane.tasks(via).await.expect("the app's tasks");
        assert_eq!(after, before, "offerd {via} lists other tasks");
    }
    assert_eq!(plane.sandboxes(), sandboxes_before);
    let agent = plane.agent.as_ref().expect("agent");
    let listed = agent.http.get("/v1/tasks").await.value();
    let running: Vec<String> = listed
        .as_array()
        .cloned()
        .or_else(|| listed["tasks"].as_array().cloned())
        .into_iter()
        .flatten()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .filter_map(|t| t["id"].as_str().map(String::from))
        .collect();
    let mut expected: Vec<String> = before.keys().cloned().collect();
    let mut running = running;
    running.sort();
    expected.sort();
    assert_eq!(running, expected, "the agent runs other tasks");
}

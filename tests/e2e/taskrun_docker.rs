//! taskrun's Docker driver against the real Docker engine, in a real cluster (catalogd, offerd,
//! taskrun): BRIDGE containers on their assigned host ports with passing health checks, the
//! container's output through the agent's logs endpoint, scale-down and delete (drained out of
//! the catalog first, then stopped and removed), adoption across `kill -9` of the agent, a
//! container killed behind the agent's back, a missing image, HOST networking and a read-only
//! volume. The image is built locally from Debian's static busybox: no registry is involved.
//! Every test removes its containers when it ends, pass or fail.

use std::time::Duration;

use cairn_tests::cluster::ClusterOpts;
use cairn_tests::docker::{
    DockerCluster, busybox_image, containers_labelled, docker, docker_ok, inspect, require_engine,
    task_containers,
};
use cairn_tests::http_get;
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// Removes a container the test started itself, pass or fail.
struct RemoveOnDrop(String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        // The container may be gone already; clean-up is best effort.
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

fn one_agent() -> ClusterOpts {
    ClusterOpts {
        agents: 1,
        ..Default::default()
    }
}

/// busybox httpd in a BRIDGE container, port 8080 published, HTTP health check.
fn web_app(id: &str, instances: usize, image: &str) -> Value {
    json!({
        "id": id, "cmd": "exec httpd -f -p 8080 -h /www", "cpus": 0.2, "mem": 32,
        "instances": instances,
        "container": {
            "type": "DOCKER",
            "docker": { "image": image, "network": "BRIDGE" },
            "portMappings": [{ "containerPort": 8080, "hostPort": 0, "protocol": "tcp" }]
        },
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "portIndex": 0,
                           "intervalSeconds": 1, "timeoutSeconds": 2, "gracePeriodSeconds": 5 }],
        "labels": { "SERVICE_TAGS": "web,docker", "team": "edge" }
    })
}

/// A container without network that runs `cmd` and takes no host port.
fn quiet_app(id: &str, cmd: &str, image: &str) -> Value {
    json!({
        "id": id, "cmd": cmd, "cpus": 0.1, "mem": 16, "instances": 1, "portDefinitions": [],
        "container": { "type": "DOCKER", "docker": { "image": image, "network": "NONE" } }
    })
}

/// The tasks agent `i` knows, from its API.
async fn agent_tasks(c: &DockerCluster, i: usize) -> Vec<Value> {
    c.agents[i]
        .http
        .get("/v1/tasks")
        .await
        .value()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn agent_task(c: &DockerCluster, i: usize, id: &str) -> Option<Value> {
    agent_tasks(c, i).await.into_iter().find(|t| t["id"] == id)
}

/// The one container of a task, inspected.
fn container_of(task_id: &str) -> Value {
    let ids = task_containers(task_id);
    assert_eq!(ids.len(), 1, "containers of {task_id}: {ids:?}");
    inspect(&ids[0]).expect("inspecting the task's container")
}

fn env_of(info: &Value) -> Vec<String> {
    info["Config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_containers_answer_on_their_host_ports_and_pass_health_checks() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(one_agent()).await;
    let r = c.post_app(&web_app("/dock/web", 2, &image)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_running("/dock/web", 2, 120).await;
    let tasks = c.tasks("/dock/web").await;
    let mut host_ports = Vec::new();
    for t in &tasks {
        let id = t["id"].as_str().expect("task id").to_string();
        let port = t["ports"][0].as_u64().expect("an assigned host port");
        assert!(
            (c.port_base(0)..c.port_base(1)).contains(&(port as u16)),
            "{t}"
        );
        host_ports.push(port);
        // From the host, on the assigned port.
        let body = c
            .wait_for(
                &format!("{id} to answer on host port {port}"),
                60,
                || async move { http_get(port as u16).await },
            )
            .await;
        assert_eq!(body, "hello from cairn-test\n");

        let info = container_of(&id);
        assert_eq!(info["Name"], format!("/cairn-{id}"));
        let labels = &info["Config"]["Labels"];
        assert_eq!(labels["cairn.task_id"], id.as_str());
        assert_eq!(labels["cairn.app_id"], "/dock/web");
        assert_eq!(labels["cairn.node"], "node-0");
        assert_eq!(
            labels["cairn.work_dir"],
            c.work_dirs()[0].display().to_string()
        );
        assert_eq!(labels["SERVICE_TAGS"], "web,docker");
        assert_eq!(labels["team"], "edge");
        let host = &info["HostConfig"];
        assert_eq!(host["NetworkMode"], "bridge");
        assert_eq!(host["Memory"], 32 * MIB);
        assert_eq!(host["MemorySwap"], 32 * MIB, "no swap");
        assert_eq!(host["NanoCpus"], 200_000_000u64);
        assert_eq!(
            host["PortBindings"]["8080/tcp"][0]["HostPort"],
            port.to_string()
        );
        let env = env_of(&info);
        for want in [
            format!("PORT0={port}"),
            format!("PORT_8080={port}"),
            format!("PORTS={port}"),
            format!("MESOS_TASK_ID={id}"),
            "MARATHON_APP_ID=/dock/web".to_string(),
            "HOST=127.0.0.1".to_string(),
        ] {
            assert!(env.contains(&want), "{want} not in {env:?}");
        }
        // The agent reports the container it runs the task in.
        let at = agent_task(&c, 0, &id)
            .await
            .expect("the agent knows the task");
        assert_eq!(at["container"], info["Id"], "{at}");
        assert_eq!(at["state"], "TASK_RUNNING");
    }
    // The catalog has both instances on their host ports, tagged, health checks passing.
    host_ports.sort();
    c.wait_for("both instances passing on their host ports", 60, || async {
        let mut passing: Vec<u64> = c
            .catalog_instances("web-dock")
            .await
            .into_iter()
            .filter(|(_, _, status)| status == "passing")
            .map(|(_, port, _)| port)
            .collect();
        passing.sort();
        (passing == host_ports).then_some(())
    })
    .await;
    let svc = c
        .catalog
        .http
        .get("/v1/catalog/service/web-dock")
        .await
        .value();
    assert_eq!(svc[0]["ServiceTags"], json!(["web", "docker"]), "{svc}");
    // offerd hears of the health too.
    c.wait_for("offerd to see both tasks healthy", 60, || async {
        let t = c.tasks("/dock/web").await;
        (t.len() == 2
            && t.iter()
                .all(|t| t["healthCheckResults"][0]["alive"] == true))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn container_output_is_served_by_the_agent_followed_to_the_end() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(one_agent()).await;
    let app = quiet_app(
        "/dock/logs",
        "echo \"start-out $MESOS_TASK_ID\"; echo start-err >&2; sleep 4; echo later-out; echo later-err >&2; sleep 1",
        &image,
    );
    assert_eq!(c.post_app(&app).await.status, 201);
    // The first task (the app is relaunched after each run; this test follows the first one).
    let id = c
        .wait_for("the first task on the agent", 120, || async {
            let tasks = agent_tasks(&c, 0).await;
            // ISO 8601 times of one format sort as text.
            let mut ids: Vec<(String, String)> = tasks
                .iter()
                .filter(|t| t["app_id"] == "/dock/logs" && t["container"].is_string())
                .filter_map(|t| {
                    let started = t["started_at"].as_str()?.to_string();
                    Some((started, t["id"].as_str()?.to_string()))
                })
                .collect();
            ids.sort();
            ids.first().map(|(_, id)| id.clone())
        })
        .await;
    let base = &c.agents[0].url;
    // Follow: what is there, then what comes later, and the stream ends with the task.
    let mut follow = reqwest::get(format!(
        "{base}/v1/tasks/{id}/logs?stream=stdout&follow=true"
    ))
    .await
    .expect("logs");
    assert_eq!(follow.status(), 200);
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, follow.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => break,
            other => panic!("log stream failed ({other:?}); got {text:?}\n{}", c.logs()),
        }
    }
    assert_eq!(text, format!("start-out {id}\nlater-out\n"));
    let stderr = reqwest::get(format!("{base}/v1/tasks/{id}/logs?stream=stderr"))
        .await
        .expect("stderr");
    assert_eq!(stderr.text().await.expect("body"), "start-err\nlater-err\n");
    // It finished, and its container is gone; the sandbox keeps the logs.
    let t = agent_task(&c, 0, &id).await.expect("task");
    assert_eq!(t["state"], "TASK_FINISHED", "{t}");
    assert_eq!(t["message"], "exited with status 0");
    c.wait_for(
        "the finished task's container to be removed",
        60,
        || async { task_containers(&id).is_empty().then_some(()) },
    )
    .await;
    assert!(c.sandbox(0, &id).join("log_cursor").exists());
    let again = reqwest::get(format!("{base}/v1/tasks/{id}/logs?stream=stdout"))
        .await
        .expect("stdout");
    assert_eq!(
        again.text().await.expect("body"),
        format!("start-out {id}\nlater-out\n")
    );
    assert_eq!(c.offerd.http.delete("/v2/apps/dock/logs").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_down_drains_from_the_catalog_then_stops_and_removes_the_container() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(ClusterOpts {
        agents: 1,
        agent_args: vec!["--kill-drain-delay".into(), "5s".into()],
        ..Default::default()
    })
    .await;
    assert_eq!(
        c.post_app(&web_app("/dock/scale", 2, &image)).await.status,
        201
    );
    let ids = c.wait_running("/dock/scale", 2, 120).await;
    c.wait_for("both instances passing", 60, || async {
        let inst = c.catalog_instances("scale-dock").await;
        (inst.len() == 2 && inst.iter().all(|i| i.2 == "passing")).then_some(())
    })
    .await;

    let r = c
        .put_app("/dock/scale", &json!({ "instances": 1 }), false)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The task to go leaves the catalog first ...
    let gone = c
        .wait_for("one instance to leave the catalog", 60, || async {
            let inst = c.catalog_instances("scale-dock").await;
            if inst.len() != 1 {
                return None;
            }
            ids.iter().find(|id| **id != inst[0].0).cloned()
        })
        .await;
    // ... while its container still runs: it is being drained (5 s), TASK_KILLING.
    let info = container_of(&gone);
    assert_eq!(
        info["State"]["Running"], true,
        "the container was stopped before its service left the catalog"
    );
    let t = agent_task(&c, 0, &gone).await.expect("task");
    assert_eq!(t["state"], "TASK_KILLING", "{t}");
    // Then it is stopped and removed.
    c.wait_for("the drained container to be removed", 60, || async {
        task_containers(&gone).is_empty().then_some(())
    })
    .await;
    let t = agent_task(&c, 0, &gone).await.expect("task");
    assert_eq!(t["state"], "TASK_KILLED", "{t}");
    let kept = ids.iter().find(|id| **id != gone).expect("the other task");
    assert_eq!(
        c.wait_running("/dock/scale", 1, 60).await,
        vec![kept.clone()]
    );

    // Deleting the app: the last container goes too, and the service leaves the catalog.
    assert_eq!(
        c.offerd.http.delete("/v2/apps/dock/scale").await.status,
        200
    );
    c.wait_for("every container of the app to be removed", 60, || async {
        containers_labelled("cairn.app_id", "/dock/scale")
            .is_empty()
            .then_some(())
    })
    .await;
    c.wait_for("the service to leave the catalog", 30, || async {
        c.catalog_instances("scale-dock")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    let t = agent_task(&c, 0, kept).await.expect("task");
    assert_eq!(t["state"], "TASK_KILLED", "{t}");
}

/// How many ticks the complete `tick N` lines of `stdout` hold, checked to have no gap (a few
/// repeated ones are allowed: a killed agent copies again what came after its last saved cursor).
fn ticks(stdout: &str) -> u64 {
    let mut next = 0u64;
    for line in stdout.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let line = line.trim_end();
        let n: u64 = line
            .strip_prefix("tick ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line {line:?} in {stdout:?}"));
        assert!(n <= next, "tick {next} is missing: {stdout:?}");
        if n == next {
            next += 1;
        }
    }
    next
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_agent_adopts_its_containers_and_reports_one_killed_behind_its_back() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    // offerd must not declare the agent lost while it is down: the point is adoption.
    let mut c = DockerCluster::start(ClusterOpts {
        agents: 1,
        agent_timeout: "60s",
        ..Default::default()
    })
    .await;
    let app = quiet_app(
        "/dock/tick",
        "i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 0.1; done",
        &image,
    );
    assert_eq!(c.post_app(&app).await.status, 201);
    let id = c.wait_running("/dock/tick", 1, 120).await[0].clone();
    let before = container_of(&id);
    let container = before["Id"].as_str().expect("container id").to_string();
    let stdout = c.sandbox(0, &id).join("stdout");
    c.wait_for("some output in the sandbox", 60, || async {
        let text = std::fs::read_to_string(&stdout).ok()?;
        (ticks(&text) > 5).then_some(())
    })
    .await;

    c.agents[0].kill9();
    // The container goes on without the agent.
    let seen = ticks(&std::fs::read_to_string(&stdout).expect("stdout"));
    c.wait_for(
        "the container to print on while the agent is away",
        60,
        || {
            let out = docker(&["logs", "--tail", "1", &container]);
            async move {
                let last = String::from_utf8_lossy(&out.stdout).into_owned();
                let n: u64 = last.trim().strip_prefix("tick ")?.parse().ok()?;
                (n > seen + 5).then_some(())
            }
        },
    )
    .await;
    c.agents[0].restart().await;
    c.wait_for("the agent to adopt the running container", 60, || async {
        let t = agent_task(&c, 0, &id).await?;
        (t["state"] == "TASK_RUNNING" && t["container"] == container.as_str()).then_some(())
    })
    .await;
    assert!(
        c.agents[0].log_text().contains("re-adopting a container"),
        "{}",
        c.logs()
    );
    // The same container, never restarted; the same task in offerd.
    let after = container_of(&id);
    assert_eq!(after["Id"], container.as_str());
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(after["State"]["StartedAt"], before["State"]["StartedAt"]);
    assert_eq!(after["RestartCount"], 0);
    assert_eq!(c.running("/dock/tick").await, vec![id.clone()]);
    // Its output resumed where the sandbox's copy ended: nothing lost.
    let resumed_from = seen + 5;
    c.wait_for("the output to be copied past the restart", 60, || async {
        let text = std::fs::read_to_string(&stdout).ok()?;
        (ticks(&text) > resumed_from + 10).then_some(())
    })
    .await;

    // Killed behind the agent's back: reported failed, replaced by a new task.
    docker_ok(&["kill", &container]);
    let failure = c
        .wait_for("offerd to record the failure", 60, || async {
            let app = c.offerd.http.get("/v2/apps/dock/tick").await.value();
            let f = app["app"]["lastTaskFailure"].clone();
            (f["taskId"] == id.as_str()).then_some(f)
        })
        .await;
    assert_eq!(failure["state"], "TASK_FAILED", "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .unwrap_or("")
            .contains("exited with status 137"),
        "{failure}"
    );
    let replaced = c.wait_running("/dock/tick", 1, 120).await;
    assert_ne!(replaced[0], id);
    c.wait_for("the killed container to be removed", 60, || async {
        task_containers(&id).is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_fails_the_task_with_dockers_reason_and_backs_off() {
    if !require_engine() {
        return;
    }
    let c = DockerCluster::start(one_agent()).await;
    let mut app = quiet_app("/dock/missing", "sleep 600", "nosuch:1");
    app["backoffSeconds"] = json!(1);
    app["backoffFactor"] = json!(2);
    assert_eq!(c.post_app(&app).await.status, 201);
    let failure = c
        .wait_for("the launch to fail", 60, || async {
            let app = c.offerd.http.get("/v2/apps/dock/missing").await.value();
            let f = app["app"]["lastTaskFailure"].clone();
            (f["state"] == "TASK_FAILED").then_some(f)
        })
        .await;
    let message = failure["message"].as_str().unwrap_or("");
    assert!(
        message.contains("image \"nosuch:1\" not found locally and pulling failed: "),
        "{failure}"
    );
    // Docker's reason follows (no registry is reachable here, or the repository does not exist).
    let reason = message
        .split_once("pulling failed: ")
        .map(|(_, r)| r)
        .unwrap_or("");
    assert!(!reason.trim().is_empty(), "{failure}");
    // Retried with backoff: the queue says so.
    c.wait_for("the queue to show the backoff", 60, || async {
        let q = c.offerd.http.get("/v2/queue").await.value();
        let item = q["queue"]
            .as_array()?
            .iter()
            .find(|i| i["app"]["id"] == "/dock/missing")?
            .clone();
        let reason = item["processedOffersSummary"]["rejectSummaryLastOffers"][0]["reason"]
            .as_str()?
            .to_string();
        reason.contains("backoff").then_some(())
    })
    .await;
    assert!(containers_labelled("cairn.app_id", "/dock/missing").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_and_a_read_only_volume() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let data = tempfile::tempdir().expect("temp dir");
    std::fs::write(data.path().join("motd.txt"), "from the host\n").expect("motd");
    let host_path = data.path().display().to_string();
    // Host volumes only under what the operator allows (issue 15).
    let c = DockerCluster::start(ClusterOpts {
        offerd_args: vec!["--allow-host-volumes".into(), host_path.clone()],
        ..one_agent()
    })
    .await;
    let app = json!({
        "id": "/dock/host", "cpus": 0.1, "mem": 16, "instances": 1,
        "cmd": "cat /data/motd.txt; if touch /data/x 2>/dev/null; then echo writable; else echo read-only; fi; exec httpd -f -p $PORT0 -h /www",
        "portDefinitions": [{ "port": 0 }],
        "container": {
            "type": "DOCKER",
            "docker": { "image": image, "network": "HOST" },
            "volumes": [{ "containerPath": "/data", "hostPath": host_path, "mode": "RO" }]
        },
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "portIndex": 0,
                           "intervalSeconds": 1, "timeoutSeconds": 2 }]
    });
    assert_eq!(c.post_app(&app).await.status, 201);
    let id = c.wait_running("/dock/host", 1, 120).await[0].clone();
    let port = c.tasks("/dock/host").await[0]["ports"][0]
        .as_u64()
        .expect("host port");
    let body = c
        .wait_for("httpd on the host's network", 60, || async move {
            http_get(port as u16).await
        })
        .await;
    assert_eq!(body, "hello from cairn-test\n");
    let info = container_of(&id);
    assert_eq!(info["HostConfig"]["NetworkMode"], "host");
    assert_eq!(
        info["HostConfig"]["Binds"],
        json!([format!("{host_path}:/data:ro")])
    );
    assert!(env_of(&info).contains(&format!("PORT0={port}")));
    let base = &c.agents[0].url;
    let out = c
        .wait_for("the container's output", 60, || async {
            let r = reqwest::get(format!("{base}/v1/tasks/{id}/logs?stream=stdout"))
                .await
                .ok()?;
            let text = r.text().await.ok()?;
            text.contains("only").then_some(text)
        })
        .await;
    assert_eq!(out, "from the host\nread-only\n");
    assert!(!data.path().join("x").exists());
    c.wait_for("the instance passing in the catalog", 60, || async {
        let inst = c.catalog_instances("host-dock").await;
        (inst.len() == 1 && inst[0].1 == port && inst[0].2 == "passing").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_nobody_wants_are_stopped_and_removed_when_the_agent_returns() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let mut c = DockerCluster::start(ClusterOpts {
        agents: 1,
        agent_timeout: "60s",
        ..Default::default()
    })
    .await;
    assert_eq!(
        c.post_app(&quiet_app("/dock/orphan", "exec sleep 600", &image))
            .await
            .status,
        201
    );
    let id = c.wait_running("/dock/orphan", 1, 120).await[0].clone();
    let container = container_of(&id)["Id"]
        .as_str()
        .expect("container id")
        .to_string();
    c.agents[0].kill9();
    // While the agent is away, offerd stops wanting the task ...
    assert_eq!(
        c.offerd.http.delete("/v2/apps/dock/orphan").await.status,
        200
    );
    // ... and a container of this agent turns up that no task record knows.
    let work_dir = c.work_dirs()[0].display().to_string();
    let ghost = docker_ok(&[
        "run",
        "-d",
        "--label",
        "cairn.task_id=ghost.1",
        "--label",
        "cairn.node=node-0",
        "--label",
        &format!("cairn.work_dir={work_dir}"),
        &image,
        "sleep",
        "600",
    ]);
    // A container of another agent (another work dir) on the same host is not touched.
    let other = docker_ok(&[
        "run",
        "-d",
        "--label",
        "cairn.task_id=other.1",
        "--label",
        "cairn.node=node-0",
        "--label",
        "cairn.work_dir=/somewhere/else",
        &image,
        "sleep",
        "600",
    ]);
    let _remove_other = RemoveOnDrop(other.clone());
    c.agents[0].restart().await;
    c.wait_for(
        "the unwanted and the unknown containers to be removed",
        60,
        || async { (inspect(&container).is_none() && inspect(&ghost).is_none()).then_some(()) },
    )
    .await;
    let t = agent_task(&c, 0, &id).await.expect("task");
    assert_eq!(t["state"], "TASK_KILLED", "{t}");
    let kept = inspect(&other).expect("the other agent's container");
    assert_eq!(kept["State"]["Running"], true);
}

//! offerd's API as clients see it: constraints and the queue's reasons, the event stream,
//! validation (422 with paths, 404, 409) and `offerd apply` of a directory.

use std::process::Command;

use cairn_tests::cluster::{Cluster, ClusterOpts, sleep_app};
use cairn_tests::read_stream_until;
use serde_json::{Value, json};

fn opts_with_racks() -> ClusterOpts {
    ClusterOpts {
        attributes: vec!["rack:a;zone:z1".into(), "rack:b;zone:z2".into()],
        ..Default::default()
    }
}

async fn queue_reason(c: &Cluster, app: &str) -> String {
    c.wait_for(&format!("a queue entry for {app}"), 30, || async {
        let q = c.offerd.http.get("/v2/queue").await.value();
        let item = q["queue"]
            .as_array()?
            .iter()
            .find(|i| i["app"]["id"] == app)?
            .clone();
        item["processedOffersSummary"]["rejectSummaryLastOffers"][0]["reason"]
            .as_str()
            .map(str::to_string)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn constraints_are_honoured_and_misfits_wait_in_the_queue_with_a_reason() {
    let c = Cluster::start(opts_with_racks()).await;
    // UNIQUE hostname: one per agent; the third waits.
    let mut app = sleep_app("/uniq", 3);
    app["constraints"] = json!([["hostname", "UNIQUE"]]);
    assert_eq!(c.post_app(&app).await.status, 201);
    let reason = queue_reason(&c, "/uniq").await;
    assert!(reason.contains("hostname:UNIQUE"), "{reason}");
    c.wait_for("two unique tasks running", 60, || async {
        (c.running("/uniq").await.len() == 2).then_some(())
    })
    .await;
    let hosts: std::collections::BTreeSet<String> = c
        .tasks("/uniq")
        .await
        .iter()
        .filter_map(|t| t["slaveId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(hosts.len(), 2);

    // LIKE on an attribute: only rack b.
    let mut app = sleep_app("/rackb", 3);
    app["constraints"] = json!([["rack", "LIKE", "b"]]);
    assert_eq!(c.post_app(&app).await.status, 201);
    c.wait_running("/rackb", 3, 60).await;
    assert!(
        c.tasks("/rackb")
            .await
            .iter()
            .all(|t| t["slaveId"] == "node-1")
    );

    // GROUP_BY zone spreads evenly.
    let mut app = sleep_app("/spread", 4);
    app["constraints"] = json!([["zone", "GROUP_BY"]]);
    assert_eq!(c.post_app(&app).await.status, 201);
    c.wait_running("/spread", 4, 60).await;
    let on0 = c
        .tasks("/spread")
        .await
        .iter()
        .filter(|t| t["slaveId"] == "node-0")
        .count();
    assert_eq!(on0, 2);

    // Too big for any agent: queued, saying what is short.
    let mut app = sleep_app("/huge", 1);
    app["mem"] = json!(100000);
    assert_eq!(c.post_app(&app).await.status, 201);
    let reason = queue_reason(&c, "/huge").await;
    assert!(reason.contains("mem 100000"), "{reason}");
    assert!(c.tasks("/huge").await.is_empty());
    // Scaling it to zero empties the queue.
    assert_eq!(
        c.put_app("/huge", &json!({ "instances": 0 }), true)
            .await
            .status,
        200
    );
    c.wait_for("the queue to drop /huge", 30, || async {
        let q = c.offerd.http.get("/v2/queue").await.value();
        (!q["queue"]
            .as_array()?
            .iter()
            .any(|i| i["app"]["id"] == "/huge"))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_reports_a_deployment() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let mut body = reqwest::Client::new()
        .get(format!("{}/v2/events", c.offerd.url))
        .header("Accept", "text/event-stream")
        .send()
        .await
        .expect("event stream");
    assert_eq!(body.status(), 200);
    assert_eq!(c.post_app(&sleep_app("/ev", 1)).await.status, 201);
    let wanted = [
        "event_stream_attached",
        "api_post_event",
        "deployment_info",
        "TASK_STAGING",
        "TASK_RUNNING",
        "deployment_success",
    ];
    let text = read_stream_until(&mut body, 60, |t| wanted.iter().all(|w| t.contains(w)))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    // SSE framing with Marathon's event names, JSON data carrying eventType.
    assert!(text.contains("event: status_update_event\n"), "{text}");
    let data = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find(|v| v["eventType"] == "status_update_event" && v["taskStatus"] == "TASK_RUNNING")
        .expect("a TASK_RUNNING event");
    assert_eq!(data["appId"], "/ev");
    assert!(
        data["slaveId"]
            .as_str()
            .is_some_and(|s| s.starts_with("node-"))
    );

    // ?event_type= filters.
    let mut body = reqwest::Client::new()
        .get(format!(
            "{}/v2/events?event_type=deployment_success",
            c.offerd.url
        ))
        .send()
        .await
        .expect("filtered stream");
    assert_eq!(
        c.put_app("/ev", &json!({ "instances": 2 }), false)
            .await
            .status,
        200
    );
    let text = read_stream_until(&mut body, 60, |t| t.contains("deployment_success"))
        .await
        .unwrap_or_else(|e| panic!("filtered stream: {e}"));
    assert!(
        !text.contains("status_update_event"),
        "filter let other events through:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_paths_and_changes_nothing() {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    })
    .await;
    let http = &c.offerd.http;
    let r = http
        .send(
            "POST",
            "/v2/apps",
            Some(json!({ "id": "/Bad_Id", "cmd": "x", "cpus": -1, "instances": -2, "constraints": [["rack", "MAX_PER"]] }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let v = r.value();
    assert_eq!(v["message"], "Object is not valid");
    let paths: Vec<&str> = v["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["path"].as_str())
        .collect();
    for p in ["/id", "/cpus", "/instances", "/constraints(0)"] {
        assert!(paths.contains(&p), "{p} missing in {paths:?}");
    }
    let r = http
        .send(
            "POST",
            "/v2/apps",
            Some(br#"{"id":"/a","cmd":"x","constraints":[["rack","NEAR","a"]]}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("NEAR"), "{}", r.text());
    let r = http
        .send(
            "POST",
            "/v2/apps",
            Some(br#"{"id":"/a","cmd":"x","mem":"lots"}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.value()["details"][0]["path"], "/mem");
    let r = http
        .send("POST", "/v2/apps", Some(b"{not json".to_vec()))
        .await;
    assert_eq!(r.status, 400);
    // Networking Marathon refuses, with its paths and words.
    let docker = json!({ "type": "DOCKER", "docker": { "image": "busybox" } });
    let mut mapped = docker.clone();
    mapped["portMappings"] = json!([{ "containerPort": 80 }]);
    for (app, path, words) in [
        (
            json!({ "id": "/n", "cmd": "x", "networks": [{ "mode": "host" }, { "mode": "host" }] }),
            "/networks",
            "May specify a single host network",
        ),
        (
            json!({ "id": "/n", "networks": [{ "mode": "container" }], "container": docker }),
            "/networks",
            "Network name must be specified",
        ),
        (
            json!({ "id": "/n", "networks": [{ "mode": "host" }], "container": mapped }),
            "/",
            "portMappings are not allowed with host-networking",
        ),
        (
            json!({ "id": "/n", "networks": [{ "mode": "container/bridge" }], "container": mapped,
                    "portDefinitions": [{ "port": 0 }] }),
            "/",
            "portDefinitions are only allowed with host-networking",
        ),
        (
            json!({ "id": "/n", "networks": [{ "mode": "container/bridge" }],
                    "container": { "docker": { "image": "busybox", "network": "BRIDGE" } } }),
            "/",
            "must not specify both container.docker.network and networks",
        ),
        (
            json!({ "id": "/n", "networks": [{ "mode": "container/bridge" }],
                    "container": { "docker": { "image": "busybox" },
                                   "portMappings": [{ "containerPort": 80, "servicePort": 70000 }] } }),
            "/container/portMappings(0)/servicePort",
            "",
        ),
    ] {
        let r = c.post_app(&app).await;
        assert_eq!(r.status, 422, "{app}: {}", r.text());
        let v = r.value();
        assert!(
            v["details"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d["path"] == path
                    && d["errors"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|e| e.as_str().is_some_and(|e| e.contains(words)))),
            "{app}: wanted {path}: {words}, got {v}"
        );
    }
    assert_eq!(
        http.get("/v2/apps").await.value()["apps"],
        json!([]),
        "a refused app was stored"
    );
    // A service port another app holds: 409 with Marathon's message, the second app not stored.
    let held = json!({ "id": "/held", "cmd": "sleep 600", "instances": 0, "portDefinitions": [{ "port": 15555 }] });
    assert_eq!(c.post_app(&held).await.status, 201);
    let grab = json!({ "id": "/grab", "instances": 0, "networks": [{ "mode": "container/bridge" }],
        "container": { "type": "DOCKER", "docker": { "image": "busybox" },
                       "portMappings": [{ "containerPort": 80, "servicePort": 15555 }] } });
    let r = c.post_app(&grab).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.value()["message"],
        "Requested service port 15555 conflicts with a service port in app /held"
    );
    assert_eq!(http.get("/v2/apps/grab").await.status, 404);
    // Nor may an update take it.
    let r = c
        .put_app(
            "/held",
            &json!({ "portDefinitions": [{ "port": 0 }] }),
            true,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        http.get("/v2/apps/held").await.value()["app"]["portDefinitions"][0]["port"],
        15555,
        "re-posting port 0 keeps the assigned service port"
    );
    assert_eq!(http.delete("/v2/apps/held?force=true").await.status, 200);

    // 404s and 409s.
    assert_eq!(http.get("/v2/apps/nope").await.status, 404);
    assert_eq!(http.delete("/v2/apps/nope").await.status, 404);
    assert_eq!(c.post_app(&sleep_app("/dup", 1)).await.status, 201);
    let r = c.post_app(&sleep_app("/dup", 1)).await;
    assert_eq!(r.status, 409, "{}", r.text());
    // A change while a deployment runs is refused unless forced.
    c.wait_running("/dup", 1, 60).await;
    let big = json!({ "instances": 50 });
    assert_eq!(c.put_app("/dup", &big, false).await.status, 200);
    let r = c.put_app("/dup", &json!({ "instances": 1 }), false).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.value()["deployments"][0]["id"].is_string());
    assert_eq!(
        c.put_app("/dup", &json!({ "instances": 1 }), true)
            .await
            .status,
        200
    );
    c.wait_running("/dup", 1, 60).await;
    // Marathon's small endpoints.
    assert_eq!(http.get("/ping").await.text(), "pong");
    assert!(
        http.get("/v2/leader").await.value()["leader"]
            .as_str()
            .is_some_and(|l| l.starts_with("127.0.0.1:"))
    );
    assert_eq!(http.get("/v2/info").await.value()["name"], "offerd");
    assert!(
        http.get("/metrics")
            .await
            .text()
            .contains("offerd_tasks{state=\"TASK_RUNNING\"} 1")
    );
}

fn offerd_cli(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(cairn_tests::bin("offerd"))
        .args(args)
        .env("CAIRN_OFFERD", &c.offerd.url)
        .output()
        .expect("offerd CLI")
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_makes_the_cluster_match_a_directory() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, v: &Value| {
        std::fs::write(
            dir.path().join(name),
            serde_json::to_vec_pretty(v).expect("json"),
        )
        .expect("write")
    };
    write("a.json", &sleep_app("/team/a", 1));
    write(
        "bc.json",
        &json!([sleep_app("/team/b", 1), sleep_app("/team/c", 2)]),
    );
    std::fs::create_dir(dir.path().join("more")).expect("subdir");
    std::fs::write(
        dir.path().join("more/d.json"),
        sleep_app("/team/d", 1).to_string(),
    )
    .expect("write");
    std::fs::write(dir.path().join("README.md"), "not an app").expect("write");
    // An app created by hand, not in the files: only --prune removes it.
    assert_eq!(c.post_app(&sleep_app("/manual", 1)).await.status, 201);

    let path = dir.path().display().to_string();
    let out = offerd_cli(&c, &["apply", "-f", &path, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(
        report["created"],
        json!(["/team/a", "/team/b", "/team/c", "/team/d"])
    );
    c.wait_running("/team/c", 2, 60).await;

    // Again: nothing to do.
    let out = offerd_cli(&c, &["apply", "-f", &path, "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(
        report["unchanged"].as_array().map(Vec::len),
        Some(4),
        "{report}"
    );
    assert_eq!(report["updated"], json!([]));

    // A bad file: nothing is applied, the file and the problem are named.
    write(
        "a.json",
        &json!({ "id": "/team/a", "cmd": "sleep 600", "cpus": -3 }),
    );
    write(
        "bc.json",
        &json!([sleep_app("/team/b", 3), sleep_app("/team/c", 2)]),
    );
    let out = offerd_cli(&c, &["apply", "-f", &path]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a.json") && err.contains("/cpus"), "{err}");
    let b = c.offerd.http.get("/v2/apps/team/b").await.value();
    assert_eq!(
        b["app"]["instances"], 1,
        "part of a failed apply was applied"
    );

    // Fixed, one app removed, --prune: updated, deleted, the rest untouched.
    write("a.json", &sleep_app("/team/a", 1));
    std::fs::remove_file(dir.path().join("more/d.json")).expect("rm");
    for id in ["/team/a", "/team/b", "/team/c", "/team/d"] {
        c.wait_for("deployments to finish", 60, || async {
            let d = c.offerd.http.get("/v2/deployments").await.value();
            (!d.as_array()?.iter().any(|d| d["affectedApps"][0] == id)).then_some(())
        })
        .await;
    }
    let out = offerd_cli(&c, &["apply", "-f", &path, "--prune"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/team/b updated"), "{text}");
    assert!(
        text.contains("/team/d deleted") && text.contains("/manual deleted"),
        "{text}"
    );
    assert!(text.contains("1 updated, 2 unchanged, 2 deleted"), "{text}");
    c.wait_running("/team/b", 3, 60).await;
    assert_eq!(c.offerd.http.get("/v2/apps/team/d").await.status, 404);

    // The listing commands.
    let out = offerd_cli(&c, &["apps"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("/team/b") && text.contains("/team/c"),
        "{text}"
    );
    let out = offerd_cli(&c, &["tasks", "/team/b", "--json"]);
    let tasks: Value = serde_json::from_slice(&out.stdout).expect("tasks json");
    assert_eq!(tasks.as_array().map(Vec::len), Some(3));
    let out = offerd_cli(&c, &["scale", "/team/c", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_running("/team/c", 1, 60).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_deployment_rolls_back_and_force_just_stops_it() {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(c.post_app(&sleep_app("/roll", 2)).await.status, 201);
    let before = c.wait_running("/roll", 2, 60).await;
    // A version that cannot finish (more instances than the agent holds, new command).
    let r = c
        .put_app(
            "/roll",
            &json!({ "instances": 60, "cmd": "sleep 601" }),
            false,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dep = r.value()["deploymentId"]
        .as_str()
        .expect("deployment id")
        .to_string();
    let deps = c.offerd.http.get("/v2/deployments").await.value();
    let d = deps
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == dep.as_str()))
        .cloned()
        .expect("listed");
    assert_eq!(d["affectedApps"], json!(["/roll"]));
    assert_eq!(d["currentActions"][0]["action"], "RestartApplication");

    // Rollback: the previous definition comes back as a new version and converges.
    let r = c
        .offerd
        .http
        .delete(&format!("/v2/deployments/{dep}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let after = c.wait_running("/roll", 2, 60).await;
    let app = c.offerd.http.get("/v2/apps/roll").await.value();
    assert_eq!(app["app"]["cmd"], "sleep 600");
    assert_eq!(app["app"]["instances"], 2);
    assert_eq!(after.len(), before.len());
    assert_eq!(
        c.offerd
            .http
            .delete(&format!("/v2/deployments/{dep}"))
            .await
            .status,
        404
    );

    // Force: the deployment is forgotten, the app keeps its (unreachable) target.
    let r = c.put_app("/roll", &json!({ "instances": 60 }), false).await;
    let dep = r.value()["deploymentId"]
        .as_str()
        .expect("deployment id")
        .to_string();
    let r = c
        .offerd
        .http
        .delete(&format!("/v2/deployments/{dep}?force=true"))
        .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.body.is_empty());
    let deps = c.offerd.http.get("/v2/deployments").await.value();
    assert_eq!(deps, json!([]));
    assert_eq!(
        c.offerd.http.get("/v2/apps/roll").await.value()["app"]["instances"],
        60
    );
}

//! offerd + taskrun: deploying an app, scaling it, replacing its tasks with a new version, and
//! killing tasks with and without `scale` — on real agents, with the catalog following.

use std::time::Duration;

use cairn_tests::cluster::{Cluster, ClusterOpts, alive, sleep_app};
use cairn_tests::read_stream_until;
use serde_json::json;

/// An HTTP app (python's http.server on PORT0) with a catalog-visible health check.
fn web_app(n: usize) -> serde_json::Value {
    json!({
        "id": "/shop/web",
        "cmd": "exec python3 -m http.server $PORT0 --bind 127.0.0.1",
        "cpus": 0.1, "mem": 32, "instances": n,
        "labels": { "SERVICE_TAGS": "web, v1", "team": "shop" },
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "intervalSeconds": 1, "timeoutSeconds": 2, "gracePeriodSeconds": 1 }]
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_scales_and_registers_in_the_catalog() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let r = c.post_app(&web_app(3)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert!(r.header("Marathon-Deployment-Id").is_some());
    let ids = c.wait_running("/shop/web", 3, 60).await;

    // Every task answers HTTP on its assigned host port, and is a passing catalog instance
    // named after the app id reversed, with the SERVICE_TAGS tags and the labels as meta.
    let tasks = c.tasks("/shop/web").await;
    for t in &tasks {
        let port = t["ports"][0].as_u64().expect("a host port");
        assert!(
            (c.port_base(0)..c.port_base(2)).contains(&(port as u16)),
            "port {port} outside the agents' ranges"
        );
        let page = reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await
            .expect("task answers");
        assert_eq!(page.status(), 200);
    }
    let instances = c
        .wait_for("3 passing catalog instances of web-shop", 60, || async {
            let i = c.catalog_instances("web-shop").await;
            (i.len() == 3 && i.iter().all(|x| x.2 == "passing")).then_some(i)
        })
        .await;
    let mut catalog_ids: Vec<String> = instances.iter().map(|i| i.0.clone()).collect();
    catalog_ids.sort();
    assert_eq!(catalog_ids, ids);
    let svc = c
        .catalog
        .http
        .get("/v1/catalog/service/web-shop")
        .await
        .value();
    assert_eq!(svc[0]["ServiceTags"], json!(["web", "v1"]));
    assert_eq!(svc[0]["ServiceMeta"]["team"], "shop");
    // offerd saw the health too.
    c.wait_for("tasksHealthy = 3", 30, || async {
        let app = c.offerd.http.get("/v2/apps/shop/web").await.value();
        (app["app"]["tasksHealthy"] == 3).then_some(())
    })
    .await;

    // Scale up, then down: the catalog follows, the killed processes are gone.
    let r = c
        .put_app("/shop/web", &json!({ "instances": 5 }), false)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_running("/shop/web", 5, 60).await;
    c.wait_for("5 catalog instances", 60, || async {
        (c.catalog_instances("web-shop").await.len() == 5).then_some(())
    })
    .await;
    let before: Vec<(String, i32)> = c
        .running("/shop/web")
        .await
        .into_iter()
        .map(|id| {
            let pid = c.task_pid(&id).expect("pid recorded");
            (id, pid)
        })
        .collect();
    let r = c
        .put_app("/shop/web", &json!({ "instances": 2 }), false)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let left = c.wait_running("/shop/web", 2, 60).await;
    for (id, pid) in &before {
        if !left.contains(id) {
            c.wait_for(
                &format!("process of killed task {id} to exit"),
                30,
                || async { (!alive(*pid)).then_some(()) },
            )
            .await;
        }
    }
    c.wait_for("2 catalog instances", 60, || async {
        let i = c.catalog_instances("web-shop").await;
        let mut got: Vec<String> = i.iter().map(|x| x.0.clone()).collect();
        got.sort();
        (got == left).then_some(())
    })
    .await;

    // Delete: no task, no catalog entry left.
    let r = c.offerd.http.delete("/v2/apps/shop/web").await;
    assert_eq!(r.status, 200, "{}", r.text());
    c.wait_for("service gone from the catalog", 60, || async {
        c.catalog_instances("web-shop")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    for (_, pid) in &before {
        c.wait_for("every task process to exit", 30, || async {
            (!alive(*pid)).then_some(())
        })
        .await;
    }
    assert_eq!(c.offerd.http.get("/v2/apps/shop/web").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_replaces_every_task() {
    let c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/batch", 2)).await.status, 201);
    let old = c.wait_running("/batch", 2, 60).await;
    let old_pids: Vec<i32> = old.iter().map(|id| c.task_pid(id).expect("pid")).collect();
    let v1 = c.offerd.http.get("/v2/apps/batch").await.value()["app"]["version"].clone();

    let r = c
        .put_app(
            "/batch",
            &json!({ "cmd": "sleep 601", "env": { "V": "2" } }),
            false,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let version = r.value()["version"].clone();
    assert_ne!(version, v1);
    let new = c.wait_running("/batch", 2, 60).await;
    assert!(
        new.iter().all(|id| !old.contains(id)),
        "old tasks survived: {old:?} {new:?}"
    );
    for t in c.tasks("/batch").await {
        assert_eq!(t["version"], version);
    }
    for pid in old_pids {
        c.wait_for("old task process to exit", 30, || async {
            (!alive(pid)).then_some(())
        })
        .await;
    }
    // Both versions are kept.
    let versions = c.offerd.http.get("/v2/apps/batch/versions").await.value();
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(2));
    let first = c
        .offerd
        .http
        .get(&format!(
            "/v2/apps/batch/versions/{}",
            v1.as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.value()["cmd"], "sleep 600");

    // A scale-only change keeps the tasks.
    let r = c.put_app("/batch", &json!({ "instances": 3 }), false).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let scaled = c.wait_running("/batch", 3, 60).await;
    assert!(
        new.iter().all(|id| scaled.contains(id)),
        "a scale replaced tasks"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_tasks_with_and_without_scale() {
    let c = Cluster::start(ClusterOpts::default()).await;
    assert_eq!(c.post_app(&sleep_app("/k", 2)).await.status, 201);
    let ids = c.wait_running("/k", 2, 60).await;
    let victim = ids[0].clone();
    let pid = c.task_pid(&victim).expect("pid");

    // Without scale: killed and replaced.
    let r = c
        .offerd
        .http
        .delete(&format!("/v2/apps/k/tasks/{victim}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.value()["task"]["id"], victim.as_str());
    let after = c
        .wait_for("a replacement", 60, || async {
            let r = c.running("/k").await;
            (r.len() == 2 && !r.contains(&victim)).then_some(r)
        })
        .await;
    c.wait_for("killed process to exit", 30, || async {
        (!alive(pid)).then_some(())
    })
    .await;

    // With scale (through the CLI): gone for good, instances lowered.
    let out = std::process::Command::new(cairn_tests::bin("offerd"))
        .args(["kill", &after[0], "--scale", "--offerd", &c.offerd.url])
        .output()
        .expect("offerd kill");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.wait_running("/k", 1, 60).await;
    let app = c.offerd.http.get("/v2/apps/k").await.value();
    assert_eq!(app["app"]["instances"], 1);
    // An observation window, not a wait for a state: what follows asserts nothing changed in it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        c.running("/k").await.len(),
        1,
        "a task killed with scale was replaced"
    );

    // Unknown ones are 404s.
    assert_eq!(
        c.offerd.http.delete("/v2/apps/k/tasks/k.nope").await.status,
        404
    );
    let r = c
        .offerd
        .http
        .send(
            "POST",
            "/v2/tasks/delete",
            Some(br#"{"ids":["k.nope"]}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn task_logs_are_served_by_the_agent_and_health_changes_are_events() {
    let c = Cluster::start(ClusterOpts::default()).await;
    let mut events = reqwest::Client::new()
        .get(format!(
            "{}/v2/events?event_type=health_status_changed_event",
            c.offerd.url
        ))
        .send()
        .await
        .expect("event stream");
    let app = json!({
        "id": "/logs", "cpus": 0.1, "mem": 16, "instances": 1,
        "cmd": "echo \"hello from $MESOS_TASK_ID\"; echo oops >&2; sleep 1; echo second line; touch healthy; exec sleep 600",
        "healthChecks": [{ "protocol": "COMMAND", "command": { "value": "true" }, "intervalSeconds": 1, "gracePeriodSeconds": 1 }]
    });
    assert_eq!(c.post_app(&app).await.status, 201);
    let ids = c.wait_running("/logs", 1, 60).await;
    let id = &ids[0];
    let task = &c.tasks("/logs").await[0];
    let agents = c.offerd.http.get("/v1/agents").await.value();
    let agent = agents
        .as_array()
        .and_then(|a| a.iter().find(|a| a["node"] == task["slaveId"]))
        .expect("the task's agent");
    let base = format!("http://{}", agent["http_addr"].as_str().expect("http_addr"));

    // Follow: the stream starts with what is there and delivers what comes later.
    let mut follow = reqwest::get(format!(
        "{base}/v1/tasks/{id}/logs?stream=stdout&follow=true"
    ))
    .await
    .expect("logs");
    assert_eq!(follow.status(), 200);
    let text = read_stream_until(&mut follow, 30, |t| t.contains("second line"))
        .await
        .unwrap_or_else(|e| panic!("log stream: {e}"));
    assert!(text.starts_with(&format!("hello from {id}\n")), "{text:?}");
    let stderr = reqwest::get(format!("{base}/v1/tasks/{id}/logs?stream=stderr"))
        .await
        .expect("stderr");
    assert_eq!(stderr.text().await.expect("body"), "oops\n");
    let missing = reqwest::get(format!("{base}/v1/tasks/nope.1/logs?stream=stdout"))
        .await
        .expect("404");
    assert_eq!(missing.status(), 404);
    let bad = reqwest::get(format!("{base}/v1/tasks/{id}/logs?stream=both"))
        .await
        .expect("400");
    assert_eq!(bad.status(), 400);

    // The COMMAND check passes: offerd reports the task healthy and says so on the stream.
    let seen = read_stream_until(&mut events, 30, |t| t.contains("\"alive\":true"))
        .await
        .unwrap_or_else(|e| panic!("event stream: {e}\n{}", c.logs()));
    assert!(seen.contains(&format!("\"taskId\":\"{id}\"")), "{seen}");
    let t = &c.tasks("/logs").await[0];
    assert_eq!(t["healthCheckResults"][0]["alive"], true, "{t}");
}

//! offerd answering as Marathon 1.10 for Docker apps, on real taskrun agents and the real Docker
//! engine: BRIDGE apps get service ports (in their port mappings and their tasks'
//! `servicePorts`), a service port another app holds is refused, the older
//! `container.docker.network` form and Marathon 1.5+'s `networks` form are stored and answered
//! alike, a fixed `hostPort` decides placement; and a BRIDGE app with `lb_mode=tcp` is routed by
//! a real `lbconf watch` + HAProxy on its service port, to busybox httpd in the container.

use cairn_tests::cluster::ClusterOpts;
use cairn_tests::docker::{DockerCluster, busybox_image, require_engine};
use cairn_tests::lb::{Balancer, BalancerOpts};
use cairn_tests::{free_port, http_get};
use serde_json::{Value, json};

fn one_agent() -> ClusterOpts {
    ClusterOpts {
        agents: 1,
        ..Default::default()
    }
}

/// busybox httpd on container port 8080 behind a BRIDGE network, in the pre-1.5 form
/// (`container.docker.network`, mappings under `container.docker`).
fn old_form(id: &str, image: &str, mapping: Value, labels: Value) -> Value {
    json!({
        "id": id, "cmd": "exec httpd -f -p 8080 -h /www", "cpus": 0.1, "mem": 32, "instances": 1,
        "container": {
            "type": "DOCKER",
            "docker": { "image": image, "network": "BRIDGE", "portMappings": [mapping] }
        },
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "portIndex": 0,
                           "intervalSeconds": 1, "timeoutSeconds": 2, "gracePeriodSeconds": 5 }],
        "labels": labels
    })
}

/// The same app in Marathon 1.5+'s form (`networks`, `container.portMappings`).
fn new_form(id: &str, image: &str, mapping: Value, labels: Value) -> Value {
    let mut app = old_form(id, image, mapping.clone(), labels);
    app["networks"] = json!([{ "mode": "container/bridge" }]);
    app["container"] = json!({
        "type": "DOCKER", "docker": { "image": image }, "portMappings": [mapping]
    });
    app
}

/// An app's definition as a client PUTs it back: without the read-only task counts,
/// deployments and version stamps of a GET.
fn definition(mut app: Value) -> Value {
    if let Value::Object(m) = &mut app {
        for k in [
            "version",
            "versionInfo",
            "tasks",
            "deployments",
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "lastTaskFailure",
        ] {
            m.remove(k);
        }
    }
    app
}

/// What two apps of the same definition have in common (not their ids or service ports).
fn shape(app: Value) -> Value {
    let mut app = definition(app);
    if let Value::Object(m) = &mut app {
        m.remove("id");
    }
    if let Some(pm) = app["container"]["portMappings"].as_array_mut() {
        for m in pm {
            m["servicePort"] = json!("assigned");
        }
    }
    app
}

async fn get_app(c: &DockerCluster, id: &str) -> Value {
    c.offerd.http.get(&format!("/v2/apps{id}")).await.value()["app"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_apps_get_service_ports_and_both_network_forms_answer_alike() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(one_agent()).await;

    // Older form, servicePort 0: one is assigned from 10000-20000.
    let mapping = json!({ "containerPort": 8080, "servicePort": 0 });
    let r = c
        .post_app(&old_form("/ports/old", &image, mapping.clone(), json!({})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.value();
    let sp = created["container"]["portMappings"][0]["servicePort"]
        .as_u64()
        .expect("an assigned servicePort");
    assert!((10000..=20000).contains(&sp), "{created}");
    // Returned in Marathon 1.5+'s form.
    assert_eq!(created["networks"], json!([{ "mode": "container/bridge" }]));
    assert!(
        created["container"]["docker"].get("network").is_none(),
        "{created}"
    );
    assert!(
        created["container"]["docker"].get("portMappings").is_none(),
        "{created}"
    );
    assert_eq!(created["container"]["portMappings"][0]["hostPort"], 0);
    assert_eq!(created["container"]["portMappings"][0]["protocol"], "tcp");
    assert!(created.get("portDefinitions").is_none() && created.get("ports").is_none());

    // Its task runs, lists the service port, and answers on its host port.
    c.wait_running("/ports/old", 1, 120).await;
    let task = c.tasks("/ports/old").await[0].clone();
    assert_eq!(task["servicePorts"], json!([sp]), "{task}");
    assert_eq!(task["ipAddresses"][0]["protocol"], "IPv4", "{task}");
    let all = c.offerd.http.get("/v2/tasks").await.value();
    let listed = all["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["appId"] == "/ports/old")
        .cloned()
        .expect("the task in /v2/tasks");
    assert_eq!(listed["servicePorts"], json!([sp]));
    // Its catalog service carries the service port for load balancers.
    let meta = c
        .wait_for("the task's service in the catalog", 60, || async {
            let v = c
                .catalog
                .http
                .get("/v1/catalog/service/old-ports")
                .await
                .value();
            v.as_array()?.first().map(|s| s["ServiceMeta"].clone())
        })
        .await;
    assert_eq!(meta["service_port"], sp.to_string(), "{meta}");

    // Another app asking for the same servicePort: refused as Marathon did, nothing created.
    let clash = json!({ "containerPort": 8080, "servicePort": sp });
    let r = c
        .post_app(&new_form("/ports/clash", &image, clash, json!({})))
        .await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.value()["message"],
        format!("Requested service port {sp} conflicts with a service port in app /ports/old")
    );
    let r = c.offerd.http.get("/v2/apps/ports/clash").await;
    assert_eq!(r.status, 404, "a refused app is not created");

    // The 1.5+ form of the same definition is stored and answered like the older one, with a
    // fixed hostPort that placement honours.
    let host_port = c.port_base(0) + 7;
    let fixed = json!({ "containerPort": 8080, "hostPort": host_port });
    let mut old_fixed = old_form("/ports/old", &image, fixed.clone(), json!({}));
    old_fixed["id"] = json!("/ports/new");
    let r = c
        .post_app(&new_form("/ports/new", &image, fixed, json!({})))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_running("/ports/new", 1, 120).await;
    let new_app = get_app(&c, "/ports/new").await;
    let new_sp = new_app["container"]["portMappings"][0]["servicePort"]
        .as_u64()
        .expect("servicePort");
    assert_ne!(new_sp, sp, "service ports are unique");
    let task = c.tasks("/ports/new").await[0].clone();
    assert_eq!(task["ports"], json!([host_port]), "{task}");
    assert_eq!(task["servicePorts"], json!([new_sp]));
    // Posting the older form gives the very same answer (under another id, on another port).
    let r = c
        .put_app(
            "/ports/old",
            &{
                let mut a = old_fixed.clone();
                a["id"] = json!("/ports/old");
                a["container"]["docker"]["portMappings"][0]["hostPort"] = json!(0);
                a
            },
            false,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let old_app = get_app(&c, "/ports/old").await;
    let mut want = shape(new_app.clone());
    want["container"]["portMappings"][0]["hostPort"] = json!(0);
    assert_eq!(shape(old_app.clone()), want);
    assert_eq!(
        old_app["container"]["portMappings"][0]["servicePort"], sp,
        "an update re-posting servicePort 0 keeps the assigned port"
    );

    // Round trip: what GET returns can be PUT back unchanged (as Marathon clients do).
    let r = c
        .put_app("/ports/new", &definition(new_app.clone()), false)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(shape(get_app(&c, "/ports/new").await), shape(new_app));

    // Bad combinations: 422 with Marathon's paths; nothing changes.
    for (bad, path) in [
        (
            json!({"id": "/ports/bad", "cmd": "x", "networks": [{"mode": "host"}, {"mode": "host"}]}),
            "/networks",
        ),
        (
            json!({"id": "/ports/bad", "networks": [{"mode": "container"}],
                   "container": {"type": "DOCKER", "docker": {"image": image}}}),
            "/networks",
        ),
        (
            json!({"id": "/ports/bad", "networks": [{"mode": "host"}],
                   "container": {"type": "DOCKER", "docker": {"image": image},
                                 "portMappings": [{"containerPort": 80}]}}),
            "/",
        ),
    ] {
        let r = c.post_app(&bad).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        let details = r.value()["details"].clone();
        assert!(
            details
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x["path"] == path)),
            "{bad}: {details}"
        );
    }
    assert_eq!(c.offerd.http.get("/v2/apps/ports/bad").await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_apps_are_routed_by_lbconf_on_their_service_ports() {
    if !require_engine() {
        return;
    }
    let image = busybox_image();
    let c = DockerCluster::start(one_agent()).await;
    let dir = tempfile::tempdir().unwrap();
    let lb = Balancer::start(dir.path(), &c.catalog.url, BalancerOpts::default()).await;

    // Service ports fixed to free ones: other tests' balancers may bind the low end of the
    // assignment range at the same time.
    let (old_sp, new_sp) = (free_port(), free_port());
    let tcp = json!({ "lb_mode": "tcp" });
    for app in [
        old_form(
            "/lb/old",
            &image,
            json!({ "containerPort": 8080, "servicePort": old_sp }),
            tcp.clone(),
        ),
        new_form(
            "/lb/new",
            &image,
            json!({ "containerPort": 8080, "servicePort": new_sp }),
            tcp.clone(),
        ),
    ] {
        let r = c.post_app(&app).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for (id, sp) in [("/lb/old", old_sp), ("/lb/new", new_sp)] {
        c.wait_running(id, 1, 120).await;
        let body = c
            .wait_for(
                &format!("{id} answering through HAProxy on service port {sp}"),
                90,
                || async move { http_get(sp).await },
            )
            .await;
        assert_eq!(body, "hello from cairn-test\n");
        assert!(
            std::fs::read_to_string(&lb.cfg)
                .unwrap_or_default()
                .contains(&format!(":{sp}")),
            "a frontend on {sp}:\n{}",
            lb.lbconf_log()
        );
    }
}

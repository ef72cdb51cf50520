//! offerd refuses, when an app is deployed, what would hand it the agents' hosts (issue 15): a
//! bind mount outside the operator's `--allow-host-volumes` prefixes (the host's `/` read-write
//! is root on every agent), a privileged container, added capabilities. The answer is
//! Marathon's 422 naming the field; nothing is stored or launched.

use cairn_tests::cluster::{Cluster, ClusterOpts};
use serde_json::{Value, json};

struct Case {
    what: &'static str,
    docker: Value,
    volumes: Value,
    path: &'static str,
    message: &'static str,
}

fn docker_app(id: &str, docker: &Value, volumes: &Value) -> Value {
    json!({
        "id": id, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 0,
        "container": {"type": "DOCKER", "docker": docker, "volumes": volumes}
    })
}

fn errors_at(body: &Value, path: &str) -> String {
    body["details"]
        .as_array()
        .and_then(|d| d.iter().find(|x| x["path"] == path))
        .map(|x| x["errors"].to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_asking_for_the_host_are_refused_when_deployed() {
    let c = Cluster::start(ClusterOpts {
        agents: 1,
        offerd_args: vec!["--allow-host-volumes".into(), "/srv/data".into()],
        ..Default::default()
    })
    .await;
    let image = json!({"image": "busybox"});
    let cases = [
        Case {
            what: "the host's / read-write",
            docker: image.clone(),
            volumes: json!([{"containerPath": "/host", "hostPath": "/", "mode": "RW"}]),
            path: "/container/volumes(0)/hostPath",
            message: "--allow-host-volumes",
        },
        Case {
            what: "out of an allowed prefix with ..",
            docker: image.clone(),
            volumes: json!([{"containerPath": "/etc2", "hostPath": "/srv/data/../../etc", "mode": "RO"}]),
            path: "/container/volumes(0)/hostPath",
            message: "'..'",
        },
        Case {
            what: "a privileged container",
            docker: json!({"image": "busybox", "privileged": true}),
            volumes: json!([]),
            path: "/container/docker/privileged",
            message: "--allow-privileged",
        },
        Case {
            what: "an added capability",
            docker: json!({"image": "busybox", "parameters": [{"key": "cap-add", "value": "SYS_ADMIN"}]}),
            volumes: json!([]),
            path: "/container/docker/parameters(0)/key",
            message: "--allow-privileged",
        },
    ];
    // A plain app that a refused update must leave as it is.
    let plain = docker_app("/plain", &image, &json!([]));
    assert_eq!(c.post_app(&plain).await.status, 201);
    for (i, case) in cases.iter().enumerate() {
        let id = format!("/asks{i}");
        let r = c
            .post_app(&docker_app(&id, &case.docker, &case.volumes))
            .await;
        assert_eq!(r.status, 422, "{}: {}", case.what, r.text());
        let errors = errors_at(&r.value(), case.path);
        assert!(errors.contains(case.message), "{}: {}", case.what, r.text());
        let stored = c.offerd.http.get(&format!("/v2/apps{id}")).await;
        assert_eq!(stored.status, 404, "{}: nothing stored", case.what);

        let update = json!({"container": {"type": "DOCKER", "docker": case.docker, "volumes": case.volumes}});
        let r = c
            .offerd
            .http
            .send(
                "PUT",
                "/v2/apps/plain",
                Some(update.to_string().into_bytes()),
            )
            .await;
        assert_eq!(r.status, 422, "{} as an update: {}", case.what, r.text());
        let now = c.offerd.http.get("/v2/apps/plain").await.value();
        assert_eq!(
            now["app"]["container"]["volumes"],
            json!([]),
            "{}",
            case.what
        );
        assert_ne!(
            now["app"]["container"]["docker"]["privileged"],
            json!(true),
            "{}",
            case.what
        );
    }
    // Under an allowed prefix, the same app is accepted.
    let allowed = docker_app(
        "/allowed",
        &image,
        &json!([{"containerPath": "/data", "hostPath": "/srv/data/app", "mode": "RW"}]),
    );
    let r = c.post_app(&allowed).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

//! marathon-lb's app labels (issue 21): apps deployed through offerd with `HAPROXY_*` labels
//! are routed by `lbconf watch --group external` as marathon-lb routes them: by virtual host on
//! the shared frontend and on each app's service port (a frontend of its own), only for the
//! groups it serves; a label lbconf cannot honour (a raw template override) is reported in its
//! log once, not silently ignored.

use std::time::{Duration, Instant};

use cairn_tests::cluster::{Cluster, ClusterOpts};
use cairn_tests::free_port;
use cairn_tests::lb::{Balancer, BalancerOpts};
use serde_json::json;

use crate::lbconf_watch::get;

/// A python HTTP server on PORT0 answering `/` with `name`, marathon-lb labels `labels`, its
/// service port `service_port`.
fn labelled_app(
    id: &str,
    name: &str,
    service_port: u16,
    labels: serde_json::Value,
) -> serde_json::Value {
    json!({
        "id": id,
        "cmd": format!("mkdir -p www && echo -n {name} > www/index.html && exec python3 -m http.server $PORT0 --bind 127.0.0.1 --directory www"),
        "cpus": 0.1, "mem": 32, "instances": 2,
        "portDefinitions": [{"port": service_port, "protocol": "tcp"}],
        "requirePorts": false,
        "labels": labels,
        "healthChecks": [{"protocol": "HTTP", "path": "/", "intervalSeconds": 1,
                          "timeoutSeconds": 2, "gracePeriodSeconds": 1}]
    })
}

async fn eventually(what: &str, lb: &Balancer, mut ok: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok().await {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; lbconf log:\n{}",
            lb.lbconf_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_with_marathon_lb_labels_route_as_marathon_lb_routes_them() {
    let c = Cluster::start(ClusterOpts::default()).await;
    // Service ports high enough to be free on this host.
    let (web_port, internal_port, tcp_port) = (free_port(), free_port(), free_port());
    let web = labelled_app(
        "/mlb/web",
        "mlb-web",
        web_port,
        json!({"HAPROXY_GROUP": "external", "HAPROXY_0_VHOST": "mlb.test",
               "HAPROXY_0_BACKEND_HEAD": "backend {backend}\n  balance leastconn\n"}),
    );
    let internal = labelled_app(
        "/mlb/internal",
        "mlb-internal",
        internal_port,
        json!({"HAPROXY_GROUP": "internal", "HAPROXY_0_VHOST": "internal.test"}),
    );
    let tcp = labelled_app(
        "/mlb/tcp",
        "mlb-tcp",
        tcp_port,
        json!({"HAPROXY_GROUP": "external"}),
    );
    for app in [&web, &internal, &tcp] {
        let r = c.post_app(app).await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    for id in ["/mlb/web", "/mlb/internal", "/mlb/tcp"] {
        c.wait_running(id, 2, 60).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let lb = Balancer::start(
        dir.path(),
        &c.catalog.url,
        BalancerOpts {
            extra_args: vec!["--group".into(), "external".into()],
            ..Default::default()
        },
    )
    .await;
    // By virtual host on the shared frontend.
    eventually("mlb.test routed by its vhost", &lb, async || {
        get(lb.http_port, "mlb.test").await.as_deref() == Some("mlb-web")
    })
    .await;
    // On its service port, as marathon-lb binds every app's servicePort.
    eventually("the web app on its service port", &lb, async || {
        get(web_port, "anything").await.as_deref() == Some("mlb-web")
    })
    .await;
    // An app without a vhost: its service port only, in TCP mode (marathon-lb's default).
    eventually("the tcp app on its service port", &lb, async || {
        get(tcp_port, "x").await.as_deref() == Some("mlb-tcp")
    })
    .await;
    // Another group's app is not this load balancer's.
    assert_eq!(
        get(lb.http_port, "internal.test").await.as_deref(),
        Some("status 503")
    );
    assert!(
        get(internal_port, "x").await.is_none(),
        "the internal app's port is bound"
    );
    let cfg = std::fs::read_to_string(&lb.cfg).unwrap();
    assert!(!cfg.contains("internal.test"), "{cfg}");

    // The template override is reported once, naming the label; a scale change (new
    // instances, new reloads or runtime updates) does not repeat it.
    let log = lb.lbconf_log();
    assert_eq!(log.matches("HAPROXY_0_BACKEND_HEAD").count(), 1, "{log}");
    let applied = |log: &str| {
        log.matches("instances updated").count() + log.matches("HAProxy reloaded").count()
    };
    let before = applied(&log);
    let r = c
        .offerd
        .http
        .put_json("/v2/apps/mlb/web?force=true", &json!({"instances": 3}))
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    c.wait_running("/mlb/web", 3, 60).await;
    eventually("lbconf to apply the third instance", &lb, async || {
        applied(&lb.lbconf_log()) > before
    })
    .await;
    let log = lb.lbconf_log();
    assert_eq!(log.matches("HAPROXY_0_BACKEND_HEAD").count(), 1, "{log}");
}

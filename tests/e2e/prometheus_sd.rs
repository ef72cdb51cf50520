//! Prometheus finds everything by itself: Debian's real Prometheus, given only catalogd's
//! `/v1/cairn/prometheus/targets` as an `http_sd_configs` URL, scrapes catalogd and every
//! service instance that opted in with ServiceMeta `prometheus_port`, leaves out the others,
//! follows a deregistration, and with ACLs on sees what its token may read.

use std::time::Duration;

use cairn_tests::prometheus::Prometheus;
use cairn_tests::{Catalogd, Http, wait_for};
use serde_json::{Value, json};

const TARGETS: &str = "/v1/cairn/prometheus/targets";
/// How long Prometheus may take to pass a discovery change on to its scrapers (its discovery
/// manager sends updates every 5 s) and scrape the new target (every 1 s here).
const PROPAGATION: Duration = Duration::from_secs(60);

/// A scrape job reading catalogd's targets every second; `__meta_cairn_service` becomes the
/// `service` label. `auth` is the job's extra `http_sd_configs` settings.
fn job(name: &str, catalogd: u16, auth: &str) -> String {
    format!(
        "  - job_name: {name}\n    http_sd_configs:\n      \
         - url: http://127.0.0.1:{catalogd}{TARGETS}\n        refresh_interval: 1s\n{auth}    \
         relabel_configs:\n      \
         - source_labels: [__meta_cairn_service]\n        target_label: service\n"
    )
}

fn config(jobs: &[String]) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n{}",
        jobs.concat()
    )
}

/// An instance on node `node` at 127.0.0.1 with `meta`, its check passing.
async fn register(h: &Http, node: &str, id: &str, name: &str, meta: Value) {
    let reg = json!({
        "Node": node, "Address": "127.0.0.1",
        "Service": {"ID": id, "Service": name, "Port": 1, "Tags": ["web", "v2"], "Meta": meta},
        "Check": {"CheckID": format!("{id}-alive"), "Name": "alive", "ServiceID": id,
                  "Status": "passing"},
    });
    let r = h.put_json("/v1/catalog/register", &reg).await;
    assert_eq!(r.status, 200, "registering {id}: {}", r.text());
}

/// The services (`service` label) of the active targets of `job`, with each target's health.
async fn services_of(prom: &Prometheus, job: &str) -> Vec<(String, String, Value)> {
    let mut out: Vec<(String, String, Value)> = prom
        .active_targets()
        .await
        .into_iter()
        .filter(|t| t["scrapePool"] == job)
        .map(|t| {
            let service = t["labels"]["service"].as_str().unwrap_or("").to_string();
            let health = t["health"].as_str().unwrap_or("").to_string();
            (service, health, t)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Waits until `job`'s active targets are exactly `want` (service names), each scraped `up`.
async fn wait_up(prom: &Prometheus, job: &str, want: &[&str]) -> Vec<(String, String, Value)> {
    let last = std::cell::RefCell::new(String::new());
    wait_for(
        &format!("Prometheus job {job} to scrape exactly {want:?}, all up"),
        PROPAGATION,
        || {
            format!(
                "last targets: {}\nprometheus log:\n{}",
                last.borrow(),
                prom.log_text()
            )
        },
        async || {
            let targets = services_of(prom, job).await;
            let seen: Vec<(&str, &str)> = targets
                .iter()
                .map(|t| (t.0.as_str(), t.1.as_str()))
                .collect();
            *last.borrow_mut() = format!("{seen:?}");
            let names: Vec<&str> = targets.iter().map(|t| t.0.as_str()).collect();
            (names == want && targets.iter().all(|t| t.1 == "up")).then_some(targets)
        },
    )
    .await
}

/// The target groups catalogd answers `h`, by `__meta_cairn_service_id`.
async fn groups(h: &Http) -> Vec<(String, Value)> {
    let r = h.get(TARGETS).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let mut out: Vec<(String, Value)> = r
        .value()
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {}", r.text()))
        .iter()
        .map(|g| {
            let id = g["labels"]["__meta_cairn_service_id"]
                .as_str()
                .unwrap_or("");
            (id.to_string(), g.clone())
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn ids(groups: &[(String, Value)]) -> Vec<&str> {
    groups.iter().map(|g| g.0.as_str()).collect()
}

#[tokio::test]
async fn prometheus_discovers_catalogd_and_the_services_that_opt_in() {
    let c = Catalogd::start().await;
    // The opted-in service's metrics: another catalogd's /metrics (real Prometheus text).
    let app = Catalogd::start_with(&["--node", "app-host"]).await;
    let port = app.port.to_string();
    register(
        &c.http,
        "app-host",
        "shop-1",
        "shop",
        json!({"prometheus_port": port, "team.name": "core"}),
    )
    .await;
    register(&c.http, "app-host", "plain-1", "plain", json!({})).await;
    register(
        &c.http,
        "app-host",
        "broken-1",
        "broken",
        json!({"prometheus_port": "not-a-port"}),
    )
    .await;

    // What catalogd answers, as Prometheus' http_sd format asks.
    let answer = groups(&c.http).await;
    assert_eq!(ids(&answer), ["cairn-catalogd", "shop-1"], "{answer:?}");
    let own = &answer[0].1;
    assert_eq!(own["targets"], json!([format!("127.0.0.1:{}", c.port)]));
    assert_eq!(own["labels"]["__metrics_path__"], "/metrics");
    assert_eq!(own["labels"]["__scheme__"], "http");
    assert_eq!(own["labels"]["__meta_cairn_node"], c.node.as_str());
    assert_eq!(own["labels"]["__meta_cairn_tags"], ",cairn,");
    let shop = &answer[1].1;
    assert_eq!(shop["targets"], json!([format!("127.0.0.1:{port}")]));
    for (label, value) in [
        ("__metrics_path__", "/metrics"),
        ("__meta_cairn_service", "shop"),
        ("__meta_cairn_node", "app-host"),
        ("__meta_cairn_address", "127.0.0.1"),
        ("__meta_cairn_service_port", "1"),
        ("__meta_cairn_tags", ",web,v2,"),
        ("__meta_cairn_health", "passing"),
        ("__meta_cairn_dc", "dc1"),
        ("__meta_cairn_service_metadata_team_name", "core"),
        (
            "__meta_cairn_service_metadata_prometheus_port",
            port.as_str(),
        ),
    ] {
        assert_eq!(shop["labels"][label], value, "{label} in {shop}");
    }
    let metrics = c.http.get("/metrics").await.text();
    assert!(
        metrics.contains("\ncatalogd_prometheus_sd_invalid_instances 1\n")
            && metrics.contains("\ncatalogd_prometheus_sd_targets 2\n"),
        "{metrics}"
    );

    let prom = Prometheus::start(&config(&[job("cairn", c.port, "")])).await;
    let up = wait_up(&prom, "cairn", &["cairn-catalogd", "shop"]).await;
    let shop = &up[1].2;
    assert_eq!(
        shop["scrapeUrl"],
        format!("http://127.0.0.1:{port}/metrics"),
        "{shop}"
    );
    assert_eq!(shop["discoveredLabels"]["__meta_cairn_tags"], ",web,v2,");
    assert_eq!(
        up[0].2["scrapeUrl"],
        format!("http://127.0.0.1:{}/metrics", c.port)
    );
    // Prometheus stored what it scraped: `up` of the service, and the service's own figures
    // (the second catalogd's instance count), under the relabeled `service` label.
    let sample = |v: &Value| v["value"][1].as_str().map(str::to_string);
    let value = wait_for(
        "up{service=\"shop\"} in Prometheus",
        PROPAGATION,
        || prom.log_text(),
        async || {
            prom.query("up{service=\"shop\"}")
                .await?
                .first()
                .and_then(sample)
        },
    )
    .await;
    assert_eq!(value, "1");
    let scraped = wait_for(
        "catalogd_nodes{service=\"shop\"} in Prometheus",
        PROPAGATION,
        || prom.log_text(),
        async || {
            let r = prom.query("catalogd_nodes{service=\"shop\"}").await?;
            r.first().and_then(sample)
        },
    )
    .await;
    assert_eq!(scraped, "1", "the second catalogd holds its own node only");

    // Deregistered: Prometheus stops scraping it; catalogd itself stays.
    let r = c
        .http
        .put_json(
            "/v1/catalog/deregister",
            &json!({"Node": "app-host", "ServiceID": "shop-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_up(&prom, "cairn", &["cairn-catalogd"]).await;
    assert_eq!(ids(&groups(&c.http).await), ["cairn-catalogd"]);
}

const ROOT: &str = "5d1c3a8e-2b7f-4c11-9e0d-6a2f4b9c7e11";

/// A policy and a token holding it; returns the token's secret.
async fn token_with_rules(root: &Http, name: &str, rules: &str) -> String {
    let policy = root
        .put_json("/v1/acl/policy", &json!({"Name": name, "Rules": rules}))
        .await;
    assert_eq!(policy.status, 200, "{}", policy.text());
    let token = root
        .put_json(
            "/v1/acl/token",
            &json!({"Description": name, "Policies": [{"Name": name}]}),
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.text());
    token.value()["SecretID"]
        .as_str()
        .expect("a SecretID")
        .to_string()
}

#[tokio::test]
async fn with_acls_prometheus_sees_what_its_token_may_read() {
    let c = Catalogd::start_with(&[
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        ROOT,
    ])
    .await;
    let root = Http::new(&c.url).with_header("X-Consul-Token", ROOT);
    let app = Catalogd::start().await;
    let meta = json!({"prometheus_port": app.port.to_string()});
    for (id, name) in [
        ("shop-1", "shop"),
        ("secret-1", "secret"),
        ("public-1", "public"),
    ] {
        register(&root, "app-host", id, name, meta.clone()).await;
    }
    let token = token_with_rules(
        &root,
        "shop-reader",
        "service \"shop\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    )
    .await;
    // Requests without a token may read `public` alone.
    let public = root
        .put_json(
            "/v1/acl/policy",
            &json!({"Name": "public-read", "Rules":
                "service \"public\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }"}),
        )
        .await;
    assert_eq!(public.status, 200, "{}", public.text());
    let anonymous_token = root
        .put_json(
            "/v1/acl/token/00000000-0000-0000-0000-000000000002",
            &json!({"Description": "Anonymous Token", "Policies": [{"Name": "public-read"}]}),
        )
        .await;
    assert_eq!(anonymous_token.status, 200, "{}", anonymous_token.text());

    // catalogd filters the answer by the token, however Prometheus sends it.
    let everything = groups(&root).await;
    assert_eq!(
        ids(&everything),
        ["cairn-catalogd", "public-1", "secret-1", "shop-1"]
    );
    let bearer = Http::new(&c.url).with_header("Authorization", &format!("Bearer {token}"));
    let r = bearer.get(TARGETS).await;
    assert_eq!(r.header("x-consul-results-filtered-by-acls"), Some("true"));
    assert_eq!(ids(&groups(&bearer).await), ["shop-1"]);
    assert_eq!(ids(&groups(&Http::new(&c.url)).await), ["public-1"]);

    let with_token = format!("        authorization:\n          credentials: {token}\n");
    let prom = Prometheus::start(&config(&[
        job("with-token", c.port, &with_token),
        job("anonymous", c.port, ""),
    ]))
    .await;
    wait_up(&prom, "with-token", &["shop"]).await;
    wait_up(&prom, "anonymous", &["public"]).await;
    // Both discoveries are answered, not refused.
    assert_eq!(
        prom.own_metric("prometheus_sd_http_failures_total").await,
        Some(0.0),
        "{}",
        prom.log_text()
    );
}

#[tokio::test]
async fn every_cairn_daemon_with_metrics_is_scraped_through_discovery() {
    let mut c = cairn_tests::cluster::Cluster::start(cairn_tests::cluster::ClusterOpts {
        agents: 2,
        ..Default::default()
    })
    .await;
    let lb_dir = tempfile::tempdir().expect("temp dir");
    let _lb = cairn_tests::lb::Balancer::start(
        lb_dir.path(),
        &c.catalog.url,
        cairn_tests::lb::BalancerOpts {
            metrics: true,
            ..Default::default()
        },
    )
    .await;
    let prom = Prometheus::start(&config(&[job("cairn", c.catalog.port, "")])).await;
    // catalogd lists itself; offerd, lbconf and each agent registered their own services.
    let targets = wait_up(
        &prom,
        "cairn",
        &[
            "cairn-catalogd",
            "cairn-lbconf",
            "cairn-offerd",
            "cairn-taskrun",
            "cairn-taskrun",
        ],
    )
    .await;
    let offerd = targets
        .iter()
        .find(|t| t.0 == "cairn-offerd")
        .expect("offerd's target");
    assert_eq!(
        offerd.2["scrapeUrl"],
        format!("http://127.0.0.1:{}/metrics", c.offerd.port()),
        "{targets:?}"
    );
    let up = prom
        .query("up{service=\"cairn-offerd\"}")
        .await
        .unwrap_or_default();
    assert_eq!(up.first().map(|s| s["value"][1].clone()), Some(json!("1")));

    // A clean stop takes offerd's service out of the catalog, hence out of discovery.
    assert!(c.offerd.sigterm(Duration::from_secs(20)).success());
    wait_for(
        "cairn-offerd to leave the targets",
        Duration::from_secs(20),
        String::new,
        async || {
            let g = groups(&c.catalog.http).await;
            (!ids(&g).iter().any(|id| id.starts_with("cairn-offerd"))).then_some(())
        },
    )
    .await;
}

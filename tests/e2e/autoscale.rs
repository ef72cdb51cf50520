//! offerd's autoscaler and capacity watch against real parts: Debian's Prometheus answering a
//! `prometheus:` policy's query (its scrape target a real HTTP server whose figure the test
//! sets), a policy whose source goes away, and a capacity hook run by offerd with the shortfall.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_tests::cluster::{Cluster, ClusterOpts};
use cairn_tests::lb::{Balancer, BalancerOpts};
use cairn_tests::prometheus::Prometheus;
use serde_json::{Value, json};

/// A scrape target serving `cairn_test_load <value>`, the value set by the test.
struct LoadGauge {
    value: Arc<AtomicU64>,
    port: u16,
    server: tokio::task::JoinHandle<()>,
}

impl LoadGauge {
    async fn start(initial: f64) -> LoadGauge {
        let value = Arc::new(AtomicU64::new(initial.to_bits()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the load gauge");
        let port = listener.local_addr().expect("bound address").port();
        let shown = value.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let v = f64::from_bits(shown.load(Ordering::SeqCst));
                async move { format!("# TYPE cairn_test_load gauge\ncairn_test_load {v}\n") }
            }),
        );
        let server = tokio::spawn(async move {
            // Ends with the test (aborted on drop).
            let _ = axum::serve(listener, app).await;
        });
        LoadGauge {
            value,
            port,
            server,
        }
    }

    fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Ordering::SeqCst);
    }
}

impl Drop for LoadGauge {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn prometheus_config(target_port: u16) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: load\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
    )
}

/// A cluster of one agent whose offerd autoscales every second, rates over 5 s unless `extra`
/// (more `offerd serve` flags) says otherwise.
async fn cluster_with(extra: &[String]) -> Cluster {
    let mut offerd_args = vec!["--autoscale-interval".to_string(), "1s".to_string()];
    if !extra.iter().any(|a| a == "--autoscale-rate-window") {
        offerd_args.extend(["--autoscale-rate-window".to_string(), "5s".to_string()]);
    }
    offerd_args.extend_from_slice(extra);
    Cluster::start(ClusterOpts {
        agents: 1,
        offerd_args,
        ..ClusterOpts::default()
    })
    .await
}

fn scaled_app(id: &str, labels: Value) -> Value {
    json!({ "id": id, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 1, "labels": labels })
}

async fn status(c: &Cluster, app: &str) -> Option<Value> {
    let r = c
        .offerd
        .http
        .get(&format!("/v1/autoscale/status?app={app}"))
        .await;
    (r.status == 200).then(|| r.value()["apps"][0].clone())
}

async fn instances(c: &Cluster, app: &str) -> i64 {
    c.offerd.http.get(&format!("/v2/apps{app}")).await.value()["app"]["instances"]
        .as_i64()
        .unwrap_or(-1)
}

#[tokio::test]
async fn a_bad_policy_is_refused_naming_each_label() {
    let c = cluster_with(&[]).await;
    let r = c
        .post_app(&scaled_app(
            "/bad",
            json!({
                "cairn.autoscale.metric": "qps",
                "cairn.autoscale.target": "0",
                "cairn.autoscale.max": "3",
            }),
        ))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.value();
    let paths: Vec<&str> = body["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "/labels/cairn.autoscale.metric",
            "/labels/cairn.autoscale.target"
        ],
        "{body}"
    );
    assert_eq!(
        c.offerd.http.get("/v2/apps/bad").await.status,
        404,
        "a refused app is not created"
    );
}

#[tokio::test]
async fn a_prometheus_policy_scales_up_holds_steady_and_scales_back_down() {
    let load = LoadGauge::start(250.0).await;
    let prom = Prometheus::start(&prometheus_config(load.port)).await;
    let c = cluster_with(&[
        "--prometheus".into(),
        format!("http://127.0.0.1:{}", prom.port),
    ])
    .await;
    let app = "/q";
    let r = c
        .post_app(&scaled_app(
            app,
            json!({
                "cairn.autoscale.metric": "prometheus:max(cairn_test_load)",
                "cairn.autoscale.target": "100",
                "cairn.autoscale.min": "1",
                "cairn.autoscale.max": "5",
                "cairn.autoscale.cooldown": "2s",
                "cairn.autoscale.scale_down_window": "4s",
            }),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    // 250 per instance against 100 on one ready instance: ceil(2.5) = 3.
    c.wait_running(app, 3, 60).await;
    let st = status(&c, app).await.expect("status of /q");
    assert_eq!(st["lastScale"]["from"], 1, "{st}");
    assert_eq!(st["lastScale"]["to"], 3, "{st}");
    assert_eq!(st["metric"], "prometheus:max(cairn_test_load)");

    // The load spread over three: 83 per instance is within what three serve; nothing moves.
    load.set(250.0 / 3.0);
    c.wait_for("a steady decision at 83 per instance", 30, || async {
        let st = status(&c, app).await?;
        (st["decision"] == "steady" && st["value"].as_f64()? < 90.0).then_some(())
    })
    .await;
    let scaled_at = st["lastScale"]["at"].clone();
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(instances(&c, app).await, 3);
    }
    assert_eq!(
        status(&c, app).await.expect("status")["lastScale"]["at"],
        scaled_at,
        "no scale under steady load"
    );

    // Demand drops to a tenth of an instance: after the 4 s window, back to min.
    load.set(10.0);
    c.wait_running(app, 1, 60).await;
    let st = status(&c, app).await.expect("status");
    assert_eq!(st["lastScale"]["to"], 1, "{st}");
    assert!(
        st["lastScale"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("over the last 4 s")),
        "{st}"
    );
}

#[tokio::test]
async fn a_source_that_goes_away_holds_the_app_and_says_why() {
    let load = LoadGauge::start(50.0).await;
    let prom = Prometheus::start(&prometheus_config(load.port)).await;
    let prom_url = format!("http://127.0.0.1:{}", prom.port);
    let c = cluster_with(&["--prometheus".into(), prom_url.clone()]).await;
    let app = "/held";
    let mut events = reqwest::Client::new()
        .get(format!(
            "{}/v2/events?event_type=scaling_event",
            c.offerd.url
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("event stream");
    let r = c
        .post_app(&scaled_app(
            app,
            json!({
                "cairn.autoscale.metric": "prometheus:max(cairn_test_load)",
                "cairn.autoscale.target": "100",
                "cairn.autoscale.max": "4",
                "cairn.autoscale.scale_down_window": "1s",
            }),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_running(app, 1, 60).await;
    c.wait_for("a reading of the query", 30, || async {
        let st = status(&c, app).await?;
        (st["value"].as_f64()? == 50.0).then_some(())
    })
    .await;

    drop(prom);
    // The demand Prometheus can no longer tell would scale the app up: it must not move.
    load.set(1000.0);
    let st = c
        .wait_for("the app held for its source", 30, || async {
            let st = status(&c, app).await?;
            (st["decision"] == "hold").then_some(st)
        })
        .await;
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("Prometheus at {prom_url}/")),
        "{st}"
    );
    assert!(st["value"].is_null(), "{st}");
    for _ in 0..3 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert_eq!(instances(&c, app).await, 1);
    }
    let text = cairn_tests::read_stream_until(&mut events, 30, |t| t.contains("\"hold\""))
        .await
        .expect("a scaling_event for the hold");
    assert!(text.contains("\"appId\":\"/held\""), "{text}");

    let out = Command::new(cairn_tests::bin("offerd"))
        .args(["apps", "--offerd", &c.offerd.url])
        .output()
        .expect("offerd apps");
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.starts_with("/held "))
        .unwrap_or_else(|| panic!("no /held in:\n{table}"));
    assert!(
        line.contains("prometheus:max(cairn_test_load) -/100 [1..4] hold: Prometheus at"),
        "{table}"
    );
}

#[tokio::test]
async fn the_capacity_hook_gets_the_shortfall() {
    let dir = tempfile::tempdir().expect("temp dir");
    let got = dir.path().join("shortfall.json");
    let c = cluster_with(&[
        "--capacity-after".into(),
        "1s".into(),
        "--capacity-hook".into(),
        format!("cat > {}.tmp && mv {0}.tmp {0}", got.display()),
    ])
    .await;
    // One agent with 4 cpus: 3 of 5 one-and-a-half-cpu instances cannot be placed.
    let r = c
        .post_app(&json!({
            "id": "/big", "cmd": "sleep 600", "cpus": 1.5, "mem": 16, "instances": 5,
            "constraints": [["hostname", "LIKE", "node-.*"]],
        }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let shortfall: Value = c
        .wait_for("the hook's file", 60, || async {
            serde_json::from_slice(&std::fs::read(&got).ok()?).ok()
        })
        .await;
    assert_eq!(shortfall["total"]["instances"], 3, "{shortfall}");
    assert_eq!(shortfall["total"]["cpus"], 4.5, "{shortfall}");
    assert_eq!(shortfall["total"]["mem"], 48.0, "{shortfall}");
    let app = &shortfall["apps"][0];
    assert_eq!(app["appId"], "/big");
    assert_eq!(app["constraints"], json!(["hostname:LIKE:node-.*"]));
    assert!(
        app["reason"].as_str().is_some_and(|r| r.contains("cpus")),
        "{shortfall}"
    );

    let metrics = c.offerd.http.get("/metrics").await.text();
    assert!(
        metrics.contains("offerd_capacity_shortfall{resource=\"cpus\"} 4.5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("offerd_pending_tasks{reason=\"resources\"} 3"),
        "{metrics}"
    );
    let st = c.offerd.http.get("/v1/autoscale/status").await.value();
    assert_eq!(st["capacity"]["total"]["instances"], 3, "{st}");
}

#[tokio::test]
async fn a_cpu_policy_scales_up_while_tasks_burn_and_back_when_they_idle() {
    let c = cluster_with(&[]).await;
    let app = "/burn";
    // Each task burns CPU for its first 8 s (its cgroup holds it to its 0.1 cpus: 100 % of its
    // reservation against a target of 50 %), then idles.
    let r = c
        .post_app(&json!({
            "id": app,
            "cmd": "timeout 8 sh -c 'while :; do :; done'; exec sleep 600",
            "cpus": 0.1, "mem": 32, "instances": 1,
            "labels": {
                "cairn.autoscale.metric": "cpu",
                "cairn.autoscale.target": "50",
                "cairn.autoscale.max": "3",
                "cairn.autoscale.cooldown": "2s",
                "cairn.autoscale.scale_down_window": "5s",
            },
        }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_for("/burn scaled to its max of 3 on CPU", 60, || async {
        (instances(&c, app).await == 3).then_some(())
    })
    .await;
    let st = status(&c, app).await.expect("status of /burn");
    assert_eq!(st["metric"], "cpu");
    assert_eq!(st["lastScale"]["to"], 3, "{st}");
    // Once every task idles, utilisation falls to ~0 and the window brings it back to min.
    c.wait_running(app, 1, 90).await;
    let st = status(&c, app).await.expect("status of /burn");
    assert_eq!(st["lastScale"]["to"], 1, "{st}");
    assert!(st["value"].as_f64().is_some_and(|v| v < 25.0), "{st}");
}

/// busybox httpd answering `/` (the many-hosts test's server, without its fallbacks).
fn httpd_app(id: &str, vhost: &str, labels: Value) -> Value {
    let mut labels = labels;
    labels["lb_vhost"] = json!(vhost);
    json!({
        "id": id,
        "cmd": "mkdir -p www && echo ok > www/index.html && exec /bin/busybox httpd -f -p \"$HOST:$PORT0\" -h www",
        "cpus": 0.1, "mem": 32, "instances": 1,
        "labels": labels,
        "healthChecks": [{ "protocol": "HTTP", "path": "/", "intervalSeconds": 1,
                           "timeoutSeconds": 1, "gracePeriodSeconds": 5 }],
    })
}

#[tokio::test]
async fn an_rps_policy_follows_wrk_load_through_haproxy_without_flapping() {
    let lb_metrics = cairn_tests::free_port();
    // A 10 s rate window: lbconf reuses a reading for up to a second, so a reading's time is
    // known to a second; over 10 s that is within the tolerance.
    let c = cluster_with(&[
        "--autoscale-lbconf".into(),
        format!("http://127.0.0.1:{lb_metrics}"),
        "--autoscale-rate-window".into(),
        "10s".into(),
    ])
    .await;
    let lb_dir = tempfile::tempdir().expect("temp dir");
    let lb = Balancer::start(
        lb_dir.path(),
        &c.catalog.url,
        BalancerOpts {
            metrics_port: Some(lb_metrics),
            ..BalancerOpts::default()
        },
    )
    .await;
    let app = "/web";
    let vhost = "web.auto";
    let r = c
        .post_app(&httpd_app(
            app,
            vhost,
            json!({
                "cairn.autoscale.metric": "rps",
                "cairn.autoscale.target": "50",
                "cairn.autoscale.max": "6",
                "cairn.autoscale.cooldown": "3s",
                "cairn.autoscale.scale_down_window": "10s",
            }),
        ))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    c.wait_running(app, 1, 60).await;
    let url = format!("http://127.0.0.1:{}/", lb.http_port);
    let http = reqwest::Client::new();
    c.wait_for("/web routed by HAProxy", 60, || async {
        let r = http.get(&url).header("host", vhost).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // Two connections, each sending a request 15 ms after its answer: at most 133 requests a
    // second (about 120 here), which three instances serve under the target of 50 and which
    // can never ask for a fourth.
    let pace = lb_dir.path().join("pace.lua");
    std::fs::write(&pace, "function delay()\n  return 15\nend\n").expect("wrk script");
    let mut wrk = tokio::process::Command::new("wrk")
        .args([
            "-t1",
            "-c2",
            "-d120s",
            "-H",
            &format!("Host: {vhost}"),
            "-s",
        ])
        .arg(&pace)
        .arg(&url)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("wrk is not installed: run scripts/test (apt-get install wrk)");
    let settled = c
        .wait_for("/web to settle under the target", 90, || async {
            let st = status(&c, app).await?;
            let healthy = c.running(app).await.len() as i64;
            let n = instances(&c, app).await;
            (n >= 2 && healthy == n && st["decision"] == "steady" && st["value"].as_f64()? <= 55.0)
                .then_some(n)
        })
        .await;
    // Steady load for 15 s: never above the settled count, and never back and forth (a slower
    // machine may serve fewer requests, and a lower count that lasts its window is no flap).
    let mut counts = vec![settled];
    for _ in 0..15 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        counts.push(instances(&c, app).await);
    }
    assert!(
        counts.iter().all(|&n| n <= settled) && counts.windows(2).all(|w| w[1] <= w[0]),
        "flapped under steady load: {counts:?}"
    );
    let st = status(&c, app).await.expect("status");
    assert!(st["value"].as_f64().is_some_and(|v| v > 20.0), "{st}");

    // Load gone: the rate falls to 0 over the rate window and, a 10 s window after each lower
    // reading, the app steps down to min.
    wrk.kill().await.expect("stopping wrk");
    c.wait_running(app, 1, 90).await;
    let st = status(&c, app).await.expect("status");
    assert_eq!(st["lastScale"]["to"], 1, "{st}");
    assert!(
        st["lastScale"]["from"]
            .as_i64()
            .is_some_and(|from| from > 1 && from <= settled),
        "{st}"
    );
}

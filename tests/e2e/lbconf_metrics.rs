//! `lbconf watch --metrics-listen`: HAProxy's request counts per catalog service, as offerd's
//! autoscaler reads them, from a real HAProxy serving real HTTP backends. The counter is exact
//! (every request sent, no more: HAProxy counts no health check as a request), it carries the
//! instances' `marathon-app-id`, it never goes down across a reload (the old process's last
//! requests included), `promtool` accepts the text, and a stopped HAProxy gives
//! `lbconf_haproxy_up 0` with the last figures.

use std::time::Duration;

use cairn_tests::lb::{Balancer, BalancerOpts};
use cairn_tests::{Catalogd, Http, wait_for};
use serde_json::json;

use crate::lbconf_watch::{backend, get};

const WEB: &str = "service=\"web\",app=\"/shop/web\"";

/// The value of the sample `name{labels}` (`name` alone for no labels) in the exposition
/// `text`.
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
}

/// A scrape of lbconf's /metrics, None when it does not answer 200.
async fn scrape(metrics: &Http) -> Option<String> {
    let r = metrics.try_send("GET", "/metrics", None).await.ok()?;
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    (r.status == 200).then(|| r.text())
}

/// Sends `n` requests for web.test through HAProxy; each must be answered by one of web's
/// instances.
async fn send(http_port: u16, n: usize) {
    for i in 0..n {
        let body = get(http_port, "web.test").await;
        assert!(
            matches!(body.as_deref(), Some("A" | "B")),
            "request {i} answered {body:?}"
        );
    }
}

#[tokio::test]
async fn requests_per_service_from_haproxy_across_reloads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (_a, port_a) = backend(d, "A");
    let (_b, port_b) = backend(d, "B");
    let c = Catalogd::start().await;
    let reg = |node: &str, svc: &str, port: u16, meta: serde_json::Value| {
        json!({"Node": node, "Address": "127.0.0.1",
               "Service": {"ID": node, "Service": svc, "Port": port, "Meta": meta}})
    };
    let web = json!({"lb_vhost": "web.test", "marathon-app-id": "/shop/web"});
    for (node, port) in [("a", port_a), ("b", port_b)] {
        c.http
            .put_json("/v1/catalog/register", &reg(node, "web", port, web.clone()))
            .await;
    }
    let mut lb = Balancer::start(
        d,
        &c.url,
        BalancerOpts {
            metrics: true,
            spare_slots: Some(2),
            ..Default::default()
        },
    )
    .await;
    let metrics = Http::new(&format!(
        "http://127.0.0.1:{}",
        lb.metrics_port.expect("--metrics-listen given")
    ));
    let (lb_log, hap_log, http_port) = (lb.lb_log.clone(), lb.haproxy_log.clone(), lb.http_port);
    let logs = || {
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("lbconf:\n{}\nhaproxy:\n{}", read(&lb_log), read(&hap_log))
    };

    // Both instances up (the spare slots are no servers), nothing served yet.
    let text = wait_for(
        "web's two servers up",
        Duration::from_secs(20),
        &logs,
        async || {
            let text = scrape(&metrics).await?;
            (sample(
                &text,
                "lbconf_backend_servers",
                &format!("{WEB},state=\"up\""),
            ) == Some(2.0))
            .then_some(text)
        },
    )
    .await;
    assert_eq!(sample(&text, "lbconf_haproxy_up", ""), Some(1.0), "{text}");
    for state in ["down", "maint"] {
        let labels = format!("{WEB},state=\"{state}\"");
        assert_eq!(
            sample(&text, "lbconf_backend_servers", &labels),
            Some(0.0),
            "{text}"
        );
    }
    assert_eq!(
        sample(&text, "lbconf_backend_requests_total", WEB),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "lbconf_backend_request_rate", WEB).is_some(),
        "{text}"
    );
    assert_eq!(
        sample(&text, "lbconf_reloads_total", ""),
        Some(0.0),
        "{text}"
    );

    // N requests: the counter reads exactly N (figures are at most a second old).
    let n = 20;
    send(http_port, n).await;
    let mut seen = Vec::new();
    let text = wait_for(
        "N requests counted",
        Duration::from_secs(10),
        &logs,
        async || {
            let text = scrape(&metrics).await?;
            let v = sample(&text, "lbconf_backend_requests_total", WEB)?;
            seen.push(v);
            (v == n as f64).then_some(text)
        },
    )
    .await;
    cairn_tests::prometheus::assert_promtool_accepts(&text);

    // M1 more, then at once a new service, which HAProxy reloads for: the new process counts
    // from 0, and the M1 requests the old one served since the last scrape are counted by the
    // read lbconf makes before reloading. Then M2 more through the new process.
    let (m1, m2) = (5, 7);
    send(http_port, m1).await;
    c.http
        .put_json(
            "/v1/catalog/register",
            &reg("c", "api", port_a, json!({"lb_vhost": "api.test"})),
        )
        .await;
    wait_for(
        "api.test served after a reload",
        Duration::from_secs(20),
        &logs,
        async || (get(http_port, "api.test").await.as_deref() == Some("A")).then_some(()),
    )
    .await;
    // A service without marathon-app-id has an empty app label.
    let api = "service=\"api\",app=\"\"";
    let text = wait_for(
        "the reload and api counted",
        Duration::from_secs(10),
        &logs,
        async || {
            let text = scrape(&metrics).await?;
            let v = sample(&text, "lbconf_backend_requests_total", WEB)?;
            seen.push(v);
            sample(&text, "lbconf_backend_requests_total", api)?;
            (sample(&text, "lbconf_reloads_total", "")? >= 1.0).then_some(text)
        },
    )
    .await;
    assert_eq!(
        sample(
            &text,
            "lbconf_backend_servers",
            &format!("{api},state=\"up\"")
        ),
        Some(1.0),
        "{text}"
    );
    send(http_port, m2).await;
    let total = (n + m1 + m2) as f64;
    wait_for(
        "N+M1+M2 requests counted",
        Duration::from_secs(10),
        &logs,
        async || {
            let text = scrape(&metrics).await?;
            let v = sample(&text, "lbconf_backend_requests_total", WEB)?;
            seen.push(v);
            (v == total).then_some(())
        },
    )
    .await;
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the counter went down: {seen:?}"
    );
    assert!(
        seen.iter().all(|v| *v <= total),
        "more than was sent: {seen:?}"
    );

    // HAProxy stopped: the scrape still answers, with the last figures and haproxy_up 0.
    lb.stop_haproxy().await;
    let text = wait_for(
        "lbconf_haproxy_up 0",
        Duration::from_secs(20),
        &logs,
        async || {
            let text = scrape(&metrics).await?;
            (sample(&text, "lbconf_haproxy_up", "") == Some(0.0)).then_some(text)
        },
    )
    .await;
    assert_eq!(
        sample(&text, "lbconf_backend_requests_total", WEB),
        Some(total),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "lbconf_backend_servers",
            &format!("{WEB},state=\"up\"")
        ),
        Some(2.0),
        "{text}"
    );
    cairn_tests::prometheus::assert_promtool_accepts(&text);
}

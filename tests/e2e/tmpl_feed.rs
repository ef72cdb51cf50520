//! `tmpl watch` takes its catalog dependencies (`services()`, `service(...)`, `nodes()`,
//! `node(name)`) from one whole-catalog delta watch: what it renders is what the per-endpoint
//! reads give (`tmpl render` reads those), before and after every kind of change, and it holds
//! one blocking query for them all, not one per dependency.

use std::time::{Duration, Instant};

use cairn_tests::Catalogd;
use serde_json::json;

use crate::tmpl_common::{Watcher, Work, instance, register, run};

/// Every catalog function, with each option the feed must honour.
const TEMPLATE: &str = r#"services:{% for s in services() %} {{ s.Name }}={{ s.Tags | join(sep=",") }}{% endfor %}
web:{% for i in service(name="web") %} {{ i.ID }}@{{ i.Node }}/{{ i.Address }}:{{ i.Port }}/{{ i.Status }}/{{ i.Tags | join(sep=",") }}{% endfor %}
web-any:{% for i in service(name="web", passing=false) %} {{ i.ID }}/{{ i.Status }}{% endfor %}
web-v1:{% for i in service(name="web", tag="v1") %} {{ i.ID }}{% endfor %}
nodes:{% for n in nodes() %} {{ n.Node }}={{ n.Address }}{% endfor %}
{% set n1 = node(name="n1") %}n1:{% if n1 %}{% for s in n1.Services %} {{ s.ID }}@{{ s.Address }}:{{ s.Port }}{% endfor %}{% else %} none{% endif %}
"#;

/// catalogd's count of parked blocking queries.
async fn waiting(c: &Catalogd) -> f64 {
    let text = c.http.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("catalogd_blocking_queries_waiting "))
        .and_then(|v| v.trim().parse().ok())
        .expect("catalogd_blocking_queries_waiting in /metrics")
}

fn tagged(node: &str, addr: &str, id: &str, tags: &[&str], status: &str) -> serde_json::Value {
    json!({
        "Node": node, "Address": addr,
        "Service": {"ID": id, "Service": "web", "Port": 8080, "Tags": tags},
        "Check": {"CheckID": format!("chk-{id}"), "Name": "svc", "Status": status, "ServiceID": id},
    })
}

#[tokio::test]
async fn fed_dependencies_render_as_the_endpoints_read_them() {
    let c = Catalogd::start().await;
    register(
        &c,
        &tagged("n1", "10.0.0.1", "web-1", &["v1", "blue"], "passing"),
    )
    .await;
    register(&c, &tagged("n2", "10.0.0.2", "web-2", &["v2"], "warning")).await;
    instance(&c, "n1", "10.0.0.1", "db", "db-1", 5432, "critical").await;
    register(&c, &json!({"Node": "n3", "Address": "10.0.0.3"})).await;

    let work = Work::new();
    let tpl = work.write("all.tmpl", TEMPLATE);
    let spec = format!("{}:{}", tpl.display(), work.p("all.out"));
    let w = Watcher::start(&c.url, work.root(), &["-t", &spec, "--wait", "0s"]).await;
    let tpl_arg = tpl.display().to_string();
    // The same template through the per-endpoint reads.
    let reference = || {
        let r = run(&c.url, work.root(), &["render", &tpl_arg]);
        r.assert_code(0);
        r.stdout
    };
    let first = reference();
    assert!(
        first.contains("web: web-1@n1/10.0.0.1:8080/passing/v1,blue\n"),
        "{first}"
    );
    assert!(
        first.contains("web-any: web-1/passing web-2/warning\n"),
        "{first}"
    );
    w.wait_file(&work, "all.out", &first).await;

    // Five catalog dependencies, one blocking query for all of them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while waiting(&c).await != 1.0 {
        assert!(
            Instant::now() < deadline,
            "tmpl should hold 1 blocking query, catalogd counts {}",
            waiting(&c).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let changes: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "a check turns passing",
            tagged("n2", "10.0.0.2", "web-2", &["v2"], "passing"),
            "/v1/catalog/register",
        ),
        (
            "an instance on a new node, with a new tag",
            tagged("n4", "10.0.0.4", "web-4", &["v1", "green"], "passing"),
            "/v1/catalog/register",
        ),
        (
            "a service's address moves",
            json!({"Node": "n1", "Address": "10.0.0.1",
                   "Service": {"ID": "db-1", "Service": "db", "Port": 5432, "Address": "10.9.9.9"}}),
            "/v1/catalog/register",
        ),
        (
            "a node goes with its instances",
            json!({"Node": "n1"}),
            "/v1/catalog/deregister",
        ),
    ];
    for (what, body, path) in changes {
        let r = c.http.put_json(path, &body).await;
        assert_eq!((r.status, r.text().as_str()), (200, "true"), "{what}");
        let want = reference();
        w.wait_file(&work, "all.out", &want).await;
    }
    let last = reference();
    assert!(last.contains("n1: none\n"), "{last}");
    assert!(last.contains("web-v1: web-4\n"), "{last}");
    assert!(
        !w.log_text().contains("one watch per dependency"),
        "the feed must not fall back against catalogd; log:\n{}",
        w.log_text()
    );
}

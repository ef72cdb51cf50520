//! `/metrics` as Prometheus reads it: `promtool check metrics` accepts the exposition text, and a
//! real Prometheus (Debian's) scrapes catalogd and answers a PromQL query with catalogd's figures.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, Http, free_port};

#[tokio::test]
async fn promtool_accepts_the_metrics_text() {
    let c = Catalogd::start().await;
    c.http.put("/v1/kv/a", "1").await;
    let text = c.http.get("/metrics").await.body;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run scripts/test (apt-get install prometheus)");
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn prometheus_scrapes_catalogd() {
    let c = Catalogd::start().await;
    for k in ["m/1", "m/2", "m/3"] {
        assert_eq!(c.http.put(&format!("/v1/kv/{k}"), "v").await.text(), "true");
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
         scrape_configs:\n  - job_name: catalogd\n    static_configs:\n      \
         - targets: ['127.0.0.1:{}']\n",
        c.port
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus is not installed: run scripts/test (apt-get install prometheus)");
    let api = Http::new(&format!("http://127.0.0.1:{port}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let value = loop {
        if let Ok(r) = api
            .try_send("GET", "/api/v1/query?query=catalogd_kv_entries", None)
            .await
        {
            last = r.text();
            if r.status == 200 {
                let v = r.value();
                if let Some(sample) = v["data"]["result"][0]["value"][1].as_str() {
                    break sample.to_string();
                }
            }
        }
        if Instant::now() > deadline {
            // The process may have exited already: nothing to report.
            let _ = prom.kill();
            panic!("Prometheus never scraped catalogd_kv_entries; last answer: {last}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The process may have exited already; the wait below reaps it either way.
    let _ = prom.kill();
    // Only reaps it; how a killed process exited says nothing here.
    let _ = prom.wait();
    assert_eq!(value, "3", "catalogd_kv_entries as Prometheus stored it");
}

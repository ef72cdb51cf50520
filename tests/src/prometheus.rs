//! A real Prometheus (Debian's `prometheus` package, installed by scripts/test) for tests that
//! need one to discover or scrape cairn: started on a free loopback port with the given
//! `prometheus.yml` text, its storage and log in a temporary directory, ready once `/-/ready`
//! answers 200, killed on drop. Tests assert on its HTTP API (`/api/v1/targets`,
//! `/api/v1/query`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{Http, free_port, wait_for};

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    pub port: u16,
    pub api: Http,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` as its configuration file and waits until it is ready.
    /// Panics when `prometheus` is not installed (a missing peer fails, under CI and elsewhere)
    /// or it does not get ready within a minute.
    pub async fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("writing prometheus.yml");
        let log = dir.path().join("prometheus.log");
        // A free port may be taken again before Prometheus binds it: then it exits, and
        // another is tried.
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("log file");
            let err = out.try_clone().expect("log file");
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err))
                .spawn()
                .expect(
                    "prometheus is not installed: run scripts/test (apt-get install prometheus)",
                );
            let api = Http::new(&format!("http://127.0.0.1:{port}"));
            let ready = wait_for(
                "Prometheus to be ready",
                Duration::from_secs(60),
                || std::fs::read_to_string(&log).unwrap_or_default(),
                async || {
                    if let Ok(Some(status)) = child.try_wait() {
                        return Some(Err(status));
                    }
                    let r = api.try_send("GET", "/-/ready", None).await.ok()?;
                    (r.status == 200).then_some(Ok(()))
                },
            )
            .await;
            match ready {
                Ok(()) => {
                    return Prometheus {
                        child,
                        port,
                        api,
                        log,
                        _dir: dir,
                    };
                }
                Err(status) => eprintln!(
                    "prometheus exited ({status}) on port {port}; trying another\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            }
        }
        panic!("prometheus did not start in three tries");
    }

    /// Prometheus' own log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/api/v1/targets`' active targets (each with `labels`, `discoveredLabels`, `health`,
    /// `scrapeUrl`, `scrapePool`, `lastError`); empty while Prometheus does not answer.
    pub async fn active_targets(&self) -> Vec<Value> {
        match self.api.try_send("GET", "/api/v1/targets", None).await {
            Ok(r) if r.status == 200 => r.value()["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The samples of an instant PromQL query (`data.result`); `None` while Prometheus does
    /// not answer it.
    pub async fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", encode(promql));
        let r = self.api.try_send("GET", &path, None).await.ok()?;
        if r.status != 200 {
            return None;
        }
        r.value()["data"]["result"].as_array().cloned()
    }

    /// The value of a sample of Prometheus' own metrics (`name{labels}` as the exposition
    /// writes it, e.g. `prometheus_sd_http_failures_total`), read from its `/metrics`.
    pub async fn own_metric(&self, series: &str) -> Option<f64> {
        let text = self
            .api
            .try_send("GET", "/metrics", None)
            .await
            .ok()?
            .text();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // It may have exited already; the wait below reaps it either way, and how a killed
        // process exited says nothing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A query-string value percent-encoded (PromQL holds `{`, `"`, `=`, spaces).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts that `promtool check metrics` accepts `text` without a complaint (Debian's
/// `prometheus` package; a missing promtool fails the test).
pub fn assert_promtool_accepts(text: &str) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run scripts/test (apt-get install prometheus)");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool's answer");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! Counters exported at `/metrics` in Prometheus text format.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use cairn_metrics::Exposition;

use crate::state::State;

/// Process-wide counters; gauges that derive from the state are computed at scrape time.
#[derive(Default)]
pub struct Metrics {
    pub http_requests: AtomicU64,
    pub http_errors: AtomicU64,
    pub blocking_queries: AtomicU64,
    pub blocking_waiting: AtomicU64,
    pub commits: AtomicU64,
    pub committed_writes: AtomicU64,
    pub commit_ops: AtomicU64,
    pub commit_nanos: AtomicU64,
    pub writes_rejected: AtomicU64,
    /// Targets in the last Prometheus service-discovery answer built.
    pub sd_targets: AtomicU64,
    /// Instances that opted in to scraping with an invalid `prometheus_*` meta value, left out
    /// of the last Prometheus service-discovery answer built.
    pub sd_invalid: AtomicU64,
}

impl Metrics {
    pub fn record_commit(&self, writes: usize, ops: usize, took: Duration) {
        self.commits.fetch_add(1, Relaxed);
        self.committed_writes.fetch_add(writes as u64, Relaxed);
        self.commit_ops.fetch_add(ops as u64, Relaxed);
        self.commit_nanos.fetch_add(took.as_nanos() as u64, Relaxed);
    }

    /// The counters in Consul's `/v1/agent/metrics` JSON shape (go-metrics' in-memory display:
    /// `Timestamp`, `Gauges`, `Points`, `Counters`, `Samples`).
    pub fn summary(&self, st: &State, topics: usize) -> serde_json::Value {
        let gauge = |name: &str, value: f64| serde_json::json!({"Name": name, "Value": value, "Labels": {}});
        let counter = |name: &str, a: &AtomicU64| {
            let v = a.load(Relaxed) as f64;
            serde_json::json!({"Name": name, "Count": v as u64, "Rate": 0.0, "Sum": v,
                "Min": v, "Max": v, "Mean": v, "Stddev": 0.0, "Labels": {}})
        };
        let now = std::time::SystemTime::now();
        serde_json::json!({
            "Timestamp": cairn_wire::rfc3339_seconds(now),
            "Gauges": [
                gauge("consul.catalog.index", st.index as f64),
                gauge("consul.catalog.nodes", st.nodes.len() as f64),
                gauge("consul.catalog.services", st.by_service.len() as f64),
                gauge("consul.kv.entries", st.kv.len() as f64),
                gauge("consul.session_ttl.active", st.sessions.len() as f64),
                gauge("catalogd.blocking_queries.waiting", self.blocking_waiting.load(Relaxed) as f64),
                gauge("catalogd.watch_topics", topics as f64),
            ],
            "Points": [],
            "Counters": [
                counter("catalogd.http.requests", &self.http_requests),
                counter("catalogd.http.errors", &self.http_errors),
                counter("catalogd.blocking_queries", &self.blocking_queries),
                counter("catalogd.commits", &self.commits),
                counter("catalogd.writes.committed", &self.committed_writes),
                counter("catalogd.writes.rejected", &self.writes_rejected),
            ],
            "Samples": [],
        })
    }

    /// Renders every metric; `topics` is the number of watched topics.
    pub fn render(&self, st: &State, topics: usize) -> String {
        let c = |a: &AtomicU64| a.load(Relaxed) as f64;
        let mut by_status = [0u64; 4];
        for check in st.checks.values() {
            by_status[check.status as usize] += 1;
        }
        let mut e = Exposition::new();
        e.counter(
            "catalogd_http_requests_total",
            "HTTP requests served.",
            c(&self.http_requests),
        )
        .counter(
            "catalogd_http_errors_total",
            "HTTP requests answered 4xx/5xx.",
            c(&self.http_errors),
        )
        .counter(
            "catalogd_blocking_queries_total",
            "Blocking queries started.",
            c(&self.blocking_queries),
        )
        .gauge(
            "catalogd_blocking_queries_waiting",
            "Blocking queries waiting now.",
            c(&self.blocking_waiting),
        )
        .gauge(
            "catalogd_watch_topics",
            "Distinct topics with waiting queries.",
            topics as f64,
        )
        .counter(
            "catalogd_commits_total",
            "Durable store commits.",
            c(&self.commits),
        )
        .counter(
            "catalogd_committed_writes_total",
            "Write requests folded into commits.",
            c(&self.committed_writes),
        )
        .counter(
            "catalogd_commit_ops_total",
            "Store operations written.",
            c(&self.commit_ops),
        )
        .counter(
            "catalogd_commit_seconds_total",
            "Time spent in durable commits.",
            c(&self.commit_nanos) / 1e9,
        )
        .counter(
            "catalogd_writes_rejected_total",
            "Writes refused as invalid.",
            c(&self.writes_rejected),
        )
        .gauge(
            "catalogd_prometheus_sd_targets",
            "Targets in the last Prometheus service-discovery answer built.",
            c(&self.sd_targets),
        )
        .gauge(
            "catalogd_prometheus_sd_invalid_instances",
            "Instances left out of the last Prometheus service-discovery answer for an invalid \
             prometheus_port, prometheus_path or prometheus_scheme.",
            c(&self.sd_invalid),
        )
        .gauge(
            "catalogd_raft_index",
            "Current catalog index.",
            st.index as f64,
        )
        .gauge("catalogd_nodes", "Registered nodes.", st.nodes.len() as f64)
        .gauge(
            "catalogd_service_instances",
            "Registered service instances.",
            st.services.len() as f64,
        )
        .gauge(
            "catalogd_services",
            "Distinct service names.",
            st.by_service.len() as f64,
        )
        .gauge("catalogd_kv_entries", "KV entries.", st.kv.len() as f64)
        .gauge(
            "catalogd_sessions",
            "Live sessions.",
            st.sessions.len() as f64,
        )
        .gauges_by(
            "catalogd_checks",
            "Checks by status.",
            "status",
            ["passing", "warning", "critical", "maintenance"]
                .into_iter()
                .zip(by_status.map(|n| n as f64)),
        );
        e.render()
    }
}

//! Where the controller's readings come from, each read once per round for every app that needs
//! it:
//!
//! - `rps`: the `lbconf_backend_requests_total{app}` counters of every lbconf in
//!   `--autoscale-lbconf` (Prometheus text), summed over the load balancers and turned into a rate
//!   over the rate window;
//! - `cpu`, `mem`: the agents that run the app's ready tasks, scraped at their `/metrics` with the
//!   cluster's agent token (`taskrun_task_cpu_seconds_total` as a rate, and
//!   `taskrun_task_memory_rss_bytes`), per task over what the task reserved;
//! - `prometheus:<query>`: an instant query to `--prometheus`, which must answer one number.
//!
//! Counters are kept as short histories per series (a reset, as after a restart of HAProxy or an
//! agent, counts from zero again, as Prometheus' `rate()` does). A reading fails, and the
//! controller holds, when a source that should answer did not or when its newest figure is
//! older than three rounds: a partial sum would look like a drop in demand.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::StreamExt as _;

/// Longest answer read from a metrics endpoint or Prometheus.
const MAX_BODY: usize = 16 << 20;
/// How long one scrape or query may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// Agents scraped at once.
const AGENT_SCRAPES: usize = 16;
/// Samples kept per counter series (the rate window at one round a second).
const MAX_SAMPLES: usize = 600;

/// Where readings come from (`offerd serve` flags).
#[derive(Clone, Debug, Default)]
pub struct SourceConfig {
    /// lbconf `/metrics` URLs (`--autoscale-lbconf`).
    pub lbconf: Vec<url::Url>,
    /// A Prometheus server (`--prometheus`).
    pub prometheus: Option<url::Url>,
    /// The agents' token (sent as a bearer token to their `/metrics`).
    pub agent_token: Option<String>,
    /// Rates are taken over this much history.
    pub rate_window: Duration,
    /// How often the controller runs (figures older than 3 of these are stale).
    pub interval: Duration,
}

/// A counter's recent samples: (ms, value), oldest first.
#[derive(Debug, Default)]
struct Series(VecDeque<(u64, f64)>);

impl Series {
    fn push(&mut self, at_ms: u64, value: f64, keep_ms: u64) {
        while self
            .0
            .front()
            .is_some_and(|&(t, _)| t.saturating_add(keep_ms) < at_ms)
            || self.0.len() >= MAX_SAMPLES
        {
            self.0.pop_front();
        }
        self.0.push_back((at_ms, value));
    }

    /// The per-second rate over the samples held (a decrease is a reset: the counter restarted
    /// from zero), or `None` with fewer than two samples.
    fn rate(&self) -> Option<f64> {
        let (&(first_t, _), &(last_t, _)) = (self.0.front()?, self.0.back()?);
        if last_t <= first_t {
            return None;
        }
        let increase: f64 = self
            .0
            .iter()
            .zip(self.0.iter().skip(1))
            .map(|(&(_, a), &(_, b))| if b >= a { b - a } else { b })
            .sum();
        Some(increase * 1000.0 / (last_t - first_t) as f64)
    }

    fn newest_ms(&self) -> Option<u64> {
        self.0.back().map(|&(t, _)| t)
    }
}

/// What one app needs read this round.
#[derive(Clone, Debug)]
pub struct Need {
    pub app_id: String,
    pub metric: cairn_marathon::autoscale::Metric,
    /// The app's reservation per task.
    pub cpus: f64,
    pub mem_mb: f64,
    /// Its ready tasks: (task id, agent API address `host:port`).
    pub ready: Vec<(String, String)>,
}

/// The readers and their histories (one per leader; a new leader starts afresh).
pub struct Sources {
    cfg: SourceConfig,
    http: reqwest::Client,
    /// `(lbconf index, app id)` → requests counter.
    lb_requests: HashMap<(usize, String), Series>,
    /// Task id → CPU seconds counter.
    task_cpu: HashMap<String, Series>,
    /// Task id → (ms, RSS bytes).
    task_rss: HashMap<String, (u64, f64)>,
}

impl Sources {
    pub fn new(cfg: SourceConfig, http: reqwest::Client) -> Sources {
        Sources {
            cfg,
            http,
            lb_requests: HashMap::new(),
            task_cpu: HashMap::new(),
            task_rss: HashMap::new(),
        }
    }

    /// Reads what `needs` ask for and answers each app's value per instance (or why there is
    /// none), in the order of `needs`.
    pub async fn read(&mut self, needs: &[Need], now_ms: u64) -> Vec<Result<f64, String>> {
        use cairn_marathon::autoscale::Metric;
        let lb_errors = if needs.iter().any(|n| n.metric == Metric::Rps) {
            self.scrape_lbconf(now_ms).await
        } else {
            Vec::new()
        };
        let agent_errors = {
            let agents: HashSet<&str> = needs
                .iter()
                .filter(|n| matches!(n.metric, Metric::Cpu | Metric::Mem))
                .flat_map(|n| n.ready.iter().map(|(_, a)| a.as_str()))
                .collect();
            self.scrape_agents(agents, now_ms).await
        };
        let mut out = Vec::with_capacity(needs.len());
        for need in needs {
            out.push(match &need.metric {
                Metric::Rps => self.rps(need, &lb_errors, now_ms),
                Metric::Cpu => self.cpu(need, &agent_errors, now_ms),
                Metric::Mem => self.mem(need, &agent_errors, now_ms),
                Metric::Prometheus(q) => self.query(q).await,
            });
        }
        self.forget_gone(needs);
        out
    }

    fn stale_after_ms(&self) -> u64 {
        3 * u64::try_from(self.cfg.interval.as_millis()).unwrap_or(u64::MAX / 4)
    }

    fn keep_ms(&self) -> u64 {
        u64::try_from(self.cfg.rate_window.as_millis()).unwrap_or(u64::MAX / 4)
    }

    /// Scrapes every lbconf; answers the failures as (URL, why).
    async fn scrape_lbconf(&mut self, now_ms: u64) -> Vec<(String, String)> {
        let urls = self.cfg.lbconf.clone();
        let bodies =
            futures::future::join_all(urls.iter().map(|u| fetch_text(&self.http, u.clone(), None)))
                .await;
        let keep = self.keep_ms();
        let mut errors = Vec::new();
        for (i, (url, body)) in urls.iter().zip(bodies).enumerate() {
            let samples = match body.and_then(|b| parse(&b)) {
                Ok(s) => s,
                Err(e) => {
                    errors.push((url.to_string(), e));
                    continue;
                }
            };
            // Several backends (services) may serve one app: their counters add up.
            let mut per_app: HashMap<String, f64> = HashMap::new();
            for s in samples
                .iter()
                .filter(|s| s.metric == "lbconf_backend_requests_total")
            {
                if let (Some(app), Some(v)) = (s.labels.get("app"), value_of(s))
                    && !app.is_empty()
                {
                    *per_app.entry(app.to_string()).or_default() += v;
                }
            }
            for (app, v) in per_app {
                self.lb_requests
                    .entry((i, app))
                    .or_default()
                    .push(now_ms, v, keep);
            }
        }
        errors
    }

    /// Scrapes the agents at `addrs`; answers the failures as (address, why).
    async fn scrape_agents(
        &mut self,
        addrs: HashSet<&str>,
        now_ms: u64,
    ) -> HashMap<String, String> {
        let token = self.cfg.agent_token.clone();
        let http = self.http.clone();
        let results: Vec<(String, Result<Vec<prometheus_parse::Sample>, String>)> =
            futures::stream::iter(addrs.into_iter().map(str::to_string))
                .map(|addr| {
                    let http = http.clone();
                    let token = token.clone();
                    async move {
                        let got = match url::Url::parse(&format!("http://{addr}/metrics")) {
                            Ok(u) => fetch_text(&http, u, token.as_deref())
                                .await
                                .and_then(|b| parse(&b)),
                            Err(e) => Err(format!("bad agent address {addr:?}: {e}")),
                        };
                        (addr, got)
                    }
                })
                .buffer_unordered(AGENT_SCRAPES)
                .collect()
                .await;
        let keep = self.keep_ms();
        let mut errors = HashMap::new();
        for (addr, got) in results {
            let samples = match got {
                Ok(s) => s,
                Err(e) => {
                    errors.insert(addr, e);
                    continue;
                }
            };
            for s in &samples {
                let (Some(task), Some(v)) = (s.labels.get("task"), value_of(s)) else {
                    continue;
                };
                match s.metric.as_str() {
                    "taskrun_task_cpu_seconds_total" => self
                        .task_cpu
                        .entry(task.to_string())
                        .or_default()
                        .push(now_ms, v, keep),
                    "taskrun_task_memory_rss_bytes" => {
                        self.task_rss.insert(task.to_string(), (now_ms, v));
                    }
                    _ => {}
                }
            }
        }
        errors
    }

    fn rps(&self, need: &Need, errors: &[(String, String)], now_ms: u64) -> Result<f64, String> {
        if self.cfg.lbconf.is_empty() {
            return Err("no lbconf to read requests from (offerd --autoscale-lbconf URL)".into());
        }
        if let Some((url, e)) = errors.first() {
            return Err(format!("lbconf at {url}: {e}"));
        }
        let mut total = 0.0;
        let mut seen = false;
        for i in 0..self.cfg.lbconf.len() {
            let Some(series) = self.lb_requests.get(&(i, need.app_id.clone())) else {
                continue;
            };
            if series
                .newest_ms()
                .is_none_or(|t| now_ms.saturating_sub(t) > self.stale_after_ms())
            {
                continue;
            }
            seen = true;
            match series.rate() {
                Some(r) => total += r,
                None => return Err("requests: waiting for a second reading".into()),
            }
        }
        if !seen {
            return Err(format!(
                "no lbconf routes {} (no lbconf_backend_requests_total{{app=\"{}\"}})",
                need.app_id, need.app_id
            ));
        }
        per_instance(total, need)
    }

    fn cpu(
        &self,
        need: &Need,
        errors: &HashMap<String, String>,
        now_ms: u64,
    ) -> Result<f64, String> {
        if need.cpus <= 0.0 {
            return Err("the app reserves no cpus: CPU utilisation is undefined".into());
        }
        let percents = self.per_task(need, errors, |task| {
            let s = self.task_cpu.get(task)?;
            if s.newest_ms()
                .is_none_or(|t| now_ms.saturating_sub(t) > self.stale_after_ms())
            {
                return None;
            }
            s.rate().map(|r| r / need.cpus * 100.0)
        })?;
        Ok(percents)
    }

    fn mem(
        &self,
        need: &Need,
        errors: &HashMap<String, String>,
        now_ms: u64,
    ) -> Result<f64, String> {
        if need.mem_mb <= 0.0 {
            return Err("the app reserves no mem: memory utilisation is undefined".into());
        }
        self.per_task(need, errors, |task| {
            let &(t, rss) = self.task_rss.get(task)?;
            (now_ms.saturating_sub(t) <= self.stale_after_ms())
                .then(|| rss / (need.mem_mb * 1_048_576.0) * 100.0)
        })
    }

    /// The average of `figure` over the app's ready tasks; fails when an agent of one of them
    /// did not answer or when no task has a figure yet.
    fn per_task(
        &self,
        need: &Need,
        errors: &HashMap<String, String>,
        figure: impl Fn(&str) -> Option<f64>,
    ) -> Result<f64, String> {
        let mut sum = 0.0;
        let mut n = 0u32;
        for (task, addr) in &need.ready {
            if let Some(e) = errors.get(addr) {
                return Err(format!("agent at {addr}: {e}"));
            }
            if let Some(x) = figure(task) {
                sum += x;
                n += 1;
            }
        }
        if n == 0 {
            return Err(format!(
                "no {} figures yet for the app's tasks from their agents",
                need.metric.name()
            ));
        }
        Ok(sum / f64::from(n))
    }

    async fn query(&self, query: &str) -> Result<f64, String> {
        let Some(base) = &self.cfg.prometheus else {
            return Err("no Prometheus to query (offerd --prometheus URL)".into());
        };
        let mut url = base
            .join("api/v1/query")
            .map_err(|e| format!("Prometheus URL {base}: {e}"))?;
        url.query_pairs_mut().append_pair("query", query);
        let body = fetch_text(&self.http, url, None)
            .await
            .map_err(|e| format!("Prometheus at {base}: {e}"))?;
        instant_value(&body).map_err(|e| format!("Prometheus query {query:?}: {e}"))
    }

    /// Drops the histories of tasks and apps no longer asked about.
    fn forget_gone(&mut self, needs: &[Need]) {
        let tasks: HashSet<&str> = needs
            .iter()
            .flat_map(|n| n.ready.iter().map(|(t, _)| t.as_str()))
            .collect();
        let apps: HashSet<&str> = needs.iter().map(|n| n.app_id.as_str()).collect();
        self.task_cpu.retain(|t, _| tasks.contains(t.as_str()));
        self.task_rss.retain(|t, _| tasks.contains(t.as_str()));
        self.lb_requests
            .retain(|(_, a), _| apps.contains(a.as_str()));
    }
}

fn per_instance(total: f64, need: &Need) -> Result<f64, String> {
    match need.ready.len() {
        0 => Err("no ready instance to measure".into()),
        n => Ok(total / n as f64),
    }
}

fn value_of(s: &prometheus_parse::Sample) -> Option<f64> {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v.is_finite().then_some(v),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Vec<prometheus_parse::Sample>, String> {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map(|s| s.samples)
        .map_err(|e| format!("not Prometheus text: {e}"))
}

/// GETs `url` (with a bearer token when given), at most [`MAX_BODY`] bytes within
/// [`SCRAPE_TIMEOUT`].
async fn fetch_text(
    http: &reqwest::Client,
    url: url::Url,
    token: Option<&str>,
) -> Result<String, String> {
    let mut req = http.get(url).timeout(SCRAPE_TIMEOUT);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut resp = req.send().await.map_err(|e| describe(&e))?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("answer larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| "answer is not UTF-8".into())
}

/// reqwest's error with its causes (its Display alone says "error sending request").
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(c) = source {
        s.push_str(": ");
        s.push_str(&c.to_string());
        source = c.source();
    }
    s
}

/// The one number of a Prometheus `/api/v1/query` answer: a scalar, or a vector of exactly one
/// sample.
fn instant_value(body: &str) -> Result<f64, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(v["error"].as_str().unwrap_or("query failed").to_string());
    }
    let data = &v["data"];
    let pair = match data["resultType"].as_str() {
        Some("scalar") => &data["result"],
        Some("vector") => match data["result"].as_array().map(Vec::as_slice) {
            Some([one]) => &one["value"],
            Some([]) => return Err("no sample (an empty vector)".into()),
            Some(many) => {
                return Err(format!(
                    "{} series; the query must answer one number (wrap it in sum() or avg())",
                    many.len()
                ));
            }
            None => return Err("malformed vector".into()),
        },
        other => {
            return Err(format!(
                "a {} result; want a scalar or one sample",
                other.unwrap_or("missing")
            ));
        }
    };
    let text = pair[1].as_str().ok_or("malformed sample")?;
    let x: f64 = text
        .parse()
        .map_err(|_| format!("value {text:?} is not a number"))?;
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("value {text} is not a finite number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_rate_counts_through_resets() {
        let mut s = Series::default();
        for (t, v) in [(0, 100.0), (1000, 150.0), (2000, 20.0), (3000, 70.0)] {
            s.push(t, v, 60_000);
        }
        // 50 + 20 (from zero after the reset) + 50 over 3 s.
        assert_eq!(s.rate(), Some(40.0));
        let mut one = Series::default();
        one.push(0, 5.0, 60_000);
        assert_eq!(one.rate(), None);
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut s = Series::default();
        for t in 0..10u64 {
            s.push(t * 1000, (t * 10) as f64, 3000);
        }
        assert_eq!(s.0.front().map(|&(t, _)| t), Some(6000));
        assert_eq!(s.rate(), Some(10.0));
    }

    /// Prometheus answers and the value (or the error fragment) read from each.
    #[test]
    fn instant_queries_must_answer_one_number() {
        let cases = [
            (
                r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"42.5"]}}"#,
                Ok(42.5),
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"7"]}]}}"#,
                Ok(7.0),
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
                Err("no sample"),
            ),
            (
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}"#,
                Err("2 series"),
            ),
            (
                r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#,
                Err("parse error"),
            ),
            (
                r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#,
                Err("not a finite"),
            ),
            ("<html>", Err("not JSON")),
        ];
        for (body, want) in cases {
            match (instant_value(body), want) {
                (Ok(x), Ok(w)) => assert_eq!(x, w, "{body}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{body}: {e}"),
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn lbconf_and_taskrun_text_is_read_by_name_and_label() {
        let text = "# HELP lbconf_backend_requests_total Requests.\n\
                    # TYPE lbconf_backend_requests_total counter\n\
                    lbconf_backend_requests_total{service=\"web\",app=\"/web\"} 120\n\
                    lbconf_backend_requests_total{service=\"web-v2\",app=\"/web\"} 30\n\
                    taskrun_task_cpu_seconds_total{app=\"/web\",task=\"web.1\",node=\"n1\"} 2.5\n";
        let samples = parse(text).unwrap();
        let sum: f64 = samples
            .iter()
            .filter(|s| {
                s.metric == "lbconf_backend_requests_total" && s.labels.get("app") == Some("/web")
            })
            .filter_map(value_of)
            .sum();
        assert_eq!(sum, 150.0);
        let cpu = samples
            .iter()
            .find(|s| s.labels.get("task") == Some("web.1"))
            .and_then(value_of);
        assert_eq!(cpu, Some(2.5));
    }
}

//! `lbconf watch --metrics-listen ADDR`: `GET /metrics` in Prometheus' text format, HAProxy's
//! request counts per catalog service for autoscaling on requests per second.
//!
//! - `lbconf_backend_requests_total{service,app}` (counter): requests the service's backend
//!   served (sessions for a TCP backend); `app` is the instances' `marathon-app-id` meta, empty
//!   when none. Monotonic while lbconf runs: a reload or restart of HAProxy starts its counters
//!   from 0, so lbconf keeps a base per series ([`Counters`]).
//! - `lbconf_backend_request_rate{service,app}` (gauge): HAProxy's own rate over the last second.
//! - `lbconf_backend_servers{service,app,state}` (gauge): real servers (not spare slots) by
//!   state, `up`, `down`, `maint`.
//! - `lbconf_haproxy_up` (gauge): whether the last read of HAProxy succeeded; when it did not,
//!   the other figures are the last good ones.
//! - `lbconf_reloads_total`, `lbconf_runtime_updates_total` (counters): HAProxy reloads lbconf
//!   ran, catalog changes it applied through the runtime API.
//!
//! HAProxy is read at scrape time ([`crate::stats`]): one read in flight, its figures reused
//! for [`FRESH`], the read bounded in time and size. A failed read never fails the scrape.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::Route;
use crate::stats::{Reading, ServerCounts};

/// How long one read of HAProxy answers scrapes.
pub const FRESH: Duration = Duration::from_secs(1);

/// Longest read of HAProxy (connecting, asking, the whole answer).
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);

/// Largest answer read: `show stat` writes ~300 bytes per server, so this holds ~200,000 servers
/// (100,000 instances with their spare slots is ~35 MB). The answer is streamed, not held.
pub const MAX_ANSWER: u64 = 64 * 1024 * 1024;

/// Series kept for services that are gone (so one that comes back goes on from its count) before
/// they are forgotten.
const MAX_GONE: usize = 10_000;

/// The ServiceMeta key naming the Marathon app of a task's instance (taskrun sets it).
pub const APP_META: &str = "marathon-app-id";

/// One service's labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Series {
    pub service: String,
    pub app: String,
}

/// A counter made monotonic across resets of the counter it follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Monotonic {
    /// What earlier runs of the followed counter counted.
    base: u64,
    /// The followed counter's last value.
    last: u64,
}

impl Monotonic {
    /// The exported value once the followed counter reads `raw`. A value below the last one is
    /// a reset (HAProxy's `clear counters`, or a new process that has counted less so far).
    pub fn observe(&mut self, raw: u64) -> u64 {
        if raw < self.last {
            self.reset();
        }
        self.last = raw;
        self.value()
    }

    /// The followed counter started again from 0 (a new HAProxy process).
    pub fn reset(&mut self) {
        self.base = self.base.saturating_add(self.last);
        self.last = 0;
    }

    pub fn value(&self) -> u64 {
        self.base.saturating_add(self.last)
    }
}

/// The request counters of every series, across HAProxy's reloads and restarts.
#[derive(Debug, Default)]
pub struct Counters {
    /// The HAProxy process the last values came from.
    pid: Option<u32>,
    series: HashMap<Series, Monotonic>,
}

impl Counters {
    /// Folds in one reading of the process `pid`: raw request counts per series. A new pid is a
    /// new process (a reload or a restart) whose counters started from 0: every series' last
    /// value goes into its base first, whatever the new figures, since a new process may have
    /// counted more than the old one had when it was last read. Returns the exported values.
    pub fn observe(
        &mut self,
        pid: Option<u32>,
        raw: impl IntoIterator<Item = (Series, u64)>,
    ) -> Vec<(Series, u64)> {
        if pid.is_some() {
            if self.pid.is_some() && self.pid != pid {
                self.series.values_mut().for_each(Monotonic::reset);
            }
            self.pid = pid;
        }
        let out: Vec<(Series, u64)> = raw
            .into_iter()
            .map(|(s, n)| {
                let v = self.series.entry(s.clone()).or_default().observe(n);
                (s, v)
            })
            .collect();
        if self.series.len() > out.len() + MAX_GONE {
            let current: std::collections::HashSet<&Series> = out.iter().map(|(s, _)| s).collect();
            self.series.retain(|s, _| current.contains(s));
        }
        out
    }
}

/// Backend name → its service's labels, as HAProxy runs them.
type Labels = HashMap<String, Series>;

/// One series' figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Figures {
    requests: u64,
    rate: u64,
    servers: ServerCounts,
}

/// What the last reads left.
#[derive(Default)]
struct Collected {
    counters: Counters,
    /// When HAProxy was last read, successfully or not.
    read_at: Option<Instant>,
    /// Whether that read succeeded.
    up: bool,
    /// Failed reads in a row (the first of a streak is logged as a warning).
    failures: u64,
    /// The last good figures.
    figures: BTreeMap<Series, Figures>,
}

/// lbconf's metrics: what the watch tells it (the backends HAProxy runs, reloads, runtime
/// updates) and what it reads from HAProxy.
pub struct Metrics {
    socket: PathBuf,
    labels: tokio::sync::watch::Sender<Arc<Labels>>,
    reloads: AtomicU64,
    runtime_updates: AtomicU64,
    /// Held across a read: one read in flight, and scrapes that wait for it use its figures.
    collected: tokio::sync::Mutex<Collected>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics of the HAProxy behind the runtime API `socket`.
    pub fn new(socket: PathBuf) -> Metrics {
        Metrics {
            socket,
            labels: tokio::sync::watch::Sender::new(Arc::default()),
            reloads: AtomicU64::new(0),
            runtime_updates: AtomicU64::new(0),
            collected: tokio::sync::Mutex::new(Collected::default()),
        }
    }

    /// HAProxy now runs `routes`: their backends' figures are their services'.
    pub fn routes_applied(&self, routes: &[Route]) {
        let labels: Labels = routes
            .iter()
            .map(|r| {
                let series = Series {
                    service: r.service.clone(),
                    app: r.meta.get(APP_META).cloned().unwrap_or_default(),
                };
                (r.backend.clone(), series)
            })
            .collect();
        self.labels.send_replace(Arc::new(labels));
    }

    /// lbconf ran the reload command successfully.
    pub fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// lbconf applied a catalog change through the runtime API.
    pub fn runtime_updated(&self) {
        self.runtime_updates.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads HAProxy just before a reload, so the old process's requests since the last scrape
    /// are counted (the new process starts from 0). Skipped when a read is in flight (it is as
    /// recent) and when the last read failed or there was none: then there is no count to go
    /// on from, and a read would only hold the reload back while it waits for a socket that is
    /// not there (an HAProxy still starting).
    pub async fn before_reload(&self) {
        if let Ok(mut c) = self.collected.try_lock()
            && c.up
        {
            self.read(&mut c).await;
        }
    }

    /// The exposition text, from HAProxy's figures at most [`FRESH`] old.
    pub async fn scrape(&self) -> String {
        let mut c = self.collected.lock().await;
        if c.read_at.is_none_or(|at| at.elapsed() >= FRESH) {
            self.read(&mut c).await;
        }
        self.render(&c)
    }

    async fn read(&self, c: &mut Collected) {
        let reading = crate::stats::read(&self.socket, READ_TIMEOUT, MAX_ANSWER).await;
        c.read_at = Some(Instant::now());
        match reading {
            Ok(reading) => {
                let labels = self.labels.borrow().clone();
                c.figures = fold(&mut c.counters, &labels, &reading);
                c.up = true;
                c.failures = 0;
            }
            Err(e) => {
                c.up = false;
                c.failures += 1;
                if c.failures == 1 {
                    tracing::warn!(error = %e, socket = %self.socket.display(), "cannot read HAProxy's figures; /metrics answers the last ones");
                } else {
                    tracing::debug!(error = %e, "cannot read HAProxy's figures");
                }
            }
        }
    }

    fn render(&self, c: &Collected) -> String {
        fn labels(s: &Series) -> [(&str, &str); 2] {
            [("service", s.service.as_str()), ("app", s.app.as_str())]
        }
        let mut e = cairn_metrics::Exposition::new();
        e.counters(
            "lbconf_backend_requests_total",
            "Requests the service's HAProxy backend served (sessions for a TCP backend), across HAProxy reloads.",
            c.figures
                .iter()
                .map(|(s, f)| (labels(s), f.requests as f64)),
        )
        .gauges(
            "lbconf_backend_request_rate",
            "Requests (sessions for a TCP backend) per second over the last second, as HAProxy counts them.",
            c.figures.iter().map(|(s, f)| (labels(s), f.rate as f64)),
        )
        .gauges(
            "lbconf_backend_servers",
            "Servers of the service's backend by state (spare slots not counted).",
            c.figures.iter().flat_map(|(s, f)| {
                [
                    ("up", f.servers.up),
                    ("down", f.servers.down),
                    ("maint", f.servers.maint),
                ]
                .map(|(state, n)| {
                    (
                        [
                            ("service", s.service.as_str()),
                            ("app", s.app.as_str()),
                            ("state", state),
                        ],
                        n as f64,
                    )
                })
            }),
        )
        .gauge(
            "lbconf_haproxy_up",
            "Whether HAProxy's runtime API answered the last read (when not, the figures are the last good ones).",
            if c.up { 1.0 } else { 0.0 },
        )
        .counter(
            "lbconf_reloads_total",
            "HAProxy reloads lbconf ran.",
            self.reloads.load(Ordering::Relaxed) as f64,
        )
        .counter(
            "lbconf_runtime_updates_total",
            "Catalog changes lbconf applied through HAProxy's runtime API (no reload).",
            self.runtime_updates.load(Ordering::Relaxed) as f64,
        );
        e.render()
    }
}

/// One reading's figures per series: backends that are no service of lbconf's (`no_route`,
/// an operator's own) are left out.
fn fold(counters: &mut Counters, labels: &Labels, reading: &Reading) -> BTreeMap<Series, Figures> {
    let known: Vec<(&Series, &crate::stats::BackendStats)> = reading
        .backends
        .iter()
        .filter_map(|(backend, stats)| Some((labels.get(backend)?, stats)))
        .collect();
    let totals = counters.observe(
        reading.pid,
        known
            .iter()
            .map(|(s, stats)| ((*s).clone(), stats.requests)),
    );
    known
        .iter()
        .zip(totals)
        .map(|((series, stats), (_, requests))| {
            (
                (*series).clone(),
                Figures {
                    requests,
                    rate: stats.rate,
                    servers: stats.servers,
                },
            )
        })
        .collect()
}

/// Most scrapers served at once.
const MAX_CONNECTIONS: usize = 64;

/// Serves `GET /metrics` on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let limits = cairn_http::Limits {
        max_connections: MAX_CONNECTIONS,
        idle_timeout: Duration::from_secs(60),
        // Scrapes are GETs: no body is read.
        body: cairn_http::BodyBounds {
            max_bytes: 1024,
            stall: Duration::from_secs(5),
            total: Duration::from_secs(10),
        },
        drain: Duration::from_secs(1),
    };
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(metrics);
    cairn_http::Server::new(limits)
        .serve(listener, move |_| app.clone(), stop.cancelled_owned())
        .await;
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> axum::response::Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            cairn_metrics::CONTENT_TYPE,
        )],
        metrics.scrape().await,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(service: &str) -> Series {
        Series {
            service: service.into(),
            app: format!("/{service}"),
        }
    }

    /// Each step: HAProxy's pid and raw count; the exported value after it.
    #[test]
    fn a_counter_never_goes_down() {
        type Step = (Option<u32>, u64, u64);
        let cases: &[(&str, &[Step])] = &[
            (
                "steady growth",
                &[(Some(1), 0, 0), (Some(1), 5, 5), (Some(1), 9, 9)],
            ),
            (
                "a reload: the new process counts from 0",
                &[(Some(1), 10, 10), (Some(2), 0, 10), (Some(2), 3, 13)],
            ),
            (
                "a reload whose process counted more than the old one before the first read",
                &[(Some(1), 5, 5), (Some(2), 8, 13), (Some(2), 9, 14)],
            ),
            (
                "a decrease in the same process (clear counters)",
                &[(Some(1), 10, 10), (Some(1), 2, 12), (Some(1), 4, 14)],
            ),
            (
                "no pid said: decreases alone are resets",
                &[(None, 10, 10), (None, 4, 14), (None, 6, 16)],
            ),
            (
                "a pid after none is no reset",
                &[(None, 10, 10), (Some(3), 12, 12)],
            ),
            (
                "two reloads",
                &[
                    (Some(1), 7, 7),
                    (Some(2), 1, 8),
                    (Some(3), 1, 9),
                    (Some(3), 5, 13),
                ],
            ),
        ];
        for (what, steps) in cases {
            let mut c = Counters::default();
            let mut last = 0;
            for (i, (pid, raw, want)) in steps.iter().enumerate() {
                let got = c.observe(*pid, [(series("web"), *raw)]);
                assert_eq!(got, vec![(series("web"), *want)], "{what}, step {i}");
                assert!(*want >= last, "{what}: the case itself goes down");
                last = *want;
            }
        }
    }

    /// A series absent from a reading (its service gone, or routed elsewhere) keeps its count
    /// through a reload and goes on from it when it comes back.
    #[test]
    fn a_series_that_comes_back_goes_on_from_its_count() {
        let mut c = Counters::default();
        c.observe(Some(1), [(series("web"), 4), (series("api"), 2)]);
        assert_eq!(
            c.observe(Some(2), [(series("api"), 1)]),
            vec![(series("api"), 3)]
        );
        assert_eq!(
            c.observe(Some(2), [(series("web"), 1), (series("api"), 1)]),
            vec![(series("web"), 5), (series("api"), 3)]
        );
    }

    #[test]
    fn gone_series_are_forgotten_past_the_bound() {
        let mut c = Counters::default();
        c.observe(
            Some(1),
            (0..MAX_GONE + 2).map(|i| (series(&format!("s{i}")), 1)),
        );
        c.observe(Some(1), [(series("s0"), 1)]);
        assert_eq!(c.series.len(), 1);
    }

    /// A socket answering each connection with `answers[i]` (the last one again past the
    /// end), counting connections.
    async fn haproxy_socket(
        path: &std::path::Path,
        answers: Vec<String>,
    ) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let _ = std::fs::remove_file(path); // a leftover of an earlier run, if any
        let listener = tokio::net::UnixListener::bind(path).expect("bind");
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let i = counted.fetch_add(1, Ordering::SeqCst) as usize;
                let answer = answers[i.min(answers.len() - 1)].clone();
                let mut command = [0u8; 64];
                let n = conn.read(&mut command).await.expect("command");
                assert_eq!(
                    &command[..n],
                    format!("{}\n", crate::stats::COMMAND).as_bytes()
                );
                conn.write_all(answer.as_bytes()).await.expect("answer");
            }
        });
        (count, task)
    }

    fn answer(pid: u32, requests: u64) -> String {
        format!(
            "Pid: {pid}\n\n# pxname,svname,type,status,stot,rate,req_tot,mode,addr\n\
             be_web,s1,2,no check,0,0,0,http,10.0.0.1:80\n\
             be_web,BACKEND,1,UP,{requests},1,{requests},http,\n\n"
        )
    }

    fn web_route() -> Route {
        Route {
            service: "web".into(),
            backend: "be_web".into(),
            exposure: crate::model::Exposure::Http {
                hosts: vec!["web.test".into()],
                path: None,
            },
            balance: "roundrobin".into(),
            servers: Vec::new(),
            options: Default::default(),
            meta: [(APP_META.to_string(), "/shop/web".to_string())].into(),
        }
    }

    /// Scrapes at once share one read, a scrape within [`FRESH`] reuses it; the read before a
    /// reload is made whatever its age, and the counter goes on across the new process.
    #[tokio::test(start_paused = true)]
    async fn one_read_in_flight_reused_for_a_second() {
        let dir = std::env::temp_dir().join(format!("lbconf-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("admin.sock");
        let (reads, server) =
            haproxy_socket(&path, vec![answer(1, 5), answer(1, 9), answer(2, 3)]).await;
        let m = Metrics::new(path.clone());
        m.routes_applied(&[web_route()]);
        let web = "lbconf_backend_requests_total{service=\"web\",app=\"/shop/web\"}";
        let (a, b) = tokio::join!(m.scrape(), m.scrape());
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "two scrapes at once, one read"
        );
        assert!(a.contains(&format!("{web} 5\n")), "{a}");
        assert_eq!(a, b);
        assert!(a.contains("lbconf_haproxy_up 1\n"), "{a}");
        let c = m.scrape().await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "a second later at most: no read"
        );
        assert_eq!(a, c);
        m.before_reload().await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the read before a reload is made"
        );
        m.reloaded();
        assert!(m.scrape().await.contains(&format!("{web} 9\n")));
        tokio::time::advance(FRESH).await;
        let d = m.scrape().await;
        assert_eq!(reads.load(Ordering::SeqCst), 3);
        assert!(
            d.contains(&format!("{web} 12\n")),
            "9, then 3 more in a new process: {d}"
        );
        assert!(d.contains("lbconf_reloads_total 1\n"), "{d}");
        server.abort();
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Without an HAProxy the scrape still answers: `lbconf_haproxy_up 0`, no backend figures.
    #[tokio::test(start_paused = true)]
    async fn a_scrape_without_haproxy_answers_up_0() {
        let m = Metrics::new("/nonexistent/lbconf/admin.sock".into());
        m.routes_applied(&[web_route()]);
        let text = m.scrape().await;
        assert!(text.contains("lbconf_haproxy_up 0\n"), "{text}");
        assert!(!text.contains("lbconf_backend_"), "{text}");
    }

    /// Backends map to their services' labels; backends of no service are left out.
    #[test]
    fn figures_by_service() {
        let labels: Labels = [("be_web".to_string(), series("web"))].into();
        let reading = crate::stats::parse(
            "Pid: 9\n\n# pxname,svname,type,status,stot,rate,req_tot,mode,addr\n\
             be_web,s1,2,no check,4,0,4,http,10.0.0.1:80\n\
             be_web,s2,2,MAINT,0,0,0,http,127.0.0.1:1\n\
             be_web,BACKEND,1,UP,4,2,4,http,\n\
             no_route,BACKEND,1,UP,1,0,1,http,\n"
                .as_bytes(),
        )
        .expect("parsed");
        let mut c = Counters::default();
        let figures = fold(&mut c, &labels, &reading);
        assert_eq!(
            figures,
            [(
                series("web"),
                Figures {
                    requests: 4,
                    rate: 2,
                    servers: ServerCounts {
                        up: 1,
                        down: 0,
                        maint: 0
                    }
                }
            )]
            .into()
        );
    }
}

//! `cairn-bench ui`: offerd's web UI (`/ui/`, the `cairn-ui` crate) in a real browser at fleet
//! size. Debian's headless chromium is driven over WebDriver by `chromedriver` (started here on a
//! free loopback port, with a profile directory of its own under `$TMPDIR`) through `fantoccini`.
//! offerd must already hold the apps (scripts/bench/ui loads 1,000 apps x 10 tasks on simulated
//! agents with `cairn-bench agents --linger`); `--apps` is how many it holds, checked against
//! `GET /v2/apps` before the browser starts.
//!
//! Two figures, each read in the page when it happens:
//!
//! * First render, `--rounds` times: `about:blank`, then `/ui/#/apps` (a new document each
//!   time; the first round starts with an empty HTTP cache, the later ones may reuse the UI's
//!   files as a returning user's browser does). An async script checks on every DOM mutation
//!   and every animation frame for `main#page[data-page="apps"][data-ready="true"]` with
//!   `--apps` rows `#apps-table tr[data-app-id]`, and resolves with `performance.now()` at the
//!   first check that sees both: milliseconds since the navigation started. It also takes the
//!   time once the next frame is out (`painted`: the table laid out and painted). A round whose
//!   page was already complete at the script's first check cannot say when it became so (its
//!   figure is then an upper bound); such rounds are counted (`first_render_late`).
//! * Change to screen, `--changes` times, on the apps page left open: an app (round-robin over
//!   the apps, sorted by id) at its full count in offerd and on the page gets a MutationObserver
//!   on its row's `[data-field="running"]` cell (`RUNNING/INSTANCES`; looked up again on every
//!   mutation of the table, so a re-rendered row is followed too) that records `Date.now()` at
//!   the first change of the running count it shows; the wall clock is read here (the same
//!   machine's clock) and one of the app's running tasks is killed through
//!   `DELETE /v2/apps/{id}/tasks/{task}`. The latency is the page's time of change minus the
//!   time before the DELETE. Then the app is brought back to its full count (the killed task
//!   gone, every instance `TASK_RUNNING`, the page showing it) before the next change.
//!
//!   How the task is killed (`--kill`): `scale` (the default) sends `?scale=true`, so the app
//!   stays one instance short (the cell goes `10/10` → `10/9` as the new definition lands →
//!   `9/9` once the task is `TASK_KILLED`; the page may skip the middle one: the change of the
//!   running count is timed) until it is PUT back to its count (not timed). `replace` sends `?scale=false`: offerd launches the replacement as it
//!   kills, and the simulated agents of scripts/bench/ui report it `TASK_RUNNING` within
//!   milliseconds, before the old task is even `TASK_KILLED` (seen on /v2/events: STAGING,
//!   RUNNING, KILLED within ~10 ms), so `tasksRunning` is back to the instances before the
//!   page's next read and the count never visibly moves: nothing to time. It is kept for real
//!   agents, whose start and stop take long enough to be seen, sometimes.
//!
//! Output on stdout: one `result key=value ...` line. Progress goes to stderr.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::common::percentile;
use crate::http::{self, Conn, Response};

/// Flags of `cairn-bench ui`.
#[derive(clap::Args, Debug)]
pub struct UiArgs {
    /// offerd serving the UI: http://127.0.0.1:PORT (loopback only)
    #[arg(long, default_value = "http://127.0.0.1:5050")]
    offerd: String,
    /// Apps offerd holds (and the apps page must show)
    #[arg(long, default_value_t = 1000)]
    apps: usize,
    /// First renders measured (each a fresh page)
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Task kills timed to the screen
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// How a task is killed: `scale` (`?scale=true`: the app is left at one instance less, put
    /// back after; the running count stays down until then) or `replace` (`?scale=false`: offerd
    /// replaces the task at once, so the count may never be seen to move; see the module doc)
    #[arg(long, default_value = "scale", value_parser = ["scale", "replace"])]
    kill: String,
    /// The chromedriver program
    #[arg(long, default_value = "chromedriver")]
    chromedriver: String,
}

/// How long the apps page may take to be complete.
const RENDER_DEADLINE: Duration = Duration::from_secs(120);
/// How long a kill may take to show on the page.
const CHANGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long an app may take to run its full count again (and the page to show it).
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// One request to offerd.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

// --- offerd ------------------------------------------------------------------------------------

/// offerd's API, one connection per request (a kill is never sent twice).
struct Api {
    addr: SocketAddr,
    host: String,
}

impl Api {
    /// One request; `body` is sent as JSON.
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let req = match body {
            None => http::request(method, &self.host, path, b"", None),
            Some(v) => {
                let body = serde_json::to_vec(v)?;
                let mut req = format!(
                    "{method} {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: cairn-bench\r\n\
                     Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    self.host,
                    body.len()
                )
                .into_bytes();
                req.extend_from_slice(&body);
                req
            }
        };
        let call = async {
            let mut conn = Conn::connect(self.addr)
                .await
                .with_context(|| format!("connecting to offerd at {}", self.addr))?;
            conn.send(&req).await?;
            conn.read_response().await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, call)
            .await
            .map_err(|_| anyhow!("no answer in {} s", REQUEST_TIMEOUT.as_secs()))?
            .with_context(|| format!("{method} {path}"))
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.call("GET", path, None).await?;
        if r.status != 200 {
            bail!(
                "GET {path}: status {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        serde_json::from_slice(&r.body).with_context(|| format!("GET {path}: not JSON"))
    }

    /// Every app's id and instances, sorted by id.
    async fn apps(&self) -> anyhow::Result<Vec<(String, u64)>> {
        let v = self.get_json("/v2/apps").await?;
        let apps = v["apps"]
            .as_array()
            .ok_or_else(|| anyhow!("GET /v2/apps: no `apps` array"))?;
        let mut out = apps
            .iter()
            .map(|a| {
                let id = a["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("an app without an id"))?;
                let n = a["instances"]
                    .as_u64()
                    .ok_or_else(|| anyhow!("app {id}: no `instances`"))?;
                Ok((id.to_string(), n))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .context("GET /v2/apps")?;
        out.sort();
        Ok(out)
    }

    /// The ids of the app's tasks in `TASK_RUNNING`, and how many tasks it has in all.
    async fn running_tasks(&self, app: &str) -> anyhow::Result<(Vec<String>, usize)> {
        let path = format!("/v2/apps{app}/tasks");
        let v = self.get_json(&path).await?;
        let tasks = v["tasks"]
            .as_array()
            .ok_or_else(|| anyhow!("GET {path}: no `tasks` array"))?;
        let running = tasks
            .iter()
            .filter(|t| t["state"] == "TASK_RUNNING")
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        Ok((running, tasks.len()))
    }

    /// Kills one task: `scale` lowers the app's instances by one, else offerd replaces it.
    async fn kill(&self, app: &str, task: &str, scale: bool) -> anyhow::Result<()> {
        let path = format!("/v2/apps{app}/tasks/{task}?scale={scale}");
        let r = self.call("DELETE", &path, None).await?;
        if r.status != 200 {
            bail!(
                "DELETE {path}: status {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok(())
    }

    /// Sets the app's instances (once no deployment of it runs: offerd would refuse with 409).
    async fn set_instances(&self, app: &str, instances: u64) -> anyhow::Result<()> {
        let path = format!("/v2/apps{app}");
        let since = Instant::now();
        loop {
            let v = self.get_json(&path).await?;
            let idle = v["app"]["deployments"]
                .as_array()
                .is_none_or(|d| d.is_empty());
            if idle {
                break;
            }
            if since.elapsed() > SETTLE_DEADLINE {
                bail!(
                    "{app}: still deploying after {} s",
                    SETTLE_DEADLINE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = self
            .call("PUT", &path, Some(&json!({ "instances": instances })))
            .await?;
        if r.status != 200 {
            bail!(
                "PUT {path} {{\"instances\": {instances}}}: status {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
        Ok(())
    }

    /// Waits until the app runs `instances` tasks, all `TASK_RUNNING`, `gone` not among them.
    async fn wait_full(
        &self,
        app: &str,
        instances: u64,
        gone: Option<&str>,
    ) -> anyhow::Result<Vec<String>> {
        let since = Instant::now();
        loop {
            let (running, all) = self.running_tasks(app).await?;
            let full = running.len() as u64 == instances && all as u64 == instances;
            if full && !gone.is_some_and(|g| running.iter().any(|t| t == g)) {
                return Ok(running);
            }
            if since.elapsed() > SETTLE_DEADLINE {
                bail!(
                    "{app}: {} of {instances} tasks running ({all} in all) after {} s",
                    running.len(),
                    SETTLE_DEADLINE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// --- the browser -------------------------------------------------------------------------------

/// chromedriver and its chromium session; [`Browser::close`] ends both.
struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

/// Debian's chromium binary.
fn chromium_binary() -> anyhow::Result<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| anyhow!("no /usr/bin/chromium (apt-get install chromium chromium-driver)"))
}

/// The last lines of chromedriver's log, for an error.
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Browser {
    async fn start(chromedriver: &str) -> anyhow::Result<Browser> {
        let binary = chromium_binary()?;
        let profile = std::env::temp_dir().join(format!("cairn-bench-ui.{}", std::process::id()));
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("creating {}", profile.display()))?;
        let log = profile.join("chromedriver.log");
        let port = free_port()?;
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| {
                format!("starting {chromedriver} (apt-get install chromium chromium-driver)")
            })?;
        let since = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = driver.try_wait() {
                bail!("{chromedriver} exited ({status}):\n{}", log_tail(&log));
            }
            if since.elapsed() > Duration::from_secs(20) {
                let _ = driver.kill();
                let _ = driver.wait();
                bail!("{chromedriver} does not listen on port {port} after 20 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": binary,
                "args": [
                    "--headless=new",
                    // Run as root in a container, chromium's sandbox lacks the user namespaces
                    // it needs.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.join("profile").display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                let tail = log_tail(&log);
                let _ = driver.kill();
                let _ = driver.wait();
                bail!("cannot start a chromium session: {e}\n{tail}");
            }
        };
        let browser = Browser {
            client,
            driver,
            profile,
        };
        // The script's own deadline comes first (it says what the page showed).
        let timeouts = TimeoutConfiguration::new(
            Some(RENDER_DEADLINE + Duration::from_secs(15)),
            Some(RENDER_DEADLINE),
            Some(Duration::ZERO),
        );
        if let Err(e) = browser.client.update_timeouts(timeouts).await {
            browser.close().await;
            return Err(anyhow!("setting WebDriver timeouts: {e}"));
        }
        Ok(browser)
    }

    /// Ends the session (chromium quits), then chromedriver; removes the profile.
    async fn close(mut self) {
        if let Err(e) = self.client.clone().close().await {
            eprintln!("[ui] closing the chromium session: {e}");
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }

    async fn execute(&self, what: &str, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        self.client
            .execute(script, args)
            .await
            .map_err(|e| anyhow!("{what}: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Already done by close(); this is for a panic.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

// --- first render ------------------------------------------------------------------------------

/// Resolves once the apps page is complete: `{ready, painted, late}` (ms since navigation
/// start), or `{error}` past the deadline. arguments: rows expected, deadline (ms).
const FIRST_RENDER: &str = r#"
const want = arguments[0], deadline = arguments[1], done = arguments[arguments.length - 1];
const complete = () =>
  document.querySelector('main#page[data-page="apps"][data-ready="true"]') !== null &&
  document.querySelectorAll('#apps-table tr[data-app-id]').length === want;
let finished = false;
let obs = null;
window.__cairnLong = [];
try {
  new PerformanceObserver((l) => window.__cairnLong.push(...l.getEntries()))
    .observe({ type: 'longtask', buffered: true });
} catch (e) { /* no long tasks in this browser */ }
const finish = (late) => {
  if (finished) return;
  finished = true;
  const ready = performance.now();
  if (obs) obs.disconnect();
  // The next frame out: the table laid out and painted.
  let sent = false;
  const send = (painted) => {
    if (sent) return;
    sent = true;
    // Where the time went, by the page's own entries: the document, the UI's API reads
    // (their bodies' sizes), the first contentful paint, long tasks seen so far.
    const nav = performance.getEntriesByType('navigation')[0];
    const api = performance.getEntriesByType('resource')
      .filter((e) => /\/(v1|v2)\/|config\.json/.test(e.name))
      .map((e) => ({ path: new URL(e.name).pathname, start: e.startTime, end: e.responseEnd,
                     bytes: e.decodedBodySize }));
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    done({ ready, painted, late, api,
           doc: nav ? nav.responseEnd : null,
           dcl: nav ? nav.domContentLoadedEventEnd : null,
           fcp: fcp ? fcp.startTime : null,
           longtasks: (window.__cairnLong || []).map((e) => [e.startTime, e.duration]) });
  };
  requestAnimationFrame(() => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => send(performance.now());
    ch.port2.postMessage(0);
  });
  setTimeout(() => send(null), 5000);
};
if (complete()) {
  finish(true);
} else {
  obs = new MutationObserver(() => { if (complete()) finish(false); });
  obs.observe(document.documentElement,
    { childList: true, subtree: true, attributes: true, attributeFilter: ['data-ready', 'data-page'] });
  const frame = () => {
    if (finished) return;
    if (complete()) finish(false); else requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  setTimeout(() => {
    if (finished) return;
    finished = true;
    if (obs) obs.disconnect();
    const main = document.querySelector('main#page');
    const flash = document.querySelector('#flash:not([hidden])');
    done({
      error: 'not complete',
      page: main ? main.getAttribute('data-page') : null,
      ready_attr: main ? main.getAttribute('data-ready') : null,
      rows: document.querySelectorAll('#apps-table tr[data-app-id]').length,
      flash: flash ? flash.textContent.trim() : null,
    });
  }, deadline);
}
"#;

struct Render {
    ready_ms: f64,
    painted_ms: Option<f64>,
    late: bool,
    /// Where the time went (stderr only).
    timeline: String,
}

/// The page's own entries as one line: `doc 12 · /v2/apps 95-410 (2.1 MB) · ...` (ms).
fn timeline(v: &Value) -> String {
    let ms = |k: &str| {
        v[k].as_f64()
            .map(|x| format!("{x:.0}"))
            .unwrap_or("-".into())
    };
    let mut out = format!("document {} · DOMContentLoaded {}", ms("doc"), ms("dcl"));
    for e in v["api"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            " · {} {:.0}-{:.0} ({:.0} kB)",
            e["path"].as_str().unwrap_or("?"),
            e["start"].as_f64().unwrap_or(f64::NAN),
            e["end"].as_f64().unwrap_or(f64::NAN),
            e["bytes"].as_f64().unwrap_or(0.0) / 1000.0
        ));
    }
    out.push_str(&format!(" · first contentful paint {}", ms("fcp")));
    let long: Vec<String> = v["longtasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{:.0}+{:.0}",
                t[0].as_f64().unwrap_or(f64::NAN),
                t[1].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect();
    if !long.is_empty() {
        out.push_str(&format!(" · long tasks (start+ms) {}", long.join(" ")));
    }
    out
}

async fn first_render(browser: &Browser, url: &str, apps: usize) -> anyhow::Result<Render> {
    browser
        .client
        .goto("about:blank")
        .await
        .map_err(|e| anyhow!("opening about:blank: {e}"))?;
    browser
        .client
        .goto(url)
        .await
        .map_err(|e| anyhow!("opening {url}: {e}"))?;
    let v = browser
        .client
        .execute_async(
            FIRST_RENDER,
            vec![json!(apps), json!(RENDER_DEADLINE.as_millis() as u64)],
        )
        .await
        .map_err(|e| anyhow!("waiting for the apps page: {e}"))?;
    if v.get("error").is_some() {
        bail!(
            "{url}: the apps page is not complete after {} s (want data-page=apps, \
             data-ready=true and {apps} rows; page={}, data-ready={}, rows={}, flash={})",
            RENDER_DEADLINE.as_secs(),
            v["page"],
            v["ready_attr"],
            v["rows"],
            v["flash"]
        );
    }
    let ready_ms = v["ready"]
        .as_f64()
        .ok_or_else(|| anyhow!("first render: unexpected answer {v}"))?;
    Ok(Render {
        ready_ms,
        painted_ms: v["painted"].as_f64(),
        late: v["late"].as_bool().unwrap_or(false),
        timeline: timeline(&v),
    })
}

// --- change to screen --------------------------------------------------------------------------

/// The running cell's text of app `arguments[0]` (null without one).
const CELL_TEXT: &str = r#"
const cell = document.querySelector(`#apps-table tr[data-app-id="${CSS.escape(arguments[0])}"] [data-field="running"]`);
return cell ? cell.textContent.trim() : null;
"#;

/// Watches app `arguments[0]`'s running cell (`RUNNING/INSTANCES`): `window.__cairnChange` =
/// `{at, text, same}` at the first change of its running count (`same`: still the element
/// watched at the start), `window.__cairnFirst` = `{at, text}` at its first change of text at
/// all. The cell is looked up again on every mutation of the table. Returns the text now.
const WATCH_CELL: &str = r#"
const id = arguments[0];
const sel = `#apps-table tr[data-app-id="${CSS.escape(id)}"] [data-field="running"]`;
const table = document.querySelector('#apps-table');
const cell = document.querySelector(sel);
if (window.__cairnObs) window.__cairnObs.disconnect();
window.__cairnChange = null;
window.__cairnFirst = null;
if (!table || !cell) return null;
const before = cell.textContent.trim();
const running = (t) => t === null ? null : t.split('/')[0].trim();
const obs = new MutationObserver(() => {
  const now = document.querySelector(sel);
  const text = now ? now.textContent.trim() : null;
  if (text === before) return;
  const at = Date.now();
  if (window.__cairnFirst === null) window.__cairnFirst = { at, text };
  if (running(text) !== running(before)) {
    window.__cairnChange = { at, text, same: now === cell };
    obs.disconnect();
  }
});
obs.observe(table, { childList: true, subtree: true, characterData: true });
window.__cairnObs = obs;
return before;
"#;

const CHANGED: &str = "return window.__cairnChange;";

fn epoch_ms() -> anyhow::Result<f64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs_f64()
        * 1000.0)
}

/// Waits until the page shows app `id` at `instances/instances`.
async fn wait_cell(browser: &Browser, id: &str, instances: u64) -> anyhow::Result<()> {
    let want = format!("{instances}/{instances}");
    let since = Instant::now();
    loop {
        let v = browser
            .execute("reading a running cell", CELL_TEXT, vec![json!(id)])
            .await?;
        if v.as_str() == Some(want.as_str()) {
            return Ok(());
        }
        if since.elapsed() > SETTLE_DEADLINE {
            bail!(
                "the apps page shows {id} at {v} (running cell `#apps-table tr[data-app-id=\"{id}\"] \
                 [data-field=\"running\"]`), not {want}, {} s after offerd did",
                SETTLE_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One kill timed to the screen: ms from before the DELETE to the page's new running count,
/// and what the cell showed.
async fn change(
    browser: &Browser,
    api: &Api,
    id: &str,
    instances: u64,
    scale: bool,
) -> anyhow::Result<(f64, String)> {
    let running = api.wait_full(id, instances, None).await?;
    wait_cell(browser, id, instances).await?;
    let task = running
        .first()
        .ok_or_else(|| anyhow!("{id} runs no task"))?
        .clone();
    let before = browser
        .execute("watching a running cell", WATCH_CELL, vec![json!(id)])
        .await?;
    let before = before
        .as_str()
        .ok_or_else(|| anyhow!("the apps page has no running cell for {id}"))?
        .to_string();
    let t0 = epoch_ms()?;
    api.kill(id, &task, scale).await?;
    let since = Instant::now();
    let changed = loop {
        let v = browser
            .execute("reading the change", CHANGED, vec![])
            .await?;
        if !v.is_null() {
            break v;
        }
        if since.elapsed() > CHANGE_DEADLINE {
            let now = browser
                .execute("reading a running cell", CELL_TEXT, vec![json!(id)])
                .await?;
            let first = browser
                .execute("reading the change", "return window.__cairnFirst;", vec![])
                .await?;
            let why = if scale {
                ""
            } else {
                " (with --kill replace, offerd starts the replacement as it kills: when the \
                 agents run it at once, as simulated agents do, the running count is back \
                 before the page reads it, and there is nothing to show)"
            };
            bail!(
                "killed task {task} of {id}: the apps page's running count did not change \
                 within {} s: its cell reads {now} ({before} before; first change of text: \
                 {first}){why}",
                CHANGE_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let at = changed["at"]
        .as_f64()
        .ok_or_else(|| anyhow!("unexpected change record {changed}"))?;
    if changed["same"] == false {
        eprintln!("[ui] note: {id}'s running cell was replaced, not updated in place");
    }
    let first = browser
        .execute("reading the change", "return window.__cairnFirst;", vec![])
        .await?;
    let mut shown = before.clone();
    if first["at"] != changed["at"] {
        shown.push_str(&format!(
            " -> {} (+{:.0} ms)",
            first["text"].as_str().unwrap_or("(no cell)"),
            first["at"].as_f64().unwrap_or(f64::NAN) - t0
        ));
    }
    shown.push_str(&format!(
        " -> {}",
        changed["text"].as_str().unwrap_or("(no cell)")
    ));
    // Back to its full count, in offerd and on the page, before the next change.
    if scale {
        api.set_instances(id, instances).await?;
    }
    api.wait_full(id, instances, Some(&task)).await?;
    wait_cell(browser, id, instances).await?;
    Ok((at - t0, shown))
}

// --- the run -----------------------------------------------------------------------------------

struct Figures {
    renders: Vec<Render>,
    changes: Vec<f64>,
}

async fn measure(
    browser: &Browser,
    api: &Api,
    args: &UiArgs,
    apps: &[(String, u64)],
) -> anyhow::Result<Figures> {
    let url = format!("{}/ui/#/apps", args.offerd.trim_end_matches('/'));
    let mut renders = Vec::new();
    for round in 1..=args.rounds {
        let r = first_render(browser, &url, args.apps)
            .await
            .with_context(|| format!("first render, round {round}"))?;
        eprintln!(
            "[ui] first render {round}/{}: {:.0} ms complete, {} painted{}",
            args.rounds,
            r.ready_ms,
            r.painted_ms
                .map(|p| format!("{p:.0} ms"))
                .unwrap_or_else(|| "not".into()),
            if r.late {
                " (already complete when checked: an upper bound)"
            } else {
                ""
            }
        );
        eprintln!("[ui]   {}", r.timeline);
        renders.push(r);
    }
    let mut changes = Vec::new();
    for k in 0..args.changes {
        let (id, instances) = &apps[k % apps.len()];
        let (ms, shown) = change(browser, api, id, *instances, args.kill == "scale")
            .await
            .with_context(|| format!("change {} of {} ({id})", k + 1, args.changes))?;
        eprintln!(
            "[ui] change {}/{} {id}: {shown} in {ms:.0} ms",
            k + 1,
            args.changes
        );
        changes.push(ms);
    }
    Ok(Figures { renders, changes })
}

pub async fn run(args: UiArgs) -> anyhow::Result<()> {
    let (addr, host) = http::loopback_addr(args.offerd.trim_end_matches('/'))?;
    if args.apps == 0 || args.rounds == 0 {
        bail!("--apps and --rounds must be at least 1");
    }
    let api = Api { addr, host };
    let apps = api.apps().await?;
    if apps.len() != args.apps {
        bail!(
            "offerd holds {} apps, not the {} expected (--apps)",
            apps.len(),
            args.apps
        );
    }
    let browser = Browser::start(&args.chromedriver).await?;
    let outcome = tokio::select! {
        r = measure(&browser, &api, &args, &apps) => r,
        () = cairn_cli::shutdown_signal() => Err(anyhow!("stopped by a signal")),
    };
    browser.close().await;
    let f = outcome?;

    let mut ready: Vec<f64> = f.renders.iter().map(|r| r.ready_ms).collect();
    ready.sort_by(f64::total_cmp);
    let mut painted: Vec<f64> = f.renders.iter().filter_map(|r| r.painted_ms).collect();
    painted.sort_by(f64::total_cmp);
    let late = f.renders.iter().filter(|r| r.late).count();
    let mut changes = f.changes;
    changes.sort_by(f64::total_cmp);
    let max = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
    println!(
        "result first_render_p50_ms={:.1} first_render_max_ms={:.1} change_p50_ms={:.1} \
         change_p99_ms={:.1} change_max_ms={:.1} changes={} kill={} apps={} rounds={} \
         first_render_painted_p50_ms={:.1} first_render_late={late} \
         first_render_all_ms={} change_min_ms={:.1}",
        percentile(&ready, 50.0),
        max(&ready),
        percentile(&changes, 50.0),
        percentile(&changes, 99.0),
        max(&changes),
        changes.len(),
        args.kill,
        args.apps,
        args.rounds,
        percentile(&painted, 50.0),
        f.renders
            .iter()
            .map(|r| format!("{:.0}", r.ready_ms))
            .collect::<Vec<_>>()
            .join(","),
        changes.first().copied().unwrap_or(f64::NAN),
    );
    Ok(())
}

//! A real browser for the web UI's tests: Debian's `chromium`, headless, driven over WebDriver
//! by `chromedriver` (both installed by scripts/test) through the `fantoccini` client. Each
//! [`Browser`] has its own chromedriver on a free loopback port and its own profile directory;
//! both go with it. A missing chromium or chromedriver fails the test (a missing peer is never a
//! skip). Screenshots are written under `target/ui-screenshots/` (or `$CAIRN_UI_SHOTS`), the
//! test run's artifacts.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::free_port;

/// How long a page may take to show what a test waits for.
pub const PAGE_WAIT: Duration = Duration::from_secs(30);

/// A headless chromium and its chromedriver.
pub struct Browser {
    pub client: Client,
    driver: Child,
    log: PathBuf,
    _profile: tempfile::TempDir,
}

/// Where screenshots go.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("CAIRN_UI_SHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target/ui-screenshots"))
}

impl Browser {
    /// Starts chromedriver and a headless chromium session with a 1280x900 window.
    pub async fn start() -> Browser {
        Self::start_sized(1280, 900).await
    }

    /// [`Browser::start`] with another window size (a phone's width, say).
    pub async fn start_sized(width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().expect("temp dir");
        let log = profile.path().join("chromedriver.log");
        let port = free_port();
        let out = std::fs::File::create(&log).expect("log file");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(out))
            .spawn()
            .expect("chromedriver is not installed: run scripts/test (apt-get install chromium chromium-driver)");
        crate::wait_listening(port, "chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium_binary(),
                "args": [
                    "--headless=new",
                    // The tests run as root in a container: chromium's sandbox needs user
                    // namespaces it does not get there.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--disable-background-networking",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a chromium session: {e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Browser {
            client,
            driver,
            log,
            _profile: profile,
        }
    }

    /// Opens `url` and waits for the UI's page `page` to say it is ready (`main#page` with
    /// `data-page` = `page` and `data-ready="true"`).
    pub async fn open(&self, url: &str, page: &str) {
        self.client.goto(url).await.expect("navigating");
        self.wait_page(page).await;
    }

    /// Waits for the UI's page `page` to be shown and ready.
    pub async fn wait_page(&self, page: &str) {
        let css = format!("main#page[data-page=\"{page}\"][data-ready=\"true\"]");
        self.wait_css(&css, &format!("the {page} page")).await;
    }

    /// Waits until `check` gives a value; after [`PAGE_WAIT`] writes a screenshot of the page
    /// (`failed-<what>.png`) and panics naming `what`, with the page's text.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        mut check: impl AsyncFnMut(&Client) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + PAGE_WAIT;
        loop {
            if let Some(v) = check(&self.client).await {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let name: String = what
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                let shot = self.screenshot(&format!("failed-{name}")).await;
                let text = self
                    .eval(
                        "return location.href + '\\n' + document.body.innerText;",
                        vec![],
                    )
                    .await;
                panic!(
                    "timed out after {PAGE_WAIT:?} waiting for {what} (screenshot: {})\npage: {}\n{}",
                    shot.display(),
                    text.as_str().unwrap_or_default(),
                    self.context()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for an element matching `css`; fails as [`Browser::wait_until`] does.
    pub async fn wait_css(&self, css: &str, what: &str) -> Element {
        self.wait_until(what, async |client| {
            client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// Waits until `check` holds for the text of the element matching `css`; returns it.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_until(what, async |client| {
            let text = client
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            check(&text).then_some(text)
        })
        .await
    }

    /// Waits until no element matches `css`.
    pub async fn wait_gone(&self, css: &str, what: &str) {
        self.wait_until(what, async |client| {
            let found = client.find_all(Locator::Css(css)).await.ok()?;
            found.is_empty().then_some(())
        })
        .await
    }

    /// Every element matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
    }

    /// The texts of every element matching `css` now.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.all(css).await {
            out.push(e.text().await.unwrap_or_default());
        }
        out
    }

    /// Clicks the element matching `css` (waiting for it first).
    pub async fn click(&self, css: &str) {
        let e = self.wait_css(css, css).await;
        e.click()
            .await
            .unwrap_or_else(|err| panic!("clicking {css}: {err}"));
    }

    /// Replaces the value of the input or textarea matching `css` with `text`, as typing
    /// would (input events fire).
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.wait_css(css, css).await;
        e.clear()
            .await
            .unwrap_or_else(|err| panic!("clearing {css}: {err}"));
        // Large texts are set by script (typing 2 KB of JSON key by key takes seconds), then an
        // input event tells the page, as typing would.
        if text.len() > 64 {
            self.client
                .execute(
                    "arguments[0].value = arguments[1]; \
                     arguments[0].dispatchEvent(new Event('input', {bubbles: true}));",
                    vec![serde_json::to_value(&e).expect("element"), json!(text)],
                )
                .await
                .expect("setting a value");
        } else {
            e.send_keys(text)
                .await
                .unwrap_or_else(|err| panic!("typing into {css}: {err}"));
        }
    }

    /// Runs `script` in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script")
    }

    /// Writes a PNG of the window to the screenshot directory as `name.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing a screenshot");
        path
    }

    /// What a failed wait prints: where chromedriver's log is.
    fn context(&self) -> String {
        format!(
            "chromedriver log: {}\n(see the page's screenshot, if any, under {})",
            self.log.display(),
            screenshot_dir().display()
        )
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        // The session may already be gone (chromium crashed): chromedriver is killed anyway.
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test drops the browser without close(): chromedriver is killed, and the
        // chromium it started (which would outlive it) is found by its profile directory.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let profile = format!(
            "--user-data-dir={}",
            self._profile.path().join("profile").display()
        );
        // Nothing left to kill is the usual case after close().
        let _ = Command::new("pkill")
            .args(["-f", "--"])
            .arg(profile)
            .status();
    }
}

/// Debian's chromium binary.
fn chromium_binary() -> String {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("/usr/bin/chromium")
        .to_string()
}

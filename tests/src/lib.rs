//! Test harness for cairn's end-to-end tests: builds and starts the real binaries on loopback
//! ports with their own state directories, waits until they answer, and offers a small HTTP
//! helper that keeps the status, headers and body of every answer for assertions.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::de::DeserializeOwned;

pub mod browser;
pub mod cluster;
pub mod daemon;
pub mod docker;
pub mod lb;
pub mod netns;
pub mod prometheus;
pub mod systemd;
pub mod tmpfs;

/// Root of the workspace (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Installs ring as this process's rustls provider. The workspace's reqwest has rustls without
/// a provider of its own (cairn's clients hand it a ring configuration), so a plain
/// `reqwest::Client` in a test needs this first; every test starts a binary ([`bin`]) or an
/// [`Http`] before it makes one, and both call it.
pub fn install_crypto_provider() {
    // Err: already installed, by an earlier call.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Path of a workspace binary, built once per test run so tests never run a stale one.
pub fn bin(name: &str) -> PathBuf {
    install_crypto_provider();
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--bins"])
            .current_dir(workspace_root())
            .status()
            .expect("running cargo build for the binaries under test");
        assert!(
            status.success(),
            "cargo build of the binaries under test failed"
        );
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Reads a streaming HTTP body (SSE, followed logs) until `done(text so far)` holds. `Err`
/// carries what was read and why it stopped when the stream ends, fails, or `secs` pass first.
pub async fn read_stream_until(
    resp: &mut reqwest::Response,
    secs: u64,
    done: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut text = String::new();
    while !done(&text) {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => return Err(format!("stream ended; got:\n{text}")),
            Ok(Err(e)) => return Err(format!("stream failed: {e}; got:\n{text}")),
            Err(_) => return Err(format!("timed out after {secs}s; got:\n{text}")),
        }
    }
    Ok(text)
}

/// A free loopback port (bound then released; the OS does not hand it out again at once).
/// Waits up to `within` for `check` to return `Some`, polling every 50 ms; on timeout panics
/// naming `what` and adding `context()` (the daemons' logs, say).
pub async fn wait_for<T>(
    what: &str,
    within: Duration,
    context: impl Fn() -> String,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out after {within:?} waiting for {what}\n{}",
                context()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
}

/// Blocks until something accepts TCP connections on 127.0.0.1:`port` (a server just spawned,
/// such as a test backend behind HAProxy); panics naming `what` after 20 s.
pub fn wait_listening(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: nothing listening on 127.0.0.1:{port} after 20s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The body of `GET http://127.0.0.1:{port}/` when it answers 200 within 5 s.
pub async fn http_get(port: u16) -> Option<String> {
    install_crypto_provider();
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.text().await.ok()
}

/// One HTTP answer, kept whole for assertions.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not the expected JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn value(&self) -> serde_json::Value {
        self.json()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `X-Consul-Index`, asserted present and non-zero as every client requires.
    pub fn index(&self) -> u64 {
        let idx: u64 = self
            .header("x-consul-index")
            .unwrap_or_else(|| panic!("no X-Consul-Index on a {} answer", self.status))
            .parse()
            .expect("X-Consul-Index is a number");
        assert!(idx > 0, "X-Consul-Index must never be 0");
        idx
    }
}

/// Small HTTP client bound to one base URL.
#[derive(Clone)]
pub struct Http {
    pub base: String,
    client: reqwest::Client,
    /// Sent with every request ([`Http::with_header`]).
    headers: reqwest::header::HeaderMap,
}

impl Http {
    pub fn new(base: &str) -> Self {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .expect("building the HTTP client");
        Http {
            base: base.trim_end_matches('/').to_string(),
            client,
            headers: reqwest::header::HeaderMap::new(),
        }
    }

    /// The same client sending `name: value` with every request (credentials, say).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = reqwest::header::HeaderValue::from_str(value).expect("header value");
        self.headers.insert(name, value);
        self
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Resp {
        self.try_send(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn try_send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Resp> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .headers(self.headers.clone());
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await?.to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }

    /// catalogd's global Raft-style index, as a Consul server reports it in `/v1/agent/self`
    /// (`Stats.raft.commit_index`): every committed write moves it, nothing else does.
    pub async fn raft_index(&self) -> u64 {
        let me = self.get("/v1/agent/self").await.value();
        me["Stats"]["raft"]["commit_index"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no Stats.raft.commit_index in /v1/agent/self: {me}"))
    }

    pub async fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Resp {
        self.send("PUT", path, Some(body.into())).await
    }

    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Resp {
        self.send(
            "PUT",
            path,
            Some(serde_json::to_vec(body).expect("serializable")),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None).await
    }
}

/// A running `catalogd serve` with its own data directory.
pub struct Catalogd {
    daemon: daemon::Daemon,
    pub port: u16,
    pub url: String,
    pub http: Http,
    pub data_dir: PathBuf,
    pub node: String,
    _tmp: tempfile::TempDir,
}

impl Catalogd {
    /// Starts catalogd on a fresh data directory, node `cairn-test`.
    pub async fn start() -> Catalogd {
        Self::start_with(&[]).await
    }

    /// Starts catalogd with extra `serve` flags (a `--node` among them replaces `cairn-test`).
    pub async fn start_with(extra: &[&str]) -> Catalogd {
        Self::start_in(None, extra).await
    }

    /// Starts catalogd with its store in `data_dir` (a fresh directory when `None`).
    pub async fn start_in(data_dir: Option<PathBuf>, extra: &[&str]) -> Catalogd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = data_dir.unwrap_or_else(|| tmp.path().join("data"));
        let node = extra
            .iter()
            .position(|a| *a == "--node")
            .and_then(|i| extra.get(i + 1))
            .map_or("cairn-test", |n| n)
            .to_string();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--http-addr".into(),
            daemon::ANY_PORT.into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
        ];
        if !extra.contains(&"--node") {
            args.extend(["--node".to_string(), node.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let daemon = daemon::Daemon::start_any_port(
            "catalogd",
            args,
            "/v1/status/leader",
            tmp.path().join("catalogd.log"),
        )
        .await;
        let url = daemon.url.clone();
        Catalogd {
            port: daemon.port(),
            daemon,
            http: Http::new(&url),
            url,
            data_dir,
            node,
            _tmp: tmp,
        }
    }

    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    /// Waits until at least `n` blocking queries are parked in catalogd (its
    /// `catalogd_blocking_queries_waiting` gauge), so that a write made next is one they wait for.
    pub async fn wait_parked(&self, n: u64) {
        wait_for(
            &format!("{n} blocking queries to park"),
            Duration::from_secs(30),
            || self.log_text(),
            async || {
                let text = self.http.get("/metrics").await.text();
                let waiting = text
                    .lines()
                    .find_map(|l| l.strip_prefix("catalogd_blocking_queries_waiting "))
                    .and_then(|v| v.trim().parse::<f64>().ok())?;
                (waiting >= n as f64).then_some(())
            },
        )
        .await
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.daemon.kill9();
    }

    /// SIGTERM, then the exit status (asserting it stops within `within`).
    pub fn sigterm(&mut self, within: Duration) -> ExitStatus {
        self.daemon.sigterm(within)
    }

    /// Starts the process again on the same port and data directory.
    pub async fn restart(&mut self) {
        self.daemon.restart().await;
    }

    /// Runs a `catalogd` client subcommand against this server.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        use std::io::Write as _;
        let mut child = Command::new(bin("catalogd"))
            .args(args)
            .env("CAIRN_CATALOG", &self.url)
            .env_remove("CONSUL_HTTP_ADDR")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the catalogd CLI");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("writing stdin");
        }
        drop(input);
        child.wait_with_output().expect("CLI output")
    }
}

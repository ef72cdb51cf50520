//! Test harness for cairn's end-to-end tests: builds and starts the real binaries on loopback
//! ports with their own state directories, waits until they answer, and offers a small HTTP
//! helper that keeps the status, headers and body of every answer for assertions.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

pub mod cluster;
pub mod daemon;

/// Root of the workspace (this crate lives in `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Path of a workspace binary, built once per test run so tests never run a stale one.
pub fn bin(name: &str) -> PathBuf {
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

/// A free loopback port (bound then released; the OS does not hand it out again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port")
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
}

impl Http {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .no_proxy()
            .build()
            .expect("building the HTTP client");
        Http {
            base: base.trim_end_matches('/').to_string(),
            client,
        }
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
            .request(method, format!("{}{}", self.base, path));
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
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    pub http: Http,
    pub data_dir: PathBuf,
    pub node: String,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl Catalogd {
    /// Starts catalogd on a fresh data directory, node `cairn-test`.
    pub async fn start() -> Catalogd {
        Self::start_with(&[]).await
    }

    /// Starts catalogd with extra `serve` flags.
    pub async fn start_with(extra: &[&str]) -> Catalogd {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let mut c = Catalogd {
            child: None,
            port: free_port(),
            url: String::new(),
            http: Http::new("http://127.0.0.1:1"),
            data_dir,
            node: "cairn-test".into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            log: tmp.path().join("catalogd.log"),
            _tmp: Some(tmp),
        };
        c.spawn().await;
        c
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(bin("catalogd"))
            .arg("serve")
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--node")
            .arg(&self.node)
            .args(&self.extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting catalogd");
        self.child = Some(child);
        self.url = format!("http://127.0.0.1:{}", self.port);
        self.http = Http::new(&self.url);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.try_send("GET", "/v1/status/leader", None).await
                && r.status == 200
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "catalogd exited early with {status}; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "catalogd did not answer in 20s; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("catalogd is running")
    }

    /// `kill -9`: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status (asserting it stops within `within`).
    pub fn sigterm(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("catalogd is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "catalogd did not stop within {within:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the process again on the same port and data directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop catalogd before restarting it");
        self.spawn().await;
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

impl Drop for Catalogd {
    fn drop(&mut self) {
        self.kill9();
    }
}

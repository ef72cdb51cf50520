//! Shared pieces of the `healthcheck` end-to-end tests: running the real binary with a deadline,
//! splitting its Nagios line into status, text and perfdata, and a small real HTTP server on
//! loopback (its own thread and runtime, so the blocking tests can drive the binary freely).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use cairn_tests::{bin, workspace_root};

/// Longest any single `healthcheck` call may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(120);

/// What one `healthcheck` call did.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code, asserted; panics with the whole output otherwise.
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "healthcheck {:?}: exit code\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }

    /// The single line of stdout (asserted to be exactly one line).
    pub fn line(&self) -> &str {
        let lines: Vec<&str> = self.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "healthcheck {:?}: expected exactly one line on stdout, got:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stdout.ends_with('\n'),
            "the line ends with a newline: {:?}",
            self.stdout
        );
        lines[0]
    }

    /// Asserts the exit code and that the one line starts with `prefix`.
    pub fn expect(&self, code: i32, prefix: &str) -> &Run {
        self.assert_code(code);
        let line = self.line();
        assert!(
            line.starts_with(prefix),
            "healthcheck {:?}: line should start with {prefix:?}: {line:?}",
            self.args
        );
        self
    }

    /// Asserts the line contains every one of `parts`.
    pub fn contains_all(&self, parts: &[&str]) -> &Run {
        let line = self.line();
        for p in parts {
            assert!(
                line.contains(p),
                "healthcheck {:?}: line should contain {p:?}: {line:?}",
                self.args
            );
        }
        self
    }

    /// The line's text part (after `STATUS - `, before ` | `).
    pub fn text(&self) -> String {
        let line = self.line();
        let after = line
            .split_once(" - ")
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("no \" - \" in {line:?}"));
        after.split(" | ").next().unwrap_or_default().to_string()
    }

    /// The perfdata items of the line, parsed.
    pub fn perf(&self) -> Vec<Perf> {
        perf_of(self.line())
    }

    /// The perfdata item called `label`, asserted present.
    pub fn perf_item(&self, label: &str) -> Perf {
        let all = self.perf();
        all.iter()
            .find(|p| p.label == label)
            .cloned()
            .unwrap_or_else(|| panic!("no {label:?} in the perfdata of {:?}", self.line()))
    }
}

/// One perfdata item `label=valueUOM;warn;crit;min;max`, fields kept as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Perf {
    pub raw: String,
    pub label: String,
    pub value: f64,
    pub value_text: String,
    pub uom: String,
    /// `warn`, `crit`, `min`, `max` as written (missing trailing ones absent).
    pub fields: Vec<String>,
}

/// Parses the perfdata part of a Nagios line (nothing when there is no ` | `).
pub fn perf_of(line: &str) -> Vec<Perf> {
    let Some((_, perf)) = line.split_once(" | ") else {
        return Vec::new();
    };
    perf.split_whitespace()
        .map(|item| {
            let (label, rest) = item
                .split_once('=')
                .unwrap_or_else(|| panic!("perfdata item without '=': {item:?} in {line:?}"));
            let mut fields = rest.split(';');
            let value_uom = fields.next().unwrap_or_default();
            let end = value_uom
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-')))
                .unwrap_or(value_uom.len());
            let value_text = value_uom[..end].to_string();
            let value = value_text
                .parse()
                .unwrap_or_else(|_| panic!("perfdata value of {item:?} is not a number"));
            Perf {
                raw: item.to_string(),
                label: label.to_string(),
                value,
                value_text,
                uom: value_uom[end..].to_string(),
                fields: fields.map(str::to_string).collect(),
            }
        })
        .collect()
}

/// Runs `healthcheck ARGS`.
pub fn healthcheck(args: &[&str]) -> Run {
    healthcheck_with(args, None)
}

/// Runs `healthcheck ARGS` with `stdin` fed to it (or an empty stdin).
pub fn healthcheck_with(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let exe = bin("healthcheck");
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .args(args)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting healthcheck");
    let input = stdin.map(<[u8]>::to_vec).unwrap_or_default();
    let mut pipe_in = child.stdin.take().expect("stdin");
    // A writer thread, so a large batch on stdin cannot deadlock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        // healthcheck may exit before reading all of stdin; the test checks its output.
        let _ = pipe_in.write_all(&input);
    });
    let reader = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            // A read error ends the capture; the test checks what was read.
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for healthcheck") {
            break s;
        }
        if started.elapsed() > DEADLINE {
            // The process may have exited already; the wait below reaps it either way.
            let _ = child.kill();
            // Only reaps it; how a killed process exited says nothing here.
            let _ = child.wait();
            panic!("healthcheck {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The writer ignores its errors and cannot panic.
    let _ = writer.join();
    Run {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// A file under `tests/healthcheck/`.
pub fn data_file(name: &str) -> PathBuf {
    workspace_root()
        .join("tests")
        .join("healthcheck")
        .join(name)
}

/// The full Nagios line shape: `LABEL STATUS - text` with optional ` | perfdata`.
pub fn assert_nagios_shape(line: &str) {
    let re = regex::Regex::new(
        r"^[A-Za-z0-9_.-]+ (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| ('[^']+'|[^ ;=']+)=-?[0-9.]+[A-Za-z%]*(;[-0-9.]*){0,4}( ('[^']+'|[^ ;=']+)=-?[0-9.]+[A-Za-z%]*(;[-0-9.]*){0,4})*)?$",
    )
    .expect("regex");
    assert!(re.is_match(line), "not a Nagios line: {line:?}");
}

/// A real HTTP server on 127.0.0.1 for the HTTP and batch tests.
///
/// Routes: `/ok` (200 "hello world"), `/status/{code}`, `/slow?ms=N`, `/redirect` (302 to
/// `/ok`), `/echo` (any method; answers `METHOD x-test=VALUE body=BODY`).
pub struct HttpServer {
    pub addr: SocketAddr,
    /// Requests `/ok` has answered.
    pub ok_hits: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn ok(State(hits): State<Arc<AtomicUsize>>) -> &'static str {
    hits.fetch_add(1, Ordering::Relaxed);
    "hello world"
}

async fn status(Path(code): Path<u16>) -> impl IntoResponse {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (code, format!("status {}", code.as_u16()))
}

async fn slow(Query(q): Query<HashMap<String, String>>) -> &'static str {
    let ms: u64 = q.get("ms").and_then(|v| v.parse().ok()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

async fn redirect() -> impl IntoResponse {
    (StatusCode::FOUND, [(header::LOCATION, "/ok")], "")
}

async fn echo(method: Method, headers: HeaderMap, body: String) -> String {
    let x_test = headers
        .get("x-test")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    format!("{method} x-test={x_test} body={body}")
}

impl HttpServer {
    pub fn start() -> HttpServer {
        let ok_hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/ok", get(ok))
            .route("/status/{code}", get(status))
            .route("/slow", get(slow))
            .route("/redirect", get(redirect))
            .route("/echo", any(echo))
            .with_state(ok_hits.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                tokio::select! {
                    r = axum::serve(listener, app) => r.expect("serving"),
                    _ = stopped => {}
                }
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        });
        HttpServer {
            addr,
            ok_hits,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server thread may have stopped already.
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            // A panic in the server thread has failed the request the test made already.
            let _ = t.join();
        }
    }
}

//! Shared pieces of the `tmpl` end-to-end tests: a working directory for templates and outputs,
//! the real `tmpl` binary run once (`render`, `watch --once`) with a deadline or kept running
//! (`watch`) with its log and stdout captured, polling helpers that fail with the log attached,
//! and catalog writes against a real catalogd. Every address contacted is on 127.0.0.1.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use cairn_tests::{Catalogd, bin};
use serde_json::{Value, json};

/// How long the tests wait for a change to show in an output file ("soon", generously).
pub const SOON: Duration = Duration::from_secs(10);

/// Longest a one-shot `tmpl` call may take before the test gives up on it.
const DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Files.

/// A temporary directory holding templates, config files and outputs.
pub struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Absolute path of `name` inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `path(name)` as a string, for command lines.
    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// Writes `name` in place (truncate + write), creating parent directories.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating directories");
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Replaces `name` the way editors save: a new file renamed over the old one.
    pub fn replace(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        let tmp = self.path(&format!(".{name}.editor-swap"));
        std::fs::write(&tmp, text).expect("writing the editor's temp file");
        std::fs::rename(&tmp, &path).expect("renaming over the template");
        path
    }

    /// Content of `name`, None when it does not exist.
    pub fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }

    /// Lines of `name` (empty when it does not exist).
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.read(name)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Identity and times of `name`, to prove a file was not rewritten.
    pub fn stamp(&self, name: &str) -> Stamp {
        let m = std::fs::metadata(self.path(name))
            .unwrap_or_else(|e| panic!("{name} should exist: {e}"));
        Stamp {
            inode: m.ino(),
            mtime: m.modified().expect("mtime"),
            mode: m.mode() & 0o7777,
        }
    }

    /// Mode bits of `name`.
    pub fn mode(&self, name: &str) -> u32 {
        self.stamp(name).mode
    }

    /// Names in the directory (recursively not: one level) that look like tmpl's temp files.
    pub fn leftovers(&self, sub: &str) -> Vec<String> {
        std::fs::read_dir(self.path(sub))
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.contains(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A file's inode, modification time and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub inode: u64,
    pub mtime: SystemTime,
    pub mode: u32,
}

// ---------------------------------------------------------------------------------------------
// The binary under test.

/// `tmpl --catalog CATALOG` with a clean environment, run in `cwd`.
fn command(catalog: &str, cwd: &Path) -> Command {
    let mut cmd = Command::new(bin("tmpl"));
    cmd.arg("--catalog")
        .arg(catalog)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("CAIRN_CATALOG")
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CAIRN_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN");
    cmd
}

/// What one `tmpl` call did.
#[derive(Debug)]
pub struct Ran {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Ran {
    /// Asserts the exit code, showing everything otherwise.
    pub fn assert_code(&self, code: i32) -> &Ran {
        assert_eq!(
            self.code,
            Some(code),
            "tmpl {:?}: exit code\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `tmpl --catalog CATALOG ARGS...` in `cwd` to completion (stdin from `stdin`), with env
/// `envs`; panics if it takes longer than a minute.
pub fn run_in(
    catalog: &str,
    cwd: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    envs: &[(&str, &str)],
) -> Ran {
    let started = Instant::now();
    let mut cmd = command(catalog, cwd);
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("starting tmpl");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("writing stdin");
    }
    drop(input);
    // Read the pipes on threads so a chatty child never blocks; enforce the deadline here.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        // A read error ends the capture; the test checks what was read.
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        // A read error ends the capture; the test checks what was read.
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for tmpl") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            // The process may have exited already; the wait below reaps it either way.
            let _ = child.kill();
            // Only reaps it; how a killed process exited says nothing here.
            let _ = child.wait();
            panic!("tmpl {args:?} did not finish within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        args: args.iter().map(|s| s.to_string()).collect(),
        code: status.code(),
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

/// `run_in` with no stdin and no extra environment.
pub fn run(catalog: &str, cwd: &Path, args: &[&str]) -> Ran {
    run_in(catalog, cwd, args, None, &[])
}

/// A running `tmpl watch`, its stderr (the log) and stdout kept in files.
pub struct Watcher {
    child: Option<Child>,
    pub args: Vec<String>,
    log: tempfile::NamedTempFile,
    out: tempfile::NamedTempFile,
}

impl Watcher {
    /// Starts `tmpl --catalog CATALOG watch ARGS...` in `cwd` and waits until it logs that it
    /// watches (its signal handlers are installed by then).
    pub async fn start(catalog: &str, cwd: &Path, args: &[&str]) -> Watcher {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let out = tempfile::NamedTempFile::new().expect("stdout file");
        let child = command(catalog, cwd)
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.reopen().expect("stdout file"))
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("starting tmpl watch");
        let w = Watcher {
            child: Some(child),
            args: args.iter().map(|s| s.to_string()).collect(),
            log,
            out,
        };
        w.wait_log("tmpl watching", SOON).await;
        w
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    /// How many log lines contain `needle`.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("tmpl is running")
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Asserts the process is still running.
    pub fn assert_alive(&mut self, context: &str) {
        assert!(
            self.alive(),
            "tmpl watch exited ({context}); log:\n{}",
            self.log_text()
        );
    }

    /// Sends `signal` ("-HUP", "-TERM", ...) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(ok.success(), "kill {signal} {}", self.pid());
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("tmpl is running");
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if start.elapsed() > within {
                // The process may have exited already; the wait below reaps it either way.
                let _ = c.kill();
                // Only reaps it; how a killed process exited says nothing here.
                let _ = c.wait();
                panic!(
                    "tmpl {:?} did not exit within {within:?}; log:\n{}",
                    self.args,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until the log contains `needle` (panics with the log after `within`).
    pub async fn wait_log(&self, needle: &str, within: Duration) -> Duration {
        self.wait_until(&format!("log line {needle:?}"), within, || {
            self.log_text().contains(needle)
        })
        .await
    }

    /// Polls `ok` every 5 ms; panics after `within` with the log. Returns the time it took.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        mut ok: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if ok() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "tmpl {:?}: {what}: not seen within {within:?}; log:\n{}",
                self.args,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `work/name` holds exactly `want`.
    pub async fn wait_file(&self, work: &Work, name: &str, want: &str) -> Duration {
        let start = Instant::now();
        loop {
            let now = work.read(name);
            if now.as_deref() == Some(want) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < SOON,
                "tmpl {:?}: {name} should become {:?} within {SOON:?}, is {:?}; log:\n{}",
                self.args,
                short(want),
                now.as_deref().map(short),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// At most 300 characters of `s`, for messages about big files.
fn short(s: &str) -> String {
    if s.len() <= 300 {
        return s.to_string();
    }
    let cut = (0..=300)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0);
    format!("{}... ({} bytes)", &s[..cut], s.len())
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The process may have exited already; the wait below reaps it either way.
            let _ = c.kill();
            // Only reaps it; how a killed process exited says nothing here.
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The catalog.

/// `PUT /v1/kv/KEY`, asserted to succeed.
pub async fn put_kv(c: &Catalogd, key: &str, value: &str) {
    let r = c.http.put(&format!("/v1/kv/{key}"), value).await;
    assert_eq!((r.status, r.text().as_str()), (200, "true"), "PUT kv {key}");
}

/// `PUT /v1/catalog/register`, asserted to succeed.
pub async fn register(c: &Catalogd, body: &Value) {
    let r = c.http.put_json("/v1/catalog/register", body).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "true"),
        "register {body}"
    );
}

/// Registers service instance `id` of `service` on `node` (node address `node_addr`, no
/// service address) with a service check in `status`.
pub async fn instance(
    c: &Catalogd,
    node: &str,
    node_addr: &str,
    service: &str,
    id: &str,
    port: u16,
    status: &str,
) {
    register(
        c,
        &json!({
            "Node": node,
            "Address": node_addr,
            "Service": {"ID": id, "Service": service, "Port": port},
            "Check": {"CheckID": format!("chk-{id}"), "Name": "svc", "Status": status, "ServiceID": id},
        }),
    )
    .await;
}

/// An address nothing listens on (a port bound and released).
pub fn dead_catalog() -> String {
    format!("http://127.0.0.1:{}", cairn_tests::free_port())
}

/// Whether `pid` is a live process (a zombie waiting to be reaped counts as gone).
pub fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X") | None)
        }
    }
}

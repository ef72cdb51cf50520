//! A long-running cairn process under test (offerd, taskrun): started with its flags, its log
//! kept in a file, ready once an HTTP path answers 200; it can be killed (-9), stopped with
//! SIGTERM, and started again with the same flags and state. Started with `--http-addr
//! 127.0.0.1:0` ([`Daemon::start_any_port`]), it binds a port of the kernel's choosing and the
//! harness reads it from the daemon's log (`addr=127.0.0.1:PORT`): no free-port race.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{Http, bin};

/// The `--http-addr` value that lets the kernel choose the port.
pub const ANY_PORT: &str = "127.0.0.1:0";

pub struct Daemon {
    name: &'static str,
    /// What runs: `bin(name)` unless started with [`Daemon::start_program`].
    program: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    pub url: String,
    pub http: Http,
    ready_path: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `bin(name) args...` (logging to `log`) and waits for `GET {url}{ready_path}` to
    /// answer 200.
    pub async fn start(
        name: &'static str,
        args: Vec<String>,
        url: String,
        ready_path: &str,
        log: PathBuf,
    ) -> Daemon {
        Self::start_env(name, args, Vec::new(), url, ready_path, log).await
    }

    pub async fn start_env(
        name: &'static str,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        url: String,
        ready_path: &str,
        log: PathBuf,
    ) -> Daemon {
        let mut d = Daemon {
            name,
            program: None,
            args,
            envs,
            child: None,
            http: Http::new(&url),
            url,
            ready_path: ready_path.to_string(),
            log,
        };
        d.spawn().await;
        d
    }

    /// Starts `bin(name) args...`, where `args` hold `--http-addr 127.0.0.1:0`: the bound port
    /// is read from the daemon's log, and a restart binds the same one again.
    pub async fn start_any_port(
        name: &'static str,
        args: Vec<String>,
        ready_path: &str,
        log: PathBuf,
    ) -> Daemon {
        assert!(
            args.iter().any(|a| a == ANY_PORT),
            "start_any_port needs --http-addr {ANY_PORT} among the flags"
        );
        Self::start(name, args, String::new(), ready_path, log).await
    }

    /// The port the daemon bound (from `url`).
    pub fn port(&self) -> u16 {
        self.url
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("{} has no port in {:?}", self.name, self.url))
    }

    /// Starts `program args...` (e.g. `ip netns exec NS <taskrun> agent ...`), named `name` in
    /// messages, and waits for `GET {url}{ready_path}` to answer 200.
    pub async fn start_program(
        name: &'static str,
        program: PathBuf,
        args: Vec<String>,
        url: String,
        ready_path: &str,
        log: PathBuf,
    ) -> Daemon {
        let mut d = Daemon {
            name,
            program: Some(program),
            args,
            envs: Vec::new(),
            child: None,
            http: Http::new(&url),
            url,
            ready_path: ready_path.to_string(),
            log,
        };
        d.spawn().await;
        d
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let program = self.program.clone().unwrap_or_else(|| bin(self.name));
        let child = Command::new(&program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {} ({}): {e}", self.name, program.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        if self.url.is_empty() {
            self.learn_port(deadline).await;
        }
        loop {
            if let Ok(r) = self.http.try_send("GET", &self.ready_path, None).await
                && r.status == 200
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{} exited early with {status}; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer in 20s; log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Reads the bound address from the log (`addr=127.0.0.1:PORT`, logged once bound), sets
    /// `url` and `http`, and makes a restart bind that port again.
    async fn learn_port(&mut self, deadline: Instant) {
        let marker = "addr=127.0.0.1:";
        loop {
            let text = self.log_text();
            let port = text.find(marker).and_then(|at| {
                let rest = &text[at + marker.len()..];
                let end = rest.find(|c: char| !c.is_ascii_digit())?;
                rest[..end].parse::<u16>().ok()
            });
            if let Some(port) = port {
                self.url = format!("http://127.0.0.1:{port}");
                self.http = Http::new(&self.url);
                for arg in &mut self.args {
                    if arg == ANY_PORT {
                        *arg = format!("127.0.0.1:{port}");
                    }
                }
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("{} exited early with {status}; log:\n{text}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{} logged no `{marker}PORT` in 20s; log:\n{text}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(|c| c.id())
            .expect("daemon is running")
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The process may have exited already; the wait below reaps it either way.
            let _ = c.kill();
            // Only reaps it; how a killed process exited says nothing here.
            let _ = c.wait();
        }
    }

    /// SIGTERM, then the exit status (asserting it stops within `within`).
    pub fn sigterm(&mut self, within: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("daemon is running");
        // SAFETY: kill(2) on a pid we own.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                // The process may have exited already: nothing to report.
                let _ = c.kill();
                panic!(
                    "{} did not stop within {within:?} of SIGTERM; log:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again with the same flags (after kill9 or sigterm).
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "stop {} before restarting it",
            self.name
        );
        self.spawn().await;
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if self.name == "taskrun" {
            // A killed agent releases no cgroups: remove its cgroup v1 levels, once the tasks
            // its owner reaped (before dropping it) have left them.
            crate::cluster::remove_agent_cgroups(&crate::cluster::agent_cgroups(&self.log_text()));
        }
    }
}

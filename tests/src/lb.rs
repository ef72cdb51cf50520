//! A real load balancer for the end-to-end tests: `lbconf watch` following a catalog and writing
//! haproxy.cfg, and HAProxy (master-worker, runtime API socket) running that config and
//! reloaded by lbconf. Both are killed when the [`Balancer`] is dropped.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, free_port};

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.0.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.0.wait();
    }
}

/// How to start the balancer.
#[derive(Clone, Debug, Default)]
pub struct BalancerOpts {
    /// What lbconf runs as `haproxy -c` (default: the real `haproxy`).
    pub validator: Option<PathBuf>,
    /// `--spare-slots` (default 2).
    pub spare_slots: Option<usize>,
    /// `--command-timeout` (default: lbconf's).
    pub command_timeout: Option<&'static str>,
    /// `--reload-interval` (default: lbconf's).
    pub reload_interval: Option<&'static str>,
    /// `--metrics-listen` on a free loopback port ([`Balancer::metrics_port`]).
    pub metrics: bool,
    /// `--metrics-listen` on this loopback port (for a consumer started before the balancer).
    pub metrics_port: Option<u16>,
    /// `--tls-certs DIR`, with the HTTPS frontend on a free loopback port
    /// ([`Balancer::https_port`]).
    pub tls_certs: Option<PathBuf>,
    /// More `lbconf watch` flags (`--group external`, `--haproxy-metrics ADDR`).
    pub extra_args: Vec<String>,
}

/// lbconf + HAProxy, with every file in one directory.
pub struct Balancer {
    // Dropped first: HAProxy, then lbconf.
    haproxy: Proc,
    _lbconf: Proc,
    /// HAProxy's shared HTTP frontend on 127.0.0.1.
    pub http_port: u16,
    /// The HTTPS frontend, with [`BalancerOpts::tls_certs`].
    pub https_port: Option<u16>,
    /// lbconf's `/metrics` on 127.0.0.1, when [`BalancerOpts::metrics`] asked for it.
    pub metrics_port: Option<u16>,
    pub cfg: PathBuf,
    pub admin_sock: PathBuf,
    pub lb_log: PathBuf,
    pub haproxy_log: PathBuf,
}

impl Balancer {
    /// Starts lbconf against `catalog` (URL), waits for its first config, starts HAProxy on it
    /// and waits until HAProxy is up before lbconf may signal it: a SIGUSR2 arriving before
    /// HAProxy's master installed its handlers would kill it.
    pub async fn start(dir: &Path, catalog: &str, opts: BalancerOpts) -> Balancer {
        let http_port = free_port();
        let cfg = dir.join("haproxy.cfg");
        let admin_sock = dir.join("admin.sock");
        let pidfile = dir.join("haproxy.pid");
        let lb_log = dir.join("lbconf.log");
        let haproxy_log = dir.join("haproxy.log");
        let mut cmd = Command::new(bin("lbconf"));
        cmd.arg("watch")
            .arg("--out")
            .arg(&cfg)
            .arg("--haproxy-socket")
            .arg(&admin_sock)
            .arg("--reload-cmd")
            .arg(format!(
                "test -f {p} && kill -USR2 $(cat {p})",
                p = pidfile.display()
            ))
            .args(["--bind", "127.0.0.1", "--http-port", &http_port.to_string()])
            .args(["--spare-slots", &opts.spare_slots.unwrap_or(2).to_string()]);
        if let Some(v) = &opts.validator {
            cmd.arg("--haproxy").arg(v);
        }
        if let Some(t) = opts.command_timeout {
            cmd.args(["--command-timeout", t]);
        }
        if let Some(t) = opts.reload_interval {
            cmd.args(["--reload-interval", t]);
        }
        let https_port = opts.tls_certs.as_ref().map(|dir| {
            let port = free_port();
            cmd.arg("--tls-certs")
                .arg(dir)
                .args(["--https-port", &port.to_string()])
                .arg("--tls-state")
                .arg(dir.with_extension("state"));
            port
        });
        cmd.args(&opts.extra_args);
        let metrics_port = opts.metrics_port.or_else(|| opts.metrics.then(free_port));
        if let Some(port) = metrics_port {
            cmd.args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
        }
        let lbconf = Proc(
            cmd.env("CAIRN_CATALOG", catalog)
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&lb_log).expect("lbconf log file"))
                .spawn()
                .expect("starting lbconf"),
        );
        let log = || std::fs::read_to_string(&lb_log).unwrap_or_default();
        wait(20, "lbconf's first haproxy.cfg", &log, || cfg.exists()).await;
        let haproxy = Proc(
            Command::new("haproxy")
                .args(["-W", "-db", "-f"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&haproxy_log).expect("haproxy log file"))
                .spawn()
                .expect("haproxy is not installed: run scripts/test"),
        );
        let hap_log = || std::fs::read_to_string(&haproxy_log).unwrap_or_default();
        wait(20, "HAProxy to start", &hap_log, || {
            hap_log().contains("Loading success") && UnixStream::connect(&admin_sock).is_ok()
        })
        .await;
        std::fs::write(&pidfile, haproxy.0.id().to_string()).expect("writing haproxy.pid");
        Balancer {
            haproxy,
            _lbconf: lbconf,
            http_port,
            https_port,
            metrics_port,
            cfg,
            admin_sock,
            lb_log,
            haproxy_log,
        }
    }

    /// lbconf's log so far.
    pub fn lbconf_log(&self) -> String {
        std::fs::read_to_string(&self.lb_log).unwrap_or_default()
    }

    /// HAProxy's log so far.
    pub fn haproxy_log(&self) -> String {
        std::fs::read_to_string(&self.haproxy_log).unwrap_or_default()
    }

    /// HAProxy's pid (the master).
    pub fn haproxy_pid(&self) -> u32 {
        self.haproxy.0.id()
    }

    /// Stops HAProxy as an operator would (SIGTERM to the master, which stops its workers) and
    /// waits for it to exit; lbconf keeps running.
    pub async fn stop_haproxy(&mut self) {
        let pid = self.haproxy.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(
            sent.as_ref().is_ok_and(|s| s.success()),
            "kill -TERM {pid}: {sent:?}"
        );
        let log = || std::fs::read_to_string(&self.haproxy_log).unwrap_or_default();
        let child = &mut self.haproxy.0;
        wait(20, "HAProxy to exit", &log, || {
            child.try_wait().is_ok_and(|s| s.is_some())
        })
        .await;
    }
}

/// Polls `ok` until it holds, failing with `log` after `secs`.
async fn wait(secs: u64, what: &str, log: &dyn Fn() -> String, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} never happened; log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! Real etcd clusters for tests (cargo feature `testing`): [`EtcdCluster::start`] runs `n`
//! `etcd` processes on loopback ports, their data directories and logs in a temporary
//! directory, and waits until every member answers with a leader. Members can be killed
//! (SIGKILL) and restarted on the same data; dropping the cluster kills them all (and the
//! kernel kills them should the test process die first: `PR_SET_PDEATHSIG`).
//!
//! Without `etcd` on `PATH` (Debian: `etcd-server`), [`EtcdCluster::start`] prints a NOTICE and
//! returns `None`, and the test returns; under `CI=true` it panics instead.

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use url::Url;

use crate::{EtcdClient, RangeRequest};

/// How long a cluster (or a restarted member) may take to answer with a leader.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// How many times a start is tried again when a port picked turned out taken.
const START_ATTEMPTS: usize = 3;

/// Whether `etcd` can be run. When it cannot: under `CI=true` a panic, otherwise a NOTICE on
/// stderr (naming `test`) and `false`.
pub fn etcd_available(test: &str) -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "etcd is missing (scripts/test installs Debian's etcd-server)"
        );
        eprintln!("NOTICE: etcd is not installed; skipping {test}");
    }
    found
}

/// A running etcd cluster of real processes.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until each answers a linearizable read (so the cluster has
    /// a leader). `None` when etcd is not installed (see the module docs). Panics, with the
    /// members' logs, when the cluster does not come up within [`START_DEADLINE`].
    pub async fn start(n: usize) -> Option<EtcdCluster> {
        assert!(n > 0, "a cluster needs a member");
        let test = std::thread::current()
            .name()
            .map_or_else(|| "a test".to_string(), str::to_string);
        if !etcd_available(&format!("{test} (it needs a {n}-member etcd cluster)")) {
            return None;
        }
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut cluster = EtcdCluster::configure(n);
            for i in 0..n {
                cluster.spawn(i);
            }
            match cluster
                .wait_ready(0..n, Instant::now() + START_DEADLINE)
                .await
            {
                Ok(()) => return Some(cluster),
                Err(failure) if failure.port_clash => {
                    // Another process took a port between our pick and etcd's bind: pick again.
                    last_failure = failure.text;
                }
                Err(failure) => panic!("{}", failure.text),
            }
        }
        panic!("etcd did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// Directories, ports and flags of `n` members. Ports: the kernel's choice for listeners
    /// bound all at once (so no two are equal), released just before etcd binds them.
    fn configure(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("cairn-etcd-")
            .tempdir()
            .expect("a temporary directory");
        let listeners: Vec<TcpListener> = (0..2 * n)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("a loopback port"))
            .collect();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound").port())
            .collect();
        drop(listeners);
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "cairn-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap_or_default().to_string_lossy()
        );
        let members = names
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
                let data_dir = dir.path().join(&name);
                let client = format!("http://127.0.0.1:{client_port}");
                let peer = format!("http://127.0.0.1:{peer_port}");
                let args = vec![
                    "--name".into(),
                    name.clone(),
                    "--data-dir".into(),
                    data_dir.display().to_string(),
                    "--listen-client-urls".into(),
                    client.clone(),
                    "--advertise-client-urls".into(),
                    client,
                    "--listen-peer-urls".into(),
                    peer.clone(),
                    "--initial-advertise-peer-urls".into(),
                    peer,
                    "--initial-cluster".into(),
                    initial_cluster.clone(),
                    "--initial-cluster-state".into(),
                    "new".into(),
                    "--initial-cluster-token".into(),
                    token.clone(),
                    "--logger".into(),
                    "zap".into(),
                    "--log-outputs".into(),
                    "stderr".into(),
                    "--log-level".into(),
                    "warn".into(),
                    // What cairn's replicas need of etcd (README, "High availability"): one
                    // group of writes is one transaction, often past etcd's 128-op default.
                    "--max-txn-ops".into(),
                    "10000".into(),
                    "--max-request-bytes".into(),
                    "10485760".into(),
                ];
                Member {
                    log: dir.path().join(format!("{name}.log")),
                    name,
                    client_port,
                    peer_port,
                    data_dir,
                    args,
                    child: None,
                }
            })
            .collect();
        EtcdCluster { members, dir }
    }

    fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "member {} is running", m.name);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", m.log.display()));
        let err = log.try_clone().expect("a second handle on the log");
        let mut cmd = Command::new("etcd");
        cmd.args(&m.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // SAFETY: between fork and exec only prctl(2) is called, which allocates nothing.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        m.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("cannot start etcd ({}): {e}", m.name)),
        );
    }

    /// Waits until each of `members` answers a linearizable read; fails when one exits or the
    /// deadline passes.
    async fn wait_ready(
        &mut self,
        members: std::ops::Range<usize>,
        deadline: Instant,
    ) -> Result<(), StartFailure> {
        for i in members {
            let client = EtcdClient::new(vec![self.client_url(i)], None, Duration::from_secs(2))
                .expect("a client of one member");
            loop {
                let err = match client.range(&RangeRequest::key("cairn-etcd-ready")).await {
                    Ok(_) => break,
                    Err(e) => e,
                };
                let m = &mut self.members[i];
                if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    m.child = None;
                    let log = read_log(&m.log);
                    return Err(StartFailure {
                        port_clash: log.contains("address already in use"),
                        text: format!("etcd {} exited ({status}); its log:\n{log}", m.name),
                    });
                }
                if Instant::now() > deadline {
                    let name = m.name.clone();
                    return Err(StartFailure {
                        port_clash: false,
                        text: format!(
                            "etcd {name} not ready within {START_DEADLINE:?} (last: {err}); logs:\n{}",
                            self.logs()
                        ),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never: a cluster has a member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `i`'s client URL.
    pub fn client_url(&self, i: usize) -> Url {
        format!("http://127.0.0.1:{}", self.members[i].client_port)
            .parse()
            .expect("a URL")
    }

    /// Every member's client URL, in member order.
    pub fn client_urls(&self) -> Vec<Url> {
        (0..self.members.len())
            .map(|i| self.client_url(i))
            .collect()
    }

    /// Every member's client URL as one `--etcd` value (`http://a:1,http://b:2`).
    pub fn endpoints(&self) -> String {
        self.client_urls()
            .iter()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s peer URL.
    pub fn peer_url(&self, i: usize) -> Url {
        format!("http://127.0.0.1:{}", self.members[i].peer_port)
            .parse()
            .expect("a URL")
    }

    /// A client of every member (5 s request timeout).
    pub fn client(&self) -> EtcdClient {
        EtcdClient::new(self.client_urls(), None, Duration::from_secs(5)).expect("a client")
    }

    /// Member `i`'s name (`m0`, `m1`, ...).
    pub fn name(&self, i: usize) -> &str {
        &self.members[i].name
    }

    /// Member `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }

    /// The directory holding the data directories and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether member `i`'s process is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        match m.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                m.child = None;
                false
            }
            None => false,
        }
    }

    /// `kill -9` of member `i` (reaped before this returns).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            // Reaping only: how a killed process exited says nothing.
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory and ports (after [`EtcdCluster::kill`]);
    /// returns once it answers a linearizable read, i.e. has rejoined and knows the leader.
    pub async fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        if let Err(failure) = self
            .wait_ready(i..i + 1, Instant::now() + START_DEADLINE)
            .await
        {
            panic!("restarting etcd {}: {}", self.members[i].name, failure.text);
        }
    }

    /// Starts every member again (after [`EtcdCluster::stop`]): all at once, since none can
    /// answer before a quorum is back; returns once each answers a linearizable read.
    pub async fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
            self.spawn(i);
        }
        if let Err(failure) = self
            .wait_ready(0..self.members.len(), Instant::now() + START_DEADLINE)
            .await
        {
            panic!("restarting etcd: {}", failure.text);
        }
    }

    /// Kills every member.
    pub fn stop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Member `i`'s log.
    pub fn log(&self, i: usize) -> String {
        read_log(&self.members[i].log)
    }

    /// Every member's log, each under its name.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {} ---\n{}", m.name, read_log(&m.log)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

struct StartFailure {
    port_clash: bool,
    text: String,
}

/// The last 8 KiB of a log.
fn read_log(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(8192)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

//! The real Docker engine for the end-to-end tests: whether it answers (a test without it is
//! skipped, except under CI where that is a failure), a tiny local image built from Debian's
//! static busybox (so no registry is ever needed), `docker` CLI helpers, and a cluster whose
//! containers are all removed when the test ends, even when it fails.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::cluster::{Cluster, ClusterOpts};

/// The test image, built locally by [`busybox_image`].
pub const BUSYBOX_IMAGE: &str = "cairn-test/busybox:1";
/// Where Debian's `busybox-static` puts its binary.
const BUSYBOX_BIN: &str = "/bin/busybox";
/// Applets the image links to busybox.
const APPLETS: &[&str] = &[
    "sh", "ash", "httpd", "sleep", "echo", "cat", "env", "ls", "wget", "nc", "printf", "true",
    "false", "test", "[", "kill", "ps", "id", "hostname", "touch", "mkdir", "rm", "grep", "sed",
    "head", "tail", "date", "seq", "wc",
];

/// Whether a Docker engine answers (`docker info` succeeds).
pub fn engine_available() -> bool {
    Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the Docker tests can run: true when the engine answers. When it does not, CI
/// (`CI=true`) fails the test, anywhere else it is skipped with a notice.
pub fn require_engine() -> bool {
    if engine_available() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but no Docker engine answers `docker info`: the Docker tests must run in CI \
             (start dockerd, or give this user access to /var/run/docker.sock)"
        );
    }
    eprintln!("skipping: no Docker engine answers `docker info` (set CI=true to make this fail)");
    false
}

/// Runs `docker args...`.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running docker {args:?}: {e}"))
}

/// Runs `docker args...`, asserting success; its stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker inspect` of one container, or `None` when there is no such container.
pub fn inspect(container: &str) -> Option<Value> {
    let out = docker(&["inspect", "--type", "container", container]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0).cloned()
}

/// Ids of every container (running or not) with label `key=value`.
pub fn containers_labelled(key: &str, value: &str) -> Vec<String> {
    let filter = format!("label={key}={value}");
    docker_ok(&["ps", "-aq", "--no-trunc", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Ids of the containers of a task.
pub fn task_containers(task_id: &str) -> Vec<String> {
    containers_labelled("cairn.task_id", task_id)
}

/// The test image `cairn-test/busybox:1`: a root file system holding Debian's static busybox
/// with links for its applets, `/tmp` and `/www/index.html`, made with `docker import` (once per
/// test run, reused when it exists already).
pub fn busybox_image() -> String {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if docker(&["image", "inspect", BUSYBOX_IMAGE])
            .status
            .success()
        {
            return;
        }
        build_busybox_image();
    });
    BUSYBOX_IMAGE.to_string()
}

fn build_busybox_image() {
    let list = Command::new(BUSYBOX_BIN)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| {
            panic!("{BUSYBOX_BIN}: {e} (install Debian's busybox-static: scripts/test does)")
        });
    let applets = String::from_utf8_lossy(&list.stdout);
    assert!(
        applets.lines().any(|l| l == "httpd"),
        "{BUSYBOX_BIN} has no httpd applet (Debian's busybox-static has)"
    );
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path().join("rootfs");
    for dir in ["bin", "tmp", "www", "etc"] {
        std::fs::create_dir_all(root.join(dir)).expect("rootfs dir");
    }
    std::fs::copy(BUSYBOX_BIN, root.join("bin/busybox")).expect("copying busybox");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .expect("chmod /tmp");
    std::fs::write(root.join("www/index.html"), "hello from cairn-test\n").expect("index.html");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    let tar = tmp.path().join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("running tar");
    assert!(
        status.success(),
        "tar of the image's root file system failed"
    );
    let tar = tar.display().to_string();
    docker_ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh"]"#,
        &tar,
        BUSYBOX_IMAGE,
    ]);
}

/// Removes every container the agents of the given work dirs started (label `cairn.work_dir`).
pub fn remove_containers_of(work_dirs: &[PathBuf]) {
    for dir in work_dirs {
        let ids = containers_labelled("cairn.work_dir", &dir.display().to_string());
        if ids.is_empty() {
            continue;
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        // The containers may be gone already; clean-up is best effort.
        let _ = docker(&args);
    }
}

/// A [`Cluster`] for Docker tests: when dropped, the cluster goes first (agents killed, so none
/// starts a replacement), then every container its agents started is removed.
pub struct DockerCluster {
    cluster: Cluster,
    guard: ContainerGuard,
}

/// Removes the containers of its work dirs when dropped.
struct ContainerGuard {
    work_dirs: Vec<PathBuf>,
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        remove_containers_of(&self.work_dirs);
    }
}

impl DockerCluster {
    pub async fn start(opts: ClusterOpts) -> DockerCluster {
        let cluster = Cluster::start(opts).await;
        let guard = ContainerGuard {
            work_dirs: cluster.agent_dirs.clone(),
        };
        DockerCluster { cluster, guard }
    }

    /// The agents' work dirs (containers are labelled with theirs).
    pub fn work_dirs(&self) -> &[PathBuf] {
        &self.guard.work_dirs
    }

    /// The sandbox of a task on agent `i`.
    pub fn sandbox(&self, agent: usize, task_id: &str) -> PathBuf {
        sandbox_of(&self.cluster.agent_dirs[agent], task_id)
    }
}

fn sandbox_of(work_dir: &Path, task_id: &str) -> PathBuf {
    work_dir.join("tasks").join(task_id)
}

impl Deref for DockerCluster {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        &self.cluster
    }
}

impl DerefMut for DockerCluster {
    fn deref_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }
}

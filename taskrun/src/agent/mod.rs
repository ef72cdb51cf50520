//! `taskrun agent`: the node agent. It owns the table of tasks this node knows ([`table`]) and
//! wires the loops around it:
//!
//! - start-up ([`recover`]): re-adopt what still runs, record what ended meanwhile, sweep
//!   containers no live task owns;
//! - offerd ([`protocol`]): register, then long-poll the desired set and apply
//!   [`crate::desired::plan`] to every answer;
//! - one supervisor per task ([`supervise`], the same skeleton over an exec driver
//!   ([`exec_driver`]) and a Docker driver ([`docker_driver`])): launch, wait, kill on request,
//!   record each state change in `task.json` and queue it as a status update (in that order, so
//!   the queue never announces what the disk does not hold). A kill first takes the task out of
//!   the catalog and waits the drain delay ([`crate::drain`]);
//! - status sender, catalog registrar (the tasks' services and the agent's own,
//!   `cairn-taskrun`), in-process `healthcheck` agent, HTTP API (with `/metrics`,
//!   [`crate::metrics`]), and a housekeeper ([`housekeeping`]) that removes old terminal
//!   sandboxes.
//!
//! On SIGTERM the loops stop, queued updates are flushed and the agent's own service is
//! deregistered; tasks keep running and are re-adopted by the next agent.

mod docker_driver;
mod exec_driver;
mod housekeeping;
mod protocol;
mod recover;
mod supervise;
mod table;

pub use protocol::watch_config;
pub use table::Shared;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_checks::agent::ScriptChecks;
use cairn_client::CatalogClient;
use cairn_marathon::{Attributes, Resources};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalog::Registrar;
use crate::checks::{OwnChecks as _, TaskChecks, TaskSink};
use crate::limits::LimitMode;
use crate::sandbox;

/// How long shutdown waits for the HTTP server and the status flush.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything the agent is configured with.
pub struct AgentConfig {
    pub node: String,
    /// Address tasks are reachable on (HOST, catalog service address).
    pub address: String,
    pub http_addr: SocketAddr,
    /// Bounds of the HTTP API.
    pub http_limits: cairn_http::Limits,
    /// HTTPS for the API (`--tls-cert`, ...); `None`: plain HTTP.
    pub http_tls: Option<cairn_http::Tls>,
    pub resources: Resources,
    pub attributes: Attributes,
    pub work_dir: PathBuf,
    pub offerd: CatalogClient,
    pub catalog: CatalogClient,
    /// The taskrun binary run as each task's supervisor (`/proc/self/exe`).
    pub wrapper: PathBuf,
    pub limit_mode: LimitMode,
    pub log_rotate_bytes: u64,
    /// How long a task stays out of the catalog before it is stopped (0: no drain).
    pub kill_drain: Duration,
    /// Run every script check registered for the node, not only the tasks' own.
    pub enable_script_checks: bool,
    /// Who tasks may run as (`--default-user`, `--allow-root-tasks`).
    pub users: crate::user::UserPolicy,
    /// The token the agent's own API requires (`None`: open).
    pub api_token: Option<cairn_http::SharedSecret>,
    /// Where the tasks' output is forwarded as syslog (`--log-forward`; `None`: nowhere).
    pub log_forward: Option<crate::logship::ForwardConfig>,
}

/// Why the agent cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("work dir {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("work dir {0} is in use by another taskrun agent")]
    Locked(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Creates the work dir when it does not exist: 0711, so a task running as another user can
/// reach its workspace by its path (`tasks/` stays 0700). An existing one is left as it is.
fn create_work_dir(work_dir: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    if work_dir.is_dir() {
        return Ok(());
    }
    let err = |source| AgentError::WorkDir {
        path: work_dir.to_path_buf(),
        source,
    };
    if let Some(parent) = work_dir.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    match std::fs::DirBuilder::new().mode(0o711).create(work_dir) {
        // A umask may have narrowed it.
        Ok(()) => {
            std::fs::set_permissions(work_dir, std::fs::Permissions::from_mode(0o711)).map_err(err)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(err(e)),
    }
}

/// Takes `<work-dir>/agent.lock` for the life of the returned file: two agents adopting and
/// killing the same tasks would fight forever. The lock goes with the process, even on
/// `kill -9`, and is not inherited by tasks (the file is close-on-exec).
fn lock_work_dir(work_dir: &Path) -> Result<std::fs::File, AgentError> {
    let path = work_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| AgentError::WorkDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::Locked(work_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(AgentError::WorkDir { path, source }),
    }
}

/// The address offerd and users reach the agent's API on (`bound`: the port bound, which
/// `--http-addr HOST:0` leaves to the kernel).
fn advertised_http(cfg: &AgentConfig, bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        let host = if cfg.address.contains(':') {
            format!("[{}]", cfg.address)
        } else {
            cfg.address.clone()
        };
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    mut cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    // Tasks run with their sandbox as working directory: every path handed to them is absolute.
    cfg.work_dir = std::path::absolute(&cfg.work_dir).map_err(|source| AgentError::WorkDir {
        path: cfg.work_dir.clone(),
        source,
    })?;
    let tasks_dir = sandbox::tasks_dir(&cfg.work_dir);
    create_work_dir(&cfg.work_dir)?;
    cairn_cli::create_private_dir(&tasks_dir).map_err(|source| AgentError::WorkDir {
        path: tasks_dir.clone(),
        source,
    })?;
    sandbox::create_workspaces_dir(&cfg.work_dir).map_err(|source| AgentError::WorkDir {
        path: sandbox::workspaces_dir(&cfg.work_dir),
        source,
    })?;
    let _lock = lock_work_dir(&cfg.work_dir)?;
    cairn_http::raise_fd_limit(cfg.http_limits.max_connections);
    let bind_error = |source| AgentError::Bind {
        addr: cfg.http_addr,
        source,
    };
    let listener =
        cairn_http::listen(cfg.http_addr, cairn_http::LISTEN_BACKLOG).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let http_addr = advertised_http(&cfg, bound);
    let api_host = if bound.ip().is_unspecified() {
        cfg.address.clone()
    } else {
        bound.ip().to_string()
    };
    tracing::info!(node = %cfg.node, address = %cfg.address, addr = %bound, http = %http_addr, resources = %cfg.resources, work_dir = %cfg.work_dir.display(), "taskrun agent starting");

    let stop = CancellationToken::new();
    let shared = Arc::new(Shared::new(&cfg));
    shared.recover().await;
    let reregister = Arc::new(Notify::new());

    let sender = tokio::spawn(crate::status::run_sender(
        shared.status.clone(),
        cfg.offerd.clone(),
        cfg.node.clone(),
        reregister.clone(),
        stop.clone(),
    ));
    let server = tokio::spawn(crate::http::serve(
        listener,
        cfg.http_limits,
        cfg.http_tls.clone(),
        shared.clone(),
        shared.metrics.clone(),
        cfg.api_token.clone(),
        stop.clone(),
    ));
    let registrar = Registrar {
        client: cfg.catalog.clone(),
        node: cfg.node.clone(),
        address: cfg.address.clone(),
        tasks: shared.clone(),
        wake: shared.catalog_wake.clone(),
        api: (api_host, bound.port()),
    };
    let registrar = tokio::spawn(registrar.run(stop.clone()));
    // The tasks' own checks run as their users (crate::checks); with --enable-script-checks the
    // others run as taskrun, as a Consul agent runs them.
    let checks = tokio::spawn(cairn_checks::agent::run(
        TaskChecks {
            inner: cairn_checks::agent::CatalogChecks::new(cfg.catalog.clone(), &cfg.node),
            own: shared.clone(),
        },
        TaskSink {
            inner: cairn_checks::agent::CatalogSink(cfg.catalog.clone()),
            exe: cfg.wrapper.clone(),
        },
        cairn_checks::agent::AgentConfig {
            node: cfg.node.clone(),
            script_checks: if cfg.enable_script_checks {
                ScriptChecks::All
            } else {
                let shared = shared.clone();
                ScriptChecks::Vouched(Arc::new(move |c| shared.vouch(c)))
            },
            output_update_interval: Duration::from_secs(300),
        },
        stop.clone().cancelled_owned(),
    ));
    let housekeeper = tokio::spawn(housekeeping::run(shared.clone(), stop.clone()));
    // Its counters are for a /metrics to read (crate::logship::ForwardStats).
    let forwarder = cfg.log_forward.clone().map(|fwd| {
        tokio::spawn(crate::logship::run(
            fwd,
            cfg.node.clone(),
            shared.clone(),
            Arc::default(),
            stop.clone(),
        ))
    });

    let protocol = async {
        loop {
            let answer = protocol::register(&cfg, &shared, &http_addr).await;
            protocol::follow(&cfg, &shared, answer.heartbeat_ms, &reregister).await;
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = protocol => {}
    }

    tracing::info!("stopping; tasks keep running and will be re-adopted");
    stop.cancel();
    // Bounded waits for the status sender and the HTTP server to finish: past them the agent
    // exits anyway (tasks keep running and are re-adopted), and each loop logged its own end.
    let _ = tokio::time::timeout(STOP_TIMEOUT, sender).await;
    // See above.
    let _ = tokio::time::timeout(STOP_TIMEOUT, server).await;
    for handle in [registrar, checks, housekeeper] {
        handle.abort();
    }
    // The forwarder saves its cursors as it stops; bounded like the others.
    if let Some(forwarder) = forwarder {
        let _ = tokio::time::timeout(STOP_TIMEOUT, forwarder).await;
    }
    // After the registrar is gone, so that no pass of it registers the service again.
    crate::catalog::deregister_agent_service(&cfg.catalog, &cfg.node).await;
    tracing::info!("taskrun agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second agent on the same work dir is refused while the first holds it, and let in
    /// once the first is gone.
    #[test]
    fn one_agent_per_work_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_work_dir(dir.path()).expect("first agent");
        assert!(matches!(
            lock_work_dir(dir.path()),
            Err(AgentError::Locked(p)) if p == dir.path()
        ));
        drop(first);
        lock_work_dir(dir.path()).expect("after the first agent stopped");
    }
}

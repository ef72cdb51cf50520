//! `lbconf watch`: keeps a running HAProxy in step with the catalog through one whole-catalog
//! watch. Instance changes that fit the existing server slots go through the runtime API (no
//! reload, no dropped connection); structural changes (a new service or host, slots exhausted)
//! write a new config, validated by `haproxy -c` first, and run the reload command. An invalid
//! config is reported and the running one kept; later valid changes still apply.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_client::{CatalogClient, Watch, WatchConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::{Exposure, Route};
use crate::render::{self, Assignment, Settings};

/// Settings of `lbconf watch`.
#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub socket: Option<PathBuf>,
    pub reload_cmd: Option<String>,
    pub haproxy: String,
    /// Longest `haproxy -c` or the reload command may run.
    pub command_timeout: Duration,
    /// Least time between two reloads.
    pub reload_interval: Duration,
    pub settings: Settings,
}

/// Most of each output stream of `haproxy -c` or the reload command kept for the log.
const MAX_COMMAND_OUTPUT: usize = 64 * 1024;

/// What HAProxy runs now.
struct Applied {
    /// Routes without their servers: a change here needs a reload.
    structure: Vec<(String, String, Exposure, String)>,
    assignment: Assignment,
}

fn structure(routes: &[Route]) -> Vec<(String, String, Exposure, String)> {
    routes
        .iter()
        .map(|r| {
            (
                r.backend.clone(),
                r.service.clone(),
                r.exposure.clone(),
                r.balance.clone(),
            )
        })
        .collect()
}

/// Sends one runtime API command; HAProxy answers nothing on success.
async fn runtime(socket: &Path, command: &str) -> Result<(), String> {
    let reply = query(socket, command).await?;
    let reply = reply.trim();
    if reply.is_empty() || reply.starts_with("IP changed") || reply.contains("no need to change") {
        Ok(())
    } else {
        Err(format!("{command}: {reply}"))
    }
}

/// Runtime API queries (answers that carry data).
async fn query(socket: &Path, command: &str) -> Result<String, String> {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    s.write_all(format!("{command}\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    Ok(reply)
}

/// Longest wait for a reloaded HAProxy to answer with the new config.
const RELOAD_SETTLE: Duration = Duration::from_secs(10);

/// Waits until the runtime socket is served by a process that knows every backend of `config`.
/// A reload is asynchronous: until the new worker owns the socket, runtime commands reach the
/// old one ("No such backend"), and a second reload signal sent in that window can be lost —
/// which would leave HAProxy on a config whose servers are all disabled slots.
async fn wait_for_reload(socket: &Path, config: &str) {
    let wanted: Vec<&str> = config
        .lines()
        .filter_map(|l| l.strip_prefix("backend "))
        .map(str::trim)
        .collect();
    let deadline = tokio::time::Instant::now() + RELOAD_SETTLE;
    loop {
        if let Ok(reply) = query(socket, "show backend").await {
            let known: Vec<&str> = reply.lines().map(str::trim).collect();
            if wanted.iter().all(|b| known.contains(b)) {
                return;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(socket = %socket.display(), "HAProxy does not show the new config's backends yet; going on");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `haproxy -c` on a candidate config; Err carries HAProxy's complaint.
async fn validate(
    haproxy: &str,
    text: &str,
    next_to: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let dir = next_to
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let candidate = dir.join(format!(".lbconf-candidate-{}.cfg", std::process::id()));
    std::fs::write(&candidate, text).map_err(|e| format!("{}: {e}", candidate.display()))?;
    let mut check = tokio::process::Command::new(haproxy);
    check.arg("-c").arg("-q").arg("-f").arg(&candidate);
    let out = cairn_proc::run(&mut check, timeout, MAX_COMMAND_OUTPUT).await;
    if let Err(e) = std::fs::remove_file(&candidate) {
        tracing::warn!(file = %candidate.display(), error = %e, "cannot remove the candidate config");
    }
    let out = out.map_err(|e| format!("{haproxy} -c: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let mut msg = out.stderr_text();
        if msg.is_empty() {
            msg = out.stdout_text();
        }
        Err(msg.replace('\n', " | "))
    }
}

/// Runs the reload command (`sh -c`) within `timeout`.
async fn reload(command: &str, timeout: Duration) -> Result<(), String> {
    let mut sh = tokio::process::Command::new("sh");
    sh.arg("-c").arg(command);
    let out = cairn_proc::run(&mut sh, timeout, MAX_COMMAND_OUTPUT)
        .await
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", out.status, out.stderr_text()))
    }
}

/// The slot assignment that takes HAProxy from `current` to `routes` through the runtime API
/// alone, when there is one (same backends and frontends, instances fit the slots, a socket).
fn runtime_update(
    options: &Options,
    current: Option<&Applied>,
    routes: &[Route],
) -> Option<Assignment> {
    let cur = current?;
    options.socket.as_ref()?;
    if cur.structure != structure(routes) {
        return None;
    }
    render::reassign(&cur.assignment, routes)
}

/// Applies one catalog state; returns what runs afterwards.
async fn apply(options: &Options, routes: &[Route], current: Option<Applied>) -> Option<Applied> {
    let wanted = structure(routes);
    if let (Some(cur), Some(socket)) = (&current, &options.socket)
        && let Some(next) = runtime_update(options, Some(cur), routes)
    {
        let commands = render::runtime_commands(&cur.assignment, &next);
        if commands.is_empty() {
            return current;
        }
        let mut failed = None;
        for c in &commands {
            if let Err(e) = runtime(socket, c).await {
                failed = Some(e);
                break;
            }
        }
        match failed {
            None => {
                // Keep the file in step, so a later restart starts from the same state.
                match render::config_with(routes, &options.settings, &next) {
                    Ok(text) => {
                        if let Err(e) = cairn_cli::replace_file(&options.out, text.as_bytes(), None)
                        {
                            tracing::error!(error = %e, "cannot write the config after a runtime update");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot render the config after a runtime update")
                    }
                }
                tracing::info!(
                    commands = commands.len(),
                    "instances updated through the runtime API (no reload)"
                );
                return Some(Applied {
                    structure: wanted,
                    assignment: next,
                });
            }
            Some(e) => tracing::warn!(error = %e, "runtime update failed; reloading instead"),
        }
    }
    let assignment = render::fresh_assignment(routes, options.settings.spare_slots);
    let text = match render::config_with(routes, &options.settings, &assignment) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot render the config; the running config stays");
            return current;
        }
    };
    if let Err(why) = validate(
        &options.haproxy,
        &text,
        &options.out,
        options.command_timeout,
    )
    .await
    {
        tracing::error!(error = %why, "new config rejected by haproxy -c; the running config stays");
        return current;
    }
    if let Err(e) = cairn_cli::replace_file(&options.out, text.as_bytes(), None) {
        tracing::error!(error = %e, "cannot write the config; the running config stays");
        return current;
    }
    match &options.reload_cmd {
        Some(cmd) => match reload(cmd, options.command_timeout).await {
            Ok(()) => {
                tracing::info!(out = %options.out.display(), "config written; HAProxy reloaded");
                if let Some(socket) = &options.socket {
                    wait_for_reload(socket, &text).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "reload command failed"),
        },
        None => tracing::info!(out = %options.out.display(), "config written"),
    }
    Some(Applied {
        structure: wanted,
        assignment,
    })
}

/// Runs until `shutdown` resolves. Instance changes go to HAProxy at once; reloads are at least
/// `reload_interval` apart, and whatever changed in between is applied by the next one (the
/// newest catalog, not each step on the way).
pub async fn run(
    client: CatalogClient,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let config = WatchConfig {
        backoff_max: Duration::from_secs(2),
        ..WatchConfig::default()
    };
    // Deltas: catalogd sends what changed since the catalog held here, not all of it.
    let mut watch = Watch::catalog_deltas(client).with_config(config);
    let mut catalog = cairn_wire::WholeCatalog::default();
    let mut current: Option<Applied> = None;
    let mut pacer = ReloadPacer::new(options.reload_interval);
    // The newest routes not applied yet, held back by the pacer.
    let mut pending: Option<Vec<Route>> = None;
    tokio::pin!(shutdown);
    loop {
        let due = pacer.next_at();
        tokio::select! {
            _ = &mut shutdown => break,
            () = tokio::time::sleep_until(due), if pending.is_some() => {
                if let Some(routes) = pending.take() {
                    pacer.reloaded(tokio::time::Instant::now());
                    current = apply(&options, &routes, current.take()).await;
                }
            }
            next = watch.next() => match next {
                Ok(delta) => {
                    // The first answer is whole (the watch starts from index 0).
                    catalog.apply(delta);
                    let (routes, rejected) =
                        crate::model::routes(&catalog, options.settings.http_port);
                    for r in rejected {
                        tracing::warn!(service = ?r.service, reason = %r.reason, "not routed as asked");
                    }
                    let now = tokio::time::Instant::now();
                    let instant = pending.is_none()
                        && runtime_update(&options, current.as_ref(), &routes).is_some();
                    if instant {
                        current = apply(&options, &routes, current.take()).await;
                    } else if pacer.may_reload(now) {
                        pending = None;
                        pacer.reloaded(now);
                        current = apply(&options, &routes, current.take()).await;
                    } else {
                        tracing::debug!("reload deferred by --reload-interval");
                        pending = Some(routes);
                    }
                }
                // Logged by the watch once per failure streak; its next read backs off.
                Err(e) => {
                    tracing::debug!(error = %e, "catalog read failed; HAProxy keeps its config");
                }
            },
        }
    }
    tracing::info!("lbconf stopped");
}

/// Keeps reloads at least `interval` apart.
#[derive(Debug)]
struct ReloadPacer {
    interval: Duration,
    last: Option<tokio::time::Instant>,
}

impl ReloadPacer {
    fn new(interval: Duration) -> ReloadPacer {
        ReloadPacer {
            interval,
            last: None,
        }
    }

    fn may_reload(&self, now: tokio::time::Instant) -> bool {
        self.last.is_none_or(|last| now >= last + self.interval)
    }

    /// When the next reload may happen.
    fn next_at(&self) -> tokio::time::Instant {
        match self.last {
            Some(last) => last + self.interval,
            None => tokio::time::Instant::now(),
        }
    }

    fn reloaded(&mut self, at: tokio::time::Instant) {
        self.last = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reloads_are_paced() {
        let t0 = tokio::time::Instant::now();
        let mut pacer = ReloadPacer::new(Duration::from_secs(2));
        assert!(pacer.may_reload(t0), "the first reload is never held back");
        pacer.reloaded(t0);
        tokio::time::advance(Duration::from_millis(1999)).await;
        assert!(!pacer.may_reload(tokio::time::Instant::now()));
        assert_eq!(pacer.next_at(), t0 + Duration::from_secs(2));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(pacer.may_reload(tokio::time::Instant::now()));
    }
}

//! `lbconf watch`: keeps a running HAProxy in step with the catalog through one whole-catalog
//! watch. Instance changes that fit the existing server slots go through the runtime API (no
//! reload, no dropped connection); structural changes (a new service or host, slots exhausted)
//! write a new config, validated by `haproxy -c` first, and run the reload command. An invalid
//! config is reported and the running one kept; later valid changes still apply. With
//! `--metrics-listen`, the watch tells [`crate::metrics`] which backends HAProxy runs, its
//! reloads (reading HAProxy's counters just before each) and its runtime updates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_client::{CatalogClient, Watch, WatchConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::{Route, RouteChange};
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
    /// `--metrics-listen`'s metrics, told of reloads, runtime updates and the routes applied.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// The marathon-lb groups served (`--group`).
    pub groups: crate::model::Groups,
}

/// Most of each output stream of `haproxy -c` or the reload command kept for the log.
const MAX_COMMAND_OUTPUT: usize = 64 * 1024;

/// What HAProxy runs now: the routes (whose backends, frontends and balance only a reload
/// changes) and which instance sits in which server slot.
struct Applied {
    routes: Vec<Route>,
    assignment: Assignment,
}

impl Applied {
    /// Whether `routes` need the same config as these, servers aside (compared in place: this
    /// runs per change).
    fn same_structure(&self, routes: &[Route]) -> bool {
        self.routes.len() == routes.len()
            && self.routes.iter().zip(routes).all(|(a, b)| {
                a.backend == b.backend
                    && a.service == b.service
                    && a.exposure == b.exposure
                    && a.balance == b.balance
                    && a.options == b.options
            })
    }
}

/// Longest line of `;`-separated commands sent at once (HAProxy reads a command line into one
/// buffer, 16 KiB by default).
const MAX_COMMAND_LINE: usize = 8 * 1024;

/// Sends runtime API commands, as many per connection as fit on one `;`-separated line.
/// HAProxy answers nothing to a successful `set server` (or that the address changed); any
/// other answer is an error naming the commands of that line.
async fn runtime(socket: &Path, commands: &[String]) -> Result<(), String> {
    for line in command_lines(commands) {
        let reply = query(socket, &line).await?;
        let ok = |l: &str| {
            let l = l.trim();
            l.is_empty() || l.starts_with("IP changed") || l.contains("no need to change")
        };
        if !reply.lines().all(ok) {
            return Err(format!("{line}: {}", reply.trim()));
        }
    }
    Ok(())
}

/// The commands joined into lines of at most [`MAX_COMMAND_LINE`] bytes (a longer command gets
/// a line of its own).
fn command_lines(commands: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for c in commands {
        match lines.last_mut() {
            Some(line) if line.len() + 2 + c.len() <= MAX_COMMAND_LINE => {
                line.push_str("; ");
                line.push_str(c);
            }
            _ => lines.push(c.clone()),
        }
    }
    lines
}

/// How long a runtime API connection is retried while the socket refuses it.
const CONNECT_PATIENCE: Duration = Duration::from_secs(2);

/// Connects to the runtime API. The socket's backlog is short (monitoring polling it can fill
/// it: EAGAIN), and a reloading HAProxy briefly refuses or has no socket file: those are
/// retried for [`CONNECT_PATIENCE`] rather than turned into a reload, which at fleet size takes
/// seconds of `haproxy -c` and a new worker.
pub(crate) async fn connect(socket: &Path) -> Result<tokio::net::UnixStream, String> {
    use std::io::ErrorKind::{ConnectionRefused, NotFound, WouldBlock};
    let deadline = tokio::time::Instant::now() + CONNECT_PATIENCE;
    let mut pause = Duration::from_millis(2);
    loop {
        match tokio::net::UnixStream::connect(socket).await {
            Ok(s) => return Ok(s),
            Err(e)
                if matches!(e.kind(), WouldBlock | ConnectionRefused | NotFound)
                    && tokio::time::Instant::now() + pause < deadline =>
            {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(format!("{}: {e}", socket.display())),
        }
    }
}

/// Runtime API queries (answers that carry data).
async fn query(socket: &Path, command: &str) -> Result<String, String> {
    let mut s = connect(socket).await?;
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
    if !cur.same_structure(routes) {
        return None;
    }
    render::reassign(&cur.assignment, routes)
}

/// Writes the config HAProxy runs after runtime updates, so a later restart or reload starts
/// from the same state. At fleet size the file is tens of megabytes: it is written at most once
/// per [`CONFIG_WRITE_DELAY`], never between a change and HAProxy applying it.
fn write_config(options: &Options, applied: &Applied) {
    match render::config_with(&applied.routes, &options.settings, &applied.assignment) {
        Ok(text) => {
            if let Err(e) = cairn_cli::replace_file(&options.out, text.as_bytes(), None) {
                tracing::error!(error = %e, "cannot write the config after a runtime update");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot render the config after a runtime update"),
    }
}

/// How long after a runtime update the config file follows.
const CONFIG_WRITE_DELAY: Duration = Duration::from_secs(1);

/// Applies one catalog state; returns what runs afterwards.
async fn apply(options: &Options, routes: &[Route], current: Option<Applied>) -> Option<Applied> {
    if let (Some(cur), Some(socket)) = (&current, &options.socket)
        && let Some(next) = runtime_update(options, Some(cur), routes)
    {
        let commands = render::runtime_commands(&cur.assignment, &next);
        if commands.is_empty() {
            return current;
        }
        match runtime(socket, &commands).await.err() {
            None => {
                // The file is brought in step later (see `write_config`), off this path.
                tracing::info!(
                    commands = commands.len(),
                    "instances updated through the runtime API (no reload)"
                );
                if let Some(m) = &options.metrics {
                    m.runtime_updated();
                    m.routes_applied(routes);
                }
                return Some(Applied {
                    routes: routes.to_vec(),
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
    if let Some(m) = &options.metrics {
        if options.reload_cmd.is_some() {
            // The reloaded HAProxy counts from 0: the requests the old one served since the
            // last scrape are read now or never.
            m.before_reload().await;
        }
        m.routes_applied(routes);
    }
    match &options.reload_cmd {
        Some(cmd) => match reload(cmd, options.command_timeout).await {
            Ok(()) => {
                tracing::info!(out = %options.out.display(), "config written; HAProxy reloaded");
                if let Some(m) = &options.metrics {
                    m.reloaded();
                }
                if let Some(socket) = &options.socket {
                    wait_for_reload(socket, &text).await;
                }
            }
            Err(e) => tracing::error!(error = %e, "reload command failed"),
        },
        None => tracing::info!(out = %options.out.display(), "config written"),
    }
    Some(Applied {
        routes: routes.to_vec(),
        assignment,
    })
}

/// Puts the servers of the `changed` routes into their backends' slots through the runtime API
/// (the other backends are not looked at). Err when they do not fit or HAProxy refused: then a
/// reload is needed; `applied` is changed only when HAProxy took every command. `routes` has
/// `applied`'s structure, so a position in one is the same route in the other.
async fn update_servers(
    socket: &Path,
    applied: &mut Applied,
    routes: &[Route],
    changed: &[usize],
) -> Result<usize, String> {
    let mut next = Vec::with_capacity(changed.len());
    let mut commands = Vec::new();
    for (i, r) in changed.iter().filter_map(|&i| Some((i, routes.get(i)?))) {
        let old = applied
            .assignment
            .get(&r.backend)
            .ok_or_else(|| format!("backend {} is not in HAProxy's config", r.backend))?;
        let slots = render::reassign_backend(old, &r.servers).ok_or_else(|| {
            format!(
                "{} instances of {} do not fit its {} server slots",
                r.servers.len(),
                r.service,
                old.len()
            )
        })?;
        render::backend_commands(&r.backend, old, &slots, &mut commands);
        next.push((i, slots));
    }
    if !commands.is_empty() {
        runtime(socket, &commands).await?;
    }
    for (i, slots) in next {
        let route = &mut applied.routes[i];
        route.servers.clone_from(&routes[i].servers);
        applied.assignment.insert(route.backend.clone(), slots);
    }
    Ok(commands.len())
}

/// Runs until `shutdown` resolves. Instance changes go to HAProxy at once; reloads are at least
/// `reload_interval` apart, and whatever changed in between is applied by the next one (the
/// newest catalog, not each step on the way).
/// What `--tls-certs` follows: the certificate directory and the store of its validated
/// copies HAProxy serves.
pub struct FollowedCerts {
    pub dir: PathBuf,
    pub store: crate::certs::CertStore,
}

/// How often the certificate directory is read again when no change event came (filesystems
/// without inotify, a missed event).
const CERT_RESCAN: Duration = Duration::from_secs(10);

pub async fn run(
    client: CatalogClient,
    options: Options,
    certs: Option<FollowedCerts>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let config = WatchConfig {
        backoff_max: Duration::from_secs(2),
        ..WatchConfig::default()
    };
    // Deltas: catalogd sends what changed since the catalog held here, not all of it.
    let mut watch = Watch::catalog_deltas(client).with_config(config);
    let mut catalog = cairn_wire::CatalogMirror::default();
    let mut table =
        crate::model::RouteTable::of_groups(options.settings.http_port, options.groups.clone());
    let mut current: Option<Applied> = None;
    let mut pacer = ReloadPacer::new(options.reload_interval);
    // A reload held back by the pacer: the next one applies the table as it is then.
    let mut pending = false;
    // When the config file is to follow runtime updates it does not show yet.
    let mut write_due: Option<tokio::time::Instant> = None;
    // What was reported as not routable, so that each reason is logged once (per service),
    // not at every change.
    let mut reported = std::collections::HashSet::new();
    let (cert_tx, mut cert_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (mut certs, _cert_watch) = match certs {
        Some(c) => match crate::certs::watch_dir(&c.dir, CERT_RESCAN, cert_tx) {
            Ok(guard) => (Some(c.store), Some(guard)),
            Err(e) => {
                tracing::error!(dir = %c.dir.display(), error = %e, "cannot follow the certificate directory; the certificates loaded now stay");
                (Some(c.store), None)
            }
        },
        None => (None, None),
    };
    tokio::pin!(shutdown);
    loop {
        let due = pacer.next_at();
        tokio::select! {
            _ = &mut shutdown => break,
            Some(()) = cert_rx.recv(), if certs.is_some() => {
                let Some(store) = certs.as_mut() else { continue };
                if follow_certs(&options, store).await && current.is_some() {
                    // Without a runtime socket, new certificates take a reload.
                    pending = true;
                }
            }
            () = tokio::time::sleep_until(due), if pending => {
                pending = false;
                pacer.reloaded(tokio::time::Instant::now());
                current = apply(&options, table.routes(), current.take()).await;
                // A reload writes the file it validated.
                write_due = None;
            }
            () = tokio::time::sleep_until(write_due.unwrap_or_else(tokio::time::Instant::now)),
                if write_due.is_some() =>
            {
                write_due = None;
                if let Some(applied) = &current {
                    write_config(&options, applied);
                }
            }
            next = watch.next() => match next {
                Ok(delta) => {
                    // The first answer is whole (the watch starts from index 0).
                    let touched = catalog.apply(delta);
                    let change = table.update(&catalog, &touched);
                    let now = tokio::time::Instant::now();
                    if pending {
                        // The held-back reload applies this too.
                        continue;
                    }
                    if let (RouteChange::Servers(changed), Some(applied), Some(socket)) =
                        (&change, current.as_mut(), &options.socket)
                        && applied.same_structure(table.routes())
                    {
                        match update_servers(socket, applied, table.routes(), changed).await {
                            Ok(0) => continue,
                            Ok(commands) => {
                                tracing::info!(commands, "instances updated through the runtime API (no reload)");
                                if let Some(m) = &options.metrics {
                                    m.runtime_updated();
                                }
                                write_due.get_or_insert(now + CONFIG_WRITE_DELAY);
                                continue;
                            }
                            Err(e) => tracing::warn!(error = %e, "runtime update failed; reloading instead"),
                        }
                    }
                    if change == RouteChange::Whole {
                        report_rejected(table.rejected(), &mut reported);
                    }
                    let routes = table.routes();
                    if runtime_update(&options, current.as_ref(), routes).is_some() {
                        current = apply(&options, routes, current.take()).await;
                        write_due.get_or_insert(now + CONFIG_WRITE_DELAY);
                    } else if pacer.may_reload(now) {
                        pacer.reloaded(now);
                        current = apply(&options, routes, current.take()).await;
                        write_due = None;
                    } else {
                        tracing::debug!("reload deferred by --reload-interval");
                        pending = true;
                    }
                }
                // Logged by the watch once per failure streak; its next read backs off.
                Err(e) => {
                    tracing::debug!(error = %e, "catalog read failed; HAProxy keeps its config");
                }
            },
        }
    }
    // What HAProxy runs is on disk before lbconf goes.
    if let (Some(_), Some(applied)) = (write_due, &current) {
        write_config(&options, applied);
    }
    tracing::info!("lbconf stopped");
}

/// Logs what could not be routed as asked, each (service, reason) once while it lasts.
fn report_rejected(
    rejected: &[crate::model::Rejected],
    reported: &mut std::collections::HashSet<(String, String)>,
) {
    let now: std::collections::HashSet<(String, String)> = rejected
        .iter()
        .map(|r| (r.service.clone(), r.reason.clone()))
        .collect();
    for r in rejected {
        if !reported.contains(&(r.service.clone(), r.reason.clone())) {
            tracing::warn!(service = ?r.service, reason = %r.reason, "not routed as asked");
        }
    }
    *reported = now;
}

/// Reads the certificate directory again and applies what changed: through the runtime API
/// when there is a socket (no reload), else on disk. Returns whether a reload is needed.
async fn follow_certs(options: &Options, store: &mut crate::certs::CertStore) -> bool {
    let plan = match store.rescan() {
        Ok(plan) => plan,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the certificate directory; the certificates served stay");
            return false;
        }
    };
    if plan.is_empty() {
        return false;
    }
    let on_disk = |store: &mut crate::certs::CertStore, plan| match store.apply_on_disk(plan) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot update the certificates' copies");
            false
        }
    };
    let Some(socket) = &options.socket else {
        return on_disk(store, &plan);
    };
    // `apply` logs what it applied and what HAProxy refused.
    let applied = store.apply(&plan, socket).await;
    if !applied.needs_reload() {
        return false;
    }
    // What the runtime API could not take (a certificate too large for its buffer, the
    // socket busy or gone) goes in with a reload.
    match store.rescan() {
        Ok(rest) => on_disk(store, &rest),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the certificate directory; the certificates served stay");
            false
        }
    }
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

    /// A socket that is not there yet (HAProxy reloading) is waited for, not given up on.
    #[tokio::test]
    async fn runtime_connections_wait_for_the_socket() {
        let dir = std::env::temp_dir().join(format!("lbconf-connect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("admin.sock");
        let _ = std::fs::remove_file(&path); // a leftover of an earlier run, if any
        let late = path.clone();
        let listener = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let l = tokio::net::UnixListener::bind(&late).expect("bind");
            let (mut conn, _) = l.accept().await.expect("accept");
            conn.write_all(b"served\n").await.expect("write");
        });
        let mut s = connect(&path)
            .await
            .expect("connected once the socket appeared");
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.expect("read");
        assert_eq!(reply, "served\n");
        listener.await.expect("listener task");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// A socket that never appears is an error after the patience, naming the path.
    #[tokio::test(start_paused = true)]
    async fn a_missing_socket_is_an_error_in_the_end() {
        let path = std::path::PathBuf::from("/nonexistent/lbconf/admin.sock");
        let started = tokio::time::Instant::now();
        let err = connect(&path).await.expect_err("no socket");
        assert!(err.contains("/nonexistent/lbconf/admin.sock"), "{err}");
        assert!(started.elapsed() >= CONNECT_PATIENCE - Duration::from_millis(200));
    }

    #[test]
    fn commands_share_lines_up_to_the_limit() {
        let commands: Vec<String> = (0..400)
            .map(|i| format!("set server be_svc-{i}/s1 state ready"))
            .collect();
        let lines = command_lines(&commands);
        assert!(lines.len() > 1 && lines.len() < 400, "{}", lines.len());
        assert!(lines.iter().all(|l| l.len() <= MAX_COMMAND_LINE));
        let back: Vec<&str> = lines.iter().flat_map(|l| l.split("; ")).collect();
        assert_eq!(
            back,
            commands.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert!(command_lines(&[]).is_empty());
    }
}

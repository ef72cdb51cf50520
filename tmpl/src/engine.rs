//! The watch engine: one blocking watch per distinct dependency, shared by every template that
//! uses it; a change marks only the templates that read it; each renders after its quiet period
//! (`wait` min, bounded by max); output replaced atomically when it changed, then its command.
//! `--once` fetches what the templates need (with retries), renders, writes and returns.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_client::{CatalogClient, QueryOptions, Watch, WatchConfig};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::{TemplateConfig, Wait};
use crate::deps::Dep;
use crate::template::{Data, Rendered, Template};

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM/SIGINT (or `--once` done).
    Stopped,
    /// SIGHUP: reload the configuration and start again.
    Reload,
}

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub wait: Wait,
    pub dry: bool,
}

/// Events the engine reacts to besides data.
#[derive(Debug)]
pub enum Event {
    /// A template file changed on disk.
    TemplateChanged(PathBuf),
    Reload,
    Stop,
}

struct Slot {
    config: TemplateConfig,
    /// Last template that parsed: a broken edit keeps this one (and its output).
    template: Template,
    deps: BTreeSet<Dep>,
    /// First and last change since the last render.
    dirty: Option<(Instant, Instant)>,
    blocked_reported: Vec<String>,
    /// The running (or last) command.
    command: Option<tokio::task::JoinHandle<()>>,
    /// A template edit waits until the file has been quiet this long.
    edited: Option<Instant>,
}

/// Writes or prints a rendering and runs the command when the content changed.
/// Writes or prints a rendering. Returns the command to run when the output changed, so the
/// watch loop can run it without stopping (and `--once` can wait for it).
fn deliver(config: &TemplateConfig, text: &str, dry: bool) -> Option<(String, Duration, PathBuf)> {
    if dry {
        println!("> {}\n{text}", config.destination.path.display());
        return None;
    }
    match crate::output::write_if_changed(&config.destination, text.as_bytes()) {
        Ok(false) => {
            tracing::debug!(dest = %config.destination.path.display(), "output unchanged");
            None
        }
        Ok(true) => {
            tracing::info!(dest = %config.destination.path.display(), "rendered");
            config
                .command
                .clone()
                .map(|c| (c, config.command_timeout, config.destination.path.clone()))
        }
        Err(e) => {
            tracing::error!(dest = %config.destination.path.display(), error = %e, "cannot write output; the previous file stays");
            None
        }
    }
}

/// Runs a template's command and reports how it ended.
async fn run_command(command: String, timeout: Duration, dest: PathBuf) {
    let outcome = crate::command::run(&command, timeout).await;
    if outcome != crate::command::Outcome::Success {
        tracing::error!(dest = %dest.display(), ?outcome, "command after render did not succeed");
    }
}

/// How long a template file must stay unchanged before an edit is picked up: editors and
/// `cat >` write in several steps, and a half-written template must not be rendered.
const EDIT_SETTLE: Duration = Duration::from_millis(500);

async fn watch_dep(
    client: CatalogClient,
    dep: Dep,
    tx: mpsc::UnboundedSender<(Dep, Option<Value>)>,
) {
    let config = WatchConfig {
        backoff_max: Duration::from_secs(5),
        ..WatchConfig::default()
    };
    let d = dep.clone();
    let mut watch = Watch::new(client, QueryOptions::default(), config, move |c, o| {
        let d = d.clone();
        async move { d.fetch(&c, &o).await }
    })
    .named(dep.to_string());
    loop {
        match watch.next().await {
            Ok(v) => {
                if tx.send((dep.clone(), v)).is_err() {
                    return;
                }
            }
            // Logged by the watch once per failure streak; its next read backs off.
            Err(e) => {
                tracing::debug!(dep = %dep, error = %e, "dependency read failed; keeping the last output");
            }
        }
    }
}

/// Runs the templates until stopped (or reloaded).
pub async fn run(
    client: CatalogClient,
    configs: Vec<TemplateConfig>,
    options: Options,
    mut events: mpsc::UnboundedReceiver<Event>,
) -> Result<Exit, String> {
    let now = Instant::now();
    let mut slots = Vec::new();
    for c in configs {
        let template = Template::load(&c.source).map_err(|e| e.to_string())?;
        slots.push(Slot {
            config: c,
            template,
            deps: BTreeSet::new(),
            dirty: Some((now, now)),
            blocked_reported: Vec::new(),
            command: None,
            edited: None,
        });
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watches: HashMap<Dep, tokio::task::JoinHandle<()>> = HashMap::new();
    // Catalog dependencies go through one delta watch while the server offers it.
    let (feed_wanted, feed_rx) = tokio::sync::watch::channel(BTreeSet::new());
    let mut feed = Some(tokio::spawn(crate::feed::run(
        client.clone(),
        feed_rx,
        tx.clone(),
    )));
    let mut data: Arc<Data> = Arc::new(Data::new());
    // A counter per dependency, bumped on each change: renders copy only what changed.
    let mut versions = crate::template::Versions::new();
    let mut version = 0u64;
    let exit = loop {
        // Pick up template edits once the file has settled.
        let now = Instant::now();
        for slot in slots.iter_mut() {
            if slot.edited.is_some_and(|t| now >= t + EDIT_SETTLE) {
                slot.edited = None;
                let path = slot.config.source.clone();
                if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                    tracing::warn!(template = %path.display(), "template file is empty; keeping the last good version");
                    continue;
                }
                match Template::load(&path) {
                    Ok(t) => {
                        tracing::info!(template = %path.display(), "template changed; re-rendering");
                        slot.template = t;
                        slot.dirty = Some((now, now));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "template edit does not parse; keeping the last good version")
                    }
                }
            }
        }
        // Render what is due.
        for slot in slots.iter_mut() {
            let wait = slot.config.wait.unwrap_or(options.wait);
            let Some((first, last)) = slot.dirty else {
                continue;
            };
            if now < (last + wait.min).min(first + wait.max) {
                continue;
            }
            slot.dirty = None;
            match slot.template.render_versioned(&data, &versions) {
                Err(e) => tracing::error!(error = %e, "render failed; keeping the last output"),
                Ok(Rendered::Incomplete { deps, blocked, .. }) => {
                    for key in &blocked {
                        if !slot.blocked_reported.contains(key) {
                            tracing::info!(template = %slot.config.source.display(), key, "waiting for key to exist");
                            slot.blocked_reported.push(key.clone());
                        }
                    }
                    slot.deps = deps;
                }
                Ok(Rendered::Complete { text, deps }) => {
                    slot.deps = deps;
                    slot.blocked_reported.clear();
                    if let Some((cmd, timeout, dest)) = deliver(&slot.config, &text, options.dry) {
                        // Per template, one command at a time, in order; the loop goes on.
                        let previous = slot.command.take();
                        slot.command = Some(tokio::spawn(async move {
                            if let Some(p) = previous {
                                // Only the order matters: the previous command logged its own
                                // outcome, and a panic in it is the runtime's to report.
                                let _ = p.await;
                            }
                            run_command(cmd, timeout, dest).await;
                        }));
                    }
                }
            }
        }
        // One watch per distinct dependency still in use (catalog ones: the feed's, while it
        // runs); start new ones, stop unused ones.
        let (fed, wanted): (BTreeSet<Dep>, BTreeSet<Dep>) = slots
            .iter()
            .flat_map(|s| s.deps.iter().cloned())
            .partition(|d| feed.is_some() && crate::feed::serves(d));
        feed_wanted.send_if_modified(|held| {
            let changed = *held != fed;
            *held = fed;
            changed
        });
        watches.retain(|dep, handle| {
            let keep = wanted.contains(dep);
            if !keep {
                handle.abort();
            }
            keep
        });
        for dep in &wanted {
            watches.entry(dep.clone()).or_insert_with(|| {
                tokio::spawn(watch_dep(client.clone(), dep.clone(), tx.clone()))
            });
        }
        // Sleep until the next render is due or something happens.
        let next_due = slots
            .iter()
            .flat_map(|s| {
                let wait = s.config.wait.unwrap_or(options.wait);
                let render = s
                    .dirty
                    .map(|(first, last)| (last + wait.min).min(first + wait.max));
                [render, s.edited.map(|t| t + EDIT_SETTLE)]
            })
            .flatten()
            .min();
        let sleep = async {
            match next_due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let feed_end = async {
            match feed.as_mut() {
                Some(handle) => handle.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            ended = feed_end => {
                feed = None;
                match ended {
                    Ok(Some(crate::feed::Unsupported)) => tracing::info!(
                        "the catalog server has no /v1/cairn/catalog (not catalogd): one watch per dependency"
                    ),
                    other => tracing::warn!(?other, "the catalog feed ended; one watch per dependency"),
                }
            }
            Some(first) = rx.recv() => {
                // Take every update already queued, so a burst (e.g. startup) renders once.
                let mut updates = vec![first];
                while let Ok(more) = rx.try_recv() {
                    updates.push(more);
                }
                let now = Instant::now();
                for (dep, value) in updates {
                    if data.get(&dep) == Some(&value) {
                        continue;
                    }
                    // No render holds the data between renders, so this updates it in place.
                    Arc::make_mut(&mut data).insert(dep.clone(), value);
                    version += 1;
                    versions.insert(dep.clone(), version);
                    for slot in slots.iter_mut().filter(|s| s.deps.contains(&dep)) {
                        slot.dirty = Some(slot.dirty.map_or((now, now), |(first, _)| (first, now)));
                    }
                }
            }
            event = events.recv() => match event {
                Some(Event::TemplateChanged(path)) => {
                    let now = Instant::now();
                    for slot in slots.iter_mut().filter(|s| s.config.source == path) {
                        slot.edited = Some(now);
                    }
                }
                Some(Event::Reload) => break Exit::Reload,
                Some(Event::Stop) | None => break Exit::Stopped,
            },
        }
    };
    for (_, h) in watches {
        h.abort();
    }
    if let Some(h) = feed {
        h.abort();
    }
    // A command still running is stopped with us (its shell is killed when dropped).
    for slot in &mut slots {
        if let Some(c) = slot.command.take() {
            c.abort();
        }
    }
    Ok(exit)
}

/// Fetches one dependency now, retrying transient failures.
async fn fetch_once(
    client: &CatalogClient,
    dep: &Dep,
    attempts: u32,
) -> Result<Option<Value>, String> {
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    for _ in 0..attempts.max(1) {
        match dep.fetch(client, &QueryOptions::default()).await {
            Ok((v, _)) => return Ok(v),
            Err(e) => {
                last = e.to_string();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    Err(format!(
        "cannot read {dep} after {attempts} attempts: {last}"
    ))
}

/// Renders a template completely, resolving dependencies with `resolve` until none is missing.
pub async fn render_complete<F, Fut>(template: &Template, mut resolve: F) -> Result<String, String>
where
    F: FnMut(Dep) -> Fut,
    Fut: std::future::Future<Output = Result<Option<Value>, String>>,
{
    let mut data = Data::new();
    loop {
        match template
            .render(&Arc::new(data.clone()))
            .map_err(|e| e.to_string())?
        {
            Rendered::Complete { text, .. } => return Ok(text),
            Rendered::Incomplete {
                missing, blocked, ..
            } => {
                if missing.is_empty() {
                    return Err(format!(
                        "{}: key {} does not exist (key() waits for it; use key_or_default for optional keys)",
                        template.source.display(),
                        blocked.join(", ")
                    ));
                }
                for dep in missing {
                    let v = resolve(dep.clone()).await?;
                    data.insert(dep, v);
                }
            }
        }
    }
}

/// `--once`: render every template from fresh reads, write what changed, run commands.
pub async fn once(
    client: CatalogClient,
    configs: Vec<TemplateConfig>,
    options: Options,
) -> Result<(), String> {
    let mut templates = Vec::new();
    for c in &configs {
        templates.push(Template::load(&c.source).map_err(|e| e.to_string())?);
    }
    // Shared across templates: each dependency is read once.
    let cache: Arc<tokio::sync::Mutex<HashMap<Dep, Option<Value>>>> = Arc::default();
    for (config, template) in configs.iter().zip(&templates) {
        let text = render_complete(template, |dep| {
            let (client, cache) = (client.clone(), cache.clone());
            async move {
                if let Some(v) = cache.lock().await.get(&dep) {
                    return Ok(v.clone());
                }
                let v = fetch_once(&client, &dep, 5).await?;
                cache.lock().await.insert(dep, v.clone());
                Ok(v)
            }
        })
        .await?;
        if let Some((cmd, timeout, dest)) = deliver(config, &text, options.dry) {
            run_command(cmd, timeout, dest).await;
        }
    }
    Ok(())
}

//! The `tmpl` command line: `render` (once, to stdout, for pipes) and `watch` (keep files in
//! step with the catalog), plus the plumbing around the engine: template file notifications,
//! SIGHUP reloads, SIGTERM/SIGINT stops.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, anyhow};
use cairn_cli::{CatalogArgs, LockOrExit as _, LogArgs};
use clap::{Parser, Subcommand};
use tokio::sync::mpsc;

use crate::config::{TemplateConfig, Wait};
use crate::engine::{self, Event, Exit, Options};
use crate::template::Template;

/// Templates that follow the catalog (consul-template semantics, Tera syntax).
#[derive(Parser, Debug)]
#[command(name = "tmpl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub catalog: CatalogArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Render one template to stdout, once
    Render(RenderArgs),
    /// Keep templates rendered into files as the catalog changes
    Watch(WatchArgs),
    #[command(flatten)]
    Docs(cairn_cli::DocsCommand),
}

#[derive(clap::Args, Debug)]
pub struct RenderArgs {
    /// Template file (- for stdin)
    pub template: PathBuf,
    /// Render from this JSON document (- for stdin) instead of the catalog
    #[arg(long)]
    pub data: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// IN:OUT[:COMMAND] (repeatable)
    #[arg(short = 't', long = "template")]
    pub templates: Vec<String>,
    /// Config file (TOML, or JSON when it ends in .json) with [[template]] entries
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Quiescence MIN:MAX: render after MIN of calm, never later than MAX after a change
    #[arg(long)]
    pub wait: Option<String>,
    /// Render everything once and exit
    #[arg(long)]
    pub once: bool,
    /// Print renderings to stdout instead of writing files; run no commands
    #[arg(long)]
    pub dry: bool,
}

fn read_source(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading stdin")?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

async fn render(cli_catalog: &CatalogArgs, args: RenderArgs) -> anyhow::Result<()> {
    let template = Template::parse(&args.template, &read_source(&args.template)?)
        .map_err(|e| anyhow!("{e}"))?;
    let text = match &args.data {
        Some(path) => {
            let doc: serde_json::Value = serde_json::from_str(&read_source(path)?)
                .with_context(|| format!("{}: not a JSON document", path.display()))?;
            engine::render_complete(&template, |dep| {
                let v = crate::document::resolve(&doc, &dep);
                async move { Ok(v) }
            })
            .await
        }
        None => {
            let client = cli_catalog.client()?;
            engine::render_complete(&template, |dep| {
                let client = client.clone();
                async move {
                    dep.fetch(&client, &Default::default())
                        .await
                        .map(|(v, _)| v)
                        .map_err(|e| format!("cannot read {dep}: {e}"))
                }
            })
            .await
        }
    }
    .map_err(|e| anyhow!(e))?;
    print!("{text}");
    Ok(())
}

/// Templates and options from flags and the config file (flags first).
fn configure(args: &WatchArgs) -> anyhow::Result<(Vec<TemplateConfig>, Options, Option<String>)> {
    let mut templates = Vec::new();
    for t in &args.templates {
        templates.push(TemplateConfig::from_flag(t).map_err(|e| anyhow!(e))?);
    }
    let mut wait = Wait::default();
    let mut catalog = None;
    if let Some(path) = &args.config {
        let loaded = crate::config::load(path).map_err(|e| anyhow!(e))?;
        templates.extend(loaded.templates);
        wait = loaded.wait.unwrap_or_default();
        catalog = loaded.catalog;
    }
    if let Some(w) = &args.wait {
        wait = Wait::parse(w).map_err(|e| anyhow!(e))?;
    }
    if templates.is_empty() {
        return Err(anyhow!(
            "no templates: give -t IN:OUT[:COMMAND] or --config FILE"
        ));
    }
    Ok((
        templates,
        Options {
            wait,
            dry: args.dry,
        },
        catalog,
    ))
}

/// Watches the directories of the template files; sends the path of a template that changed.
fn watch_files(
    paths: &[PathBuf],
    tx: mpsc::UnboundedSender<Event>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let wanted: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let originals: Vec<PathBuf> = paths.to_vec();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if event.kind.is_access() {
            return;
        }
        for p in &event.paths {
            if let Some(i) = wanted.iter().position(|w| w == p) {
                // The engine is gone when tmpl is stopping: nobody to tell.
                let _ = tx.send(Event::TemplateChanged(originals[i].clone()));
            }
        }
    };
    let mut watcher = notify::recommended_watcher(handler).ok()?;
    let mut dirs: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::path::absolute(p).ok()?.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        // Editors replace files by rename: watch the directory, not the file.
        if let Err(e) = watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot watch for template edits");
        }
    }
    Some(watcher)
}

async fn watch(cli_catalog: &CatalogArgs, args: WatchArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Signals go to whichever engine runs now (a SIGHUP restarts it with the new config).
    let current: Arc<Mutex<Option<mpsc::UnboundedSender<Event>>>> = Arc::default();
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let to = current.clone();
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                _ = hup.recv() => Event::Reload,
                _ = term.recv() => Event::Stop,
                _ = int.recv() => Event::Stop,
            };
            if let Some(tx) = to.lock_or_exit("signal forwarding").as_ref() {
                // The engine is gone when tmpl is stopping: nobody to tell.
                let _ = tx.send(event);
            }
        }
    });
    let mut last_good: Option<(Vec<TemplateConfig>, Options, Option<String>)> = None;
    loop {
        // A reload that finds a broken config or template keeps the running configuration.
        let fresh = configure(&args).and_then(|c| {
            for t in &c.0 {
                Template::load(&t.source).map_err(|e| anyhow!("{e}"))?;
            }
            Ok(c)
        });
        let (templates, options, file_catalog) = match (fresh, &last_good) {
            (Ok(c), _) => c,
            (Err(e), Some(good)) => {
                tracing::error!(error = %format!("{e:#}"), "the new configuration is invalid; keeping the running one");
                good.clone()
            }
            (Err(e), None) => return Err(e),
        };
        last_good = Some((templates.clone(), options.clone(), file_catalog.clone()));
        let url = match (&cli_catalog.catalog, file_catalog) {
            (None, Some(from_file)) => cairn_cli::with_catalog_scheme(&from_file),
            _ => cli_catalog.url(),
        };
        let client = cli_catalog.client_for(&url)?;
        if args.once {
            return engine::once(client, templates, options)
                .await
                .map_err(|e| anyhow!(e));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        *current.lock_or_exit("signal forwarding") = Some(tx.clone());
        let sources: Vec<PathBuf> = templates.iter().map(|t| t.source.clone()).collect();
        let _files = watch_files(&sources, tx);
        tracing::info!(templates = templates.len(), catalog = %url, "tmpl watching");
        match engine::run(client, templates, options, rx)
            .await
            .map_err(|e| anyhow!(e))?
        {
            Exit::Stopped => {
                tracing::info!("tmpl stopped");
                return Ok(());
            }
            Exit::Reload => tracing::info!("SIGHUP: reloading the configuration"),
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    if let Command::Docs(docs) = &cli.command {
        return docs.run(<Cli as clap::CommandFactory>::command());
    }
    cairn_cli::init_logging(&cli.log);
    // Two workers: the renderer waits on the catalog, it does not compute.
    cairn_cli::run_main("tmpl", cairn_cli::Flavor::MultiThread(Some(2)), async {
        match cli.command {
            Command::Render(args) => render(&cli.catalog, args).await,
            Command::Watch(args) => watch(&cli.catalog, args).await,
            // Answered in `run`, before logging and the runtime start.
            Command::Docs(_) => Ok(()),
        }
        .map(|()| ExitCode::SUCCESS)
    })
}

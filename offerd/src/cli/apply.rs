//! `offerd apply -f FILE|DIR`: make the cluster's apps match app definitions kept in files (the
//! operator's git checkout). Every file is read and validated first — one bad file and nothing
//! is sent; then all creations and changes go in one bulk `PUT /v2/apps` (validated whole by the
//! server, applied together), and with `--prune` apps not in the files are deleted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use cairn_marathon::{App, parse_app};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{ClientAuth, OfferdClient, app_path};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// An app JSON file, or a directory of them (*.json, searched recursively)
    #[arg(short = 'f', long = "file", required = true)]
    pub paths: Vec<PathBuf>,
    /// Delete apps that no file defines
    #[arg(long)]
    pub prune: bool,
    /// Show what would change, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Override deployments in progress
    #[arg(long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub auth: ClientAuth,
}

/// The app files under `path`. Any entry that cannot be read stops everything with an error
/// naming it: an app directory skipped silently would have its apps deleted by `--prune`.
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = Vec::new();
    for e in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let e = e.with_context(|| format!("reading an entry of {}", path.display()))?;
        entries.push(e.path());
    }
    entries.sort();
    for e in entries {
        // Follows symlinks: a link to a directory is a directory of apps, a dangling one an error.
        let meta = std::fs::metadata(&e).with_context(|| format!("reading {}", e.display()))?;
        if meta.is_dir() {
            collect(&e, out)?;
        } else if e.extension().is_some_and(|x| x == "json") {
            out.push(e);
        }
    }
    Ok(())
}

/// Reads every app of the files: a file holds one app, an array of apps, or `{"apps": [...]}`.
/// All errors of all files are reported together.
pub fn load_apps(paths: &[PathBuf]) -> anyhow::Result<Vec<(App, Value)>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut apps: Vec<(App, Value)> = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{}: invalid JSON: {e}", f.display()));
                continue;
            }
        };
        let items = match value {
            Value::Array(a) => a,
            Value::Object(mut m) if m.get("apps").is_some_and(Value::is_array) => m
                .remove("apps")
                .and_then(|a| a.as_array().cloned())
                .unwrap_or_default(),
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            match parse_app(item.clone(), None) {
                Ok(app) => {
                    if let Some(prev) = seen.insert(app.id.clone(), f.clone()) {
                        errors.push(format!(
                            "{}: app {} is also defined in {}",
                            f.display(),
                            app.id,
                            prev.display()
                        ));
                    }
                    apps.push((app, item));
                }
                Err(e) => errors.push(format!("{} (app {i}): {e}", f.display())),
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "{} problem(s), nothing applied:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    Ok(apps)
}

/// Whether the running definition already is what the file says (service ports the server
/// assigned for a 0, in `portDefinitions` or in port mappings, count as equal).
fn same(local: &App, remote: &Value) -> bool {
    let Ok(mut remote) = parse_app(remote.clone(), None) else {
        return false;
    };
    remote.version = None;
    remote.version_info = None;
    let mut local = local.clone();
    // In port definitions and in BRIDGE port mappings alike.
    let (l, r) = (local.service_ports(), remote.service_ports());
    if l.len() == r.len() {
        let merged: Vec<i64> = l
            .iter()
            .zip(&r)
            .map(|(l, r)| if *l == 0 { *r } else { *l })
            .collect();
        local.set_service_ports(&merged);
    }
    local == remote
}

fn strip_counts(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        for k in [
            "tasksStaged",
            "tasksRunning",
            "tasksHealthy",
            "tasksUnhealthy",
            "deployments",
            "tasks",
            "lastTaskFailure",
        ] {
            m.remove(k);
        }
    }
    v
}

pub async fn apply(c: &OfferdClient, args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let apps = load_apps(&args.paths)?;
    let remote = c.get("/v2/apps", &[]).await?;
    let remote: Vec<Value> = remote["apps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(strip_counts)
        .collect();
    let find = |id: &str| remote.iter().find(|r| r["id"] == id);
    let (mut created, mut updated, mut unchanged, mut deleted) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bulk = Vec::new();
    for (app, raw) in &apps {
        match find(&app.id) {
            None => created.push(app.id.clone()),
            Some(r) if same(app, r) => {
                unchanged.push(app.id.clone());
                continue;
            }
            Some(_) => updated.push(app.id.clone()),
        }
        let mut body = raw.clone();
        body["id"] = json!(app.id);
        bulk.push(body);
    }
    if args.prune {
        for r in &remote {
            let id = r["id"].as_str().unwrap_or_default();
            if !apps.iter().any(|(a, _)| a.id == id) {
                deleted.push(id.to_string());
            }
        }
    }
    let mut deployment = Value::Null;
    if !args.dry_run {
        let force: &[(&str, &str)] = if args.force {
            &[("force", "true"), ("partialUpdate", "false")]
        } else {
            &[("partialUpdate", "false")]
        };
        if !bulk.is_empty() {
            deployment = c
                .call(Method::PUT, "/v2/apps", force, Some(&Value::Array(bulk)))
                .await?;
        }
        for id in &deleted {
            let q: &[(&str, &str)] = if args.force {
                &[("force", "true")]
            } else {
                &[]
            };
            c.call(Method::DELETE, &app_path(id), q, None).await?;
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "created": created, "updated": updated, "unchanged": unchanged, "deleted": deleted,
                "dryRun": args.dry_run, "deploymentId": deployment.get("deploymentId"),
            }))
            .unwrap_or_default()
        );
    } else {
        let verb = |w: &str| {
            if args.dry_run {
                format!("would be {w}")
            } else {
                w.to_string()
            }
        };
        for (list, w) in [
            (&created, "created"),
            (&updated, "updated"),
            (&deleted, "deleted"),
        ] {
            for id in list {
                println!("{id} {}", verb(w));
            }
        }
        println!(
            "{} created, {} updated, {} unchanged, {} deleted{}",
            created.len(),
            updated.len(),
            unchanged.len(),
            deleted.len(),
            if args.dry_run { " (dry run)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assigned_service_ports_do_not_count_as_changes() {
        let bridge = |sp: u16| {
            json!({"id": "/web", "networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "docker": {"image": "web"},
                              "portMappings": [{"containerPort": 80, "servicePort": sp}]}})
        };
        let host = |p: i64| json!({"id": "/h", "cmd": "x", "portDefinitions": [{"port": p}]});
        for (file, running, want) in [
            (bridge(0), bridge(10004), true),
            (bridge(10005), bridge(10004), false),
            (host(0), host(10004), true),
            (host(10005), host(10004), false),
        ] {
            let local = parse_app(file.clone(), None).unwrap();
            assert_eq!(same(&local, &running), want, "{file} vs {running}");
        }
    }

    #[test]
    fn an_unreadable_entry_stops_the_apply_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join("web.json"),
            r#"{"id": "/web", "cmd": "sleep 100"}"#,
        )
        .expect("write");
        // A directory of apps that cannot be read (an unmounted share): its apps must not be
        // taken as gone.
        let team = dir.path().join("team-b");
        std::os::unix::fs::symlink(dir.path().join("missing"), &team).expect("symlink");
        let err = load_apps(&[dir.path().to_path_buf()]).expect_err("refused");
        assert!(
            format!("{err:#}").contains(&team.display().to_string()),
            "names the entry: {err:#}"
        );
    }
}

//! App versions: the next [`AppEntry`] of an app (a new config version or only a new scaling
//! version), and whether a running task already runs what a definition asks for.

use cairn_marathon::{App, iso8601_millis};

use crate::model::{AppEntry, Task};

/// Builds a new app entry or the next version of one (`restart` forces a new config version).
///
/// `running_config`: the config version of tasks that already run exactly what `app` asks for
/// (see [`runs_as`]); a changed config that matches them (a rollback) keeps them instead of
/// replacing healthy tasks with identical ones.
pub fn next_version(
    prev: Option<&AppEntry>,
    mut app: App,
    version_ms: u64,
    restart: bool,
    running_config: Option<String>,
) -> AppEntry {
    let version = iso8601_millis(version_ms);
    let config_changed = match prev {
        None => true,
        Some(p) => restart || p.app.config_json() != app.config_json(),
    };
    let last_config = if config_changed {
        running_config
            .filter(|_| !restart)
            .unwrap_or_else(|| version.clone())
    } else {
        prev.map(|p| p.config_version().to_string())
            .unwrap_or_else(|| version.clone())
    };
    app.version = Some(version.clone());
    app.version_info = Some(cairn_marathon::VersionInfo {
        last_scaling_at: version.clone(),
        last_config_change_at: last_config,
    });
    let mut versions = prev.map(|p| p.versions.clone()).unwrap_or_default();
    versions.push(version);
    let (failures, delay_until_ms, last_failure) = match prev {
        Some(p) if !config_changed => (p.failures, p.delay_until_ms, p.last_failure.clone()),
        Some(p) => (0, 0, p.last_failure.clone()),
        None => (0, 0, None),
    };
    AppEntry {
        app,
        versions,
        failures,
        delay_until_ms,
        last_failure,
    }
}

/// Whether a task runs what `app` defines (same command, resources, environment, labels, checks,
/// container and number of ports).
pub fn runs_as(t: &Task, app: &App) -> bool {
    let s = &t.spec;
    s.cmd == app.cmd
        && s.args == app.args
        && s.env == app.env
        && s.labels == app.labels
        && s.cpus == app.cpus
        && s.mem == app.mem
        && s.disk == app.disk
        && s.health_checks == app.health_checks
        && s.container == app.container
        && on_network(&s.networks) == on_network(&app.networks)
        && s.kill_grace_seconds == app.kill_grace_seconds()
        && s.ports.len() == app.port_count()
}

/// The networks a task joins: specs and apps from before `networks` existed mean the host's.
fn on_network(n: &Option<Vec<cairn_marathon::Network>>) -> Vec<cairn_marathon::Network> {
    n.clone()
        .unwrap_or_else(|| vec![cairn_marathon::Network::host()])
}

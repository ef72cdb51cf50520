//! A run's task as a Marathon app: offerd launches every task from an [`App`], so one run of a
//! job becomes the app `/metronome/<job id>/<run id>` with one instance, no ports and no health
//! checks. The app is built as Marathon JSON and read by [`cairn_marathon::parse_app`], so
//! Marathon's own rules (Docker parameters, volume paths, environment names...) apply to jobs
//! as to apps, and their 422 paths are mapped back to the job's (`/container/docker/image` →
//! `/run/docker/image`).
//!
//! The app id: Metronome names a run's Marathon run spec `<job id as path>/<run id>` and its
//! tasks `<job_id_path>_<run id>.<uuid>`. cairn puts every job under one reserved top-level
//! group, [`APP_GROUP`], so a job cannot take the id of a Marathon app (offerd must refuse apps
//! and framework tasks under it), and keeps the job id whole as one segment (dots are valid in
//! Marathon ids): the job `prod.backup` and the job `prod` with a run named `backup...` can
//! never meet, and [`job_id_of_app`] is exact. Marathon ids are lowercase, so the run id is
//! lowercased in the app id: give [`crate::new_run_id`] lowercase random characters and the two
//! are one to one.

use serde_json::json;

use cairn_marathon::{App, ValidationError, Violation, parse_app};

use crate::id::check_job_id;
use crate::job::JobSpec;

/// The Marathon group every job's runs live under.
pub const APP_GROUP: &str = "/metronome";

/// The app id of a run: `/metronome/<job id>/<run id, lowercased>`.
pub fn app_id(job_id: &str, run_id: &str) -> String {
    format!("{APP_GROUP}/{job_id}/{}", run_id.to_ascii_lowercase())
}

/// The job an app id belongs to, if it is a run's app ([`app_id`]'s inverse for the job).
pub fn job_id_of_app(app_id: &str) -> Option<String> {
    let rest = app_id.strip_prefix(APP_GROUP)?.strip_prefix('/')?;
    let (job, run) = rest.split_once('/')?;
    let run_ok = !run.is_empty()
        && run
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (run_ok && check_job_id(job).is_ok()).then(|| job.to_string())
}

impl JobSpec {
    /// The Marathon app one run's task is launched from. Errors are Marathon's rules on the
    /// job's fields, with the job's paths ([`job_error_of_app_error`]).
    pub fn to_app(&self, run_id: &str) -> Result<App, ValidationError> {
        let run = &self.run;
        let mut app = json!({
            "id": app_id(&self.id, run_id),
            "instances": 1,
            "cpus": run.cpus,
            "mem": run.mem,
            "disk": run.disk,
            "gpus": run.gpus,
            "env": run.env,
            "labels": self.labels,
            "constraints": run.placement.constraints.iter().map(|c| {
                let mut parts = vec![c.attribute.clone(), c.operator.marathon().to_string()];
                parts.extend(c.value.clone());
                parts
            }).collect::<Vec<_>>(),
            "networks": [{"mode": "host"}],
            // A run's task serves nothing: no ports to assign, nothing to check.
            "portDefinitions": [],
            "healthChecks": [],
        });
        for (key, value) in [
            ("cmd", run.cmd.as_ref().map(|c| json!(c))),
            ("args", run.args.as_ref().map(|a| json!(a))),
            ("user", run.user.as_ref().map(|u| json!(u))),
            (
                "taskKillGracePeriodSeconds",
                run.task_kill_grace_period_seconds.map(|g| json!(g)),
            ),
        ] {
            if let Some(value) = value {
                app[key] = value;
            }
        }
        if let Some(d) = &run.docker {
            app["container"] = json!({
                "type": "DOCKER",
                "docker": {
                    "image": d.image,
                    "forcePullImage": d.force_pull_image,
                    "privileged": d.privileged,
                    "parameters": d.parameters.iter()
                        .map(|p| json!({"key": p.key, "value": p.value}))
                        .collect::<Vec<_>>(),
                },
                "volumes": run.volumes.iter()
                    .map(|v| json!({
                        "containerPath": v.container_path,
                        "hostPath": v.host_path,
                        "mode": v.mode.as_str(),
                    }))
                    .collect::<Vec<_>>(),
            });
        }
        parse_app(app, None).map_err(job_error_of_app_error)
    }
}

/// Marathon's 422 about a run's app, with each path turned into the job field it came from
/// (for offerd's host policy too, which judges the app).
pub fn job_error_of_app_error(e: ValidationError) -> ValidationError {
    match e {
        ValidationError::Invalid(v) => ValidationError::Invalid(
            v.into_iter()
                .map(|x| Violation {
                    path: job_path(&x.path),
                    errors: x.errors,
                })
                .collect(),
        ),
        other => other,
    }
}

/// `/container/docker/parameters(0)/key` → `/run/docker/parameters(0)/key`.
fn job_path(app_path: &str) -> String {
    let under = |prefix: &str, to: &str| {
        app_path
            .strip_prefix(prefix)
            .filter(|rest| rest.is_empty() || rest.starts_with(['/', '(']))
            .map(|rest| format!("{to}{rest}"))
    };
    under("/container/docker", "/run/docker")
        .or_else(|| under("/container/volumes", "/run/volumes"))
        .or_else(|| under("/container", "/run/docker"))
        .or_else(|| under("/constraints", "/run/placement/constraints"))
        .or_else(|| under("/labels", "/labels"))
        .or_else(|| under("/id", "/id"))
        .unwrap_or_else(|| match app_path {
            "/" | "" => "/run".to_string(),
            other => format!("/run{other}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_paths_map_to_job_paths() {
        for (app, job) in [
            ("/container/docker/image", "/run/docker/image"),
            (
                "/container/docker/parameters(1)/key",
                "/run/docker/parameters(1)/key",
            ),
            ("/container/volumes(0)/hostPath", "/run/volumes(0)/hostPath"),
            ("/constraints(2)", "/run/placement/constraints(2)"),
            ("/env/A=B", "/run/env/A=B"),
            ("/labels/cairn.autoscale.x", "/labels/cairn.autoscale.x"),
            ("/id", "/id"),
            ("/", "/run"),
            ("/cpus", "/run/cpus"),
            ("/identity", "/run/identity"),
        ] {
            assert_eq!(job_path(app), job, "{app}");
        }
    }

    #[test]
    fn app_ids_map_back_to_jobs() {
        let id = app_id("prod.backup-db", "20240101120000AbC9z");
        assert_eq!(id, "/metronome/prod.backup-db/20240101120000abc9z");
        assert_eq!(job_id_of_app(&id).as_deref(), Some("prod.backup-db"));
        for not_a_run in [
            "/web",
            "/metronome",
            "/metronome/prod",
            "/metronome/prod/",
            "/metronome/prod/run/extra",
            "/metronomex/prod/run",
            "/metronome/Prod/run",
        ] {
            assert_eq!(job_id_of_app(not_a_run), None, "{not_a_run}");
        }
    }
}

//! What an operator lets apps ask of the hosts they run on. Deploying an app runs it on the
//! agents, so without bounds anyone allowed to deploy is root there: a bind mount of the host's
//! `/` read-write, a privileged container, added capabilities. offerd refuses such an app when
//! it is deployed (Marathon's 422 naming the field), not later when an agent launches it.

use std::path::{Component, Path, PathBuf};

use crate::app::App;
use crate::container::docker_spec;
use crate::violation::{ValidationError, Violation};

/// The Docker `run` parameters that widen what a container may do on its host; allowed only
/// with [`HostPolicy::privileged`].
pub const PRIVILEGED_PARAMETERS: &[&str] = &["cap-add"];

/// The operator's bounds (offerd's `--allow-host-volumes` and `--allow-privileged`).
#[derive(Clone, Debug, Default)]
pub struct HostPolicy {
    /// Host directories a Docker volume may mount, with everything under them; none by default.
    pub host_volumes: Vec<PathBuf>,
    /// `privileged` containers and [`PRIVILEGED_PARAMETERS`].
    pub privileged: bool,
}

impl HostPolicy {
    /// Nothing refused: every host path, privileged containers.
    pub fn unrestricted() -> HostPolicy {
        HostPolicy {
            host_volumes: vec![PathBuf::from("/")],
            privileged: true,
        }
    }

    /// Refuses `app` with every field it asks for beyond the policy.
    pub fn admit(&self, app: &App) -> Result<(), ValidationError> {
        let v = self.violations(app);
        if v.is_empty() {
            Ok(())
        } else {
            Err(ValidationError::Invalid(v))
        }
    }

    fn violations(&self, app: &App) -> Vec<Violation> {
        let Some(container) = &app.container else {
            return Vec::new();
        };
        // A container that does not read is refused by validation, not here.
        let Ok(Some(docker)) = docker_spec(container, app.networks.as_deref()) else {
            return Vec::new();
        };
        let mut v = Vec::new();
        for (i, vol) in docker.volumes.iter().enumerate() {
            if let Err(why) = self.host_path_allowed(&vol.host_path) {
                v.push(Violation::new(
                    &format!("/container/volumes({i})/hostPath"),
                    why,
                ));
            }
        }
        if docker.privileged && !self.privileged {
            v.push(Violation::new(
                "/container/docker/privileged",
                "privileged containers are not allowed on this cluster (offerd --allow-privileged)",
            ));
        }
        for (i, p) in docker.parameters.iter().enumerate() {
            if PRIVILEGED_PARAMETERS.contains(&p.key.as_str()) && !self.privileged {
                v.push(Violation::new(
                    &format!("/container/docker/parameters({i})/key"),
                    format!(
                        "docker parameter {:?} is not allowed on this cluster (offerd --allow-privileged)",
                        p.key
                    ),
                ));
            }
        }
        v
    }

    fn host_path_allowed(&self, host_path: &str) -> Result<(), String> {
        let path = Path::new(host_path);
        // `..` would climb out of an allowed prefix that a plain prefix test accepts.
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(format!(
                "host path {host_path:?} must not contain '..' components"
            ));
        }
        if self
            .host_volumes
            .iter()
            .any(|prefix| path.starts_with(prefix))
        {
            return Ok(());
        }
        Err(if self.host_volumes.is_empty() {
            format!(
                "host path {host_path:?} is not allowed: this cluster allows no host volumes \
                 (offerd --allow-host-volumes PREFIX)"
            )
        } else {
            let allowed: Vec<String> = self
                .host_volumes
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            format!(
                "host path {host_path:?} is not under an allowed prefix ({}; offerd \
                 --allow-host-volumes)",
                allowed.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docker_app(docker: serde_json::Value, volumes: serde_json::Value) -> App {
        crate::parse_app(
            json!({
                "id": "/x", "cpus": 0.1, "mem": 16,
                "container": {"type": "DOCKER", "docker": docker, "volumes": volumes}
            }),
            None,
        )
        .expect("valid app")
    }

    fn refused_paths(policy: &HostPolicy, app: &App) -> Vec<String> {
        match policy.admit(app) {
            Ok(()) => Vec::new(),
            Err(ValidationError::Invalid(v)) => v.into_iter().map(|x| x.path).collect(),
            Err(e) => panic!("unexpected {e}"),
        }
    }

    #[test]
    fn host_volumes_only_under_allowed_prefixes() {
        let data = HostPolicy {
            host_volumes: vec![PathBuf::from("/srv/data")],
            privileged: false,
        };
        let cases = [
            ("/", &HostPolicy::default(), false),
            ("/srv/data/app", &HostPolicy::default(), false),
            ("/srv/data", &data, true),
            ("/srv/data/app/logs", &data, true),
            ("/srv/database", &data, false),
            ("/srv/data/../../etc", &data, false),
            ("/srv/data/./x", &data, true),
            ("/etc", &data, false),
            ("/etc", &HostPolicy::unrestricted(), true),
        ];
        for (host_path, policy, allowed) in cases {
            let app = docker_app(
                json!({"image": "busybox"}),
                json!([{"containerPath": "/d", "hostPath": host_path, "mode": "RW"}]),
            );
            let refused = refused_paths(policy, &app);
            let want: Vec<String> = if allowed {
                Vec::new()
            } else {
                vec!["/container/volumes(0)/hostPath".into()]
            };
            assert_eq!(refused, want, "{host_path} with {policy:?}");
        }
    }

    #[test]
    fn privileged_and_added_capabilities_need_the_operator() {
        let app = docker_app(
            json!({"image": "busybox", "privileged": true,
                   "parameters": [{"key": "cap-add", "value": "SYS_ADMIN"}, {"key": "env", "value": "A=1"}]}),
            json!([]),
        );
        assert_eq!(
            refused_paths(&HostPolicy::default(), &app),
            [
                "/container/docker/privileged",
                "/container/docker/parameters(0)/key"
            ]
        );
        assert!(HostPolicy::unrestricted().admit(&app).is_ok());
        let plain = docker_app(json!({"image": "busybox"}), json!([]));
        assert!(HostPolicy::default().admit(&plain).is_ok());
    }
}

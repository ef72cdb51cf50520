//! Marathon's `container` for Docker apps, typed: image, network, port mappings, parameters,
//! volumes. The app JSON keeps the object as given (so it round-trips); offerd validates it with
//! [`docker_spec`] and taskrun reads it with the same function.
//!
//! Marathon 1.4 put `portMappings` under `container.docker`, 1.5+ under `container`; both are
//! read. With BRIDGE networking each mapping needs a host port from the agent's offer; with HOST
//! networking the app's `portDefinitions` give the host ports as for any task.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::validate::Violation;

/// Docker network mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DockerNetwork {
    Bridge,
    Host,
    None,
}

/// One published container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: u16,
    /// 0 = assign from the offer.
    #[serde(default)]
    pub host_port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default)]
    pub name: Option<String>,
}

fn tcp() -> String {
    "tcp".into()
}

/// A bind mount.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub container_path: String,
    pub host_path: String,
    /// RO or RW.
    #[serde(default = "rw")]
    pub mode: String,
}

fn rw() -> String {
    "RW".into()
}

/// A `docker run` option as Marathon passes it (`{"key": "memory-swap", "value": "256m"}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub key: String,
    pub value: String,
}

/// Everything a Docker task needs besides what [`crate::TaskSpec`] carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerSpec {
    pub image: String,
    pub network: DockerNetwork,
    pub port_mappings: Vec<PortMapping>,
    pub parameters: Vec<Parameter>,
    pub force_pull_image: bool,
    pub privileged: bool,
    pub volumes: Vec<Volume>,
}

impl DockerSpec {
    /// Host ports a task of this container needs from the offer (BRIDGE: one per mapping).
    pub fn host_ports_needed(&self) -> Option<usize> {
        (self.network == DockerNetwork::Bridge).then_some(self.port_mappings.len())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawDocker {
    image: String,
    #[serde(default)]
    network: Option<DockerNetwork>,
    #[serde(default)]
    port_mappings: Option<Vec<PortMapping>>,
    #[serde(default)]
    parameters: Vec<Parameter>,
    #[serde(default)]
    force_pull_image: bool,
    #[serde(default)]
    privileged: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawContainer {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    docker: Option<RawDocker>,
    #[serde(default)]
    port_mappings: Option<Vec<PortMapping>>,
    #[serde(default)]
    volumes: Vec<Volume>,
}

/// Docker `run` options cairn passes through (`parameters`); others are refused so a typo does
/// not silently run a container differently than intended.
pub const SUPPORTED_PARAMETERS: &[&str] = &[
    "env",
    "label",
    "hostname",
    "user",
    "workdir",
    "entrypoint",
    "add-host",
    "cap-add",
    "cap-drop",
    "memory-swap",
    "shm-size",
    "ulimit",
    "init",
    "read-only",
    "tmpfs",
    "dns",
    "stop-signal",
];

fn bad(path: &str, msg: impl Into<String>) -> Violation {
    Violation {
        path: path.into(),
        errors: vec![msg.into()],
    }
}

/// Reads a Docker container definition; `Ok(None)` for a container that is not Docker.
pub fn docker_spec(container: &Value) -> Result<Option<DockerSpec>, Vec<Violation>> {
    let raw: RawContainer = serde_path_to_error::deserialize(container.clone()).map_err(|e| {
        vec![bad(
            &format!("/container{}", crate::validate::marathon_path(e.path())),
            e.inner().to_string(),
        )]
    })?;
    let docker_type = raw.kind.as_deref().unwrap_or(if raw.docker.is_some() {
        "DOCKER"
    } else {
        "MESOS"
    });
    if docker_type != "DOCKER" {
        return Ok(None);
    }
    let Some(d) = raw.docker else {
        return Err(vec![bad(
            "/container/docker",
            "a DOCKER container needs container.docker",
        )]);
    };
    let mut v = Vec::new();
    if d.image.trim().is_empty() {
        v.push(bad("/container/docker/image", "must not be empty"));
    }
    let network = d.network.unwrap_or(DockerNetwork::Host);
    let port_mappings = match (raw.port_mappings, d.port_mappings) {
        (Some(_), Some(_)) => {
            v.push(bad(
                "/container/portMappings",
                "give portMappings in container or in container.docker, not both",
            ));
            Vec::new()
        }
        (a, b) => a.or(b).unwrap_or_default(),
    };
    if network != DockerNetwork::Bridge && !port_mappings.is_empty() {
        v.push(bad(
            "/container/portMappings",
            "port mappings need BRIDGE networking",
        ));
    }
    for (i, m) in port_mappings.iter().enumerate() {
        if m.container_port == 0 {
            v.push(bad(
                &format!("/container/portMappings({i})/containerPort"),
                "must be 1-65535",
            ));
        }
        if !matches!(m.protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp") {
            v.push(bad(
                &format!("/container/portMappings({i})/protocol"),
                "must be tcp, udp or udp,tcp",
            ));
        }
    }
    for (i, p) in d.parameters.iter().enumerate() {
        if !SUPPORTED_PARAMETERS.contains(&p.key.as_str()) {
            v.push(bad(
                &format!("/container/docker/parameters({i})/key"),
                format!(
                    "unsupported docker parameter {:?} (supported: {})",
                    p.key,
                    SUPPORTED_PARAMETERS.join(", ")
                ),
            ));
        }
    }
    for (i, vol) in raw.volumes.iter().enumerate() {
        if !vol.container_path.starts_with('/') {
            v.push(bad(
                &format!("/container/volumes({i})/containerPath"),
                "must be an absolute path",
            ));
        }
        if !vol.host_path.starts_with('/') {
            v.push(bad(
                &format!("/container/volumes({i})/hostPath"),
                "must be an absolute path",
            ));
        }
        if !matches!(vol.mode.as_str(), "RO" | "RW") {
            v.push(bad(
                &format!("/container/volumes({i})/mode"),
                "must be RO or RW",
            ));
        }
    }
    if !v.is_empty() {
        return Err(v);
    }
    Ok(Some(DockerSpec {
        image: d.image,
        network,
        port_mappings,
        parameters: d.parameters,
        force_pull_image: d.force_pull_image,
        privileged: d.privileged,
        volumes: raw.volumes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_port_mapping_places() {
        let old = json!({"type": "DOCKER", "docker": {"image": "web", "network": "BRIDGE",
            "portMappings": [{"containerPort": 80}]}});
        let new = json!({"type": "DOCKER", "docker": {"image": "web", "network": "BRIDGE"},
            "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp"}]});
        for c in [old, new] {
            let d = docker_spec(&c).unwrap().unwrap();
            assert_eq!(d.port_mappings[0].container_port, 80);
            assert_eq!(d.host_ports_needed(), Some(1));
        }
    }

    #[test]
    fn names_what_is_wrong() {
        let c = json!({"type": "DOCKER", "docker": {"image": "", "network": "HOST",
            "parameters": [{"key": "privileged-mode", "value": "x"}]},
            "portMappings": [{"containerPort": 80}], "volumes": [{"containerPath": "data", "hostPath": "/x", "mode": "RX"}]});
        let errs = docker_spec(&c).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|v| v.path.as_str()).collect();
        for p in [
            "/container/docker/image",
            "/container/portMappings",
            "/container/docker/parameters(0)/key",
            "/container/volumes(0)/containerPath",
            "/container/volumes(0)/mode",
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
        let typo = json!({"type": "DOCKER", "docker": {"image": "x", "netwrk": "HOST"}});
        assert!(docker_spec(&typo).unwrap_err()[0].errors[0].contains("netwrk"));
    }

    #[test]
    fn mesos_containers_are_not_docker() {
        assert_eq!(docker_spec(&json!({"type": "MESOS"})).unwrap(), None);
    }
}

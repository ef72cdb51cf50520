//! Marathon's `container` for Docker apps, typed: image, network, port mappings, parameters,
//! volumes. The app JSON keeps the object as given (so it round-trips); offerd validates it with
//! [`docker_spec`] and taskrun reads it with the same function.
//!
//! Marathon 1.4 put `portMappings` under `container.docker` and the network in
//! `container.docker.network`; 1.5+ puts `portMappings` under `container` and the network in the
//! app's `networks` (see [`crate::network`]; parsing an app turns it into the 1.5+ form). Both
//! forms are read here, because tasks launched before an upgrade carry the old one. With BRIDGE
//! networking each mapping needs a host port from the agent's offer, with USER (container)
//! networking only mappings that give a `hostPort`; with HOST networking the app's
//! `portDefinitions` give the host ports as for any task.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::network::{NETWORK_NAME_REQUIRED, NO_PORT_MAPPINGS_ON_HOST, Network, NetworkMode};
use crate::violation::{Violation, marathon_path};

/// Docker network mode (Marathon's `container.docker.network` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DockerNetwork {
    Bridge,
    Host,
    /// A named Docker network (Marathon's `container` network mode); the name is
    /// [`DockerSpec::network_name`].
    User,
    None,
}

/// One published container port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortMapping {
    pub container_port: u16,
    /// 0 = assign from the offer; absent on a USER network = no host port at all (BRIDGE reads
    /// absent as 0, as Marathon does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The load balancer's port for this mapping; 0 = offerd assigns one.
    #[serde(default)]
    pub service_port: u16,
    #[serde(default = "tcp")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Container networks the mapping applies to (Marathon's field; kept, not acted on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_names: Vec<String>,
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
    /// The Docker network's name for [`DockerNetwork::User`].
    pub network_name: Option<String>,
    pub port_mappings: Vec<PortMapping>,
    pub parameters: Vec<Parameter>,
    pub force_pull_image: bool,
    pub privileged: bool,
    pub volumes: Vec<Volume>,
}

impl DockerSpec {
    /// Whether the container has its own network namespace with published ports (BRIDGE or
    /// USER): its ports come from `portMappings`, not from the app's `portDefinitions`.
    pub fn maps_ports(&self) -> bool {
        matches!(self.network, DockerNetwork::Bridge | DockerNetwork::User)
    }

    /// The mappings that take a host port from the offer, in order: every mapping on BRIDGE,
    /// those with a `hostPort` on USER networks, none otherwise. A task's host ports are these
    /// mappings' ports, in this order.
    pub fn host_port_mappings(&self) -> Vec<&PortMapping> {
        match self.network {
            DockerNetwork::Bridge => self.port_mappings.iter().collect(),
            DockerNetwork::User => self
                .port_mappings
                .iter()
                .filter(|m| m.host_port.is_some())
                .collect(),
            DockerNetwork::Host | DockerNetwork::None => Vec::new(),
        }
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

/// Reads a Docker container definition; `Ok(None)` for a container that is not Docker. The
/// network is `container.docker.network` when given (the pre-1.5 form), else the first of the
/// app's `networks`, else HOST.
pub fn docker_spec(
    container: &Value,
    networks: Option<&[Network]>,
) -> Result<Option<DockerSpec>, Vec<Violation>> {
    let raw: RawContainer = serde_path_to_error::deserialize(container.clone()).map_err(|e| {
        vec![Violation::new(
            &format!("/container{}", marathon_path(e.path())),
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
        return Err(vec![Violation::new(
            "/container/docker",
            "a DOCKER container needs container.docker",
        )]);
    };
    let mut v = Vec::new();
    if d.image.trim().is_empty() {
        v.push(Violation::new(
            "/container/docker/image",
            "must not be empty",
        ));
    }
    let first = networks.and_then(|n| n.first());
    let (network, network_name) = match (d.network, first) {
        (Some(n), _) => (n, None),
        (None, Some(n)) => match n.mode {
            NetworkMode::Host => (DockerNetwork::Host, None),
            NetworkMode::ContainerBridge => (DockerNetwork::Bridge, None),
            NetworkMode::Container => (DockerNetwork::User, n.name.clone()),
        },
        (None, None) => (DockerNetwork::Host, None),
    };
    if network == DockerNetwork::User && network_name.as_deref().is_none_or(str::is_empty) {
        v.push(Violation::new("/networks", NETWORK_NAME_REQUIRED));
    }
    let mut port_mappings = match (raw.port_mappings, d.port_mappings) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => {
            v.push(Violation::new(
                "/container",
                "cannot specify both portMappings and docker.portMappings",
            ));
            Vec::new()
        }
        (a, b) => a.filter(|a| !a.is_empty()).or(b).unwrap_or_default(),
    };
    if matches!(network, DockerNetwork::Host | DockerNetwork::None) && !port_mappings.is_empty() {
        v.push(Violation::new("/", NO_PORT_MAPPINGS_ON_HOST));
    }
    if network == DockerNetwork::Bridge {
        // Marathon: in BRIDGE mode a missing hostPort means 0 (any port from the offer).
        for m in &mut port_mappings {
            m.host_port.get_or_insert(0);
        }
    }
    let mut names = std::collections::HashSet::new();
    if port_mappings
        .iter()
        .filter_map(|m| m.name.as_deref())
        .any(|n| !names.insert(n))
    {
        v.push(Violation::new(
            "/container/portMappings",
            "Port names must be unique.",
        ));
    }
    for (i, m) in port_mappings.iter().enumerate() {
        if m.container_port == 0 {
            v.push(Violation::new(
                &format!("/container/portMappings({i})/containerPort"),
                "must be 1-65535",
            ));
        }
        if !matches!(m.protocol.as_str(), "tcp" | "udp" | "udp,tcp" | "tcp,udp") {
            v.push(Violation::new(
                &format!("/container/portMappings({i})/protocol"),
                "must be tcp, udp or udp,tcp",
            ));
        }
    }
    for (i, p) in d.parameters.iter().enumerate() {
        if !SUPPORTED_PARAMETERS.contains(&p.key.as_str()) {
            v.push(Violation::new(
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
            v.push(Violation::new(
                &format!("/container/volumes({i})/containerPath"),
                "must be an absolute path",
            ));
        }
        if !vol.host_path.starts_with('/') {
            v.push(Violation::new(
                &format!("/container/volumes({i})/hostPath"),
                "must be an absolute path",
            ));
        }
        if !matches!(vol.mode.as_str(), "RO" | "RW") {
            v.push(Violation::new(
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
        network_name,
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
            let d = docker_spec(&c, None).unwrap().unwrap();
            assert_eq!(d.port_mappings[0].container_port, 80);
            assert_eq!(d.port_mappings[0].host_port, Some(0));
            assert_eq!(d.host_port_mappings().len(), 1);
        }
    }

    #[test]
    fn names_what_is_wrong() {
        let c = json!({"type": "DOCKER", "docker": {"image": "", "network": "HOST",
            "parameters": [{"key": "privileged-mode", "value": "x"}]},
            "portMappings": [{"containerPort": 80}], "volumes": [{"containerPath": "data", "hostPath": "/x", "mode": "RX"}]});
        let errs = docker_spec(&c, None).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|v| v.path.as_str()).collect();
        for p in [
            "/container/docker/image",
            "/",
            "/container/docker/parameters(0)/key",
            "/container/volumes(0)/containerPath",
            "/container/volumes(0)/mode",
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
        let typo = json!({"type": "DOCKER", "docker": {"image": "x", "netwrk": "HOST"}});
        assert!(docker_spec(&typo, None).unwrap_err()[0].errors[0].contains("netwrk"));
    }

    #[test]
    fn mesos_containers_are_not_docker() {
        assert_eq!(docker_spec(&json!({"type": "MESOS"}), None).unwrap(), None);
    }

    #[test]
    fn the_network_comes_from_networks_when_docker_names_none() {
        let c = json!({"type": "DOCKER", "docker": {"image": "web"},
            "portMappings": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]});
        let bridge = [Network {
            mode: NetworkMode::ContainerBridge,
            name: None,
            labels: Default::default(),
        }];
        let d = docker_spec(&c, Some(&bridge)).unwrap().unwrap();
        assert_eq!(d.network, DockerNetwork::Bridge);
        let ports: Vec<Option<u16>> = d.host_port_mappings().iter().map(|m| m.host_port).collect();
        assert_eq!(ports, [Some(8080), Some(0)]);
        let user = [Network {
            mode: NetworkMode::Container,
            name: Some("dev".into()),
            labels: Default::default(),
        }];
        let d = docker_spec(&c, Some(&user)).unwrap().unwrap();
        assert_eq!(
            (d.network, d.network_name.as_deref()),
            (DockerNetwork::User, Some("dev"))
        );
        // On a USER network only mappings with a hostPort take one from the offer.
        assert_eq!(d.host_port_mappings().len(), 1);
        let no_net = json!({"type": "DOCKER", "docker": {"image": "web"}});
        let d = docker_spec(&no_net, None).unwrap().unwrap();
        assert_eq!(d.network, DockerNetwork::Host);
    }
}

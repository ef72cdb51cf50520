//! What a Docker task's container looks like: Marathon's `container` definition (read with
//! [`cairn_marathon::docker_spec`], the same function offerd validated it with) and the rest of
//! the [`TaskSpec`] turned into the body of Docker's "create container" call. Pure, so every
//! mapping is tested without an engine.
//!
//! The mapping follows the Mesos Docker containerizer, so Marathon apps run unchanged:
//!
//! - `cmd` runs through the image's shell (`/bin/sh -c cmd` as entrypoint and command), `args`
//!   are appended to the image's entrypoint, neither keeps the image's own command;
//! - the environment is Marathon's (`PORT0..`, `PORTS`, `HOST`, `MARATHON_APP_*`,
//!   `MESOS_TASK_ID`; in BRIDGE mode `PORTn` are the host ports and `PORT_<containerPort>` too)
//!   plus the app's `env`, see [`crate::env::container_env`];
//! - labels are the app's plus `cairn.task_id`, `cairn.app_id`, `cairn.node` and
//!   `cairn.work_dir` (which agent owns it: adoption and the orphan sweep list containers by
//!   node *and* work dir, so two agents on one host never touch each other's containers);
//! - BRIDGE publishes each port mapping's container port on `0.0.0.0:<host port>` (the task's
//!   host ports, in mapping order), HOST and NONE are Docker's network modes of those names;
//! - `cpus` → NanoCPUs (at least 0.01, at most the host's CPUs, Docker's own bounds), `mem` →
//!   Memory (at least Docker's 6 MB minimum) with MemorySwap = Memory, so no swap;
//! - volumes are binds `host:container:ro|rw`; `privileged` as given;
//! - the `parameters` Marathon passes as `docker run` options, each to its field (see
//!   [`SUPPORTED_PARAMETERS`]); a value Docker would refuse is refused here, naming it.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding, ResourcesUlimits};
use cairn_marathon::{DockerNetwork, DockerSpec, Parameter, TaskSpec};

pub use cairn_marathon::SUPPORTED_PARAMETERS;

/// Label holding the task id (every container taskrun starts has it).
pub const LABEL_TASK_ID: &str = "cairn.task_id";
pub const LABEL_APP_ID: &str = "cairn.app_id";
/// The node name of the agent that started it.
pub const LABEL_NODE: &str = "cairn.node";
/// The work dir of the agent that started it.
pub const LABEL_WORK_DIR: &str = "cairn.work_dir";
/// Docker's smallest memory limit (20.10 refuses less: "Minimum memory limit allowed is 6MB").
pub const MIN_MEMORY_BYTES: i64 = 6 * MIB;
/// Docker's smallest CPU limit (0.01 CPU).
pub const MIN_NANO_CPUS: i64 = 10_000_000;
const MIB: i64 = 1024 * 1024;

/// Why a task's container cannot be described to Docker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerError {
    #[error("the task has no Docker container")]
    NotDocker,
    #[error("invalid container definition: {0}")]
    Definition(String),
    #[error("docker parameter {key}={value:?}: {reason}")]
    Parameter {
        key: String,
        value: String,
        reason: String,
    },
    #[error("the task has {ports} host ports for {mappings} port mappings")]
    Ports { ports: usize, mappings: usize },
}

/// Where the container runs (the agent's facts).
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub node: &'a str,
    /// The agent's address (`HOST`).
    pub host: &'a str,
    pub work_dir: &'a Path,
    /// CPUs of this host (NanoCPUs above it are refused by Docker).
    pub host_cpus: usize,
}

/// Everything needed to create a task's container.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerPlan {
    pub name: String,
    pub image: String,
    pub force_pull: bool,
    pub body: ContainerCreateBody,
}

/// Whether the spec asks for a Docker container (else the task runs as a process): a
/// `container` whose `type` is DOCKER, or that has no type but a `docker` part — the rule
/// [`cairn_marathon::docker_spec`] reads it by.
pub fn wants_docker(spec: &TaskSpec) -> bool {
    spec.container
        .as_ref()
        .is_some_and(|c| match c.get("type").and_then(|t| t.as_str()) {
            Some(t) => t.eq_ignore_ascii_case("DOCKER"),
            None => c.get("docker").is_some(),
        })
}

/// The task's Docker container definition, if it has one.
pub fn docker_of(spec: &TaskSpec) -> Result<DockerSpec, ContainerError> {
    let container = spec.container.as_ref().ok_or(ContainerError::NotDocker)?;
    match cairn_marathon::docker_spec(container, spec.networks.as_deref()) {
        Ok(Some(d)) => Ok(d),
        Ok(None) => Err(ContainerError::NotDocker),
        Err(violations) => Err(ContainerError::Definition(
            violations
                .iter()
                .map(|v| format!("{}: {}", v.path, v.errors.join(", ")))
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// `cairn-<task id>`, with anything Docker does not allow in a name (`[a-zA-Z0-9_.-]`) made `_`.
pub fn container_name(task_id: &str) -> String {
    let safe: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("cairn-{safe}")
}

/// Describes the container of `spec`.
pub fn plan(spec: &TaskSpec, ctx: &Context<'_>) -> Result<ContainerPlan, ContainerError> {
    let docker = docker_of(spec)?;
    // The mappings that publish a host port, in the order of the task's host ports.
    let published = docker.host_port_mappings();
    if docker.maps_ports() && spec.ports.len() != published.len() {
        return Err(ContainerError::Ports {
            ports: spec.ports.len(),
            mappings: published.len(),
        });
    }
    let container_ports: Vec<u16> = published.iter().map(|m| m.container_port).collect();
    let mut env = crate::env::container_env(spec, ctx.host, &container_ports);
    let mut labels: BTreeMap<String, String> = spec.labels.clone();
    let mut body = ContainerCreateBody {
        image: Some(docker.image.clone()),
        ..Default::default()
    };
    if let Some(cmd) = spec.cmd.as_ref().filter(|c| !c.trim().is_empty()) {
        body.entrypoint = Some(vec!["/bin/sh".into()]);
        body.cmd = Some(vec!["-c".into(), cmd.clone()]);
    } else if let Some(args) = spec.args.as_ref().filter(|a| !a.is_empty()) {
        body.cmd = Some(args.clone());
    }
    let mut host = HostConfig {
        network_mode: Some(
            match docker.network {
                DockerNetwork::Bridge => "bridge",
                DockerNetwork::Host => "host",
                DockerNetwork::None => "none",
                // A Marathon container network is a Docker network of that name (which the
                // operator creates, as with Mesos' Docker containerizer).
                DockerNetwork::User => docker.network_name.as_deref().unwrap_or("bridge"),
            }
            .into(),
        ),
        privileged: docker.privileged.then_some(true),
        ..Default::default()
    };
    if !published.is_empty() {
        let mut exposed = Vec::new();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (m, host_port) in published.iter().zip(&spec.ports) {
            for proto in m.protocol.split(',').map(str::trim) {
                let key = format!("{}/{proto}", m.container_port);
                exposed.push(key.clone());
                bindings.insert(
                    key,
                    Some(vec![PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some(host_port.to_string()),
                    }]),
                );
            }
        }
        if !exposed.is_empty() {
            body.exposed_ports = Some(exposed);
            host.port_bindings = Some(bindings);
        }
    }
    if spec.cpus.is_finite() && spec.cpus > 0.0 {
        let max = ctx.host_cpus.max(1) as f64;
        let nanos = (spec.cpus.min(max) * 1e9).round() as i64;
        host.nano_cpus = Some(nanos.max(MIN_NANO_CPUS));
    }
    if spec.mem.is_finite() && spec.mem > 0.0 {
        let bytes = ((spec.mem * MIB as f64).round() as i64).max(MIN_MEMORY_BYTES);
        host.memory = Some(bytes);
        host.memory_swap = Some(bytes);
    }
    if !docker.volumes.is_empty() {
        host.binds = Some(
            docker
                .volumes
                .iter()
                .map(|v| {
                    let mode = if v.mode.eq_ignore_ascii_case("RO") {
                        "ro"
                    } else {
                        "rw"
                    };
                    format!("{}:{}:{mode}", v.host_path, v.container_path)
                })
                .collect(),
        );
    }
    for p in &docker.parameters {
        apply_parameter(p, &mut body, &mut host, &mut env, &mut labels)?;
    }
    labels.insert(LABEL_TASK_ID.into(), spec.id.clone());
    labels.insert(LABEL_APP_ID.into(), spec.app_id.clone());
    labels.insert(LABEL_NODE.into(), ctx.node.into());
    labels.insert(LABEL_WORK_DIR.into(), ctx.work_dir.display().to_string());
    body.env = Some(env.into_iter().map(|(k, v)| format!("{k}={v}")).collect());
    body.labels = Some(labels.into_iter().collect());
    body.host_config = Some(host);
    Ok(ContainerPlan {
        name: container_name(&spec.id),
        image: docker.image,
        force_pull: docker.force_pull_image,
        body,
    })
}

/// Who a container runs as, decided by the agent ([`crate::user::UserPolicy::resolve`] for
/// [`crate::user::Runtime::Docker`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerUser {
    /// As the image says (root allowed, nobody named).
    Image,
    /// As these numeric ids (`User` = `uid:gid`, supplementary groups as `GroupAdd`): the host
    /// user's, so files it shares with the host (volumes) have the same owner on both sides.
    Ids {
        uid: u32,
        gid: u32,
        groups: Vec<u32>,
    },
}

/// A `user` docker parameter that names ids other than root's: `UID:GID`, both numeric and not
/// 0 (a uid alone would take the group of the image's passwd entry, or root's group without
/// one).
pub fn non_root_ids(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':')?;
    let (uid, gid) = (uid.parse::<u32>().ok()?, gid.parse::<u32>().ok()?);
    (uid != 0 && gid != 0).then_some((uid, gid))
}

/// Sets who the container runs as. The app's `user` docker parameter (already in the body)
/// wins when `allow_root` or when it names non-root ids ([`non_root_ids`]); otherwise a
/// parameter is refused, naming it, since it could make the container root. Without a
/// parameter the container runs as `user`.
pub fn set_user(
    body: &mut ContainerCreateBody,
    user: &ContainerUser,
    allow_root: bool,
) -> Result<(), ContainerError> {
    if let Some(param) = &body.user {
        if allow_root || non_root_ids(param).is_some() {
            return Ok(());
        }
        return Err(ContainerError::Parameter {
            key: "user".into(),
            value: param.clone(),
            reason: "may run the container as root: without taskrun's --allow-root-tasks only \
                     numeric UID:GID other than 0 is accepted"
                .into(),
        });
    }
    if let ContainerUser::Ids { uid, gid, groups } = user {
        body.user = Some(format!("{uid}:{gid}"));
        let extra: Vec<String> = groups
            .iter()
            .filter(|g| *g != gid)
            .map(u32::to_string)
            .collect();
        if !extra.is_empty() {
            body.host_config
                .get_or_insert_with(Default::default)
                .group_add = Some(extra);
        }
    }
    Ok(())
}

/// Applies one `docker run` option. Options given several times accumulate where Docker's do
/// (env, label, add-host, cap-*, ulimit, tmpfs, dns) and the last one wins elsewhere.
fn apply_parameter(
    p: &Parameter,
    body: &mut ContainerCreateBody,
    host: &mut HostConfig,
    env: &mut BTreeMap<String, String>,
    labels: &mut BTreeMap<String, String>,
) -> Result<(), ContainerError> {
    let bad = |reason: &str| ContainerError::Parameter {
        key: p.key.clone(),
        value: p.value.clone(),
        reason: reason.into(),
    };
    let value = p.value.as_str();
    let non_empty = || {
        if value.trim().is_empty() {
            Err(bad("must not be empty"))
        } else {
            Ok(value.to_string())
        }
    };
    match p.key.as_str() {
        "env" => match value.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                env.insert(k.into(), v.into());
            }
            _ => return Err(bad("must be NAME=VALUE")),
        },
        "label" => {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            if k.is_empty() {
                return Err(bad("must be KEY=VALUE or KEY"));
            }
            labels.insert(k.into(), v.into());
        }
        "hostname" => body.hostname = Some(non_empty()?),
        "user" => body.user = Some(non_empty()?),
        "workdir" => {
            if !value.starts_with('/') {
                return Err(bad("must be an absolute path"));
            }
            body.working_dir = Some(value.into());
        }
        // As `docker run --entrypoint`: one executable, not split; "" resets the image's.
        "entrypoint" => body.entrypoint = Some(vec![value.into()]),
        "add-host" => match value.split_once(':') {
            Some((h, ip)) if !h.is_empty() && !ip.is_empty() => {
                host.extra_hosts
                    .get_or_insert_with(Vec::new)
                    .push(value.into());
            }
            _ => return Err(bad("must be HOST:IP")),
        },
        "cap-add" => host.cap_add.get_or_insert_with(Vec::new).push(non_empty()?),
        "cap-drop" => host
            .cap_drop
            .get_or_insert_with(Vec::new)
            .push(non_empty()?),
        "memory-swap" => {
            host.memory_swap = Some(if value.trim() == "-1" {
                -1
            } else {
                parse_bytes(value).map_err(|e| bad(&e))?
            })
        }
        "shm-size" => host.shm_size = Some(parse_bytes(value).map_err(|e| bad(&e))?),
        "ulimit" => host
            .ulimits
            .get_or_insert_with(Vec::new)
            .push(parse_ulimit(value).map_err(|e| bad(&e))?),
        "init" => host.init = Some(parse_bool(value).map_err(|e| bad(&e))?),
        "read-only" => host.readonly_rootfs = Some(parse_bool(value).map_err(|e| bad(&e))?),
        "tmpfs" => {
            let (path, opts) = value.split_once(':').unwrap_or((value, ""));
            if !path.starts_with('/') {
                return Err(bad("must be an absolute path, optionally :OPTIONS"));
            }
            host.tmpfs
                .get_or_insert_with(HashMap::new)
                .insert(path.into(), opts.into());
        }
        "dns" => {
            if value.trim().parse::<IpAddr>().is_err() {
                return Err(bad("must be an IP address"));
            }
            host.dns
                .get_or_insert_with(Vec::new)
                .push(value.trim().into());
        }
        "stop-signal" => body.stop_signal = Some(non_empty()?),
        _ => {
            return Err(bad(&format!(
                "unsupported (supported: {})",
                SUPPORTED_PARAMETERS.join(", ")
            )));
        }
    }
    Ok(())
}

/// A size as `docker run` reads one (go-units' RAMInBytes): a number with an optional binary
/// unit `b`, `k`, `m`, `g`, `t`, `p` (any case, optionally followed by `i` and/or `b`).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(num_end);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 512m, 1g)"))?;
    let unit = unit.trim_start().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(format!("{s:?} has an unknown unit (b, k, m, g, t, p)")),
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes > i64::MAX as f64 {
        return Err(format!("{s:?} is too large"));
    }
    Ok(bytes as i64)
}

/// A boolean as Go's `strconv.ParseBool` reads one.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not true or false")),
    }
}

/// `NAME=SOFT[:HARD]` (HARD = SOFT when omitted), as `docker run --ulimit`.
pub fn parse_ulimit(s: &str) -> Result<ResourcesUlimits, String> {
    let (name, limits) = s
        .split_once('=')
        .filter(|(n, _)| !n.trim().is_empty())
        .ok_or_else(|| format!("{s:?} is not NAME=SOFT[:HARD]"))?;
    let num = |v: &str| {
        v.trim()
            .parse::<i64>()
            .map_err(|_| format!("{v:?} is not a number"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((soft, hard)) => (num(soft)?, num(hard)?),
        None => {
            let n = num(limits)?;
            (n, n)
        }
    };
    if soft > hard && hard != -1 {
        return Err(format!("soft limit {soft} is above the hard limit {hard}"));
    }
    Ok(ResourcesUlimits {
        name: Some(name.trim().into()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spec(container: Value, extra: Value) -> TaskSpec {
        let mut base = json!({
            "id": "shop_web.1", "app_id": "/shop/web", "version": "v1",
            "cpus": 0.5, "mem": 64.0, "disk": 0.0, "ports": [31001],
            "kill_grace_seconds": 3.0, "service_name": "web-shop",
            "env": {"APP_MODE": "prod"}, "labels": {"SERVICE_TAGS": "v1"},
            "container": container
        });
        if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn docker_containers_are_recognised() {
        let wants = |container: Value| wants_docker(&spec(container, json!({})));
        assert!(wants(json!({"type": "DOCKER", "docker": {"image": "x"}})));
        assert!(!wants(json!({"type": "MESOS"})));
        assert!(wants(json!({"docker": {"image": "x"}})));
        assert!(!wants(Value::Null));
        assert!(!wants(json!({"volumes": []})));
    }

    fn ctx() -> Context<'static> {
        Context {
            node: "node-0",
            host: "10.0.0.5",
            work_dir: Path::new("/var/lib/taskrun"),
            host_cpus: 2,
        }
    }

    fn bridge(params: Value) -> Value {
        json!({"type": "DOCKER", "docker": {"image": "web:1", "network": "BRIDGE",
            "parameters": params},
            "portMappings": [{"containerPort": 8080, "hostPort": 0}]})
    }

    fn env_of(p: &ContainerPlan) -> BTreeMap<String, String> {
        p.body
            .env
            .clone()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_param(key: &str, value: &str) -> Result<ContainerPlan, ContainerError> {
        plan(
            &spec(bridge(json!([{"key": key, "value": value}])), json!({})),
            &ctx(),
        )
    }

    fn host_of(p: &ContainerPlan) -> HostConfig {
        p.body.host_config.clone().unwrap()
    }

    #[test]
    fn bridge_container_with_ports_limits_env_and_labels() {
        let p = plan(
            &spec(bridge(json!([])), json!({"cmd": "httpd -f -p 8080"})),
            &ctx(),
        )
        .unwrap();
        assert_eq!(p.name, "cairn-shop_web.1");
        assert_eq!(p.image, "web:1");
        assert!(!p.force_pull);
        assert_eq!(p.body.image.as_deref(), Some("web:1"));
        assert_eq!(p.body.entrypoint, Some(vec!["/bin/sh".to_string()]));
        assert_eq!(
            p.body.cmd,
            Some(vec!["-c".to_string(), "httpd -f -p 8080".to_string()])
        );
        let h = host_of(&p);
        assert_eq!(h.network_mode.as_deref(), Some("bridge"));
        assert_eq!(p.body.exposed_ports, Some(vec!["8080/tcp".to_string()]));
        let b = h.port_bindings.unwrap();
        let binding = b["8080/tcp"].as_ref().unwrap();
        assert_eq!(binding[0].host_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(binding[0].host_port.as_deref(), Some("31001"));
        assert_eq!(h.nano_cpus, Some(500_000_000));
        assert_eq!(h.memory, Some(64 * MIB));
        assert_eq!(h.memory_swap, Some(64 * MIB), "no swap");
        assert_eq!(h.privileged, None);
        let env = env_of(&p);
        assert_eq!(env["PORT0"], "31001");
        assert_eq!(env["PORT_8080"], "31001");
        assert_eq!(env["HOST"], "10.0.0.5");
        assert_eq!(env["MESOS_TASK_ID"], "shop_web.1");
        assert_eq!(env["APP_MODE"], "prod");
        let labels = p.body.labels.unwrap();
        assert_eq!(labels["SERVICE_TAGS"], "v1");
        assert_eq!(labels[LABEL_TASK_ID], "shop_web.1");
        assert_eq!(labels[LABEL_APP_ID], "/shop/web");
        assert_eq!(labels[LABEL_NODE], "node-0");
        assert_eq!(labels[LABEL_WORK_DIR], "/var/lib/taskrun");
    }

    #[test]
    fn networks_form_and_named_networks() {
        // The 1.5+ form (network in the spec's `networks`) plans what the older one did.
        let new_form = json!({"type": "DOCKER", "docker": {"image": "web:1", "parameters": []},
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "servicePort": 10001}]});
        let p = plan(
            &spec(
                new_form,
                json!({"networks": [{"mode": "container/bridge"}], "cmd": "httpd -f -p 8080"}),
            ),
            &ctx(),
        )
        .unwrap();
        let old = plan(
            &spec(bridge(json!([])), json!({"cmd": "httpd -f -p 8080"})),
            &ctx(),
        )
        .unwrap();
        assert_eq!(p.body, old.body);
        // A container network joins the Docker network of that name and publishes only the
        // mappings that asked for a host port.
        let user = json!({"type": "DOCKER", "docker": {"image": "web:1"},
            "portMappings": [{"containerPort": 80}, {"containerPort": 8443, "hostPort": 0}]});
        let p = plan(
            &spec(
                user,
                json!({"networks": [{"mode": "container", "name": "backend"}]}),
            ),
            &ctx(),
        )
        .unwrap();
        let h = host_of(&p);
        assert_eq!(h.network_mode.as_deref(), Some("backend"));
        assert_eq!(p.body.exposed_ports, Some(vec!["8443/tcp".to_string()]));
        assert_eq!(env_of(&p)["PORT_8443"], "31001");
    }

    #[test]
    fn udp_and_both_protocols_publish_each() {
        let c = json!({"type": "DOCKER", "docker": {"image": "dns", "network": "BRIDGE"},
            "portMappings": [{"containerPort": 53, "protocol": "udp,tcp"},
                             {"containerPort": 9153, "protocol": "udp"}]});
        let p = plan(&spec(c, json!({"ports": [31001, 31002]})), &ctx()).unwrap();
        let mut exposed = p.body.exposed_ports.clone().unwrap();
        exposed.sort();
        assert_eq!(exposed, ["53/tcp", "53/udp", "9153/udp"]);
        let b = host_of(&p).port_bindings.unwrap();
        assert_eq!(
            b["53/udp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("31001")
        );
        assert_eq!(
            b["53/tcp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("31001")
        );
        assert_eq!(
            b["9153/udp"].as_ref().unwrap()[0].host_port.as_deref(),
            Some("31002")
        );
        // One host port short: refused.
        let c = json!({"type": "DOCKER", "docker": {"image": "dns", "network": "BRIDGE"},
            "portMappings": [{"containerPort": 53}, {"containerPort": 54}]});
        assert_eq!(
            plan(&spec(c, json!({})), &ctx()).unwrap_err(),
            ContainerError::Ports {
                ports: 1,
                mappings: 2
            }
        );
    }

    #[test]
    fn host_and_none_networks_args_volumes_privileged_and_pull() {
        let c = json!({"type": "DOCKER", "docker": {"image": "app", "network": "HOST",
            "privileged": true, "forcePullImage": true},
            "volumes": [{"containerPath": "/data", "hostPath": "/srv/data", "mode": "RO"},
                        {"containerPath": "/scratch", "hostPath": "/tmp/s", "mode": "RW"}]});
        let p = plan(&spec(c, json!({"args": ["--port", "8080"]})), &ctx()).unwrap();
        let h = host_of(&p);
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert_eq!(h.port_bindings, None);
        assert_eq!(p.body.exposed_ports, None);
        assert_eq!(h.privileged, Some(true));
        assert!(p.force_pull);
        assert_eq!(p.body.entrypoint, None, "args keep the image's entrypoint");
        assert_eq!(
            p.body.cmd,
            Some(vec!["--port".to_string(), "8080".to_string()])
        );
        assert_eq!(
            h.binds,
            Some(vec![
                "/srv/data:/data:ro".to_string(),
                "/tmp/s:/scratch:rw".to_string()
            ])
        );
        assert!(!env_of(&p).contains_key("PORT_8080"));
        let c = json!({"type": "DOCKER", "docker": {"image": "app", "network": "NONE"}});
        let p = plan(&spec(c, json!({"ports": []})), &ctx()).unwrap();
        assert_eq!(host_of(&p).network_mode.as_deref(), Some("none"));
        assert_eq!(
            p.body.cmd, None,
            "neither cmd nor args: the image's command"
        );
    }

    #[test]
    fn resources_within_dockers_bounds() {
        let c = bridge(json!([]));
        let p = plan(&spec(c.clone(), json!({"cpus": 8.0, "mem": 1.0})), &ctx()).unwrap();
        let h = host_of(&p);
        assert_eq!(h.nano_cpus, Some(2_000_000_000), "at most the host's CPUs");
        assert_eq!(h.memory, Some(MIN_MEMORY_BYTES));
        let p = plan(&spec(c.clone(), json!({"cpus": 0.001, "mem": 0.0})), &ctx()).unwrap();
        let h = host_of(&p);
        assert_eq!(h.nano_cpus, Some(MIN_NANO_CPUS));
        assert_eq!((h.memory, h.memory_swap), (None, None), "mem 0: no limit");
        let p = plan(&spec(c, json!({"cpus": 0.0})), &ctx()).unwrap();
        assert_eq!(host_of(&p).nano_cpus, None);
    }

    #[test]
    fn names_follow_dockers_rules() {
        assert_eq!(container_name("a.b_c-1"), "cairn-a.b_c-1");
        assert_eq!(container_name("a/b c"), "cairn-a_b_c");
    }

    #[test]
    fn not_docker_and_invalid_definitions() {
        let s = spec(json!({"type": "MESOS"}), json!({}));
        assert_eq!(plan(&s, &ctx()).unwrap_err(), ContainerError::NotDocker);
        let s = spec(
            json!({"type": "DOCKER", "docker": {"image": ""}}),
            json!({}),
        );
        let e = plan(&s, &ctx()).unwrap_err().to_string();
        assert!(e.contains("/container/docker/image"), "{e}");
    }

    #[test]
    fn parameter_env_and_label() {
        let p = with_param("env", "APP_MODE=debug").unwrap();
        assert_eq!(
            env_of(&p)["APP_MODE"],
            "debug",
            "a parameter wins over the app env"
        );
        assert!(with_param("env", "NOVALUE").is_err());
        let p = with_param("label", "tier=web").unwrap();
        assert_eq!(p.body.labels.as_ref().unwrap()["tier"], "web");
        let p = with_param("label", "flag").unwrap();
        assert_eq!(p.body.labels.as_ref().unwrap()["flag"], "");
        // cairn's own labels cannot be overridden.
        let p = with_param("label", "cairn.task_id=other").unwrap();
        assert_eq!(p.body.labels.as_ref().unwrap()[LABEL_TASK_ID], "shop_web.1");
    }

    #[test]
    fn parameter_hostname_user_workdir_entrypoint_stop_signal() {
        assert_eq!(
            with_param("hostname", "web1")
                .unwrap()
                .body
                .hostname
                .as_deref(),
            Some("web1")
        );
        assert_eq!(
            with_param("user", "1000:1000")
                .unwrap()
                .body
                .user
                .as_deref(),
            Some("1000:1000")
        );
        assert!(with_param("user", "").is_err());
        assert_eq!(
            with_param("workdir", "/app")
                .unwrap()
                .body
                .working_dir
                .as_deref(),
            Some("/app")
        );
        assert!(with_param("workdir", "app").is_err());
        let p = with_param("entrypoint", "/bin/tini").unwrap();
        assert_eq!(p.body.entrypoint, Some(vec!["/bin/tini".to_string()]));
        let p = with_param("entrypoint", "").unwrap();
        assert_eq!(p.body.entrypoint, Some(vec![String::new()]));
        assert_eq!(
            with_param("stop-signal", "SIGQUIT")
                .unwrap()
                .body
                .stop_signal
                .as_deref(),
            Some("SIGQUIT")
        );
    }

    #[test]
    fn containers_run_as_the_task_user_or_a_non_root_user_parameter() {
        let ids = ContainerUser::Ids {
            uid: 65534,
            gid: 65534,
            groups: vec![65534, 100],
        };
        let body = |user: Option<&str>| ContainerCreateBody {
            user: user.map(str::to_string),
            host_config: Some(HostConfig::default()),
            ..Default::default()
        };
        // The host user's numeric ids, its other groups added.
        let mut b = body(None);
        set_user(&mut b, &ids, false).unwrap();
        assert_eq!(b.user.as_deref(), Some("65534:65534"));
        assert_eq!(
            b.host_config.unwrap().group_add,
            Some(vec!["100".to_string()])
        );
        // Root allowed and nobody named: the image's user.
        let mut b = body(None);
        set_user(&mut b, &ContainerUser::Image, true).unwrap();
        assert_eq!(b.user, None);
        // (parameter, allow_root, accepted)
        for (param, allow_root, accepted) in [
            ("1000:1000", false, true),
            ("1000", false, false),
            ("0:0", false, false),
            ("1000:0", false, false),
            ("root", false, false),
            ("app", false, false),
            ("root", true, true),
            ("0", true, true),
        ] {
            let mut b = body(Some(param));
            let r = set_user(&mut b, &ids, allow_root);
            assert_eq!(r.is_ok(), accepted, "{param} {allow_root}: {r:?}");
            match r {
                Ok(()) => assert_eq!(b.user.as_deref(), Some(param), "the parameter wins"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains(param) && text.contains("--allow-root-tasks"),
                        "{text}"
                    );
                }
            }
        }
    }

    #[test]
    fn parameter_add_host_caps_dns() {
        let h = host_of(&with_param("add-host", "db:10.0.0.9").unwrap());
        assert_eq!(h.extra_hosts, Some(vec!["db:10.0.0.9".to_string()]));
        assert!(with_param("add-host", "db").is_err());
        let h = host_of(&with_param("cap-add", "NET_ADMIN").unwrap());
        assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".to_string()]));
        let h = host_of(&with_param("cap-drop", "ALL").unwrap());
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_string()]));
        let h = host_of(&with_param("dns", "10.0.0.2").unwrap());
        assert_eq!(h.dns, Some(vec!["10.0.0.2".to_string()]));
        assert!(with_param("dns", "resolver.local").is_err());
        // Repeated options accumulate.
        let p = plan(
            &spec(
                bridge(json!([{"key": "cap-add", "value": "A"}, {"key": "cap-add", "value": "B"}])),
                json!({}),
            ),
            &ctx(),
        )
        .unwrap();
        assert_eq!(
            host_of(&p).cap_add,
            Some(vec!["A".to_string(), "B".to_string()])
        );
    }

    #[test]
    fn parameter_sizes_memory_swap_and_shm() {
        let h = host_of(&with_param("memory-swap", "256m").unwrap());
        assert_eq!(h.memory_swap, Some(256 * MIB));
        assert_eq!(h.memory, Some(64 * MIB));
        let h = host_of(&with_param("memory-swap", "-1").unwrap());
        assert_eq!(h.memory_swap, Some(-1), "unlimited swap");
        let h = host_of(&with_param("shm-size", "1g").unwrap());
        assert_eq!(h.shm_size, Some(1024 * MIB));
        assert!(with_param("shm-size", "lots").is_err());
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert_eq!(parse_bytes("64KiB").unwrap(), 64 * 1024);
        assert_eq!(parse_bytes("1.5m").unwrap(), 3 * MIB / 2);
        assert_eq!(parse_bytes("2 GB").unwrap(), 2048 * MIB);
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("").is_err());
    }

    #[test]
    fn parameter_ulimit() {
        let h = host_of(&with_param("ulimit", "nofile=1024:2048").unwrap());
        let u = &h.ulimits.unwrap()[0];
        assert_eq!(
            (u.name.as_deref(), u.soft, u.hard),
            (Some("nofile"), Some(1024), Some(2048))
        );
        let u = parse_ulimit("nproc=64").unwrap();
        assert_eq!((u.soft, u.hard), (Some(64), Some(64)));
        for bad in ["nofile", "=1", "nofile=a", "nofile=10:5"] {
            assert!(with_param("ulimit", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parameter_init_read_only_tmpfs() {
        assert_eq!(
            host_of(&with_param("init", "true").unwrap()).init,
            Some(true)
        );
        assert_eq!(host_of(&with_param("init", "0").unwrap()).init, Some(false));
        assert!(with_param("init", "yes").is_err());
        assert_eq!(
            host_of(&with_param("read-only", "True").unwrap()).readonly_rootfs,
            Some(true)
        );
        let h = host_of(&with_param("tmpfs", "/run:rw,size=64m").unwrap());
        assert_eq!(h.tmpfs.unwrap()["/run"], "rw,size=64m");
        let h = host_of(&with_param("tmpfs", "/cache").unwrap());
        assert_eq!(h.tmpfs.unwrap()["/cache"], "");
        assert!(with_param("tmpfs", "cache").is_err());
    }

    #[test]
    fn every_supported_parameter_is_mapped() {
        for key in SUPPORTED_PARAMETERS {
            let value = match *key {
                "env" | "label" => "A=b",
                "add-host" => "h:10.0.0.1",
                "memory-swap" | "shm-size" => "128m",
                "ulimit" => "nofile=10",
                "init" | "read-only" => "true",
                "dns" => "10.0.0.1",
                "workdir" | "tmpfs" => "/x",
                _ => "x",
            };
            let e = with_param(key, value);
            assert!(e.is_ok(), "{key}={value}: {e:?}");
        }
        let e = with_param("privileged-mode", "x").unwrap_err().to_string();
        assert!(e.contains("unsupported"), "{e}");
    }
}

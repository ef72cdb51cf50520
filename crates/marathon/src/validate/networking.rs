//! The translation of Marathon's older networking (`container.docker.network` BRIDGE/HOST/USER,
//! `container.docker.portMappings`) into the 1.5+ form (the app's `networks` with
//! `container.portMappings`), and the rules on networks.
//!
//! Marathon accepts both forms and stores and returns only the 1.5+ one (its
//! `AppNormalization.forDeprecated` + `forPostValidation`), so [`normalize`] does the same at
//! parse time: both inputs become one stored app and one answer. The rules and messages are
//! Marathon's (`NetworkValidation`, `AppValidation.validateOldAppAPI` and
//! `validateCanonicalAppAPI`), with two deliberate differences, each noted where it happens:
//! `docker.network: NONE` stays as given (Marathon 1.10 refuses it with a 500), and
//! `portMappings` on a host network are refused instead of silently dropped.

use serde_json::Value;

use crate::app::App;
use crate::container::{DockerNetwork, PortMapping};
use crate::network::{
    NETWORK_NAME_REQUIRED, NO_PORT_MAPPINGS_ON_HOST, Network, NetworkMode, has_non_host,
};
use crate::violation::{Violation, marathon_path};

// Marathon's messages (NetworkValidation, AppValidation, AppValidationMessages).
const NO_PORT_DEFINITIONS_OFF_HOST: &str = "portDefinitions are only allowed with host-networking";
const BOTH_NETWORK_FORMS: &str = "must not specify both container.docker.network and networks";
const BOTH_NETWORKS_AND_IP: &str = "must not specify both networks and ipAddress";
const HOST_NAMED: &str = "Host networks may not have names or labels";
const BRIDGE_NAMED: &str = "Bridge networks may not have names";
const DUPLICATE: &str = "Duplicate networks are not allowed";
const MODES_MIXED: &str =
    "May specify a single host network, single bridge network, or else 1-to-n container networks";
const DOCKER_ONE_CONTAINER_NETWORK: &str =
    "may only specify a single container network when using the Docker container engine";
const BOTH_MAPPING_PLACES: &str = "cannot specify both portMappings and docker.portMappings";

/// Marathon's `ramlNetworksValidator` plus the name its `defaultNetworkNameValidator` requires
/// (offerd has no `--default_network_name`, so a container network always needs one).
fn check_networks(nets: &[Network]) -> Vec<String> {
    let mut errors = Vec::new();
    if nets
        .iter()
        .filter(|n| n.mode == NetworkMode::Host)
        .any(|n| n.name.as_deref().is_some_and(|s| !s.is_empty()) || !n.labels.is_empty())
    {
        errors.push(HOST_NAMED.to_string());
    }
    if nets
        .iter()
        .filter(|n| n.mode == NetworkMode::ContainerBridge)
        .any(|n| n.name.as_deref().is_some_and(|s| !s.is_empty()))
    {
        errors.push(BRIDGE_NAMED.to_string());
    }
    let unnamed = nets
        .iter()
        .filter(|n| n.name.is_none() && n.mode == NetworkMode::Container)
        .count();
    let mut names: Vec<&str> = nets.iter().filter_map(|n| n.name.as_deref()).collect();
    names.sort_unstable();
    let total = names.len();
    names.dedup();
    if unnamed > 1 || names.len() != total {
        errors.push(DUPLICATE.to_string());
    }
    let count = |m: NetworkMode| nets.iter().filter(|n| n.mode == m).count();
    let (host, bridge, container) = (
        count(NetworkMode::Host),
        count(NetworkMode::ContainerBridge),
        count(NetworkMode::Container),
    );
    let valid_mix = (host <= 1 && bridge == 0 && container == 0)
        || (host == 0 && bridge <= 1 && container == 0)
        || (host == 0 && bridge == 0 && container > 0);
    if !valid_mix {
        errors.push(MODES_MIXED.to_string());
    }
    if nets
        .iter()
        .any(|n| n.mode == NetworkMode::Container && n.name.as_deref().is_none_or(str::is_empty))
    {
        errors.push(NETWORK_NAME_REQUIRED.to_string());
    }
    errors
}

/// The `container.docker.network` of a container, when it gives a valid one.
fn docker_network(container: Option<&Value>) -> Option<DockerNetwork> {
    let raw = container?.get("docker")?.get("network")?;
    serde_json::from_value(raw.clone()).ok()
}

/// Whether the container runs on the Docker engine (`type` DOCKER, or absent with `docker`).
fn is_docker(container: Option<&Value>) -> bool {
    let Some(c) = container else {
        return false;
    };
    match c.get("type").and_then(Value::as_str) {
        Some(t) => t == "DOCKER",
        None => c.get("docker").is_some(),
    }
}

/// A non-empty JSON array, or nothing.
fn non_empty(v: Option<Value>) -> Option<Value> {
    v.filter(|v| v.as_array().is_none_or(|a| !a.is_empty()) && !v.is_null())
}

/// Turns `app` into Marathon 1.5+'s form: `networks` always set (host when nothing is asked),
/// no `container.docker.network`, port mappings under `container` with Marathon's defaults
/// (`hostPort` 0 on a bridge), none on a host network, no `portDefinitions` and no
/// `requirePorts` off the host network. Returns what is wrong instead, with Marathon's paths
/// and messages; the app is then left half-converted and must not be used.
pub(crate) fn normalize(app: &mut App) -> Vec<Violation> {
    let mut v = Vec::new();
    let given = app.networks.take().filter(|n| !n.is_empty());
    let ip_address = app.ip_address.as_ref().filter(|ip| !ip.is_null()).cloned();
    let docker_net = docker_network(app.container.as_ref());
    let raw_net = app
        .container
        .as_ref()
        .and_then(|c| c.get("docker"))
        .is_some_and(|d| d.get("network").is_some_and(|n| !n.is_null()));
    if raw_net && docker_net.is_none() {
        // Not a network Marathon knows: `docker_spec` reports it with its path.
        app.networks = given;
        return v;
    }
    let networks = match (docker_net, given) {
        (Some(_), Some(_)) => {
            v.push(Violation::new("/", BOTH_NETWORK_FORMS));
            return v;
        }
        // cairn keeps Docker's NONE (no network at all), which Marathon 1.10 cannot express in
        // `networks`: such an app stays in the older form.
        (Some(DockerNetwork::None), None) => return v,
        (Some(n), None) => {
            let name = ip_address
                .as_ref()
                .and_then(|ip| ip.get("networkName"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if n == DockerNetwork::User {
                // The pre-1.5 form named a USER network in ipAddress.networkName.
                app.ip_address = None;
            }
            vec![match n {
                DockerNetwork::Bridge => Network::of_mode(NetworkMode::ContainerBridge, None),
                DockerNetwork::Host => Network::host(),
                DockerNetwork::User | DockerNetwork::None => {
                    Network::of_mode(NetworkMode::Container, name)
                }
            }]
        }
        (None, Some(given)) => {
            if ip_address.is_some() {
                v.push(Violation::new("/", BOTH_NETWORKS_AND_IP));
            }
            given
        }
        (None, None) => vec![Network::host()],
    };
    let errors = check_networks(&networks);
    if !errors.is_empty() {
        v.push(Violation {
            path: "/networks".into(),
            errors,
        });
    }
    let off_host = has_non_host(&networks);
    let docker = is_docker(app.container.as_ref());
    if off_host && !docker {
        // Marathon would run such a task in a Mesos container on a CNI network; cairn runs
        // non-Docker tasks as host processes, so it cannot give them one.
        v.push(Violation::new(
            "/networks",
            "container and container/bridge networks need a DOCKER container",
        ));
    }
    if docker
        && networks
            .iter()
            .filter(|n| n.mode == NetworkMode::Container)
            .count()
            > 1
    {
        v.push(Violation::new("/", DOCKER_ONE_CONTAINER_NETWORK));
    }
    let bridge = networks
        .iter()
        .any(|n| n.mode == NetworkMode::ContainerBridge);
    if let Some(Value::Object(c)) = app.container.as_mut() {
        let mut from_docker = None;
        if let Some(Value::Object(d)) = c.get_mut("docker") {
            d.remove("network");
            from_docker = non_empty(d.remove("portMappings"));
        }
        let at_container = non_empty(c.remove("portMappings"));
        let (raw, path) = match (at_container, from_docker) {
            (Some(_), Some(_)) => {
                v.push(Violation::new("/container", BOTH_MAPPING_PLACES));
                (None, "")
            }
            (Some(m), None) => (Some(m), "/container/portMappings"),
            (None, Some(m)) => (Some(m), "/container/docker/portMappings"),
            (None, None) => (None, ""),
        };
        match raw {
            // Marathon 1.10 drops these silently (maybeDropPortMappings) before its canonical
            // rule could refuse them; refusing tells the operator the ports do nothing.
            Some(_) if !off_host => v.push(Violation::new("/", NO_PORT_MAPPINGS_ON_HOST)),
            Some(raw) => match serde_path_to_error::deserialize::<_, Vec<PortMapping>>(raw) {
                Ok(mut mappings) => {
                    if bridge {
                        // Marathon: in BRIDGE mode a missing hostPort means 0 (from the offer).
                        for m in &mut mappings {
                            m.host_port.get_or_insert(0);
                        }
                    }
                    c.insert(
                        "portMappings".into(),
                        serde_json::to_value(mappings).unwrap_or(Value::Null),
                    );
                }
                Err(e) => v.push(Violation::new(
                    &format!("{path}{}", marathon_path(e.path())),
                    e.inner().to_string(),
                )),
            },
            None if off_host => {
                c.insert("portMappings".into(), Value::Array(Vec::new()));
            }
            None => {}
        }
    }
    if off_host {
        let defs = app.port_definitions.as_ref().is_some_and(|d| !d.is_empty());
        let ports = app.ports.as_ref().is_some_and(|p| !p.is_empty());
        if defs || ports {
            v.push(Violation::new("/", NO_PORT_DEFINITIONS_OFF_HOST));
        }
        app.port_definitions = None;
        app.ports = None;
        // Marathon: requirePorts only applies to host networking.
        app.require_ports = false;
    }
    app.networks = Some(networks);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(v: Value) -> App {
        serde_json::from_value(v).unwrap()
    }

    fn errors(v: Value) -> Vec<(String, String)> {
        let mut a = app(v);
        normalize(&mut a)
            .into_iter()
            .flat_map(|x| x.errors.into_iter().map(move |e| (x.path.clone(), e)))
            .collect()
    }

    #[test]
    fn both_forms_become_one() {
        let docker = |network: Option<&str>| {
            let mut d = json!({"image": "web"});
            if let Some(n) = network {
                d["network"] = json!(n);
            }
            d
        };
        // (older form, 1.5+ form, networks Marathon returns)
        let cases = [
            (
                json!({"id": "/a", "container": {"type": "DOCKER", "docker": {"image": "web", "network": "BRIDGE",
                    "portMappings": [{"containerPort": 80}]}}}),
                json!({"id": "/a", "networks": [{"mode": "container/bridge"}],
                    "container": {"type": "DOCKER", "docker": docker(None), "portMappings": [{"containerPort": 80}]}}),
                json!([{"mode": "container/bridge"}]),
            ),
            (
                json!({"id": "/a", "container": {"type": "DOCKER", "docker": docker(Some("HOST"))}}),
                json!({"id": "/a", "networks": [{"mode": "host"}], "container": {"type": "DOCKER", "docker": docker(None)}}),
                json!([{"mode": "host"}]),
            ),
            (
                json!({"id": "/a", "ipAddress": {"networkName": "dev"},
                    "container": {"type": "DOCKER", "docker": {"image": "web", "network": "USER"},
                    "portMappings": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81}]}}),
                json!({"id": "/a", "networks": [{"mode": "container", "name": "dev"}],
                    "container": {"type": "DOCKER", "docker": docker(None),
                    "portMappings": [{"containerPort": 80, "hostPort": 0}, {"containerPort": 81}]}}),
                json!([{"mode": "container", "name": "dev"}]),
            ),
        ];
        for (old, new, nets) in cases {
            let (mut a, mut b) = (app(old), app(new));
            assert_eq!(normalize(&mut a), vec![]);
            assert_eq!(normalize(&mut b), vec![]);
            assert_eq!(a, b);
            let out = serde_json::to_value(&a).unwrap();
            assert_eq!(out["networks"], nets);
            assert!(out["container"]["docker"].get("network").is_none());
            assert!(out["container"]["docker"].get("portMappings").is_none());
        }
    }

    #[test]
    fn bridge_mappings_get_marathons_defaults() {
        let mut a = app(
            json!({"id": "/a", "networks": [{"mode": "container/bridge"}],
            "container": {"type": "DOCKER", "docker": {"image": "web"},
            "portMappings": [{"containerPort": 80, "name": "http"}, {"containerPort": 53, "hostPort": 5353, "servicePort": 10053, "protocol": "udp"}]}}),
        );
        assert_eq!(normalize(&mut a), vec![]);
        let out = serde_json::to_value(&a).unwrap();
        assert_eq!(
            out["container"]["portMappings"],
            json!([
                {"containerPort": 80, "hostPort": 0, "servicePort": 0, "protocol": "tcp", "name": "http", "labels": {}},
                {"containerPort": 53, "hostPort": 5353, "servicePort": 10053, "protocol": "udp", "labels": {}}
            ])
        );
        assert!(a.port_definitions.is_none());
        assert!(!a.require_ports);
        // A container network leaves an absent hostPort absent (no host port at all).
        let mut u = app(
            json!({"id": "/a", "networks": [{"mode": "container", "name": "dev"}],
            "container": {"docker": {"image": "web"}, "portMappings": [{"containerPort": 80}]}}),
        );
        assert_eq!(normalize(&mut u), vec![]);
        assert!(
            serde_json::to_value(&u).unwrap()["container"]["portMappings"][0]
                .get("hostPort")
                .is_none()
        );
    }

    #[test]
    fn plain_apps_are_on_the_host_network_and_none_stays() {
        let mut a = app(json!({"id": "/a", "cmd": "x"}));
        assert_eq!(normalize(&mut a), vec![]);
        assert_eq!(a.networks, Some(vec![Network::host()]));
        let mut n = app(
            json!({"id": "/a", "container": {"type": "DOCKER", "docker": {"image": "x", "network": "NONE"}}}),
        );
        assert_eq!(normalize(&mut n), vec![]);
        assert_eq!(n.networks, None);
        assert_eq!(n.container.unwrap()["docker"]["network"], "NONE");
    }

    #[test]
    fn bad_combinations_are_refused_with_marathons_words() {
        let d = json!({"type": "DOCKER", "docker": {"image": "x"}});
        let mut pm = d.clone();
        pm["portMappings"] = json!([{"containerPort": 80}]);
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"id": "/a", "networks": [{"mode": "host"}, {"mode": "host"}], "container": d}),
                "/networks",
                MODES_MIXED,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "host"}, {"mode": "container/bridge"}], "container": d}),
                "/networks",
                MODES_MIXED,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container"}], "container": d}),
                "/networks",
                NETWORK_NAME_REQUIRED,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "host", "name": "x"}], "container": d}),
                "/networks",
                HOST_NAMED,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container/bridge", "name": "x"}], "container": d}),
                "/networks",
                BRIDGE_NAMED,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container", "name": "a"}, {"mode": "container", "name": "a"}], "container": d}),
                "/networks",
                DUPLICATE,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container", "name": "a"}, {"mode": "container", "name": "b"}], "container": d}),
                "/",
                DOCKER_ONE_CONTAINER_NETWORK,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "host"}], "container": pm}),
                "/",
                NO_PORT_MAPPINGS_ON_HOST,
            ),
            (
                json!({"id": "/a", "container": {"docker": {"image": "x", "network": "HOST", "portMappings": [{"containerPort": 80}]}}}),
                "/",
                NO_PORT_MAPPINGS_ON_HOST,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container/bridge"}], "container": pm, "portDefinitions": [{"port": 0}]}),
                "/",
                NO_PORT_DEFINITIONS_OFF_HOST,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container/bridge"}],
                    "container": {"docker": {"image": "x", "network": "BRIDGE"}}}),
                "/",
                BOTH_NETWORK_FORMS,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container/bridge"}], "cmd": "x"}),
                "/networks",
                "container and container/bridge networks need a DOCKER container",
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container/bridge"}],
                    "container": {"docker": {"image": "x", "portMappings": [{"containerPort": 1}]}, "portMappings": [{"containerPort": 2}]}}),
                "/container",
                BOTH_MAPPING_PLACES,
            ),
            (
                json!({"id": "/a", "networks": [{"mode": "container/bridge"}],
                    "container": {"docker": {"image": "x"}, "portMappings": [{"containerPort": 80, "servicePort": 70000}]}}),
                "/container/portMappings(0)/servicePort",
                "invalid value",
            ),
        ];
        for (input, path, msg) in cases {
            let got = errors(input.clone());
            assert!(
                got.iter().any(|(p, e)| p == path && e.contains(msg)),
                "{input}: wanted {path}: {msg}, got {got:?}"
            );
        }
    }
}

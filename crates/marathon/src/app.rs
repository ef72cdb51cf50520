//! Marathon's app definition with Marathon's defaults. Fields Marathon defines but cairn does not
//! act on (`uris`, `fetch`, `dependencies`, ...) are kept and returned as given, so an app file
//! round-trips; fields Marathon does not define are refused (see `validate`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::constraint::Constraint;

fn one() -> i64 {
    1
}
fn default_cpus() -> f64 {
    1.0
}
fn default_mem() -> f64 {
    128.0
}
fn default_backoff_seconds() -> f64 {
    1.0
}
fn default_backoff_factor() -> f64 {
    1.15
}
fn default_max_launch_delay() -> f64 {
    300.0
}
fn default_kill_selection() -> String {
    "YOUNGEST_FIRST".to_string()
}
fn default_protocol() -> String {
    "tcp".to_string()
}
fn default_hc_protocol() -> String {
    "HTTP".to_string()
}
fn default_grace() -> u64 {
    300
}
fn default_interval() -> u64 {
    60
}
fn default_timeout() -> u64 {
    20
}
fn default_max_failures() -> u64 {
    3
}
fn default_delay() -> u64 {
    15
}
fn default_capacity() -> f64 {
    1.0
}

/// One port an app asks for. `port` 0 means "assign a service port"; host ports always come from
/// the agent's offer (with `requirePorts`, the host port must equal `port`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortDefinition {
    #[serde(default)]
    pub port: i64,
    #[serde(default = "default_protocol")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A COMMAND health check's command, `{"value": "..."}` on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandValue {
    pub value: String,
}

/// Marathon health check (HTTP, HTTPS, TCP, COMMAND; the MESOS_ forms mean the same here).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckDef {
    #[serde(default = "default_hc_protocol")]
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_index: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandValue>,
    #[serde(default = "default_grace")]
    pub grace_period_seconds: u64,
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    #[serde(default = "default_max_failures")]
    pub max_consecutive_failures: u64,
    #[serde(default = "default_delay")]
    pub delay_seconds: u64,
    #[serde(default)]
    pub ignore_http1xx: bool,
}

impl HealthCheckDef {
    /// The protocol without a `MESOS_` prefix: HTTP, HTTPS, TCP or COMMAND.
    pub fn kind(&self) -> &str {
        self.protocol
            .strip_prefix("MESOS_")
            .unwrap_or(&self.protocol)
    }
}

/// How a new version replaces the old one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeStrategy {
    #[serde(default = "default_capacity")]
    pub minimum_health_capacity: f64,
    #[serde(default = "default_capacity")]
    pub maximum_over_capacity: f64,
}

impl Default for UpgradeStrategy {
    fn default() -> Self {
        UpgradeStrategy {
            minimum_health_capacity: 1.0,
            maximum_over_capacity: 1.0,
        }
    }
}

/// When the app last changed in scale and in configuration (Marathon's `versionInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VersionInfo {
    pub last_scaling_at: String,
    pub last_config_change_at: String,
}

/// A Marathon app definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct App {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub cmd: Option<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub instances: i64,
    #[serde(default = "default_cpus")]
    pub cpus: f64,
    #[serde(default = "default_mem")]
    pub mem: f64,
    #[serde(default)]
    pub disk: f64,
    #[serde(default)]
    pub gpus: f64,
    #[serde(default)]
    pub executor: String,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
    #[serde(default)]
    pub uris: Vec<String>,
    #[serde(default)]
    pub fetch: Vec<Value>,
    #[serde(default)]
    pub store_urls: Vec<String>,
    #[serde(default = "default_backoff_seconds")]
    pub backoff_seconds: f64,
    #[serde(default = "default_backoff_factor")]
    pub backoff_factor: f64,
    #[serde(default = "default_max_launch_delay")]
    pub max_launch_delay_seconds: f64,
    #[serde(default)]
    pub container: Option<Value>,
    #[serde(default)]
    pub health_checks: Vec<HealthCheckDef>,
    #[serde(default)]
    pub readiness_checks: Vec<Value>,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub accepted_resource_roles: Option<Vec<String>>,
    #[serde(default)]
    pub ip_address: Option<Value>,
    /// Marathon 1.5+ networking; always set once parsed (see [`crate::network`]), except for a
    /// Docker container on the NONE network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<crate::network::Network>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable_strategy: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_info: Option<VersionInfo>,
    #[serde(default = "default_kill_selection")]
    pub kill_selection: String,
    #[serde(default)]
    pub require_ports: bool,
    /// None off the host network, where Marathon returns no `portDefinitions` at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_definitions: Option<Vec<PortDefinition>>,
    /// Marathon's older form of `portDefinitions`; folded into it on parse, never written.
    #[serde(default, skip_serializing)]
    pub ports: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_kill_grace_period_seconds: Option<f64>,
}

impl App {
    /// The Docker container, if the app has one (validated when the app was parsed).
    pub fn docker(&self) -> Option<crate::container::DockerSpec> {
        self.container.as_ref().and_then(|c| {
            crate::container::docker_spec(c, self.networks.as_deref())
                .ok()
                .flatten()
        })
    }

    /// The Docker container when its ports are port mappings (BRIDGE or USER networking).
    fn mapped(&self) -> Option<crate::container::DockerSpec> {
        self.docker()
            .filter(crate::container::DockerSpec::maps_ports)
    }

    /// Host ports each task needs: one per port mapping that takes a host port (BRIDGE: all of
    /// them), else one per port definition.
    pub fn port_count(&self) -> usize {
        match self.mapped() {
            Some(d) => d.host_port_mappings().len(),
            None => self.port_definitions.as_ref().map_or(0, Vec::len),
        }
    }

    /// What each task's host port must be, in order: 0 for "any port from the offer", else
    /// that port (a mapping's fixed `hostPort`, or every port definition with `requirePorts`).
    pub fn host_port_demand(&self) -> Vec<u16> {
        match self.mapped() {
            Some(d) => d
                .host_port_mappings()
                .iter()
                .map(|m| m.host_port.unwrap_or(0))
                .collect(),
            None => self
                .port_definitions
                .iter()
                .flatten()
                .map(|p| {
                    if self.require_ports {
                        u16::try_from(p.port).unwrap_or(0)
                    } else {
                        0
                    }
                })
                .collect(),
        }
    }

    /// The names of the task's host ports, in order.
    pub fn host_port_names(&self) -> Vec<Option<String>> {
        match self.mapped() {
            Some(d) => d
                .host_port_mappings()
                .iter()
                .map(|m| m.name.clone())
                .collect(),
            None => self
                .port_definitions
                .iter()
                .flatten()
                .map(|p| p.name.clone())
                .collect(),
        }
    }

    /// The app's service ports (0 = not assigned yet), as Marathon's `AppDefinition.servicePorts`:
    /// the port mappings' `servicePort` when the container maps ports, else the port
    /// definitions' `port`.
    pub fn service_ports(&self) -> Vec<i64> {
        match self.mapped() {
            Some(d) => d
                .port_mappings
                .iter()
                .map(|m| i64::from(m.service_port))
                .collect(),
            None => self
                .port_definitions
                .iter()
                .flatten()
                .map(|p| p.port)
                .collect(),
        }
    }

    /// Writes service ports back where [`App::service_ports`] read them (same order and length).
    pub fn set_service_ports(&mut self, ports: &[i64]) {
        if self.mapped().is_some() {
            let mappings = self
                .container
                .as_mut()
                .and_then(|c| c.get_mut("portMappings"))
                .and_then(Value::as_array_mut);
            for (m, p) in mappings.into_iter().flatten().zip(ports) {
                if let Value::Object(m) = m {
                    m.insert("servicePort".into(), Value::from(*p));
                }
            }
        } else {
            for (d, p) in self.port_definitions.iter_mut().flatten().zip(ports) {
                d.port = *p;
            }
        }
    }

    /// Seconds between SIGTERM and SIGKILL when a task is killed (Mesos' default is 3 s).
    pub fn kill_grace_seconds(&self) -> f64 {
        self.task_kill_grace_period_seconds.unwrap_or(3.0)
    }

    /// The app's configuration without what a scale or a re-post changes (`instances`, the
    /// version stamps): two versions whose config is equal run the same tasks.
    pub fn config_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            for k in ["instances", "version", "versionInfo"] {
                m.remove(k);
            }
        }
        v
    }

    /// The launch delay after `failures` consecutive failed launches: backoffSeconds ×
    /// backoffFactor^(failures-1), capped at maxLaunchDelaySeconds; none before the first failure.
    pub fn launch_delay_seconds(&self, failures: u32) -> f64 {
        if failures == 0 {
            return 0.0;
        }
        let exp = i32::try_from(failures - 1).unwrap_or(i32::MAX).min(1000);
        (self.backoff_seconds * self.backoff_factor.powi(exp)).min(self.max_launch_delay_seconds)
    }
}

/// The catalog service name of an app: label `SERVICE_NAME`, else the id's segments reversed and
/// joined with `-` (`/shop/web` → `web-shop`, as mesos-dns names tasks).
pub fn service_name(app_id: &str, labels: &BTreeMap<String, String>) -> String {
    if let Some(name) = labels.get("SERVICE_NAME").filter(|n| !n.is_empty()) {
        return name.clone();
    }
    let segments: Vec<&str> = app_id.split('/').filter(|s| !s.is_empty()).rev().collect();
    segments.join("-")
}

/// A task id in Marathon's form: the app id without its leading slash, `/` → `_`, then `.` and a
/// unique suffix (`/shop/web` + uuid → `shop_web.6f2b…`).
pub fn task_id_for(app_id: &str, unique: &str) -> String {
    format!(
        "{}.{unique}",
        app_id.trim_start_matches('/').replace('/', "_")
    )
}

/// Marathon's partial update: the fields of `patch` replace those of `current`; the rest stay.
/// `ports` and `portDefinitions` are one field, so either in the patch replaces both.
pub fn merge_update(current: &Value, patch: &Value) -> Value {
    let (Value::Object(cur), Value::Object(p)) = (current, patch) else {
        return patch.clone();
    };
    let mut out = cur.clone();
    if p.contains_key("ports") || p.contains_key("portDefinitions") {
        out.remove("ports");
        out.remove("portDefinitions");
    }
    if p.contains_key("cmd") || p.contains_key("args") {
        out.remove("cmd");
        out.remove("args");
    }
    for (k, v) in p {
        out.insert(k.clone(), v.clone());
    }
    // Networking changes as Marathon applies an update: the older network form in the patch
    // replaces the stored `networks`; ports follow the network (port definitions only on the
    // host network, port mappings only off it) unless the patch gives them itself.
    let docker_net = |v: &Value| {
        v.get("container")
            .and_then(|c| c.get("docker"))
            .and_then(|d| d.get("network"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let patch_net = docker_net(patch);
    if patch_net.is_some() && !p.contains_key("networks") {
        out.remove("networks");
    }
    let off_host = match patch_net.or_else(|| docker_net(&Value::Object(out.clone()))) {
        Some(n) => n == "BRIDGE" || n == "USER",
        None => out
            .get("networks")
            .and_then(|n| serde_json::from_value::<Vec<crate::network::Network>>(n.clone()).ok())
            .is_some_and(|n| crate::network::has_non_host(&n)),
    };
    if off_host && !p.contains_key("ports") && !p.contains_key("portDefinitions") {
        out.remove("ports");
        out.remove("portDefinitions");
    }
    if !off_host
        && !p.contains_key("container")
        && let Some(Value::Object(c)) = out.get_mut("container")
    {
        c.remove("portMappings");
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_names_follow_mesos_dns() {
        let none = BTreeMap::new();
        assert_eq!(service_name("/shop/web", &none), "web-shop");
        assert_eq!(service_name("/web", &none), "web");
        let mut labels = BTreeMap::new();
        labels.insert("SERVICE_NAME".to_string(), "frontend".to_string());
        assert_eq!(service_name("/shop/web", &labels), "frontend");
    }

    #[test]
    fn task_ids_carry_the_app() {
        assert_eq!(task_id_for("/shop/web", "abc"), "shop_web.abc");
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut app: App = serde_json::from_value(json!({"id": "/a", "cmd": "x"})).unwrap();
        assert_eq!(app.launch_delay_seconds(0), 0.0);
        assert_eq!(app.launch_delay_seconds(1), 1.0);
        assert!((app.launch_delay_seconds(3) - 1.15 * 1.15).abs() < 1e-9);
        app.max_launch_delay_seconds = 2.0;
        assert_eq!(app.launch_delay_seconds(50), 2.0);
        assert_eq!(app.launch_delay_seconds(u32::MAX), 2.0);
    }

    #[test]
    fn partial_updates_move_ports_with_the_network() {
        let host = json!({"id": "/a", "networks": [{"mode": "host"}], "portDefinitions": [{"port": 10000}],
            "container": {"type": "DOCKER", "docker": {"image": "x"}}});
        let to_bridge = merge_update(
            &host,
            &json!({"networks": [{"mode": "container/bridge"}],
                "container": {"type": "DOCKER", "docker": {"image": "x"}, "portMappings": [{"containerPort": 80}]}}),
        );
        assert!(to_bridge.get("portDefinitions").is_none());
        let old_form = merge_update(
            &host,
            &json!({"container": {"docker": {"image": "x", "network": "BRIDGE"}}}),
        );
        assert!(old_form.get("networks").is_none());
        assert!(old_form.get("portDefinitions").is_none());
        let back = merge_update(&to_bridge, &json!({"networks": [{"mode": "host"}]}));
        assert!(back["container"].get("portMappings").is_none());
        let scaled = merge_update(&to_bridge, &json!({"instances": 3}));
        assert_eq!(
            scaled["container"]["portMappings"],
            to_bridge["container"]["portMappings"]
        );
    }

    #[test]
    fn partial_update_keeps_other_fields() {
        let cur = json!({"id": "/a", "cmd": "x", "instances": 2, "mem": 64});
        let merged = merge_update(&cur, &json!({"instances": 5, "args": ["y"]}));
        assert_eq!(
            merged,
            json!({"id": "/a", "instances": 5, "mem": 64, "args": ["y"]})
        );
    }
}

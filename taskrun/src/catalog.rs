//! The catalog side of the agent (registrator's job): the node with a TTL check saying the agent
//! is alive, one service per running task (ID = task id) with the app's health checks as catalog
//! checks, and their removal when tasks end. The checks themselves are run by the in-process
//! `healthcheck` agent, which follows the node's checks in the catalog.
//!
//! The [`Registrar`] converges instead of replaying events: on every task state change and every
//! [`REFRESH`] it reads the node's services and checks and writes only what is missing or
//! different (re-registering an existing check would reset the status the check runner pushed),
//! then removes services of this node that are not running tasks. The catalog being down only
//! delays this; tasks and the offerd loop never wait for it.
//!
//! Beside them the agent registers itself: the service [`AGENT_SERVICE`] on its API's address,
//! with the meta Prometheus' Consul service discovery relabels on (`prometheus_port`,
//! `prometheus_path`), so a `consul_sd_configs` job finds every agent's `/metrics`. It is
//! deregistered when the agent stops cleanly ([`deregister_agent_service`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cairn_client::CatalogClient;
use cairn_marathon::{HealthCheckDef, TaskSpec};
use cairn_wire::limits::{META_MAX_PAIRS, META_VALUE_MAX, TAG_MAX, TAGS_MAX, valid_meta_key};
use cairn_wire::{
    CatalogDeregistration, CatalogRegistration, CheckDefinition, CheckStatus, HealthCheck,
    NodeService,
};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Node-level TTL check proving the agent is alive: Consul's `serfHealth`, which clients, UIs
/// and default sessions count on every live node having.
pub const NODE_CHECK_ID: &str = "serfHealth";
pub const NODE_CHECK_NAME: &str = "Serf Health Status";
pub const NODE_CHECK_TTL: &str = "30s";
/// How often the node check is refreshed and the catalog reconciled.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Retry delay after a failed pass.
const RETRY: Duration = Duration::from_secs(2);
/// Meta key marking a service as a task's (value: the app id). Reconciliation removes only
/// services carrying it, so services others registered on the same node are left alone.
pub const OWNER_META: &str = "marathon-app-id";
/// Meta key with the task's first service port (the app's load-balancer port), so a load
/// balancer can put a frontend on it as marathon-lb does (lbconf with `lb_mode=tcp`).
pub const SERVICE_PORT_META: &str = "service_port";
/// Meta keys the agent sets itself: [`OWNER_META`] and [`SERVICE_PORT_META`].
const RESERVED_META: usize = 2;
/// The agent's own service (name and ID).
pub const AGENT_SERVICE: &str = "cairn-taskrun";
/// How long a clean stop waits for the agent's service to be deregistered.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);

/// The agent's own service: its API at `host:port`, tagged `cairn`, with the port and path
/// Prometheus scrapes.
pub fn agent_service_registration(
    node: &str,
    address: &str,
    api_host: &str,
    api_port: u16,
) -> CatalogRegistration {
    CatalogRegistration::daemon_service(AGENT_SERVICE, node, address, api_host, api_port)
}

/// Takes the agent's own service out of the catalog (a clean stop), within a bounded wait.
pub async fn deregister_agent_service(client: &CatalogClient, node: &str) {
    let dereg = CatalogDeregistration {
        node: node.into(),
        service_id: AGENT_SERVICE.into(),
        ..Default::default()
    };
    match tokio::time::timeout(DEREGISTER_TIMEOUT, client.catalog_deregister(&dereg)).await {
        Ok(Ok(())) => tracing::info!(service = AGENT_SERVICE, "agent service deregistered"),
        Ok(Err(e)) => {
            tracing::warn!(service = AGENT_SERVICE, error = %e, "cannot deregister the agent service")
        }
        Err(_) => {
            tracing::warn!(
                service = AGENT_SERVICE,
                "the catalog did not answer the deregistration in time"
            )
        }
    }
}

/// The node registration with the agent's TTL check, passing.
pub fn node_registration(node: &str, address: &str) -> CatalogRegistration {
    CatalogRegistration {
        node: node.into(),
        address: address.into(),
        check: Some(HealthCheck {
            node: node.into(),
            check_id: NODE_CHECK_ID.into(),
            name: NODE_CHECK_NAME.into(),
            status: CheckStatus::Passing,
            output: "Agent alive and reachable".into(),
            definition: CheckDefinition {
                ttl: NODE_CHECK_TTL.into(),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Service tags from the label `SERVICE_TAGS` (comma-separated, trimmed, empty ones dropped;
/// within the catalog's limits: tags longer than [`TAG_MAX`] and those past [`TAGS_MAX`] are
/// left out, so the registration is never refused for them).
pub fn service_tags(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .get("SERVICE_TAGS")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= TAG_MAX)
                .take(TAGS_MAX)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Service meta from the app's labels: those Consul accepts ([`valid_meta_key`], values of
/// at most 512 characters, at most 64 pairs); the others are skipped with a debug log.
pub fn service_meta(task_id: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::new();
    for (k, v) in labels {
        if !valid_meta_key(k) || v.len() > META_VALUE_MAX {
            tracing::debug!(task = task_id, label = %k, "label not usable as service meta; skipped");
            continue;
        }
        if k == SERVICE_PORT_META {
            tracing::debug!(task = task_id, label = %k, "label names the meta key of the task's service port; skipped");
            continue;
        }
        if meta.len() == META_MAX_PAIRS - RESERVED_META {
            tracing::debug!(task = task_id, label = %k, "more than 62 meta labels (two keys are the agent's own); skipped");
            continue;
        }
        meta.insert(k.clone(), v.clone());
    }
    meta
}

/// `host:port`, bracketing IPv6 addresses.
fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// The host port a health check targets: `port` when set, else `ports[portIndex]` (index 0 by
/// default).
fn check_port(spec: &TaskSpec, hc: &HealthCheckDef) -> Result<u16, String> {
    if let Some(p) = hc.port.filter(|p| *p > 0) {
        return u16::try_from(p).map_err(|_| format!("port {p} is out of range"));
    }
    let index = hc.port_index.unwrap_or(0);
    usize::try_from(index)
        .ok()
        .and_then(|i| spec.ports.get(i).copied())
        .ok_or_else(|| {
            format!(
                "portIndex {index} but the task has {} ports",
                spec.ports.len()
            )
        })
}

/// The catalog check for health check `i` of a task, or why it cannot be expressed.
pub fn check_for(
    spec: &TaskSpec,
    i: usize,
    hc: &HealthCheckDef,
    node: &str,
    address: &str,
) -> Result<HealthCheck, String> {
    let mut def = CheckDefinition {
        interval: format!("{}s", hc.interval_seconds.max(1)),
        timeout: format!("{}s", hc.timeout_seconds.max(1)),
        ..Default::default()
    };
    match hc.kind().to_ascii_uppercase().as_str() {
        kind @ ("HTTP" | "HTTPS") => {
            let port = check_port(spec, hc)?;
            let path = hc.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
            let slash = if path.starts_with('/') { "" } else { "/" };
            def.http = format!(
                "{}://{}{slash}{path}",
                kind.to_ascii_lowercase(),
                host_port(address, port)
            );
            // Marathon does not verify certificates of HTTPS health checks.
            def.tls_skip_verify = kind == "HTTPS";
        }
        "TCP" => def.tcp = host_port(address, check_port(spec, hc)?),
        "COMMAND" => {
            let cmd = hc
                .command
                .as_ref()
                .map(|c| c.value.clone())
                .filter(|c| !c.trim().is_empty())
                .ok_or("COMMAND health check without a command")?;
            def.script_args = vec!["sh".into(), "-c".into(), cmd];
        }
        other => return Err(format!("unsupported health check protocol {other:?}")),
    }
    Ok(HealthCheck {
        node: node.into(),
        check_id: format!("service:{}:{i}", spec.id),
        name: format!("{} health check {i}", spec.service_name),
        status: CheckStatus::Critical,
        service_id: spec.id.clone(),
        definition: def,
        ..Default::default()
    })
}

/// Whether `registered` is one of the checks this agent registers for `spec` on `node`, with
/// the same command: only those of its script checks run unless `--enable-script-checks` (a
/// check registered by anyone else, or re-registered under a task's check ID with another
/// command, is not the app's).
pub fn is_own_check(spec: &TaskSpec, node: &str, address: &str, registered: &HealthCheck) -> bool {
    registered.node == node
        && registered.service_id == spec.id
        && spec.health_checks.iter().enumerate().any(|(i, hc)| {
            check_for(spec, i, hc, node, address).is_ok_and(|own| {
                own.check_id == registered.check_id
                    && own.definition.script_args == registered.definition.script_args
            })
        })
}

/// The registration of a running task: its service and checks (critical until they run).
pub fn service_registration(node: &str, address: &str, spec: &TaskSpec) -> CatalogRegistration {
    let checks = spec
        .health_checks
        .iter()
        .enumerate()
        .filter_map(|(i, hc)| match check_for(spec, i, hc, node, address) {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::warn!(task = %spec.id, check = i, %why, "health check not registered");
                None
            }
        })
        .collect();
    CatalogRegistration {
        node: node.into(),
        address: address.into(),
        skip_node_update: true,
        service: Some(NodeService {
            id: spec.id.clone(),
            service: spec.service_name.clone(),
            tags: service_tags(&spec.labels),
            address: address.into(),
            meta: {
                let mut m = service_meta(&spec.id, &spec.labels);
                m.insert(OWNER_META.into(), spec.app_id.clone());
                if let Some(p) = spec.service_ports.first().filter(|p| **p > 0) {
                    m.insert(SERVICE_PORT_META.into(), p.to_string());
                }
                m
            },
            port: spec.ports.first().copied().unwrap_or(0),
            ..Default::default()
        }),
        checks,
        ..Default::default()
    }
}

fn same_definition(a: &CheckDefinition, b: &CheckDefinition) -> bool {
    a.http == b.http
        && a.tcp == b.tcp
        && a.script_args == b.script_args
        && a.interval == b.interval
        && a.timeout == b.timeout
        && a.tls_skip_verify == b.tls_skip_verify
}

/// Whether `desired` must be written given what the catalog holds, and the registration to
/// write, with the status and output of checks that already exist carried over.
pub fn needed_write(
    mut desired: CatalogRegistration,
    existing: Option<&NodeService>,
    checks: &[HealthCheck],
) -> Option<CatalogRegistration> {
    let svc = desired.service.as_ref()?;
    let mut differs = match existing {
        None => true,
        Some(e) => {
            e.service != svc.service
                || e.tags != svc.tags
                || e.address != svc.address
                || e.port != svc.port
                || e.meta != svc.meta
        }
    };
    for c in &mut desired.checks {
        match checks.iter().find(|e| e.check_id == c.check_id) {
            Some(e) => {
                if e.name != c.name
                    || e.service_id != c.service_id
                    || !same_definition(&e.definition, &c.definition)
                {
                    differs = true;
                }
                c.status = e.status;
                c.output = e.output.clone();
            }
            None => differs = true,
        }
    }
    differs.then_some(desired)
}

/// Where the registrar gets the tasks that should be in the catalog.
pub trait RunningTasks: Send + Sync + 'static {
    fn running_specs(&self) -> Vec<TaskSpec>;
}

/// Keeps the catalog in step with the running tasks.
pub struct Registrar<R> {
    pub client: CatalogClient,
    pub node: String,
    pub address: String,
    pub tasks: Arc<R>,
    /// Notified on every task state change.
    pub wake: Arc<Notify>,
    /// The agent's API (host, port), registered as [`AGENT_SERVICE`].
    pub api: (String, u16),
}

impl<R: RunningTasks> Registrar<R> {
    /// Runs until `stop` turns true.
    pub async fn run(self, stop: CancellationToken) {
        let mut next_node = Instant::now();
        let mut retry_at: Option<Instant> = None;
        let mut failures = 0u32;
        let mut first = true;
        loop {
            if !first {
                let next = retry_at.map_or(next_node, |r| r.min(next_node));
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep_until(next) => {}
                }
            }
            first = false;
            let refresh_node = Instant::now() >= next_node;
            match self.pass(refresh_node).await {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(failures, "catalog reachable again");
                    }
                    failures = 0;
                    retry_at = None;
                    if refresh_node {
                        next_node = Instant::now() + REFRESH;
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    if failures == 1 {
                        tracing::warn!(error = %e, "cannot update the catalog; retrying (tasks are unaffected)");
                    } else {
                        tracing::debug!(error = %e, failures, "catalog still not updated");
                    }
                    retry_at = Some(Instant::now() + RETRY);
                }
            }
        }
    }

    /// One reconciliation: node check (when due), services of running tasks, stale services.
    async fn pass(&self, refresh_node: bool) -> Result<(), cairn_client::ClientError> {
        if refresh_node {
            self.client
                .catalog_register(&node_registration(&self.node, &self.address))
                .await?;
        }
        let opts = Default::default();
        let (services, _) = self.client.catalog_node(&self.node, &opts).await?;
        let (checks, _) = self.client.health_node(&self.node, &opts).await?;
        let services = services.map(|s| s.services).unwrap_or_default();
        let (api_host, api_port) = &self.api;
        let own = agent_service_registration(&self.node, &self.address, api_host, *api_port);
        if let Some(reg) = needed_write(own, services.get(AGENT_SERVICE), &[]) {
            self.client.catalog_register(&reg).await?;
            tracing::info!(service = AGENT_SERVICE, address = %api_host, port = api_port, "agent service registered");
        }
        let running = self.tasks.running_specs();
        let running_ids: BTreeSet<&str> = running.iter().map(|s| s.id.as_str()).collect();
        for spec in &running {
            let desired = service_registration(&self.node, &self.address, spec);
            let existing = services.get(&spec.id);
            let own: Vec<HealthCheck> = checks
                .iter()
                .filter(|c| c.service_id == spec.id)
                .cloned()
                .collect();
            if let Some(reg) = needed_write(desired, existing, &own) {
                self.client.catalog_register(&reg).await?;
                tracing::info!(task = %spec.id, service = %spec.service_name, "service registered");
            }
        }
        for (id, svc) in &services {
            if running_ids.contains(id.as_str()) || !svc.meta.contains_key(OWNER_META) {
                continue;
            }
            self.client
                .catalog_deregister(&CatalogDeregistration {
                    node: self.node.clone(),
                    service_id: id.clone(),
                    ..Default::default()
                })
                .await?;
            tracing::info!(service_id = %id, "service deregistered (no such running task)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(health_checks: serde_json::Value, labels: serde_json::Value) -> TaskSpec {
        serde_json::from_value(json!({
            "id": "shop_web.1", "app_id": "/shop/web", "version": "v", "cmd": "x",
            "cpus": 0.1, "mem": 32.0, "disk": 0.0, "ports": [31005, 31006],
            "service_ports": [10005, 10006],
            "kill_grace_seconds": 3.0, "service_name": "web-shop",
            "health_checks": health_checks, "labels": labels
        }))
        .unwrap()
    }

    #[test]
    fn labels_become_tags_and_valid_meta() {
        let labels: BTreeMap<String, String> = serde_json::from_value(json!({
            "SERVICE_TAGS": " v1, ,blue ,",
            "lb_host": "shop.example",
            "team-name": "payments",
            "has.dot": "x",
            "has space": "x",
            "consul-reserved": "x",
            "service_port": "1",
            "long_value": "v".repeat(513),
            "k".repeat(129): "too long a key",
        }))
        .unwrap();
        assert_eq!(service_tags(&labels), ["v1", "blue"]);
        let meta = service_meta("t", &labels);
        let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
        assert_eq!(keys, ["SERVICE_TAGS", "lb_host", "team-name"]);
        assert!(valid_meta_key(&"k".repeat(128)));
        assert!(service_tags(&BTreeMap::new()).is_empty());
    }

    /// Only the checks this agent registered for a task, with their own command, are the
    /// task's: a forged check on the node, under another service, or under the task's check ID
    /// with another command is not.
    #[test]
    fn own_checks_are_the_registered_commands_only() {
        let s = spec(
            json!([{"protocol": "COMMAND", "command": {"value": "test -f ready"}}]),
            json!({}),
        );
        let own = check_for(&s, 0, &s.health_checks[0], "node-0", "10.0.0.1").unwrap();
        assert!(is_own_check(&s, "node-0", "10.0.0.1", &own));
        let forged = |edit: fn(&mut HealthCheck)| {
            let mut c = own.clone();
            edit(&mut c);
            c
        };
        let cases: [(&str, HealthCheck); 4] = [
            (
                "another command",
                forged(|c| c.definition.script_args = vec!["sh".into(), "-c".into(), "id".into()]),
            ),
            (
                "another check id",
                forged(|c| c.check_id = "service:shop_web.1:7".into()),
            ),
            (
                "another service",
                forged(|c| c.service_id = "other.1".into()),
            ),
            ("another node", forged(|c| c.node = "node-1".into())),
        ];
        for (what, c) in cases {
            assert!(!is_own_check(&s, "node-0", "10.0.0.1", &c), "{what}");
        }
    }

    #[test]
    fn health_checks_map_to_catalog_checks() {
        let s = spec(
            json!([
                {"protocol": "HTTP", "path": "/health", "intervalSeconds": 5, "timeoutSeconds": 2},
                {"protocol": "MESOS_TCP", "portIndex": 1},
                {"protocol": "COMMAND", "command": {"value": "curl -f localhost:$PORT0"}},
                {"protocol": "HTTPS", "port": 8443},
                {"protocol": "HTTP", "portIndex": 5},
            ]),
            json!({}),
        );
        let reg = service_registration("n1", "10.0.0.5", &s);
        let svc = reg.service.as_ref().unwrap();
        assert_eq!(
            (svc.id.as_str(), svc.service.as_str(), svc.port),
            ("shop_web.1", "web-shop", 31005)
        );
        assert_eq!(svc.meta[SERVICE_PORT_META], "10005");
        assert_eq!(svc.meta[OWNER_META], "/shop/web");
        assert_eq!(svc.address, "10.0.0.5");
        assert_eq!(
            reg.checks.len(),
            4,
            "the check with a bad portIndex is skipped"
        );
        let http = &reg.checks[0];
        assert_eq!(http.check_id, "service:shop_web.1:0");
        assert_eq!(http.name, "web-shop health check 0");
        assert_eq!(http.service_id, "shop_web.1");
        assert_eq!(http.status, CheckStatus::Critical);
        assert_eq!(http.definition.http, "http://10.0.0.5:31005/health");
        assert_eq!(http.definition.interval, "5s");
        assert_eq!(http.definition.timeout, "2s");
        let tcp = &reg.checks[1];
        assert_eq!(tcp.definition.tcp, "10.0.0.5:31006");
        assert_eq!(
            tcp.definition.interval, "60s",
            "Marathon's default interval"
        );
        assert_eq!(tcp.definition.timeout, "20s");
        let cmd = &reg.checks[2];
        assert_eq!(
            cmd.definition.script_args,
            ["sh", "-c", "curl -f localhost:$PORT0"]
        );
        let https = &reg.checks[3];
        assert_eq!(https.check_id, "service:shop_web.1:3");
        assert_eq!(https.definition.http, "https://10.0.0.5:8443/");
        assert!(https.definition.tls_skip_verify);
        let v6 = check_for(&s, 0, &s.health_checks[1], "n", "fd00::1").unwrap();
        assert_eq!(v6.definition.tcp, "[fd00::1]:31006");
    }

    #[test]
    fn writes_only_what_differs_and_keeps_check_status() {
        let s = spec(json!([{"protocol": "TCP"}]), json!({"SERVICE_TAGS": "a"}));
        let desired = service_registration("n1", "10.0.0.5", &s);
        // Nothing in the catalog: write everything.
        assert!(needed_write(desired.clone(), None, &[]).is_some());
        // Exactly as desired, check passing: nothing to write.
        let svc = desired.service.clone().unwrap();
        let mut check = desired.checks[0].clone();
        check.status = CheckStatus::Passing;
        check.output = "TCP OK".into();
        assert!(needed_write(desired.clone(), Some(&svc), std::slice::from_ref(&check)).is_none());
        // The service changed: rewrite, carrying the check's status and output.
        let mut other = svc.clone();
        other.tags = vec!["b".into()];
        let w = needed_write(desired.clone(), Some(&other), std::slice::from_ref(&check)).unwrap();
        assert_eq!(w.checks[0].status, CheckStatus::Passing);
        assert_eq!(w.checks[0].output, "TCP OK");
        // A check missing: rewrite.
        assert!(needed_write(desired, Some(&svc), &[]).is_some());
    }

    #[test]
    fn the_agent_registers_its_metrics_endpoint() {
        let reg = agent_service_registration("n1", "10.0.0.5", "10.0.0.5", 5051);
        let svc = reg.service.as_ref().unwrap();
        assert_eq!(
            (
                svc.id.as_str(),
                svc.service.as_str(),
                svc.address.as_str(),
                svc.port
            ),
            ("cairn-taskrun", "cairn-taskrun", "10.0.0.5", 5051)
        );
        assert_eq!(svc.tags, ["cairn"]);
        assert_eq!(svc.meta["prometheus_port"], "5051");
        assert_eq!(svc.meta["prometheus_path"], "/metrics");
        assert!(
            !svc.meta.contains_key(OWNER_META),
            "not a task's: the stale-service sweep leaves it"
        );
        assert!(reg.skip_node_update && reg.checks.is_empty());
        // Registered once, then left alone while it is the same.
        assert!(needed_write(reg.clone(), None, &[]).is_some());
        assert!(needed_write(reg.clone(), Some(svc), &[]).is_none());
    }

    #[test]
    fn node_registration_has_the_ttl_check() {
        let reg = node_registration("n1", "10.0.0.5");
        let c = reg.check.unwrap();
        assert_eq!(
            (c.check_id.as_str(), c.name.as_str()),
            ("serfHealth", "Serf Health Status")
        );
        assert_eq!(c.definition.ttl, "30s");
        assert_eq!(c.status, CheckStatus::Passing);
        assert_eq!(reg.address, "10.0.0.5");
    }
}

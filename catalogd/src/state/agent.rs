//! catalogd as the agent of its own node: service and check registration with Consul's defaults
//! and validation (check IDs, sidecar proxies, tagged addresses, minimum intervals), TTL check
//! updates, and deregistration. Every refusal carries Consul's status class and text, because
//! configuration-management modules and scripts match on them.

use std::net::IpAddr;
use std::time::Duration;

use cairn_wire::{
    AgentCheckRegistration, AgentServiceRegistration, CheckDefinition, CheckStatus, HealthCheck,
    NodeService, ServiceAddress, ServiceConnect, format_go_duration, parse_go_duration,
};

use super::catalog::infer_type;
use super::{ApplyError, Changes, NodeKey, State, invalid};

/// Consul's `checks.MinInterval`: interval checks run at least this far apart.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Consul's `check_deregister_interval_min`.
const MIN_DEREGISTER_AFTER: Duration = Duration::from_secs(60);
/// Consul's default `OutputMaxSize` of a check.
const OUTPUT_MAX_SIZE: usize = 4096;
/// Ports handed to sidecar proxies that name none (Consul's `sidecar_min_port..=max_port`).
const SIDECAR_PORTS: std::ops::RangeInclusive<u16> = 21000..=21255;
/// Formats errors as Go's `go-multierror` does (Consul's `Validation failed: ...` bodies).
pub(crate) fn multierror(errors: &[String]) -> String {
    let head = if errors.len() == 1 {
        "1 error occurred:".to_string()
    } else {
        format!("{} errors occurred:", errors.len())
    };
    let items: String = errors.iter().map(|e| format!("\n\t* {e}")).collect();
    format!("{head}{items}\n\n")
}

/// A duration field as Go prints it after parsing (`1m` → `1m0s`), raised to `min` when set
/// below it; empty stays empty.
fn normalize_duration(raw: &str, min: Option<Duration>) -> Result<String, String> {
    if raw.is_empty() {
        return Ok(String::new());
    }
    let mut d = parse_go_duration(raw).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Ok(String::new());
    }
    if let Some(min) = min {
        d = d.max(min);
    }
    Ok(format_go_duration(d))
}

/// The definition part of a registered check, with Consul's minimums applied.
fn definition(def: &AgentCheckRegistration) -> Result<CheckDefinition, String> {
    let args = if def.args.is_empty() {
        def.script_args.clone()
    } else {
        def.args.clone()
    };
    let interval_check = !args.is_empty()
        || !def.http.is_empty()
        || !def.tcp.is_empty()
        || !def.udp.is_empty()
        || !def.grpc.is_empty()
        || !def.h2ping.is_empty()
        || !def.docker_container_id.is_empty();
    let alias = !def.alias_node.is_empty() || !def.alias_service.is_empty();
    let interval = normalize_duration(&def.interval, interval_check.then_some(MIN_INTERVAL))?;
    let ttl = normalize_duration(&def.ttl, None)?;
    if !interval.is_empty() && !ttl.is_empty() {
        return Err("Interval and TTL cannot both be specified".into());
    }
    if interval_check && interval.is_empty() {
        return Err("Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks".into());
    }
    if alias && !interval.is_empty() {
        return Err("Interval cannot be set for Alias checks".into());
    }
    if alias && !ttl.is_empty() {
        return Err("TTL must be not be set for Alias checks".into());
    }
    if !interval_check && !alias && ttl.is_empty() {
        return Err("TTL must be > 0 for TTL checks".into());
    }
    if def.failures_before_warning > def.failures_before_critical {
        return Err("FailuresBeforeWarning can't be higher than FailuresBeforeCritical".into());
    }
    Ok(CheckDefinition {
        http: def.http.clone(),
        header: def.header.clone(),
        method: def.method.clone(),
        body: def.body.clone(),
        tls_server_name: def.tls_server_name.clone(),
        tls_skip_verify: def.tls_skip_verify,
        disable_redirects: def.disable_redirects,
        tcp: def.tcp.clone(),
        udp: def.udp.clone(),
        h2ping: def.h2ping.clone(),
        h2ping_use_tls: def.h2ping_use_tls.unwrap_or(!def.h2ping.is_empty()),
        script_args: args,
        docker_container_id: def.docker_container_id.clone(),
        shell: def.shell.clone(),
        grpc: def.grpc.clone(),
        grpc_use_tls: def.grpc_use_tls,
        alias_node: def.alias_node.clone(),
        alias_service: def.alias_service.clone(),
        output_max_size: def.output_max_size,
        interval,
        timeout: normalize_duration(&def.timeout, None)?,
        ttl,
        deregister_critical_service_after: normalize_duration(
            &def.deregister_critical_service_after,
            Some(MIN_DEREGISTER_AFTER),
        )?,
    })
}

/// Whether a check definition runs a command on this host.
pub fn runs_script(def: &AgentCheckRegistration) -> bool {
    !def.args.is_empty() || !def.script_args.is_empty() || !def.docker_container_id.is_empty()
}

/// A registered check as a health check on `node` (status and output to be settled by the
/// caller). `id` and `name` are already defaulted.
fn health_check(
    node: &str,
    id: String,
    name: String,
    def: &AgentCheckRegistration,
    definition: CheckDefinition,
) -> HealthCheck {
    HealthCheck {
        node: node.to_string(),
        check_id: id,
        name,
        status: def.status.unwrap_or(CheckStatus::Critical),
        notes: def.notes.clone(),
        check_type: infer_type(&definition).to_string(),
        interval: definition.interval.clone(),
        timeout: definition.timeout.clone(),
        definition,
        ..Default::default()
    }
}

/// Consul's `ValidateWeights`.
fn validate_weights(w: &cairn_wire::Weights) -> Result<(), String> {
    if w.passing < 1 {
        return Err("Passing must be greater than 0".into());
    }
    if w.warning < 0 {
        return Err("Warning must be greater or equal than 0".into());
    }
    if w.passing > 65535 || w.warning > 65535 {
        return Err("DNS Weight must be between 0 and 65535".into());
    }
    Ok(())
}

/// Consul's `NodeService.ValidateForAgent` (the rules that apply to what catalogd stores).
fn validate_service(reg: &AgentServiceRegistration) -> Vec<String> {
    let mut errors = Vec::new();
    let proxy = reg.proxy.clone().unwrap_or_default();
    if reg.kind == "connect-proxy" {
        if proxy.destination_service_name.trim().is_empty() {
            errors.push(
                "Proxy.DestinationServiceName must be non-empty for Connect proxy services".into(),
            );
        }
        if proxy.destination_service_name == "*" {
            errors.push(
                "Proxy.DestinationServiceName must not be a wildcard for Connect proxy services"
                    .into(),
            );
        }
        if reg.connect.as_ref().is_some_and(|c| c.native) {
            errors.push("A Proxy cannot also be Connect Native, only typical services".into());
        }
        for u in &proxy.upstreams {
            if u.destination_name.is_empty() {
                errors.push("upstream destination name cannot be empty".into());
            } else if u.local_bind_port == 0 && u.local_bind_socket_path.is_empty() {
                errors.push(
                    "upstream local bind port or local socket path must be defined and nonzero"
                        .into(),
                );
            }
        }
    }
    let gateway = matches!(
        reg.kind.as_str(),
        "mesh-gateway" | "terminating-gateway" | "ingress-gateway" | "api-gateway"
    );
    if gateway {
        let kind = &reg.kind;
        if reg.port == 0 && kind != "ingress-gateway" && kind != "api-gateway" {
            errors.push(format!("Port must be non-zero for a {kind}"));
        }
        if reg
            .connect
            .as_ref()
            .is_some_and(|c| c.sidecar_service.is_some())
        {
            errors.push(format!("A {kind} cannot have a sidecar service defined"));
        }
        for (field, set) in [
            (
                "DestinationServiceName",
                !proxy.destination_service_name.is_empty(),
            ),
            (
                "DestinationServiceID",
                !proxy.destination_service_id.is_empty(),
            ),
            (
                "LocalServiceAddress",
                !proxy.local_service_address.is_empty(),
            ),
            ("LocalServicePort", proxy.local_service_port != 0),
            (
                "LocalServiceSocketPath",
                !proxy.local_service_socket_path.is_empty(),
            ),
            ("Upstreams", !proxy.upstreams.is_empty()),
        ] {
            if set {
                errors.push(format!(
                    "The Proxy.{field} configuration is invalid for a {kind}"
                ));
            }
        }
    }
    if let Some(sidecar) = reg
        .connect
        .as_ref()
        .and_then(|c| c.sidecar_service.as_ref())
    {
        if !sidecar.id.is_empty() {
            errors.push(
                "A SidecarService cannot specify an ID as this is managed by the agent".into(),
            );
        }
        if sidecar
            .connect
            .as_ref()
            .is_some_and(|c| c.sidecar_service.is_some())
        {
            errors.push("A SidecarService cannot have a nested SidecarService".into());
        }
    }
    if reg.connect.as_ref().is_some_and(|c| c.native) && reg.port == 0 && reg.socket_path.is_empty()
    {
        errors.push("Port or SocketPath must be set for a Connect native service.".into());
    }
    errors
}

/// Adds `lan_ipv4`/`wan_ipv4` (or `_ipv6`) tagged addresses for a service with an IP address,
/// as Consul's agent does, unless the registration gave them.
fn default_tagged_addresses(svc: &mut NodeService) {
    let Ok(ip) = svc.address.parse::<IpAddr>() else {
        return;
    };
    let (lan, wan) = if ip.is_ipv4() {
        ("lan_ipv4", "wan_ipv4")
    } else {
        ("lan_ipv6", "wan_ipv6")
    };
    for key in [lan, wan] {
        svc.tagged_addresses
            .entry(key.to_string())
            .or_insert_with(|| ServiceAddress {
                address: svc.address.clone(),
                port: i64::from(svc.port),
            });
    }
}

/// A service registration's service part (checks and sidecar are handled apart).
fn node_service(reg: &AgentServiceRegistration) -> NodeService {
    let mut proxy = reg.proxy.clone().unwrap_or_default();
    for u in &mut proxy.upstreams {
        if u.destination_type.is_empty() {
            u.destination_type = "service".into();
        }
    }
    let mut svc = NodeService {
        kind: reg.kind.clone(),
        id: if reg.id.is_empty() {
            reg.name.clone()
        } else {
            reg.id.clone()
        },
        service: reg.name.clone(),
        tags: reg.tags.clone(),
        address: reg.address.clone(),
        tagged_addresses: reg.tagged_addresses.clone(),
        meta: reg.meta.clone(),
        port: reg.port,
        socket_path: reg.socket_path.clone(),
        weights: reg.weights.unwrap_or_default(),
        enable_tag_override: reg.enable_tag_override,
        locality: reg.locality.clone(),
        proxy,
        connect: ServiceConnect {
            native: reg.connect.as_ref().is_some_and(|c| c.native),
        },
        ..Default::default()
    };
    default_tagged_addresses(&mut svc);
    svc
}

/// Whether an agent check registration is the empty `Check: {}` Consul skips.
fn is_empty_check(c: &AgentCheckRegistration) -> bool {
    *c == AgentCheckRegistration::default()
}

impl State {
    /// `PUT /v1/agent/service/register` on catalogd's own node, sidecar included, as one write.
    pub fn agent_register_service(
        &mut self,
        self_node: &str,
        mut reg: AgentServiceRegistration,
        replace_existing_checks: bool,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        if reg.name.is_empty() {
            return invalid("Missing service name");
        }
        if reg
            .address
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
            || reg.address == "[::]"
        {
            return invalid("Invalid service address");
        }
        if let Some(w) = &reg.weights
            && let Err(e) = validate_weights(w)
        {
            return invalid(format!("Invalid Weights: {e}"));
        }
        if let Err(e) = cairn_wire::limits::validate_meta(reg.meta.iter()) {
            return invalid(format!("Invalid Service Meta: {e}"));
        }
        let errors = validate_service(&reg);
        if !errors.is_empty() {
            return invalid(format!("Validation failed: {}", multierror(&errors)));
        }
        let sidecar = reg.connect.as_mut().and_then(|c| c.sidecar_service.take());
        let svc = node_service(&reg);
        let checks = self.service_checks(self_node, &svc, &reg, "Invalid check")?;
        let sidecar = match sidecar {
            Some(def) => Some(self.sidecar(self_node, &svc, *def)?),
            None => None,
        };
        self.as_one_write(|st| {
            let idx = st.index + 1;
            let mut changed = false;
            for (svc, checks) in std::iter::once((svc, checks)).chain(sidecar) {
                changed |=
                    st.register_local(self_node, svc, checks, replace_existing_checks, idx, ch)?;
            }
            if changed {
                st.index = idx;
            }
            Ok(())
        })
    }

    /// Stores one service with its checks on `node`; true when something changed.
    fn register_local(
        &mut self,
        node: &str,
        svc: NodeService,
        checks: Vec<HealthCheck>,
        replace_existing_checks: bool,
        idx: u64,
        ch: &mut Changes,
    ) -> Result<bool, ApplyError> {
        let id = svc.id.clone();
        let mut changed = self.upsert_service(node, svc, idx, ch)?;
        let keep: Vec<String> = checks.iter().map(|c| c.check_id.clone()).collect();
        for check in checks {
            changed |= self.upsert_check(check, idx, ch)?;
        }
        if replace_existing_checks {
            let doomed: Vec<NodeKey> = self
                .node_checks(node)
                .filter(|(_, c)| c.service_id == id && !keep.contains(&c.check_id))
                .map(|(k, _)| k.clone())
                .collect();
            for key in doomed {
                self.remove_check(&key, ch);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// The checks of a service registration, with Consul's IDs and names, keeping the status and
    /// output of a check that is already registered under the same ID.
    fn service_checks(
        &self,
        node: &str,
        svc: &NodeService,
        reg: &AgentServiceRegistration,
        refusal: &str,
    ) -> Result<Vec<HealthCheck>, ApplyError> {
        let defs: Vec<&AgentCheckRegistration> = reg
            .check
            .iter()
            .filter(|c| !is_empty_check(c))
            .chain(&reg.checks)
            .collect();
        let many = defs.len() > 1;
        let mut out = Vec::with_capacity(defs.len());
        for (i, def) in defs.into_iter().enumerate() {
            if def.status == Some(CheckStatus::Maintenance) {
                return invalid("Status for checks must 'passing', 'warning', 'critical'");
            }
            let definition = definition(def).or_else(|e| invalid(format!("{refusal}: {e}")))?;
            let id = if !def.check_id.is_empty() {
                def.check_id.clone()
            } else if many {
                format!("service:{}:{}", svc.id, i + 1)
            } else {
                format!("service:{}", svc.id)
            };
            let name = if def.name.is_empty() {
                format!("Service '{}' check", svc.service)
            } else {
                def.name.clone()
            };
            let mut check = health_check(node, id, name, def, definition);
            check.service_id = svc.id.clone();
            self.keep_result(&mut check);
            out.push(check);
        }
        Ok(out)
    }

    /// A re-registered check keeps the status and output it had.
    fn keep_result(&self, check: &mut HealthCheck) {
        if let Some(prev) = self
            .checks
            .get(&(check.node.clone(), check.check_id.clone()))
        {
            check.status = prev.status;
            check.output = prev.output.clone();
        }
    }

    /// The sidecar proxy of `parent`, with Consul's defaults, and its checks.
    fn sidecar(
        &self,
        node: &str,
        parent: &NodeService,
        mut def: AgentServiceRegistration,
    ) -> Result<(NodeService, Vec<HealthCheck>), ApplyError> {
        def.id = format!("{}-sidecar-proxy", parent.id);
        if def.name.is_empty() {
            def.name = format!("{}-sidecar-proxy", parent.service);
        }
        if def.kind.is_empty() {
            def.kind = "connect-proxy".into();
        }
        if def.address.is_empty() {
            def.address = parent.address.clone();
        }
        if def.tags.is_empty() {
            def.tags = parent.tags.clone();
        }
        if def.meta.is_empty() {
            def.meta = parent.meta.clone();
        }
        if def.locality.is_none() {
            def.locality = parent.locality.clone();
        }
        if let Err(e) = cairn_wire::limits::validate_meta(def.meta.iter()) {
            return invalid(format!("Invalid SidecarService: {e}"));
        }
        let proxy = def.proxy.get_or_insert_with(Default::default);
        proxy.destination_service_name = parent.service.clone();
        proxy.destination_service_id = parent.id.clone();
        if proxy.local_service_socket_path.is_empty()
            && (proxy.local_service_address.is_empty() || proxy.local_service_port < 1)
        {
            if !parent.socket_path.is_empty() {
                proxy.local_service_socket_path = parent.socket_path.clone();
            } else {
                if proxy.local_service_address.is_empty() {
                    proxy.local_service_address = "127.0.0.1".into();
                }
                if proxy.local_service_port < 1 {
                    proxy.local_service_port = i64::from(parent.port);
                }
            }
        }
        if def.port == 0 {
            def.port = self.sidecar_port(node, &def.id)?;
        }
        let errors = validate_service(&def);
        if !errors.is_empty() {
            return invalid(format!("Failed Validation: {}", multierror(&errors)));
        }
        if def.check.is_none() && def.checks.is_empty() {
            let addr = if def.address.is_empty() {
                def.proxy
                    .as_ref()
                    .map(|p| p.local_service_address.clone())
                    .unwrap_or_default()
            } else {
                def.address.clone()
            };
            def.checks = vec![
                AgentCheckRegistration {
                    name: "Connect Sidecar Listening".into(),
                    tcp: format_host_port(&addr, def.port),
                    interval: "10s".into(),
                    ..Default::default()
                },
                AgentCheckRegistration {
                    name: format!("Connect Sidecar Aliasing {}", parent.id),
                    alias_service: parent.id.clone(),
                    ..Default::default()
                },
            ];
        }
        let svc = node_service(&def);
        let checks = self.service_checks(node, &svc, &def, "Invalid check in sidecar_service")?;
        Ok((svc, checks))
    }

    /// The lowest sidecar port no service on `node` uses (a sidecar keeps the one it has).
    fn sidecar_port(&self, node: &str, sidecar_id: &str) -> Result<u16, ApplyError> {
        if let Some(existing) = self
            .services
            .get(&(node.to_string(), sidecar_id.to_string()))
            && SIDECAR_PORTS.contains(&existing.port)
        {
            return Ok(existing.port);
        }
        let used: Vec<u16> = self.node_services(node).map(|(_, s)| s.port).collect();
        SIDECAR_PORTS
            .clone()
            .find(|p| !used.contains(p))
            .ok_or_else(|| {
                ApplyError::Rpc(format!(
                    "no port provided for sidecar_service and none left in the configured range [{}, {}]",
                    SIDECAR_PORTS.start(),
                    SIDECAR_PORTS.end()
                ))
            })
    }

    /// `PUT /v1/agent/check/register` on catalogd's own node.
    pub fn agent_register_check(
        &mut self,
        self_node: &str,
        def: AgentCheckRegistration,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        if def.name.is_empty() {
            return invalid("Missing check name");
        }
        if def.status == Some(CheckStatus::Maintenance) {
            return invalid("Bad check status");
        }
        let definition = definition(&def).or_else(|e| invalid(format!("Invalid check: {e}")))?;
        if !def.service_id.is_empty()
            && !self
                .services
                .contains_key(&(self_node.to_string(), def.service_id.clone()))
        {
            return Err(ApplyError::NotFound(format!(
                "ServiceID {:?} does not exist",
                def.service_id
            )));
        }
        let id = [def.check_id.as_str(), def.id.as_str(), def.name.as_str()]
            .into_iter()
            .find(|s| !s.is_empty())
            .unwrap_or_default()
            .to_string();
        let mut check = health_check(self_node, id, def.name.clone(), &def, definition);
        check.service_id = def.service_id.clone();
        self.keep_result(&mut check);
        let idx = self.index + 1;
        if self.upsert_check(check, idx, ch)? {
            self.index = idx;
        }
        Ok(())
    }

    /// `PUT /v1/agent/service/deregister/:id`: the service, its checks, and the sidecar
    /// registered with it.
    pub fn agent_deregister_service(
        &mut self,
        self_node: &str,
        id: &str,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        let key = (self_node.to_string(), id.to_string());
        if !self.services.contains_key(&key) {
            return Err(unknown_service(id));
        }
        let sidecar_id = format!("{id}-sidecar-proxy");
        let sidecar = self
            .services
            .get(&(self_node.to_string(), sidecar_id.clone()))
            .is_some_and(|s| s.kind == "connect-proxy" && s.proxy.destination_service_id == id);
        self.as_one_write(|st| {
            st.remove_service(self_node, id, ch);
            if sidecar {
                st.remove_service(self_node, &sidecar_id, ch);
            }
        });
        Ok(())
    }

    /// `PUT /v1/agent/check/deregister/:id`.
    pub fn agent_deregister_check(
        &mut self,
        self_node: &str,
        id: &str,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        if !self.remove_check(&(self_node.to_string(), id.to_string()), ch) {
            return Err(unknown_check(id));
        }
        Ok(())
    }

    /// `PUT /v1/agent/check/{pass,warn,fail,update}/:id`: only TTL checks take updates from
    /// clients (the others are run by the agent). Output is capped as Consul caps it.
    pub fn ttl_update(
        &mut self,
        self_node: &str,
        id: &str,
        status: CheckStatus,
        output: String,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        let Some(check) = self.checks.get(&(self_node.to_string(), id.to_string())) else {
            return Err(unknown_check(id));
        };
        if check.definition.ttl.is_empty() {
            return Err(ApplyError::Rpc(format!(
                "CheckID {id:?} does not have associated TTL"
            )));
        }
        let max = match check.definition.output_max_size {
            0 => OUTPUT_MAX_SIZE,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        self.update_check(self_node, id, status, cap_output(output, max), ch)
    }
}

/// Output longer than `max` bytes is cut as Consul cuts it.
fn cap_output(output: String, max: usize) -> String {
    if output.len() <= max {
        return output;
    }
    let mut cut = max;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{} ... (captured {} of {} bytes)",
        &output[..cut],
        cut,
        output.len()
    )
}

fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Consul's answer for a service ID the agent does not have.
pub(crate) fn unknown_service(id: &str) -> ApplyError {
    ApplyError::NotFound(format!(
        "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
    ))
}

/// Consul's answer for a check ID the agent does not have.
pub(crate) fn unknown_check(id: &str) -> ApplyError {
    ApplyError::NotFound(format!(
        "Unknown check ID {id:?}. Ensure that the check ID is passed, not the check name."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multierror_matches_go() {
        assert_eq!(multierror(&["a".into()]), "1 error occurred:\n\t* a\n\n");
        assert_eq!(
            multierror(&["a".into(), "b".into()]),
            "2 errors occurred:\n\t* a\n\t* b\n\n"
        );
    }

    #[test]
    fn check_definitions_follow_consul_rules() {
        let cases: &[(AgentCheckRegistration, Result<&str, &str>)] = &[
            (
                AgentCheckRegistration {
                    http: "http://x".into(),
                    interval: "10ns".into(),
                    ..Default::default()
                },
                Ok("1s"),
            ),
            (
                AgentCheckRegistration {
                    ttl: "10s".into(),
                    interval: "10s".into(),
                    ..Default::default()
                },
                Err("Interval and TTL cannot both be specified"),
            ),
            (
                AgentCheckRegistration {
                    tcp: "x:1".into(),
                    ..Default::default()
                },
                Err("Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"),
            ),
            (
                AgentCheckRegistration::default(),
                Err("TTL must be > 0 for TTL checks"),
            ),
            (
                AgentCheckRegistration {
                    alias_service: "web".into(),
                    ..Default::default()
                },
                Ok(""),
            ),
        ];
        for (def, want) in cases {
            let got = definition(def).map(|d| d.interval);
            assert_eq!(got.as_deref().map_err(String::as_str), *want, "{def:?}");
        }
    }

    #[test]
    fn long_output_is_capped() {
        assert_eq!(cap_output("abcdef".into(), 10), "abcdef");
        assert_eq!(
            cap_output("abcdef".into(), 4),
            "abcd ... (captured 4 of 6 bytes)"
        );
    }
}

//! Catalog writes: register and deregister nodes, services and checks, through the catalog
//! endpoints or as the agent of catalogd's own node, and check status updates.

use std::time::Duration;

use cairn_wire::{
    CatalogDeregistration, CatalogRegistration, CheckDefinition, CheckStatus, HealthCheck, Node,
    NodeService, parse_go_duration,
};

use super::{ApplyError, Changes, NodeKey, State, TtlChange, invalid};

/// Equality ignoring Raft indexes: a write that changes nothing must not wake watchers.
fn same_node(a: &Node, b: &Node) -> bool {
    a.id == b.id
        && a.address == b.address
        && a.datacenter == b.datacenter
        && a.tagged_addresses == b.tagged_addresses
        && a.meta == b.meta
}

fn same_service(a: &NodeService, b: &NodeService) -> bool {
    let strip = |s: &NodeService| NodeService {
        create_index: 0,
        modify_index: 0,
        ..s.clone()
    };
    strip(a) == strip(b)
}

fn same_check(a: &HealthCheck, b: &HealthCheck) -> bool {
    let strip = |c: &HealthCheck| HealthCheck {
        create_index: 0,
        modify_index: 0,
        ..c.clone()
    };
    strip(a) == strip(b)
}

fn ttl_of(check: &HealthCheck) -> Option<Duration> {
    if check.definition.ttl.is_empty() {
        return None;
    }
    parse_go_duration(&check.definition.ttl)
        .ok()
        .filter(|d| !d.is_zero())
}

/// Validates every duration field of a check definition.
fn validate_definition(def: &CheckDefinition, what: &str) -> Result<(), ApplyError> {
    for (field, value) in [
        ("Interval", &def.interval),
        ("Timeout", &def.timeout),
        ("TTL", &def.ttl),
        (
            "DeregisterCriticalServiceAfter",
            &def.deregister_critical_service_after,
        ),
    ] {
        if !value.is_empty()
            && let Err(e) = parse_go_duration(value)
        {
            return invalid(format!("{what}.{field}: {e}"));
        }
    }
    Ok(())
}

impl State {
    /// `PUT /v1/catalog/register`.
    pub fn register(
        &mut self,
        reg: CatalogRegistration,
        datacenter: &str,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        if reg.node.is_empty() {
            return invalid("Node: missing node name");
        }
        if !reg.datacenter.is_empty() && reg.datacenter != datacenter {
            return invalid(format!(
                "Datacenter: unknown datacenter {:?}",
                reg.datacenter
            ));
        }
        if let Err(e) = cairn_wire::limits::validate_meta_size(reg.node_meta.iter()) {
            return invalid(format!("Invalid Node Meta: {e}"));
        }
        let exists = self.nodes.contains_key(&reg.node);
        if reg.address.is_empty() && !(reg.skip_node_update && exists) {
            return invalid("Address: missing node address");
        }
        let idx = self.index + 1;
        let mut changed = false;
        if !(reg.skip_node_update && exists) {
            let node = Node {
                id: reg.id.clone(),
                node: reg.node.clone(),
                address: reg.address.clone(),
                datacenter: datacenter.to_string(),
                tagged_addresses: reg.tagged_addresses.clone(),
                meta: reg.node_meta.clone(),
                create_index: idx,
                modify_index: idx,
            };
            changed |= self.upsert_node(node, idx, ch);
        }
        if let Some(svc) = reg.service {
            changed |= self.upsert_service(&reg.node, svc, idx, ch)?;
        }
        let mut checks = reg.checks;
        checks.extend(reg.check);
        for (i, mut check) in checks.into_iter().enumerate() {
            if !check.node.is_empty() && check.node != reg.node {
                return invalid(format!(
                    "Checks[{i}].Node: {:?} does not match the registration's node {:?}",
                    check.node, reg.node
                ));
            }
            check.node = reg.node.clone();
            if check.check_id.is_empty() {
                check.check_id = check.name.clone();
            }
            if check.check_id.is_empty() {
                return invalid(format!("Checks[{i}]: missing CheckID and Name"));
            }
            if check.name.is_empty() {
                check.name = check.check_id.clone();
            }
            validate_definition(&check.definition, &format!("Checks[{i}].Definition"))?;
            changed |= self.upsert_check(check, idx, ch)?;
        }
        if changed {
            self.index = idx;
        }
        Ok(())
    }

    /// Inserts or updates a node; true when something changed.
    pub(crate) fn upsert_node(&mut self, mut node: Node, idx: u64, ch: &mut Changes) -> bool {
        if let Some(old) = self.nodes.get(&node.node) {
            if same_node(old, &node) {
                return false;
            }
            node.create_index = old.create_index;
        } else {
            node.create_index = idx;
        }
        node.modify_index = idx;
        let name = node.node.clone();
        self.nodes.insert(name.clone(), node);
        self.tables.nodes = idx;
        ch.nodes.insert(name.clone());
        self.touch_node(&name, idx, ch, true);
        true
    }

    /// Inserts or updates a service instance on `node`; true when something changed.
    pub(crate) fn upsert_service(
        &mut self,
        node: &str,
        mut svc: NodeService,
        idx: u64,
        ch: &mut Changes,
    ) -> Result<bool, ApplyError> {
        if svc.service.is_empty() {
            return invalid("Service.Service: missing service name");
        }
        if svc.id.is_empty() {
            svc.id = svc.service.clone();
        }
        // Every path that stores a service comes through here: the stored-size limits hold
        // for catalog, agent and sidecar registrations alike.
        if let Err(e) = cairn_wire::limits::validate_meta_size(svc.meta.iter()) {
            return invalid(format!("Invalid Service Meta: {e}"));
        }
        if let Err(e) = cairn_wire::limits::validate_tags(&svc.tags) {
            return invalid(format!("Invalid Service Tags: {e}"));
        }
        if !self.nodes.contains_key(node) {
            return Err(ApplyError::NotFound(format!("unknown node {node:?}")));
        }
        let key: NodeKey = (node.to_string(), svc.id.clone());
        if let Some(old) = self.services.get(&key) {
            if same_service(old, &svc) {
                return Ok(false);
            }
            svc.create_index = old.create_index;
            if old.service != svc.service {
                let old_name = old.service.clone();
                self.unindex_service(&old_name, &key);
                self.touch_service(&old_name, idx, ch);
            }
        } else {
            svc.create_index = idx;
        }
        svc.modify_index = idx;
        let name = svc.service.clone();
        let tags = svc.tags.clone();
        self.services.insert(key.clone(), svc);
        self.by_service
            .entry(name.clone())
            .or_default()
            .insert(key.clone());
        self.tables.services = idx;
        ch.services.insert(key.clone());
        self.touch_service(&name, idx, ch);
        self.touch_node(node, idx, ch, false);
        // Checks carry the service's name and tags; keep them in step.
        let stale: Vec<NodeKey> = self
            .node_checks(node)
            .filter(|(_, c)| {
                c.service_id == key.1 && (c.service_name != name || c.service_tags != tags)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for ck in stale {
            if let Some(c) = self.checks.get_mut(&ck) {
                c.service_name = name.clone();
                c.service_tags = tags.clone();
                c.modify_index = idx;
                self.tables.checks = idx;
                ch.checks.insert(ck);
            }
        }
        Ok(true)
    }

    fn unindex_service(&mut self, name: &str, key: &NodeKey) {
        if let Some(set) = self.by_service.get_mut(name) {
            set.remove(key);
            if set.is_empty() {
                self.by_service.remove(name);
            }
        }
    }

    /// Inserts or updates a check (its `node` already set); true when something changed. A TTL
    /// check's timer is re-armed on every write, changed or not: the write is its heartbeat.
    pub(crate) fn upsert_check(
        &mut self,
        mut check: HealthCheck,
        idx: u64,
        ch: &mut Changes,
    ) -> Result<bool, ApplyError> {
        if !self.nodes.contains_key(&check.node) {
            return Err(ApplyError::NotFound(format!(
                "unknown node {:?}",
                check.node
            )));
        }
        if check.status == CheckStatus::Maintenance && !check.check_id.starts_with("_") {
            return invalid(format!(
                "Check {:?}: Status must be passing, warning or critical",
                check.check_id
            ));
        }
        if !check.service_id.is_empty() {
            let skey = (check.node.clone(), check.service_id.clone());
            let Some(svc) = self.services.get(&skey) else {
                return Err(ApplyError::NotFound(format!(
                    "check {:?}: unknown service ID {:?} on node {:?}",
                    check.check_id, check.service_id, check.node
                )));
            };
            check.service_name = svc.service.clone();
            check.service_tags = svc.tags.clone();
        } else {
            check.service_name.clear();
            check.service_tags.clear();
        }
        if check.check_type.is_empty() {
            check.check_type = infer_type(&check.definition).to_string();
        }
        if check.interval.is_empty() {
            check.interval = check.definition.interval.clone();
        }
        if check.timeout.is_empty() {
            check.timeout = check.definition.timeout.clone();
        }
        let key: NodeKey = (check.node.clone(), check.check_id.clone());
        match ttl_of(&check) {
            Some(ttl) => ch.ttl.push(TtlChange::ArmCheck(key.clone(), ttl)),
            None => ch.ttl.push(TtlChange::DisarmCheck(key.clone())),
        }
        if let Some(old) = self.checks.get(&key) {
            if same_check(old, &check) {
                return Ok(false);
            }
            check.create_index = old.create_index;
        } else {
            check.create_index = idx;
        }
        check.modify_index = idx;
        let critical = check.status == CheckStatus::Critical;
        self.store_check(key.clone(), check, idx, ch);
        if critical {
            self.invalidate_sessions_of_check(&key, idx, ch);
        }
        Ok(true)
    }

    /// Writes a check and wakes whoever reads it.
    fn store_check(&mut self, key: NodeKey, check: HealthCheck, idx: u64, ch: &mut Changes) {
        let service_name = check.service_name.clone();
        let node_level = check.service_id.is_empty();
        self.checks.insert(key.clone(), check);
        self.tables.checks = idx;
        ch.checks.insert(key.clone());
        self.touch_node(&key.0, idx, ch, node_level);
        if !node_level {
            self.touch_service(&service_name, idx, ch);
        }
    }

    /// Sets a check's status and output (agent pass/warn/fail/update, TTL expiry).
    pub fn update_check(
        &mut self,
        node: &str,
        check_id: &str,
        status: CheckStatus,
        output: String,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        let key: NodeKey = (node.to_string(), check_id.to_string());
        let Some(old) = self.checks.get(&key).cloned() else {
            return Err(ApplyError::NotFound(format!(
                "unknown check ID {check_id:?}"
            )));
        };
        if let Some(ttl) = ttl_of(&old) {
            ch.ttl.push(TtlChange::ArmCheck(key.clone(), ttl));
        }
        if old.status == status && old.output == output {
            return Ok(());
        }
        let idx = self.next_index();
        let mut check = old;
        check.status = status;
        check.output = output;
        check.modify_index = idx;
        self.store_check(key.clone(), check, idx, ch);
        if status == CheckStatus::Critical {
            self.invalidate_sessions_of_check(&key, idx, ch);
        }
        Ok(())
    }

    /// Marks a TTL check critical because its TTL passed without an update.
    pub fn expire_check(&mut self, key: &NodeKey, ch: &mut Changes) {
        if let Some(c) = self.checks.get(key)
            && c.status != CheckStatus::Critical
        {
            // A node whose agent stopped heartbeating reads as Consul shows a failed member.
            let output = if key.1 == "serfHealth" {
                "Agent not live or unreachable".to_string()
            } else if c.output.is_empty() {
                "TTL expired".to_string()
            } else {
                format!(
                    "TTL expired (last output before timeout follows): {}",
                    c.output
                )
            };
            // Its only error is an unknown check, and this one was just found.
            let _ = self.update_check(&key.0, &key.1, CheckStatus::Critical, output, ch);
        }
    }

    /// `PUT /v1/catalog/deregister`.
    pub fn deregister(
        &mut self,
        dereg: CatalogDeregistration,
        datacenter: &str,
        ch: &mut Changes,
    ) -> Result<(), ApplyError> {
        if dereg.node.is_empty() {
            return invalid("Node: missing node name");
        }
        if !dereg.datacenter.is_empty() && dereg.datacenter != datacenter {
            return invalid(format!(
                "Datacenter: unknown datacenter {:?}",
                dereg.datacenter
            ));
        }
        if !self.nodes.contains_key(&dereg.node) {
            return Ok(());
        }
        if !dereg.service_id.is_empty() {
            self.remove_service(&dereg.node, &dereg.service_id, ch);
        } else if !dereg.check_id.is_empty() {
            self.remove_check(&(dereg.node.clone(), dereg.check_id.clone()), ch);
        } else {
            self.remove_node(&dereg.node, ch);
        }
        Ok(())
    }

    /// Removes a service instance and its checks; false when it did not exist.
    pub fn remove_service(&mut self, node: &str, id: &str, ch: &mut Changes) -> bool {
        let key: NodeKey = (node.to_string(), id.to_string());
        let Some(svc) = self.services.get(&key).cloned() else {
            return false;
        };
        let idx = self.next_index();
        let doomed: Vec<NodeKey> = self
            .node_checks(node)
            .filter(|(_, c)| c.service_id == id)
            .map(|(k, _)| k.clone())
            .collect();
        for ck in doomed {
            self.drop_check(&ck, idx, ch);
        }
        self.services.remove(&key);
        self.unindex_service(&svc.service, &key);
        self.tables.services = idx;
        ch.services.insert(key);
        self.touch_service(&svc.service, idx, ch);
        self.touch_node(node, idx, ch, false);
        true
    }

    /// Removes one check; false when it did not exist.
    pub fn remove_check(&mut self, key: &NodeKey, ch: &mut Changes) -> bool {
        if !self.checks.contains_key(key) {
            return false;
        }
        let idx = self.next_index();
        self.drop_check(key, idx, ch);
        true
    }

    fn drop_check(&mut self, key: &NodeKey, idx: u64, ch: &mut Changes) {
        let Some(check) = self.checks.remove(key) else {
            return;
        };
        self.tables.checks = idx;
        ch.checks.insert(key.clone());
        ch.ttl.push(TtlChange::DisarmCheck(key.clone()));
        let node_level = check.service_id.is_empty();
        self.touch_node(&key.0, idx, ch, node_level);
        if !node_level {
            self.touch_service(&check.service_name, idx, ch);
        }
        self.invalidate_sessions_of_check(key, idx, ch);
    }

    /// Removes a node with all its services and checks, and ends its sessions.
    pub fn remove_node(&mut self, node: &str, ch: &mut Changes) {
        let idx = self.next_index();
        // Services first so their names are still known when touched.
        self.touch_node(node, idx, ch, true);
        let checks: Vec<NodeKey> = self.node_checks(node).map(|(k, _)| k.clone()).collect();
        for ck in checks {
            self.drop_check(&ck, idx, ch);
        }
        let services: Vec<(NodeKey, String)> = self
            .node_services(node)
            .map(|(k, s)| (k.clone(), s.service.clone()))
            .collect();
        for (key, name) in services {
            self.services.remove(&key);
            self.unindex_service(&name, &key);
            self.tables.services = idx;
            ch.services.insert(key);
        }
        self.nodes.remove(node);
        self.tables.nodes = idx;
        ch.nodes.insert(node.to_string());
        // A node's coordinate goes with it, in the same write.
        let key = (super::Table::Coordinates, node.to_string());
        if self.docs.remove(&key).is_some() {
            self.tables.docs.set(super::Table::Coordinates, idx);
            ch.docs.insert(key);
        }
        let sessions: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.entry.node == node)
            .map(|(id, _)| id.clone())
            .collect();
        for id in sessions {
            self.end_session(&id, idx, ch);
        }
    }
}

pub(crate) fn infer_type(def: &CheckDefinition) -> &'static str {
    if !def.ttl.is_empty() {
        "ttl"
    } else if !def.http.is_empty() {
        "http"
    } else if !def.tcp.is_empty() {
        "tcp"
    } else if !def.script_args.is_empty() {
        "script"
    } else {
        ""
    }
}

//! Consul's smaller tables (coordinates, config entries, prepared queries, the autopilot
//! configuration) as one mechanism: JSON documents keyed by table and name, each stamped with
//! the Raft-style indexes of its creation and last change, persisted, watched and indexed per
//! table like the catalog's own tables. The rules of each table live with its endpoints; this is
//! only storage.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Changes, State};

/// A table of documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Table {
    /// Node → network coordinate (`Coord`).
    Coordinates,
    /// `<kind>/<name>` → config entry.
    ConfigEntries,
    /// Query ID → prepared query.
    PreparedQueries,
    /// Server-wide settings: `autopilot` (the autopilot configuration), `cluster` (the
    /// cluster's identity: its ID names the mesh trust domain).
    System,
    /// ACL tokens by lower-cased AccessorID.
    AclTokens,
    /// Token SecretID → AccessorID: the index a request's token is resolved through.
    AclSecrets,
    /// ACL policies by lower-cased ID.
    AclPolicies,
    /// ACL roles by lower-cased ID.
    AclRoles,
    /// ACL auth methods by name.
    AclAuthMethods,
    /// ACL binding rules by lower-cased ID.
    AclBindingRules,
}

impl Table {
    pub const ALL: [Table; 10] = [
        Table::Coordinates,
        Table::ConfigEntries,
        Table::PreparedQueries,
        Table::System,
        Table::AclTokens,
        Table::AclSecrets,
        Table::AclPolicies,
        Table::AclRoles,
        Table::AclAuthMethods,
        Table::AclBindingRules,
    ];

    /// Its segment in store keys.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coordinates => "coordinates",
            Table::ConfigEntries => "config-entries",
            Table::PreparedQueries => "prepared-queries",
            Table::System => "autopilot",
            Table::AclTokens => "acl-tokens",
            Table::AclSecrets => "acl-secrets",
            Table::AclPolicies => "acl-policies",
            Table::AclRoles => "acl-roles",
            Table::AclAuthMethods => "acl-auth-methods",
            Table::AclBindingRules => "acl-binding-rules",
        }
    }

    /// Whether it holds ACL state (one index covers all of them).
    pub fn is_acl(self) -> bool {
        matches!(
            self,
            Table::AclTokens
                | Table::AclSecrets
                | Table::AclPolicies
                | Table::AclRoles
                | Table::AclAuthMethods
                | Table::AclBindingRules
        )
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// One stored document.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    pub value: Arc<Value>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// Key of a document.
pub type DocKey = (Table, String);

impl State {
    pub fn doc(&self, table: Table, key: &str) -> Option<&Doc> {
        self.docs.get(&(table, key.to_string()))
    }

    /// The documents of `table` whose key starts with `prefix`, in key order.
    pub fn docs_with_prefix<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Doc)> + 'a {
        self.docs
            .range((table, prefix.to_string())..)
            .take_while(move |((t, k), _)| *t == table && k.starts_with(prefix))
            .map(|((_, k), d)| (k.as_str(), d))
    }

    /// Index a reader of `table` compares: its last change, never 0.
    pub fn table_index(&self, table: Table) -> u64 {
        self.tables.docs.get(table).max(1)
    }

    /// Writes a document at a new index (keeping its creation index); returns that index.
    /// Writing the same value again changes nothing and returns the document's index.
    pub fn put_doc(&mut self, table: Table, key: &str, value: Value, ch: &mut Changes) -> u64 {
        let k = (table, key.to_string());
        if let Some(old) = self.docs.get(&k)
            && *old.value == value
        {
            return old.modify_index;
        }
        let idx = self.next_index();
        let create_index = self.docs.get(&k).map_or(idx, |d| d.create_index);
        self.docs.insert(
            k.clone(),
            Doc {
                value: Arc::new(value),
                create_index,
                modify_index: idx,
            },
        );
        self.tables.docs.set(table, idx);
        ch.docs.insert(k);
        idx
    }

    /// Deletes a document; false when there was none.
    pub fn delete_doc(&mut self, table: Table, key: &str, ch: &mut Changes) -> bool {
        let k = (table, key.to_string());
        if !self.docs.contains_key(&k) {
            return false;
        }
        let idx = self.next_index();
        self.docs.remove(&k);
        self.tables.docs.set(table, idx);
        ch.docs.insert(k);
        true
    }
}

/// Number of dimensions of Serf's coordinates: an update with another count is refused.
pub const COORD_DIMENSIONS: usize = 8;

impl State {
    /// `PUT /v1/coordinate/update`: stores a node's coordinate. An unknown node is dropped
    /// silently, as Consul drops it when applying its batch.
    pub fn coordinate_update(
        &mut self,
        node: &str,
        coord: Value,
        ch: &mut Changes,
    ) -> Result<(), super::ApplyError> {
        let vec_ok = coord
            .get("Vec")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().all(Value::is_number));
        let fields_ok = ["Error", "Adjustment", "Height"]
            .iter()
            .all(|f| coord.get(f).is_none_or(Value::is_number));
        if !vec_ok || !fields_ok {
            return Err(super::ApplyError::Rpc("invalid coordinate".into()));
        }
        let dims = coord["Vec"].as_array().map_or(0, Vec::len);
        if dims != COORD_DIMENSIONS {
            return Err(super::ApplyError::Rpc("incompatible coordinate".into()));
        }
        if self.nodes.contains_key(node) {
            self.put_doc(Table::Coordinates, node, coord, ch);
        }
        Ok(())
    }
}

/// Key of the autopilot configuration in [`Table::System`].
pub const AUTOPILOT_KEY: &str = "autopilot";
/// Key of the cluster identity in [`Table::System`].
pub const CLUSTER_KEY: &str = "cluster";

impl State {
    /// Sets the autopilot configuration; with `cas`, only if its ModifyIndex is that (false
    /// otherwise).
    pub fn autopilot_set(&mut self, config: Value, cas: Option<u64>, ch: &mut Changes) -> bool {
        if let Some(cas) = cas {
            let current = self
                .doc(Table::System, AUTOPILOT_KEY)
                .map_or(0, |d| d.modify_index);
            if current != cas {
                return false;
            }
        }
        self.put_doc(Table::System, AUTOPILOT_KEY, config, ch);
        true
    }
}

/// Key of a config entry in [`Table::ConfigEntries`].
pub fn config_key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

impl State {
    /// A stored config entry's value.
    pub fn config_entry(&self, kind: &str, name: &str) -> Option<Value> {
        self.doc(Table::ConfigEntries, &config_key(kind, name))
            .map(|d| (*d.value).clone())
    }

    /// `PUT /v1/config[?cas=]` of an entry already parsed and validated on its own
    /// ([`crate::config_entries::parse`]): checks it against the other entries, then stores it.
    /// An entry equal to the stored one is accepted without a write, even with a `cas` that does
    /// not match, as Consul does.
    pub fn config_apply(
        &mut self,
        entry: Value,
        cas: Option<u64>,
        ch: &mut Changes,
    ) -> Result<bool, super::ApplyError> {
        let kind = entry["Kind"].as_str().unwrap_or_default().to_string();
        let name = match kind.as_str() {
            "mesh" => "mesh".to_string(),
            _ => entry["Name"].as_str().unwrap_or_default().to_string(),
        };
        let key = config_key(&kind, &name);
        let existing = self.doc(Table::ConfigEntries, &key);
        if existing.is_some_and(|d| *d.value == entry) {
            return Ok(true);
        }
        match (cas, existing) {
            (Some(0), Some(_)) => return Ok(false),
            (Some(n), Some(d)) if n != 0 && d.modify_index != n => return Ok(false),
            (Some(n), None) if n != 0 => return Ok(false),
            _ => {}
        }
        self.config_graph_check(&kind, &name, &entry)
            .map_err(super::ApplyError::Rpc)?;
        self.put_doc(Table::ConfigEntries, &key, entry, ch);
        Ok(true)
    }

    /// Consul's checks of an entry against the others (a discovery chain must stay compilable).
    fn config_graph_check(&self, kind: &str, name: &str, entry: &Value) -> Result<(), String> {
        use crate::config_entries::{is_http_like, service_protocol};
        // Protocols as they would be with this entry in place.
        let lookup = |k: &str, n: &str| {
            if k == kind && n == name {
                Some(entry.clone())
            } else {
                self.config_entry(k, n)
            }
        };
        let protocol = |svc: &str| service_protocol(lookup, svc);
        match kind {
            "service-router" | "service-splitter" => {
                let p = protocol(name);
                if !is_http_like(&p) {
                    return Err(format!(
                        "discovery chain {name:?} uses a protocol {p:?} that does not permit advanced routing or splitting behavior"
                    ));
                }
            }
            "ingress-gateway" | "terminating-gateway" => {
                let other = if kind == "ingress-gateway" {
                    "terminating-gateway"
                } else {
                    "ingress-gateway"
                };
                if self.config_entry(other, name).is_some() {
                    return Err(format!(
                        "cannot create a {kind:?} config entry with name {name:?}, a {other:?} config entry with that name already exists"
                    ));
                }
            }
            _ => {}
        }
        // Every ingress listener must speak its services' protocol.
        let ingresses: Vec<Value> = if kind == "ingress-gateway" {
            vec![entry.clone()]
        } else {
            self.docs_with_prefix(Table::ConfigEntries, "ingress-gateway/")
                .map(|(_, d)| (*d.value).clone())
                .collect()
        };
        for gw in ingresses {
            for l in gw["Listeners"].as_array().into_iter().flatten() {
                let lp = l["Protocol"].as_str().unwrap_or("tcp");
                for s in l["Services"].as_array().into_iter().flatten() {
                    let svc = s["Name"].as_str().unwrap_or_default();
                    if svc.is_empty() || svc == "*" {
                        continue;
                    }
                    let sp = protocol(svc);
                    if sp != lp {
                        return Err(format!(
                            "service {svc:?} has protocol {sp:?}, which does not match defined listener protocol {lp:?}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// `DELETE /v1/config/:kind/:name[?cas=]`: true when gone (or never there); with `cas`,
    /// false when the entry's ModifyIndex differs.
    pub fn config_delete(
        &mut self,
        kind: &str,
        name: &str,
        cas: Option<u64>,
        ch: &mut Changes,
    ) -> bool {
        let name = if kind == "mesh" { "mesh" } else { name };
        let key = config_key(kind, name);
        let Some(existing) = self.doc(Table::ConfigEntries, &key) else {
            return true;
        };
        if cas.is_some_and(|c| c != existing.modify_index) {
            return false;
        }
        self.delete_doc(Table::ConfigEntries, &key, ch)
    }
}

impl State {
    /// Every prepared query, with its indexes.
    pub fn prepared_queries(&self) -> Vec<cairn_query::PreparedQuery> {
        self.docs_with_prefix(Table::PreparedQueries, "")
            .filter_map(|(_, d)| {
                let mut q: cairn_query::PreparedQuery =
                    serde_json::from_value((*d.value).clone()).ok()?;
                q.create_index = d.create_index;
                q.modify_index = d.modify_index;
                Some(q)
            })
            .collect()
    }

    /// `POST /v1/query` of a query already checked on its own ([`cairn_query::validate`]) and
    /// given its new ID.
    pub fn query_create(
        &mut self,
        q: cairn_query::PreparedQuery,
        ch: &mut Changes,
    ) -> Result<(), super::ApplyError> {
        self.query_store(q, ch)
    }

    /// `PUT /v1/query/:id`: replaces an existing query whole.
    pub fn query_update(
        &mut self,
        q: cairn_query::PreparedQuery,
        ch: &mut Changes,
    ) -> Result<(), super::ApplyError> {
        if self.doc(Table::PreparedQueries, &q.id).is_none() {
            return Err(super::ApplyError::Rpc(format!(
                "Cannot modify non-existent prepared query: '{}'",
                q.id
            )));
        }
        self.query_store(q, ch)
    }

    /// Stores a query after Consul's Raft-level checks (session, names, template).
    fn query_store(
        &mut self,
        mut q: cairn_query::PreparedQuery,
        ch: &mut Changes,
    ) -> Result<(), super::ApplyError> {
        let raft = |why: String| Err(super::ApplyError::Rpc(format!("raft apply failed: {why}")));
        if !q.session.is_empty() && !self.sessions.contains_key(&q.session) {
            return raft(format!("invalid session {:?}", q.session));
        }
        let others: Vec<cairn_query::PreparedQuery> = self
            .prepared_queries()
            .into_iter()
            .filter(|o| o.id != q.id)
            .collect();
        if !q.name.is_empty() {
            if others.iter().any(|o| o.name.eq_ignore_ascii_case(&q.name)) {
                return raft(format!("name '{}' aliases an existing query name", q.name));
            }
            if others.iter().any(|o| o.id == q.name) {
                return raft(format!("name '{}' aliases an existing query ID", q.name));
            }
        } else if q.is_template() && others.iter().any(|o| o.is_template() && o.name.is_empty()) {
            return raft("a query template with an empty name already exists".into());
        }
        if let Err(e) = cairn_query::compile_template(&q) {
            return raft(e);
        }
        q.create_index = 0;
        q.modify_index = 0;
        let value = serde_json::to_value(&q).unwrap_or_default();
        self.put_doc(Table::PreparedQueries, &q.id, value, ch);
        Ok(())
    }

    /// `DELETE /v1/query/:id`.
    pub fn query_delete(&mut self, id: &str, ch: &mut Changes) -> Result<(), super::ApplyError> {
        if !self.delete_doc(Table::PreparedQueries, id, ch) {
            return Err(super::ApplyError::Rpc(format!(
                "Cannot modify non-existent prepared query: '{id}'"
            )));
        }
        Ok(())
    }

    /// Deletes the prepared queries bound to a session that ended (same write as its end).
    pub(crate) fn drop_queries_of_session(&mut self, session: &str, idx: u64, ch: &mut Changes) {
        let doomed: Vec<String> = self
            .docs_with_prefix(Table::PreparedQueries, "")
            .filter(|(_, d)| d.value["Session"].as_str() == Some(session))
            .map(|(k, _)| k.to_string())
            .collect();
        for id in doomed {
            let key = (Table::PreparedQueries, id);
            self.docs.remove(&key);
            self.tables.docs.set(Table::PreparedQueries, idx);
            ch.docs.insert(key);
        }
    }
}

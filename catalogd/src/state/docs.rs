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
    /// `config` → the autopilot configuration.
    Autopilot,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Coordinates,
        Table::ConfigEntries,
        Table::PreparedQueries,
        Table::Autopilot,
    ];

    /// Its segment in store keys.
    pub fn name(self) -> &'static str {
        match self {
            Table::Coordinates => "coordinates",
            Table::ConfigEntries => "config-entries",
            Table::PreparedQueries => "prepared-queries",
            Table::Autopilot => "autopilot",
        }
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
        self.tables.docs.get(&table).copied().unwrap_or(0).max(1)
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
        self.tables.docs.insert(table, idx);
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
        self.tables.docs.insert(table, idx);
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

/// Key of the one autopilot configuration document.
pub const AUTOPILOT_KEY: &str = "config";

impl State {
    /// Sets the autopilot configuration; with `cas`, only if its ModifyIndex is that (false
    /// otherwise).
    pub fn autopilot_set(&mut self, config: Value, cas: Option<u64>, ch: &mut Changes) -> bool {
        if let Some(cas) = cas {
            let current = self
                .doc(Table::Autopilot, AUTOPILOT_KEY)
                .map_or(0, |d| d.modify_index);
            if current != cas {
                return false;
            }
        }
        self.put_doc(Table::Autopilot, AUTOPILOT_KEY, config, ch);
        true
    }
}

//! The whole catalog (`GET /v1/cairn/catalog`, what dnsbridge, lbconf and tmpl follow): every
//! node with its node checks and every service instance with its checks, as the caller's token
//! may see them, serialized. It grows with the catalog, so building it is bounded and shared.

use std::sync::Arc;

use cairn_wire::{NodeHealth, WholeCatalog};

/// Whole catalogs being built and the last one built. Building one costs CPU and memory in
/// proportion to the catalog, so at most [`WholeCatalogCache::BUILDS`] are built at once, and
/// the readers one change wakes share one build: they ask at the same state, with the same
/// token and filter (followers such as dnsbridge, lbconf and tmpl usually do).
pub struct WholeCatalogCache {
    builds: tokio::sync::Semaphore,
    last: std::sync::Mutex<Option<Arc<BuiltCatalog>>>,
}

/// One serialized whole catalog and what it was built for.
pub struct BuiltCatalog {
    /// The state's index, the caller's token and the filter it was built for.
    key: (u64, String, Option<String>),
    /// The catalog index it was built at (its `X-Consul-Index`).
    pub index: u64,
    pub bytes: axum::body::Bytes,
    /// Whether the caller's token hid anything.
    pub hidden: bool,
}

impl Default for WholeCatalogCache {
    fn default() -> Self {
        WholeCatalogCache {
            builds: tokio::sync::Semaphore::new(Self::BUILDS),
            last: std::sync::Mutex::new(None),
        }
    }
}

impl WholeCatalogCache {
    /// Whole catalogs built at once.
    const BUILDS: usize = 2;

    fn cached(&self, key: &(u64, String, Option<String>)) -> Option<Arc<BuiltCatalog>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|b| b.key == *key).cloned()
    }

    /// The whole catalog of `st` as `caller` sees it, through `filter`: the last one built when
    /// it is the same, else built now.
    pub async fn get_or_build(
        &self,
        st: Arc<crate::state::State>,
        caller: Arc<crate::acl::Caller>,
        filter: Option<cairn_filter::Filter>,
    ) -> Result<Arc<BuiltCatalog>, String> {
        // `index` moves with every write: a state with the same one holds the same catalog.
        let key = (
            st.index,
            caller.accessor.clone(),
            filter.as_ref().map(|f| format!("{f:?}")),
        );
        if let Some(b) = self.cached(&key) {
            return Ok(b);
        }
        let _permit = self
            .builds
            .acquire()
            .await
            .map_err(|_| "catalogd is stopping".to_string())?;
        // Built by another reader while this one waited for a permit.
        if let Some(b) = self.cached(&key) {
            return Ok(b);
        }
        let built = tokio::task::spawn_blocking(move || {
            let (bytes, hidden) = build_whole_catalog(&st, &caller, filter.as_ref());
            BuiltCatalog {
                key,
                index: st.catalog_index(),
                bytes: bytes.into(),
                hidden,
            }
        })
        .await
        .map_err(|e| format!("building the whole catalog failed: {e}"))?;
        let built = Arc::new(built);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(built.clone());
        Ok(built)
    }
}

/// The whole catalog as `caller` may see it, serialized, and whether anything was hidden.
fn build_whole_catalog(
    st: &crate::state::State,
    caller: &crate::acl::Caller,
    filter: Option<&cairn_filter::Filter>,
) -> (Vec<u8>, bool) {
    let mut hidden = false;
    let nodes = st
        .nodes
        .values()
        .filter(|n| {
            let visible = caller.authz.node_read(&n.node);
            hidden |= !visible;
            visible
        })
        .map(|n| NodeHealth {
            node: n.clone(),
            checks: st
                .node_checks(&n.node)
                .filter(|(_, c)| c.service_id.is_empty())
                .map(|(_, c)| c.clone())
                .collect(),
        })
        .collect();
    let services = st
        .by_service
        .keys()
        .flat_map(|name| st.service_entries(name))
        .filter(|e| {
            let visible = caller.sees_instance(&e.node.node, &e.service.service);
            hidden |= !visible;
            visible
        })
        .map(|mut e| {
            e.checks.retain(|c| caller.sees_check(c));
            e
        })
        .filter(|e| match filter {
            Some(f) => f.matches(&serde_json::to_value(e).unwrap_or_default()),
            None => true,
        })
        .collect();
    let bytes = serde_json::to_vec(&WholeCatalog { nodes, services }).unwrap_or_default();
    (bytes, hidden)
}

#[cfg(test)]
mod tests {
    use cairn_wire::CatalogRegistration;

    use crate::core::Catalog;
    use crate::test_support::config;
    use crate::writer::Command;

    async fn register(c: &Catalog, node: &str) {
        let reg: CatalogRegistration = serde_json::from_value(serde_json::json!({
            "Node": node, "Address": "10.0.0.1",
            "Service": {"ID": "web-1", "Service": "web", "Port": 80},
        }))
        .expect("a registration");
        c.core
            .writer
            .submit(Command::Register(Box::new(reg)))
            .await
            .expect("registered");
    }

    fn nodes(bytes: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).expect("JSON");
        let mut names: Vec<String> = v["Nodes"]
            .as_array()
            .expect("Nodes")
            .iter()
            .filter_map(|n| n["Node"]["Node"].as_str().map(String::from))
            .collect();
        names.sort();
        names
    }

    /// Readers of one state with one token share one build; a write makes the next reader build
    /// again, and sees it; a filter is part of what was built.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_of_one_state_share_one_build_and_a_change_builds_again() {
        let c = Catalog::start(config("server")).await.expect("catalog");
        register(&c, "n1").await;
        let core = &c.core;
        let caller = core
            .acl
            .resolve(&core.current.load(), None)
            .expect("a caller");
        let get = async |filter: Option<&str>| {
            let filter = filter.map(|f| cairn_filter::Filter::parse(f).expect("filter"));
            core.whole_catalog
                .get_or_build(core.current.load_full(), caller.clone(), filter)
                .await
                .expect("built")
        };
        let a = get(None).await;
        let b = get(None).await;
        assert!(
            std::sync::Arc::ptr_eq(&a, &b),
            "the second reader built again"
        );
        assert_eq!(nodes(&a.bytes), ["n1", "server"]);
        let filtered = get(Some("Node.Node == \"n1\"")).await;
        assert!(!std::sync::Arc::ptr_eq(&a, &filtered));
        register(&c, "n2").await;
        let after = get(None).await;
        assert!(!std::sync::Arc::ptr_eq(&a, &after));
        assert!(after.index > a.index);
        assert_eq!(nodes(&after.bytes), ["n1", "n2", "server"]);
    }
}

//! Catalog and health read endpoints (`/v1/catalog/*`, `/v1/health/*`), the cairn whole-catalog
//! extension (`/v1/cairn/catalog`), and catalog registration. All reads take [`QueryOptions`] so
//! each can be a blocking query.

use std::collections::BTreeMap;

use cairn_wire::{
    CatalogDelta, CatalogDeregistration, CatalogNodeServices, CatalogRegistration, CatalogService,
    HealthCheck, Node, ServiceEntry, WholeCatalog,
};

use crate::client::CatalogClient;
use crate::error::ClientError;
use crate::options::{QueryMeta, QueryOptions};

impl CatalogClient {
    /// `GET /v1/catalog/services`: service name → tags.
    pub async fn catalog_services(
        &self,
        opts: &QueryOptions,
    ) -> Result<(BTreeMap<String, Vec<String>>, QueryMeta), ClientError> {
        self.read_json(["v1", "catalog", "services"], &[], opts)
            .await
    }

    /// `GET /v1/catalog/service/:name`: every instance, node fields flattened in.
    pub async fn catalog_service(
        &self,
        name: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<CatalogService>, QueryMeta), ClientError> {
        self.read_json(["v1", "catalog", "service", name], &[], opts)
            .await
    }

    /// `GET /v1/catalog/nodes`.
    pub async fn catalog_nodes(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<Node>, QueryMeta), ClientError> {
        self.read_json(["v1", "catalog", "nodes"], &[], opts).await
    }

    /// `GET /v1/catalog/node/:node`: the node and its services, `None` for an unknown node
    /// (Consul answers `null`).
    pub async fn catalog_node(
        &self,
        node: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<CatalogNodeServices>, QueryMeta), ClientError> {
        self.read_json(["v1", "catalog", "node", node], &[], opts)
            .await
    }

    /// `PUT /v1/catalog/register`.
    pub async fn catalog_register(&self, reg: &CatalogRegistration) -> Result<(), ClientError> {
        self.put_json(["v1", "catalog", "register"], &[], reg)
            .await
            .map(drop)
    }

    /// `PUT /v1/catalog/deregister`: a service, a check, or (with only `Node`) the whole node.
    pub async fn catalog_deregister(
        &self,
        dereg: &CatalogDeregistration,
    ) -> Result<(), ClientError> {
        self.put_json(["v1", "catalog", "deregister"], &[], dereg)
            .await
            .map(drop)
    }

    /// `GET /v1/health/service/:name`: instances with their node and checks (`passing`, `tag`).
    pub async fn health_service(
        &self,
        name: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<ServiceEntry>, QueryMeta), ClientError> {
        self.read_json(["v1", "health", "service", name], &[], opts)
            .await
    }

    /// `GET /v1/health/checks/:service`: the checks of every instance of a service.
    pub async fn health_checks(
        &self,
        service: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), ClientError> {
        self.read_json(["v1", "health", "checks", service], &[], opts)
            .await
    }

    /// `GET /v1/health/node/:node`: the checks of a node and of its services.
    pub async fn health_node(
        &self,
        node: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), ClientError> {
        self.read_json(["v1", "health", "node", node], &[], opts)
            .await
    }

    /// `GET /v1/health/state/:state` with `state` one of `any`, `passing`, `warning`, `critical`.
    pub async fn health_state(
        &self,
        state: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<HealthCheck>, QueryMeta), ClientError> {
        self.read_json(["v1", "health", "state", state], &[], opts)
            .await
    }

    /// `GET /v1/cairn/catalog` (cairn extension, not in Consul): every node and service instance
    /// with checks, in one blocking read.
    pub async fn whole_catalog(
        &self,
        opts: &QueryOptions,
    ) -> Result<(WholeCatalog, QueryMeta), ClientError> {
        self.read_json(["v1", "cairn", "catalog"], &[], opts).await
    }

    /// `GET /v1/cairn/catalog?delta`: what changed after `opts.index` (the index of the last
    /// answer applied), or the whole catalog marked `full` (index 0, or older than catalogd
    /// remembers); apply it with [`WholeCatalog::apply`].
    pub async fn whole_catalog_delta(
        &self,
        opts: &QueryOptions,
    ) -> Result<(CatalogDelta, QueryMeta), ClientError> {
        self.read_json(["v1", "cairn", "catalog"], &[("delta", None)], opts)
            .await
    }

    /// `GET /v1/query`: every prepared query, as Consul returns them.
    pub async fn prepared_queries(
        &self,
        opts: &QueryOptions,
    ) -> Result<(Vec<serde_json::Value>, QueryMeta), ClientError> {
        self.read_json(["v1", "query"], &[], opts).await
    }
}

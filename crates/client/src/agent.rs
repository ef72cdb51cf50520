//! Agent endpoints (`/v1/agent/*`, catalogd being the agent of its own node) and `/v1/status/*`.
//! These are not blocking reads: Consul sends no `X-Consul-Index` on them, so they return bare
//! values.

use std::collections::BTreeMap;

use cairn_wire::{
    AgentCheckRegistration, AgentSelf, AgentServiceRegistration, CheckStatus, CheckUpdate,
    HealthCheck,
};
use reqwest::Method;

use crate::client::CatalogClient;
use crate::error::ClientError;

impl CatalogClient {
    /// `GET /v1/agent/self`: datacenter, node name and version of the agent.
    pub async fn agent_self(&self) -> Result<AgentSelf, ClientError> {
        self.call(Method::GET, ["v1", "agent", "self"], &[], None)
            .await?
            .json()
    }

    /// `PUT /v1/agent/service/register`.
    pub async fn agent_service_register(
        &self,
        reg: &AgentServiceRegistration,
    ) -> Result<(), ClientError> {
        self.put_json(["v1", "agent", "service", "register"], &[], reg)
            .await
            .map(drop)
    }

    /// `PUT /v1/agent/service/deregister/:id`.
    pub async fn agent_service_deregister(&self, id: &str) -> Result<(), ClientError> {
        self.call(
            Method::PUT,
            ["v1", "agent", "service", "deregister", id],
            &[],
            None,
        )
        .await
        .map(drop)
    }

    /// `PUT /v1/agent/check/register`.
    pub async fn agent_check_register(
        &self,
        reg: &AgentCheckRegistration,
    ) -> Result<(), ClientError> {
        self.put_json(["v1", "agent", "check", "register"], &[], reg)
            .await
            .map(drop)
    }

    /// `PUT /v1/agent/check/deregister/:id`.
    pub async fn agent_check_deregister(&self, id: &str) -> Result<(), ClientError> {
        self.call(
            Method::PUT,
            ["v1", "agent", "check", "deregister", id],
            &[],
            None,
        )
        .await
        .map(drop)
    }

    /// `PUT /v1/agent/check/update/:id` with `{Status, Output}`: refreshes a TTL check.
    pub async fn agent_check_update(
        &self,
        id: &str,
        status: CheckStatus,
        output: &str,
    ) -> Result<(), ClientError> {
        let body = CheckUpdate {
            status: Some(status),
            output: output.to_string(),
        };
        self.put_json(["v1", "agent", "check", "update", id], &[], &body)
            .await
            .map(drop)
    }

    /// `GET /v1/agent/checks`: the agent node's checks by check ID.
    pub async fn agent_checks(&self) -> Result<BTreeMap<String, HealthCheck>, ClientError> {
        self.call(Method::GET, ["v1", "agent", "checks"], &[], None)
            .await?
            .json()
    }

    /// `PUT /v1/agent/maintenance?enable=&reason=`: puts the agent's node in (or out of)
    /// maintenance, a critical `_node_maintenance` check with `reason` as its notes.
    pub async fn agent_node_maintenance(
        &self,
        enable: bool,
        reason: &str,
    ) -> Result<(), ClientError> {
        self.call(
            Method::PUT,
            ["v1", "agent", "maintenance"],
            &maintenance_query(enable, reason),
            None,
        )
        .await
        .map(drop)
    }

    /// `PUT /v1/agent/service/maintenance/:id?enable=&reason=`: the same for one service
    /// instance of the agent (a `_service_maintenance:<id>` check).
    pub async fn agent_service_maintenance(
        &self,
        id: &str,
        enable: bool,
        reason: &str,
    ) -> Result<(), ClientError> {
        self.call(
            Method::PUT,
            ["v1", "agent", "service", "maintenance", id],
            &maintenance_query(enable, reason),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET /v1/status/leader`: the leader's address, empty while there is none.
    pub async fn status_leader(&self) -> Result<String, ClientError> {
        self.call(Method::GET, ["v1", "status", "leader"], &[], None)
            .await?
            .json()
    }
}

/// `enable=` and, when given, `reason=` (an empty reason gets the server's default text).
fn maintenance_query(enable: bool, reason: &str) -> Vec<(&'static str, Option<String>)> {
    let mut query = vec![("enable", Some(enable.to_string()))];
    if !reason.is_empty() {
        query.push(("reason", Some(reason.to_string())));
    }
    query
}

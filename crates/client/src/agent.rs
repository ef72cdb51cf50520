//! Agent endpoints (`/v1/agent/*`, catalogd being the agent of its own node) and `/v1/status/*`.
//! These are not blocking reads: Consul sends no `X-Consul-Index` on them, so they return bare
//! values.

use cairn_wire::{
    AgentCheckRegistration, AgentSelf, AgentServiceRegistration, CheckStatus, CheckUpdate,
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

    /// `GET /v1/status/leader`: the leader's address, empty while there is none.
    pub async fn status_leader(&self) -> Result<String, ClientError> {
        self.call(Method::GET, ["v1", "status", "leader"], &[], None)
            .await?
            .json()
    }
}

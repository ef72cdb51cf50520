//! User event endpoints (`/v1/event/*`): fire an event, list the events the agent kept.

use cairn_wire::UserEvent;
use reqwest::Method;

use crate::client::CatalogClient;
use crate::error::ClientError;
use crate::options::{QueryMeta, QueryOptions};

/// The filters of `PUT /v1/event/fire/:name`: regular expressions an agent matches against its
/// node name, its services and their tags (empty = no filter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilters {
    pub node: String,
    pub service: String,
    pub tag: String,
}

impl CatalogClient {
    /// `PUT /v1/event/fire/:name`: the body is the payload; returns the event as fired.
    pub async fn event_fire(
        &self,
        name: &str,
        payload: &[u8],
        filters: &EventFilters,
    ) -> Result<UserEvent, ClientError> {
        let query: Vec<_> = [
            ("node", &filters.node),
            ("service", &filters.service),
            ("tag", &filters.tag),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, Some(v.clone())))
        .collect();
        let body = (!payload.is_empty()).then(|| payload.to_vec());
        self.call(Method::PUT, ["v1", "event", "fire", name], &query, body)
            .await?
            .json()
    }

    /// `GET /v1/event/list[?name=]`: the events kept, oldest first. A blocking list returns when
    /// the index *differs* from `opts.index` (Consul's event index is not monotonic).
    pub async fn event_list(
        &self,
        name: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<UserEvent>, QueryMeta), ClientError> {
        let extra: Vec<_> = name
            .into_iter()
            .map(|n| ("name", Some(n.to_string())))
            .collect();
        self.read_json(["v1", "event", "list"], &extra, opts).await
    }
}

//! Session endpoints (`/v1/session/*`): the handles that KV locks (`acquire`/`release`) hang on.

use cairn_wire::{SessionEntry, SessionRequest};
use reqwest::Method;
use serde::Deserialize;

use crate::client::CatalogClient;
use crate::error::ClientError;
use crate::options::{QueryMeta, QueryOptions};

#[derive(Deserialize, Default)]
struct CreatedSession {
    #[serde(rename = "ID", default)]
    id: String,
}

impl CatalogClient {
    /// `PUT /v1/session/create`: returns the new session's ID.
    pub async fn session_create(&self, req: &SessionRequest) -> Result<String, ClientError> {
        let resp = self.put_json(["v1", "session", "create"], &[], req).await?;
        let created: CreatedSession = resp.json()?;
        if created.id.is_empty() {
            let err = serde::de::Error::custom("no ID in the session create response");
            return Err(ClientError::decode(&resp.url, err));
        }
        Ok(created.id)
    }

    /// `PUT /v1/session/destroy/:id`: ends the session, releasing (or deleting) its locks.
    pub async fn session_destroy(&self, id: &str) -> Result<(), ClientError> {
        self.call(Method::PUT, ["v1", "session", "destroy", id], &[], None)
            .await
            .map(drop)
    }

    /// `PUT /v1/session/renew/:id`: resets the TTL; `None` when the session no longer exists
    /// (it expired or was destroyed: its locks are gone, so start over with a new session).
    pub async fn session_renew(&self, id: &str) -> Result<Option<SessionEntry>, ClientError> {
        let url = self.url(["v1", "session", "renew", id], &[]);
        let resp = self.send(Method::PUT, url, self.timeout(), None).await?;
        if resp.status == 404 {
            return Ok(None);
        }
        let resp = crate::client::check_status(resp)?;
        Ok(resp.json::<Vec<SessionEntry>>()?.into_iter().next())
    }

    /// `GET /v1/session/info/:id`: the session, `None` when unknown.
    pub async fn session_info(
        &self,
        id: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<SessionEntry>, QueryMeta), ClientError> {
        let (sessions, meta) = self
            .read_json::<Vec<SessionEntry>>(["v1", "session", "info", id], &[], opts)
            .await?;
        Ok((sessions.into_iter().next(), meta))
    }
}

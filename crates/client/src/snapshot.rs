//! `/v1/snapshot`: the whole catalog as one archive, and its restore.

use reqwest::Method;

use crate::client::check_status;
use crate::{CatalogClient, ClientError, QueryMeta};

/// Snapshots can be large: they get longer than ordinary requests.
const SNAPSHOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl CatalogClient {
    /// `GET /v1/snapshot`: the archive (Consul's format), with the index it was taken at.
    pub async fn snapshot_save(&self) -> Result<(Vec<u8>, QueryMeta), ClientError> {
        let url = self.url(["v1", "snapshot"], &Vec::new());
        let resp = check_status(self.send(Method::GET, url, SNAPSHOT_TIMEOUT, None).await?)?;
        let meta = resp.meta()?;
        Ok((resp.body, meta))
    }

    /// `PUT /v1/snapshot`: replaces the server's whole state with the archive's.
    pub async fn snapshot_restore(&self, archive: Vec<u8>) -> Result<(), ClientError> {
        let url = self.url(["v1", "snapshot"], &Vec::new());
        let resp = self
            .send(Method::PUT, url, SNAPSHOT_TIMEOUT, Some(archive))
            .await?;
        check_status(resp).map(drop)
    }
}

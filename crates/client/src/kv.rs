//! KV store endpoints (`/v1/kv/*`): reads that tolerate a missing key the way Consul answers it
//! (404 with an index, so a watch can block on a key that does not exist yet), and writes with
//! flags, check-and-set and session locks.

use cairn_wire::KvPair;
use reqwest::Method;

use crate::client::{CatalogClient, key_segments, parse_bool};
use crate::error::ClientError;
use crate::options::{KvPutOptions, QueryMeta, QueryOptions};

fn kv_path(key: &str) -> impl Iterator<Item = &str> {
    ["v1", "kv"].into_iter().chain(key_segments(key))
}

impl CatalogClient {
    /// `GET /v1/kv/:key`: the entry, or `None` (with the index) when the key does not exist.
    pub async fn kv_get(
        &self,
        key: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<KvPair>, QueryMeta), ClientError> {
        let (resp, meta) = self.read_or_404(kv_path(key), &[], opts).await?;
        let pair = match resp {
            None => None,
            Some(resp) => resp.json::<Vec<KvPair>>()?.into_iter().next(),
        };
        Ok((pair, meta))
    }

    /// `GET /v1/kv/:key?raw`: the value's bytes, or `None` when the key does not exist.
    pub async fn kv_get_raw(
        &self,
        key: &str,
        opts: &QueryOptions,
    ) -> Result<(Option<Vec<u8>>, QueryMeta), ClientError> {
        let (resp, meta) = self
            .read_or_404(kv_path(key), &[("raw", None)], opts)
            .await?;
        Ok((resp.map(|r| r.body), meta))
    }

    /// `GET /v1/kv/:prefix?recurse`: every entry under `prefix` (empty when none).
    pub async fn kv_list(
        &self,
        prefix: &str,
        opts: &QueryOptions,
    ) -> Result<(Vec<KvPair>, QueryMeta), ClientError> {
        let (resp, meta) = self
            .read_or_404(kv_path(prefix), &[("recurse", None)], opts)
            .await?;
        let pairs = match resp {
            None => Vec::new(),
            Some(resp) => resp.json()?,
        };
        Ok((pairs, meta))
    }

    /// `GET /v1/kv/:prefix?keys[&separator=]`: the key names under `prefix`; with a separator,
    /// keys below the next separator are folded into one `dir/` entry.
    pub async fn kv_keys(
        &self,
        prefix: &str,
        separator: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<String>, QueryMeta), ClientError> {
        let mut extra = vec![("keys", None)];
        if let Some(sep) = separator {
            extra.push(("separator", Some(sep.to_string())));
        }
        let (resp, meta) = self.read_or_404(kv_path(prefix), &extra, opts).await?;
        let keys = match resp {
            None => Vec::new(),
            Some(resp) => resp.json()?,
        };
        Ok((keys, meta))
    }

    /// `PUT /v1/kv/:key`: writes `value`. Returns `false` when a `cas`, `acquire` or `release`
    /// condition did not hold (nothing was written).
    pub async fn kv_put(
        &self,
        key: &str,
        value: &[u8],
        opts: &KvPutOptions,
    ) -> Result<bool, ClientError> {
        let resp = self
            .call(
                Method::PUT,
                kv_path(key),
                &opts.query_pairs(),
                Some(value.to_vec()),
            )
            .await?;
        parse_bool(&resp)
    }

    /// `DELETE /v1/kv/:key[?recurse][&cas=]`. Returns `false` when `cas` did not match.
    pub async fn kv_delete(
        &self,
        key: &str,
        recurse: bool,
        cas: Option<u64>,
    ) -> Result<bool, ClientError> {
        let mut query = Vec::new();
        if recurse {
            query.push(("recurse", None));
        }
        if let Some(cas) = cas {
            query.push(("cas", Some(cas.to_string())));
        }
        let resp = self
            .call(Method::DELETE, kv_path(key), &query, None)
            .await?;
        parse_bool(&resp)
    }
}

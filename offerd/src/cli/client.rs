//! A small HTTP client for offerd's (and Marathon's) API, used by the client commands. Errors
//! carry the server's `message` (and 422 details) so the operator sees what was wrong.

use anyhow::{Context as _, anyhow};
use reqwest::Method;
use serde_json::Value;
use url::Url;

pub struct OfferdClient {
    http: reqwest::Client,
    base: Url,
}

impl OfferdClient {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let base = Url::parse(&cairn_cli::with_scheme(base))
            .with_context(|| format!("invalid URL {base:?}"))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(OfferdClient { http, base })
    }

    /// Sends a request; `path` is like `/v2/apps/shop/web`. Non-2xx becomes an error with the
    /// server's message; a 404 error says "not found".
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self.http.request(method.clone(), url.clone());
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        let json: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        if status.is_success() {
            return Ok(json);
        }
        let mut msg = json
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| text.trim().to_string());
        if let Some(details) = json.get("details").and_then(Value::as_array) {
            for d in details {
                msg.push_str(&format!(
                    "\n  {}: {}",
                    d["path"].as_str().unwrap_or("?"),
                    d["errors"]
                        .as_array()
                        .map(|e| e
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join("; "))
                        .unwrap_or_default()
                ));
            }
        }
        Err(anyhow!("{method} {path}: {} {msg}", status.as_u16()))
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.call(Method::GET, path, query, None).await
    }
}

/// `/shop/web` → `/v2/apps/shop/web`.
pub fn app_path(id: &str) -> String {
    format!("/v2/apps/{}", id.trim_matches('/'))
}

//! A small HTTP client for offerd's (and Marathon's) API, used by the client commands. Errors
//! carry the server's `message` (and 422 details) so the operator sees what was wrong.
//!
//! Credentials, first found wins: `--token` (env `CAIRN_OFFERD_TOKEN`) as `Authorization:
//! Bearer`; `--credentials USER:PASSWORD` (env `CAIRN_OFFERD_CREDENTIALS`) as HTTP Basic; the
//! `--offerd` URL's `user:password@` as HTTP Basic (as Marathon users write it). They are
//! never part of a message: URLs are shown without their user information.
//!
//! `--offerd` may list several offerds (`URL,URL,...`, each with its own `user:password@`): a
//! request that cannot reach one goes to the next ([`cairn_client::Endpoints`]: a GET after
//! any connection failure, a change only when it was never sent), and the one that answered
//! is used from then on.

use anyhow::{Context as _, anyhow, bail};
use cairn_client::Endpoints;
use reqwest::Method;
use serde_json::Value;
use url::Url;

/// The client commands' credentials for offerd.
#[derive(clap::Args, Clone, Default)]
pub struct ClientAuth {
    /// A principal's token for offerd, sent as `Authorization: Bearer TOKEN`
    #[arg(
        long,
        global = true,
        env = "CAIRN_OFFERD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// A principal's HTTP Basic credentials for offerd (else the --offerd URL's user:password@)
    #[arg(
        long,
        global = true,
        env = "CAIRN_OFFERD_CREDENTIALS",
        hide_env_values = true,
        value_name = "USER:PASSWORD"
    )]
    pub credentials: Option<String>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("ClientAuth")
            .field("token", &hidden(&self.token))
            .field("credentials", &hidden(&self.credentials))
            .finish()
    }
}

/// What the client sends.
#[derive(Clone, PartialEq, Eq)]
enum Credentials {
    None,
    Bearer(String),
    Basic(String, String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Bearer(_) => f.write_str("Bearer(<hidden>)"),
            Credentials::Basic(user, _) => write!(f, "Basic({user:?}, <hidden>)"),
        }
    }
}

/// `http://user:pw@host` → `http://***@host`, for messages about a URL that did not parse.
fn without_userinfo(raw: &str) -> String {
    let (scheme, rest) = raw.split_once("://").unwrap_or(("", raw));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}***{}", &rest[at..])
        }
        None => raw.to_string(),
    }
}

/// `%XX` escapes decoded (user information in a URL is percent-encoded).
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One `--offerd` entry: the base URL without user information, and the credentials to send.
fn resolve_one(base: &str, auth: &ClientAuth) -> anyhow::Result<(Url, Credentials)> {
    let mut url = Url::parse(&cairn_cli::with_scheme(base))
        .map_err(|e| anyhow!("--offerd: invalid URL {:?}: {e}", without_userinfo(base)))?;
    let from_url = (!url.username().is_empty()).then(|| {
        (
            percent_decoded(url.username()),
            url.password().map(percent_decoded).unwrap_or_default(),
        )
    });
    // Neither can fail on an http(s) URL with a host; the user information must not stay in
    // the URL either way (it would be shown in messages).
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if !url.username().is_empty() || url.password().is_some() {
        bail!("--offerd: user information cannot be removed from this URL");
    }
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let creds = if let Some(t) = nonempty(&auth.token) {
        Credentials::Bearer(t)
    } else if let Some(c) = nonempty(&auth.credentials) {
        let Some((user, password)) = c.split_once(':') else {
            bail!("--credentials (CAIRN_OFFERD_CREDENTIALS) must be USER:PASSWORD");
        };
        Credentials::Basic(user.to_string(), password.to_string())
    } else if let Some((user, password)) = from_url {
        Credentials::Basic(user, password)
    } else {
        Credentials::None
    };
    Ok((url, creds))
}

/// Every `--offerd` entry (comma-separated), each with its credentials. An empty entry is
/// named by its position, a repeated one by its URL (without user information).
fn resolve(list: &str, auth: &ClientAuth) -> anyhow::Result<(Endpoints, Vec<Credentials>)> {
    let entries: Vec<&str> = list.split(',').collect();
    let mut urls = Vec::with_capacity(entries.len());
    let mut creds = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.trim().is_empty() {
            bail!(
                "--offerd: entry {} of {} in the list is empty",
                i + 1,
                entries.len()
            );
        }
        let (url, c) = resolve_one(entry, auth)?;
        urls.push(url);
        creds.push(c);
    }
    let endpoints = Endpoints::new(urls).map_err(|e| match e {
        cairn_client::ClientError::InvalidUrl { url, reason } => {
            anyhow!("--offerd: invalid URL {url:?}: {reason}")
        }
        other => anyhow!("--offerd: {other}"),
    })?;
    Ok((endpoints, creds))
}

pub struct OfferdClient {
    http: reqwest::Client,
    /// The same without the whole-request deadline: a followed log is read for as long as
    /// the caller wants ([`OfferdClient::stream`]).
    streaming: reqwest::Client,
    endpoints: Endpoints,
    /// Per endpoint, in the same order.
    credentials: Vec<Credentials>,
}

impl OfferdClient {
    pub fn new(base: &str, auth: &ClientAuth) -> anyhow::Result<Self> {
        Self::with_tls(base, auth, &cairn_client::TlsOptions::default())
    }

    /// [`OfferdClient::new`] with TLS settings (CA, client certificate) for an https offerd.
    pub fn with_tls(
        base: &str,
        auth: &ClientAuth,
        tls: &cairn_client::TlsOptions,
    ) -> anyhow::Result<Self> {
        let (endpoints, credentials) = resolve(base, auth)?;
        let https = endpoints.urls().iter().any(|u| u.scheme() == "https");
        // Always preconfigured, http too: reqwest has TLS but no crypto provider of its own.
        let tls_config = tls.client_config(https).context("--offerd")?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config.clone())
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        let streaming = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config)
            .no_proxy()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(OfferdClient {
            http,
            streaming,
            endpoints,
            credentials,
        })
    }

    /// Sends a request; `path` is like `/v2/apps/shop/web`. Non-2xx becomes an error with the
    /// server's message; a 404 error says "not found". A connection error moves to the next
    /// `--offerd` (see the module's documentation).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let resp = self.send(&self.http, &method, path, query, body).await?;
        let url = resp.url().clone();
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
        Err(answer_error(&method, path, status, &json, &text))
    }

    /// A GET whose answer is read as it comes (a log), with no deadline but the connection's:
    /// the response once its status is 2xx; else the server's message as [`OfferdClient::call`]
    /// gives it (at most 64 KiB of it read).
    pub async fn stream(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let method = Method::GET;
        let mut resp = self
            .send(&self.streaming, &method, path, query, None)
            .await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let mut body = Vec::new();
        while body.len() < 64 * 1024 {
            match tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        Err(answer_error(&method, path, status, &json, &text))
    }

    /// Sends one request with `http`, moving to the next `--offerd` on connection errors.
    async fn send(
        &self,
        http: &reqwest::Client,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url_on = |i: usize| {
            let mut url = self.endpoints.urls()[i].clone();
            url.set_path(path);
            if !query.is_empty() {
                url.query_pairs_mut().extend_pairs(query);
            }
            url
        };
        let body = body.map(Value::to_string);
        let sent = self
            .endpoints
            .run(
                |e: &SendError| cairn_client::may_fail_over(method, &e.cause),
                |i| {
                    let url = url_on(i);
                    let mut req = http.request(method.clone(), url.clone());
                    req = match &self.credentials[i] {
                        Credentials::None => req,
                        Credentials::Bearer(t) => req.bearer_auth(t),
                        Credentials::Basic(user, password) => req.basic_auth(user, Some(password)),
                    };
                    if let Some(b) = &body {
                        req = req
                            .header("Content-Type", "application/json")
                            .body(b.clone());
                    }
                    let method = method.clone();
                    async move {
                        req.send().await.map_err(|cause| SendError {
                            what: format!("{method} {url}"),
                            cause,
                        })
                    }
                },
            )
            .await;
        match sent {
            Ok((_, resp)) => Ok(resp),
            Err(failed) => {
                let SendError { what, cause } = failed.error;
                let what = if failed.tried > 1 {
                    format!("{what} (every other --offerd failed too)")
                } else {
                    what
                };
                Err(anyhow::Error::new(cause).context(what))
            }
        }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.call(Method::GET, path, query, None).await
    }
}

/// An answer that is not 2xx, as [`OfferdClient::call`] and [`OfferdClient::stream`] return
/// it (inside the `anyhow::Error`): `METHOD PATH: STATUS message`, with the status kept for
/// callers that act on it ([`answer_status`]).
#[derive(Debug)]
pub struct AnswerError {
    pub status: u16,
    text: String,
}

impl std::fmt::Display for AnswerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for AnswerError {}

/// The HTTP status of an error that is offerd's answer (None: no answer, or another error).
pub fn answer_status(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<AnswerError>().map(|a| a.status)
}

/// The error of an answer that is not 2xx: the server's `message` (and 422 details), else its
/// text.
fn answer_error(
    method: &Method,
    path: &str,
    status: reqwest::StatusCode,
    json: &Value,
    text: &str,
) -> anyhow::Error {
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
    anyhow::Error::new(AnswerError {
        status: status.as_u16(),
        text: format!("{method} {path}: {} {msg}", status.as_u16()),
    })
}

/// A request that got no answer: what it was (`GET http://h:5050/v2/apps`) and why.
struct SendError {
    what: String,
    cause: reqwest::Error,
}

impl std::fmt::Display for SendError {
    /// The whole cause chain: reqwest's own text says only "error sending request".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.what)?;
        let mut next: Option<&dyn std::error::Error> = Some(&self.cause);
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// `/shop/web` → `/v2/apps/shop/web`.
pub fn app_path(id: &str) -> String {
    format!("/v2/apps/{}", id.trim_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(token: Option<&str>, credentials: Option<&str>) -> ClientAuth {
        ClientAuth {
            token: token.map(str::to_string),
            credentials: credentials.map(str::to_string),
        }
    }

    #[test]
    fn credentials_from_flags_and_the_url() {
        let basic = |u: &str, p: &str| Credentials::Basic(u.into(), p.into());
        let cases = [
            ("http://h:5050", auth(None, None), Credentials::None),
            (
                "http://alice:pw@h:5050",
                auth(None, None),
                basic("alice", "pw"),
            ),
            (
                "alice:p%40ss@h:5050",
                auth(None, None),
                basic("alice", "p@ss"),
            ),
            (
                "http://alice:pw@h:5050",
                auth(None, Some("bob:x:y")),
                basic("bob", "x:y"),
            ),
            (
                "http://alice:pw@h:5050",
                auth(Some("t0k"), Some("bob:x")),
                Credentials::Bearer("t0k".into()),
            ),
            ("http://h:5050", auth(Some(""), None), Credentials::None),
        ];
        for (url, a, want) in cases {
            let (base, got) = resolve(url, &a).expect(url);
            assert_eq!(got, [want], "{url}");
            assert_eq!(base.to_string(), "http://h:5050/", "{url}");
        }
        let err = resolve("http://h", &auth(None, Some("no-colon"))).expect_err("bad");
        assert!(err.to_string().contains("USER:PASSWORD"), "{err}");
        let err = resolve("http://alice:s3cret@[::1", &auth(None, None)).expect_err("bad");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(!format!("{:?}", basic("alice", "s3cret")).contains("s3cret"));

        // A list: each entry keeps its own user information; flags still win for all.
        let (bases, creds) =
            resolve("http://alice:pw@a:5050, b:5050", &auth(None, None)).expect("list");
        assert_eq!(bases.to_string(), "http://a:5050/,http://b:5050/");
        assert_eq!(creds, [basic("alice", "pw"), Credentials::None]);
        let (_, creds) = resolve("a:1,b:1", &auth(Some("t"), None)).expect("list");
        assert_eq!(
            creds,
            [
                Credentials::Bearer("t".into()),
                Credentials::Bearer("t".into())
            ]
        );
        for (list, text) in [
            (
                "http://alice:s3cret@a:1,,b:1",
                "entry 2 of 3 in the list is empty",
            ),
            (
                "http://alice:s3cret@a:1,",
                "entry 2 of 2 in the list is empty",
            ),
            (
                "http://alice:s3cret@a:1,http://bob:s3cret@a:1/",
                "\"http://a:1/\": listed twice (entries 1 and 2)",
            ),
        ] {
            let err = resolve(list, &auth(None, None)).expect_err(list);
            let err = format!("{err:#}");
            assert!(err.contains(text), "{list}: {err}");
            assert!(!err.contains("s3cret"), "{list}: {err}");
        }
        assert!(!format!("{:?}", auth(Some("s3cret"), Some("a:s3cret"))).contains("s3cret"));
    }
}

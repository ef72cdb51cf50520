//! cairn's web UI: hand-written HTML, CSS and JavaScript under `assets/`, compiled into the
//! daemons that serve it (offerd: the whole platform; catalogd: its catalog views, as Consul
//! serves its own `/ui/`). Nothing is fetched at build or run time.
//!
//! The page is a client of the same HTTP APIs scripts use; this crate only hands out its files
//! and tells it where it runs ([`UiConfig`], `GET /ui/config.json`). Every answer carries a
//! Content-Security-Policy that allows the page's own files only (no inline script or style,
//! no other origin), so a value from the catalog that slips past the page's escaping still
//! cannot run, and `frame-ancestors 'none'` keeps the UI out of other sites' frames.
//!
//! `CAIRN_UI_DIR`, when set, makes the daemon read the files from that directory at each
//! request instead: for working on the UI without rebuilding. The routes need no credentials:
//! the files hold no data, and the page asks for a token before it reads any.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Serialize;
use sha2::Digest as _;

/// The page's files, embedded.
#[derive(rust_embed::Embed)]
#[folder = "assets/"]
struct Assets;

/// The environment variable naming a directory to serve the files from instead.
pub const DEV_DIR_ENV: &str = "CAIRN_UI_DIR";

/// What every answer of these routes carries: only the page's own files may run, style it and
/// be fetched by it; no frames, no plugins, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Where the page runs, served as `/ui/config.json`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UiConfig {
    /// `offerd` or `catalogd`: which pages the UI shows.
    pub daemon: &'static str,
    /// Where the page reaches the catalog's (Consul's) API from the same origin: `""` at
    /// catalogd, offerd's relay at offerd, `None` when offerd has no catalog.
    pub catalog_base: Option<String>,
}

impl UiConfig {
    /// The UI of offerd; `catalog_relay`: the path of offerd's relay to its catalog, if any.
    pub fn offerd(catalog_relay: Option<&str>) -> UiConfig {
        UiConfig {
            daemon: "offerd",
            catalog_base: catalog_relay.map(str::to_string),
        }
    }

    /// The UI of catalogd: the catalog API is its own.
    pub fn catalogd() -> UiConfig {
        UiConfig {
            daemon: "catalogd",
            catalog_base: Some(String::new()),
        }
    }
}

/// Where the files come from.
#[derive(Clone, Debug)]
enum Source {
    Embedded,
    Directory(PathBuf),
}

/// One file to answer with.
struct File {
    body: Cow<'static, [u8]>,
    mime: String,
    /// A strong validator: the SHA-256 of the content (hex), for `If-None-Match`.
    etag: String,
}

impl Source {
    fn from_env() -> Source {
        match std::env::var_os(DEV_DIR_ENV) {
            Some(dir) if !dir.is_empty() => {
                tracing::info!(dir = %Path::new(&dir).display(), "serving the UI's files from a directory ({DEV_DIR_ENV})");
                Source::Directory(PathBuf::from(dir))
            }
            _ => Source::Embedded,
        }
    }

    fn file(&self, name: &str) -> Option<File> {
        if !is_plain_relative(name) {
            return None;
        }
        match self {
            Source::Embedded => {
                let found = Assets::get(name)?;
                Some(File {
                    etag: hex(&found.metadata.sha256_hash()),
                    mime: found.metadata.mimetype().to_string(),
                    body: found.data,
                })
            }
            Source::Directory(dir) => {
                let body = std::fs::read(dir.join(name)).ok()?;
                Some(File {
                    etag: hex(&sha2::Sha256::digest(&body)),
                    mime: mime_of(name).to_string(),
                    body: Cow::Owned(body),
                })
            }
        }
    }
}

/// A path of normal components only: no `..`, no root, no empty name.
fn is_plain_relative(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MIME type of a file read from a directory, by its extension.
fn mime_of(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// The headers of every answer of these routes.
fn guarded(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A file's answer: 304 when the browser holds this content already; `no-cache` so that a
/// new binary's files are picked up at the next load (revalidated, not re-sent).
fn serve(source: &Source, name: &str, request: &HeaderMap) -> Response {
    let Some(file) = source.file(name) else {
        return guarded(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("no such UI file: {name}\n"),
            )
                .into_response(),
        );
    };
    let etag = format!("\"{}\"", file.etag);
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    if matches {
        return guarded((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    let mime = if file.mime.starts_with("text/") {
        format!("{}; charset=utf-8", file.mime)
    } else {
        file.mime
    };
    guarded(
        (
            [(header::CONTENT_TYPE, mime)],
            cache,
            file.body.into_owned(),
        )
            .into_response(),
    )
}

/// The UI's routes: `/ui` (redirects to `/ui/`), `/ui/` (the page), `/ui/config.json` and
/// `/ui/<file>`. More specific `/ui/...` routes (offerd's catalog relay) may be added beside.
pub fn routes<S: Clone + Send + Sync + 'static>(config: UiConfig) -> Router<S> {
    let source = Source::from_env();
    let config = serde_json::to_vec(&config).unwrap_or_default();
    let index = source.clone();
    let files = source;
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(move |headers: HeaderMap| {
                let source = index.clone();
                async move { serve(&source, "index.html", &headers) }
            }),
        )
        .route(
            "/ui/config.json",
            get(move || {
                let body = config.clone();
                async move {
                    guarded(
                        (
                            [
                                (header::CONTENT_TYPE, "application/json"),
                                (header::CACHE_CONTROL, "no-store"),
                            ],
                            body,
                        )
                            .into_response(),
                    )
                }
            }),
        )
        .route(
            "/ui/{*file}",
            get(move |UrlPath(name): UrlPath<String>, headers: HeaderMap| {
                let source = files.clone();
                async move { serve(&source, &name, &headers) }
            }),
        )
}

/// The names and sizes of the embedded files.
pub fn embedded_files() -> Vec<(String, usize)> {
    Assets::iter()
        .filter_map(|name| {
            let size = Assets::get(&name)?.data.len();
            Some((name.into_owned(), size))
        })
        .collect()
}

#[cfg(test)]
mod tests;

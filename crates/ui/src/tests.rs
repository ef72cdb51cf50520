use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt as _;

use super::*;

/// The most a page may weigh, all its files together (the bound).
const PAGE_BUDGET: usize = 300 * 1024;

async fn get(path: &str, if_none_match: Option<&str>) -> Response {
    let mut req = Request::get(path);
    if let Some(tag) = if_none_match {
        req = req.header(header::IF_NONE_MATCH, tag);
    }
    routes::<()>(UiConfig::offerd(Some("/ui/catalog")))
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible")
}

async fn body_of(response: Response) -> Vec<u8> {
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
        .to_vec()
}

/// The path of an embedded file whose name ends with `suffix`.
fn some_file(suffix: &str) -> String {
    let files = embedded_files();
    let (name, _) = files
        .iter()
        .find(|(name, _)| name.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} file among {files:?}"));
    format!("/ui/{name}")
}

#[tokio::test]
async fn answers_by_path() {
    let (css, js) = (some_file(".css"), some_file(".js"));
    // (path, status, content type prefix)
    let cases = [
        ("/ui/", StatusCode::OK, "text/html"),
        ("/ui/index.html", StatusCode::OK, "text/html"),
        (css.as_str(), StatusCode::OK, "text/css"),
        (js.as_str(), StatusCode::OK, "text/javascript"),
        ("/ui/config.json", StatusCode::OK, "application/json"),
        ("/ui/nothing-here.js", StatusCode::NOT_FOUND, "text/plain"),
        ("/ui/../Cargo.toml", StatusCode::NOT_FOUND, "text/plain"),
        ("/ui/%2e%2e/Cargo.toml", StatusCode::NOT_FOUND, "text/plain"),
        ("/ui", StatusCode::PERMANENT_REDIRECT, ""),
    ];
    for (path, status, mime) in cases {
        let response = get(path, None).await;
        assert_eq!(response.status(), status, "{path}");
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().expect("ascii").to_string())
            .unwrap_or_default();
        assert!(content_type.starts_with(mime), "{path}: {content_type}");
        assert_eq!(
            response.headers().get(header::CONTENT_SECURITY_POLICY),
            (status != StatusCode::PERMANENT_REDIRECT)
                .then(|| HeaderValue::from_static(CONTENT_SECURITY_POLICY))
                .as_ref(),
            "{path}"
        );
    }
}

#[tokio::test]
async fn config_tells_the_page_where_it_runs() {
    let body = body_of(get("/ui/config.json", None).await).await;
    let config: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        config,
        serde_json::json!({"daemon": "offerd", "catalogBase": "/ui/catalog"})
    );
    assert_eq!(
        serde_json::to_value(UiConfig::catalogd()).expect("json"),
        serde_json::json!({"daemon": "catalogd", "catalogBase": ""})
    );
    assert_eq!(
        serde_json::to_value(UiConfig::offerd(None)).expect("json"),
        serde_json::json!({"daemon": "offerd", "catalogBase": null})
    );
}

#[tokio::test]
async fn a_file_the_browser_holds_is_not_sent_again() {
    let js = some_file(".js");
    let first = get(&js, None).await;
    let etag = first
        .headers()
        .get(header::ETAG)
        .expect("etag")
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(first.headers()[header::CACHE_CONTROL], "no-cache");
    assert!(!body_of(first).await.is_empty());

    let again = get(&js, Some(&etag)).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(body_of(again).await.is_empty());

    let other = get(&js, Some("\"something else\"")).await;
    assert_eq!(other.status(), StatusCode::OK);
}

#[test]
fn the_page_weighs_under_its_budget() {
    let files = embedded_files();
    let total: usize = files.iter().map(|(_, size)| size).sum();
    assert!(
        files.iter().any(|(name, _)| name == "index.html"),
        "{files:?}"
    );
    assert!(
        total < PAGE_BUDGET,
        "the UI's files weigh {total} bytes together: {files:?}"
    );
}

#[test]
fn the_page_fetches_nothing_from_elsewhere() {
    for (name, _) in embedded_files() {
        let data = Assets::get(&name).expect("listed").data;
        let text = String::from_utf8_lossy(&data);
        for needle in [
            "src=\"http",
            "href=\"http",
            "src=\"//",
            "href=\"//",
            "url(http",
            "import(\"http",
            "from \"http",
        ] {
            assert!(
                !text.contains(needle),
                "{name} refers to another origin: {needle}"
            );
        }
    }
}

#[test]
fn only_plain_relative_names_are_files() {
    let cases = [
        ("app.js", true),
        ("views/apps.js", true),
        ("", false),
        ("../secret", false),
        ("a/../../b", false),
        ("/etc/passwd", false),
        ("a\\..\\b", false),
    ];
    for (name, plain) in cases {
        assert_eq!(is_plain_relative(name), plain, "{name}");
    }
}

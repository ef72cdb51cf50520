//! HTTP-level tests of the client and of `Watch` against a tiny scripted Consul-like server
//! (axum on loopback) that answers each request with the next scripted reply and records what it
//! received. This proves the wire behaviour (query strings, headers, status handling, index
//! rules) end to end over real sockets; tests against the real catalogd live in the workspace's
//! end-to-end suite.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cairn_client::{CatalogClient, ClientError, KvPutOptions, QueryOptions, Watch, WatchConfig};
use cairn_wire::{CheckStatus, SessionRequest};

#[derive(Clone)]
struct Reply {
    status: u16,
    index: Option<String>,
    body: String,
}

fn ok(index: u64, body: &str) -> Reply {
    Reply {
        status: 200,
        index: Some(index.to_string()),
        body: body.to_string(),
    }
}

fn status(status: u16, index: Option<u64>, body: &str) -> Reply {
    Reply {
        status,
        index: index.map(|i| i.to_string()),
        body: body.to_string(),
    }
}

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    token: Option<String>,
    body: Vec<u8>,
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<Seen>>,
}

impl Script {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn queries(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.query).collect()
    }
}

async fn answer(
    State(script): State<Arc<Script>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    script.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        token: headers
            .get("x-consul-token")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        body: body.to_vec(),
    });
    let reply = script.replies.lock().unwrap().pop_front();
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response();
    };
    let mut headers = HeaderMap::new();
    if let Some(index) = reply.index {
        headers.insert("X-Consul-Index", index.parse().unwrap());
        headers.insert("X-Consul-KnownLeader", "true".parse().unwrap());
        headers.insert("X-Consul-LastContact", "0".parse().unwrap());
    }
    headers.insert("Content-Type", "application/json".parse().unwrap());
    (
        StatusCode::from_u16(reply.status).unwrap(),
        headers,
        reply.body,
    )
        .into_response()
}

async fn serve(listener: tokio::net::TcpListener, replies: Vec<Reply>) -> Arc<Script> {
    let script = Arc::new(Script {
        replies: Mutex::new(replies.into()),
        ..Default::default()
    });
    let app = Router::new().fallback(answer).with_state(script.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    script
}

/// Starts a scripted server on a free loopback port; returns a client for it and the script.
async fn start(replies: Vec<Reply>) -> (CatalogClient, Arc<Script>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = serve(listener, replies).await;
    (
        CatalogClient::new(&format!("http://{addr}"), Some("s3cret".into())).unwrap(),
        script,
    )
}

fn fast() -> WatchConfig {
    WatchConfig {
        wait: Duration::from_secs(60),
        min_interval: Duration::ZERO,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
    }
}

fn kv_body(key: &str, value: &str, index: u64) -> String {
    let b64 = cairn_wire::b64_encode(value.as_bytes());
    format!(
        r#"[{{"LockIndex":0,"Key":"{key}","Flags":0,"Value":"{b64}","CreateIndex":1,"ModifyIndex":{index}}}]"#
    )
}

#[tokio::test]
async fn watch_follows_scripted_indexes() {
    let (client, script) = start(vec![
        ok(5, &kv_body("app/cfg", "one", 5)),
        ok(5, &kv_body("app/cfg", "one", 5)),
        ok(7, &kv_body("app/cfg", "two", 7)),
        ok(3, &kv_body("app/cfg", "three", 3)),
        ok(9, &kv_body("app/cfg", "four", 9)),
    ])
    .await;
    let mut w = Watch::kv(client, "app/cfg").with_config(fast());
    let value =
        |p: Option<cairn_wire::KvPair>| String::from_utf8(p.unwrap().value_bytes()).unwrap();
    assert_eq!(value(w.next().await.unwrap()), "one");
    assert_eq!(w.index(), 5);
    assert_eq!(
        value(w.next().await.unwrap()),
        "two",
        "the equal index 5 was not yielded"
    );
    assert_eq!(
        value(w.next().await.unwrap()),
        "three",
        "a backwards index yields"
    );
    assert_eq!(w.index(), 0, "and resets to 0");
    assert_eq!(value(w.next().await.unwrap()), "four");
    assert_eq!(
        script.queries(),
        vec![
            "",
            "index=5&wait=60000ms",
            "index=5&wait=60000ms",
            "index=7&wait=60000ms",
            ""
        ],
        "the read after the reset is non-blocking"
    );
    let seen = script.seen();
    assert!(
        seen.iter()
            .all(|s| s.path == "/v1/kv/app/cfg" && s.method == Method::GET)
    );
    assert!(seen.iter().all(|s| s.token.as_deref() == Some("s3cret")));
}

#[tokio::test]
async fn missing_kv_key_is_none_with_index() {
    let (client, _script) = start(vec![
        status(404, Some(12), ""),
        status(404, Some(13), ""),
        status(404, Some(14), ""),
    ])
    .await;
    let (pair, meta) = client
        .kv_get("nope", &QueryOptions::default())
        .await
        .unwrap();
    assert!(pair.is_none());
    assert_eq!(meta.index, 12);
    assert!(meta.known_leader);
    let (pairs, meta) = client
        .kv_list("nope/", &QueryOptions::default())
        .await
        .unwrap();
    assert!(pairs.is_empty());
    assert_eq!(meta.index, 13);
    let (raw, meta) = client
        .kv_get_raw("nope", &QueryOptions::default())
        .await
        .unwrap();
    assert!(raw.is_none());
    assert_eq!(meta.index, 14);
}

#[tokio::test]
async fn missing_index_is_an_error() {
    let (client, _script) = start(vec![
        status(200, None, "[]"),
        status(200, None, "[]"),
        Reply {
            status: 200,
            index: Some("banana".into()),
            body: "[]".into(),
        },
    ])
    .await;
    let err = client
        .health_service("web", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::MissingIndex { value: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("/v1/health/service/web"), "{err}");

    // A watch does not retry it forever: it is not transient.
    let mut w =
        Watch::health_service(client.clone(), "web", QueryOptions::default()).with_config(fast());
    assert!(matches!(
        w.next().await,
        Err(ClientError::MissingIndex { .. })
    ));
    let err = client
        .catalog_nodes(&QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::MissingIndex { value: Some(ref v), .. } if v == "banana"),
        "{err}"
    );
}

#[tokio::test]
async fn server_down_backs_off_then_recovers() {
    // Reserve a port, then close it so that connections are refused.
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = CatalogClient::new(&addr.to_string(), None).unwrap();

    // A one-shot caller gives up with an error naming the URL.
    let mut once = Watch::whole_catalog(client.clone()).with_config(fast());
    let err = once.next_or_error(2).await.unwrap_err();
    assert!(matches!(err, ClientError::Http { .. }), "{err}");
    assert!(err.is_transient());
    assert!(
        err.to_string()
            .contains(&format!("http://{addr}/v1/cairn/catalog")),
        "{err}"
    );
    assert_eq!(once.failures(), 2);

    // A follower keeps retrying, observable through its status.
    let mut w = Watch::whole_catalog(client).with_config(fast());
    let status = w.status();
    let task = tokio::spawn(async move {
        let catalog = w.next().await;
        (catalog, w)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failing = status.borrow().clone();
    assert!(failing.failures >= 3, "retried: {failing:?}");
    // Backoff from 10 ms up to 40 ms: about 9 attempts in 300 ms, never a busy loop.
    assert!(failing.failures <= 20, "backed off: {failing:?}");
    assert!(matches!(failing.last_error, Some(ClientError::Http { .. })));
    assert!(failing.last_success.is_none());

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let body = r#"{"Nodes":[],"Services":[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"web-1","Service":"web","Port":80},"Checks":[]}]}"#;
    let script = serve(listener, vec![ok(21, body)]).await;
    let (catalog, w) = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let catalog = catalog.unwrap();
    assert_eq!(catalog.instances("web").count(), 1);
    assert_eq!(w.index(), 21);
    assert_eq!(w.failures(), 0);
    assert!(w.last_error().is_none());
    let healthy = status.borrow().clone();
    assert_eq!(
        (healthy.failures, healthy.updates, healthy.index),
        (0, 1, 21)
    );
    assert!(healthy.last_error.is_none());
    assert_eq!(script.seen()[0].path, "/v1/cairn/catalog");
}

#[tokio::test]
async fn server_errors_carry_the_message() {
    let (client, _script) = start(vec![
        status(500, None, "rpc error: No cluster leader"),
        status(400, None, "Invalid wait time"),
    ])
    .await;
    let err = client
        .catalog_services(&QueryOptions::default())
        .await
        .unwrap_err();
    match &err {
        ClientError::Status { status, body, url } => {
            assert_eq!(*status, 500);
            assert_eq!(body, "rpc error: No cluster leader");
            assert!(url.ends_with("/v1/catalog/services"));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.is_transient());
    let err = client
        .kv_put("k", b"v", &KvPutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(!err.is_transient());
    assert!(err.to_string().contains("Invalid wait time"), "{err}");
}

#[tokio::test]
async fn kv_writes_send_body_params_and_token() {
    let (client, script) = start(vec![
        status(200, None, "true"),
        status(200, None, "false"),
        status(200, None, "true"),
    ])
    .await;
    let put = KvPutOptions {
        flags: Some(42),
        cas: Some(0),
        ..Default::default()
    };
    assert!(client.kv_put("/a/b c", b"hello", &put).await.unwrap());
    assert!(!client.kv_delete("a", true, Some(9)).await.unwrap());
    let lock = KvPutOptions {
        acquire: Some("sess-1".into()),
        ..Default::default()
    };
    assert!(client.kv_put("lock", b"", &lock).await.unwrap());
    let seen = script.seen();
    assert_eq!(seen[0].method, Method::PUT);
    assert_eq!(seen[0].path, "/v1/kv/a/b%20c");
    assert_eq!(seen[0].query, "flags=42&cas=0");
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(seen[0].token.as_deref(), Some("s3cret"));
    assert_eq!(
        (seen[1].method.clone(), seen[1].query.as_str()),
        (Method::DELETE, "recurse&cas=9")
    );
    assert_eq!(seen[2].query, "acquire=sess-1");
}

#[tokio::test]
async fn catalog_and_health_reads() {
    let (client, script) = start(vec![
        ok(3, "null"),
        ok(4, r#"[{"Node":{"Node":"n1","Address":"10.0.0.1"},"Service":{"ID":"web-1","Service":"web","Address":"","Port":8080},"Checks":[{"CheckID":"c","Status":"passing"}]}]"#),
        ok(5, r#"{"web":["prod"],"db":[]}"#),
        ok(6, r#"[{"Node":"n1","CheckID":"c","Status":"warning"}]"#),
    ])
    .await;
    let (node, meta) = client
        .catalog_node("ghost", &QueryOptions::default())
        .await
        .unwrap();
    assert!(node.is_none(), "Consul's null body means unknown node");
    assert_eq!(meta.index, 3);

    let opts = QueryOptions {
        tag: vec!["prod".into(), "v2".into()],
        passing: true,
        node_meta: vec![("rack".into(), "r1".into())],
        filter: Some("Service.Port == 8080".into()),
        ..Default::default()
    };
    let (entries, _) = client.health_service("web", &opts).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].address(), "10.0.0.1");
    assert_eq!(entries[0].status(), CheckStatus::Passing);

    let (services, _) = client
        .catalog_services(&QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(services["web"], vec!["prod".to_string()]);

    let (checks, _) = client
        .health_state("warning", &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(checks[0].status, CheckStatus::Warning);

    let seen = script.seen();
    assert_eq!(seen[0].path, "/v1/catalog/node/ghost");
    assert_eq!(seen[1].path, "/v1/health/service/web");
    assert_eq!(
        seen[1].query,
        "filter=Service.Port+%3D%3D+8080&tag=prod&tag=v2&passing&node-meta=rack%3Ar1"
    );
    assert_eq!(seen[3].path, "/v1/health/state/warning");
}

#[tokio::test]
async fn agent_and_session_calls() {
    let (client, script) = start(vec![
        status(200, None, r#"{"Config":{"Datacenter":"dc1","NodeName":"n1","Version":"1.0"},"Member":{"Name":"n1"}}"#),
        status(200, None, "true"),
        status(200, None, r#"{"ID":"0b0c-sess"}"#),
        status(404, None, "Session id '0b0c-sess' not found"),
        status(200, None, ""),
    ])
    .await;
    let me = client.agent_self().await.unwrap();
    assert_eq!(
        (me.config.datacenter.as_str(), me.config.node_name.as_str()),
        ("dc1", "n1")
    );
    client
        .agent_check_update("service:web-1", CheckStatus::Warning, "slow")
        .await
        .unwrap();
    let req = SessionRequest {
        name: "lock".into(),
        ttl: "15s".into(),
        ..Default::default()
    };
    assert_eq!(client.session_create(&req).await.unwrap(), "0b0c-sess");
    assert!(client.session_renew("0b0c-sess").await.unwrap().is_none());
    client.agent_service_deregister("web-1").await.unwrap();

    let seen = script.seen();
    assert_eq!(seen[1].path, "/v1/agent/check/update/service:web-1");
    let update: serde_json::Value = serde_json::from_slice(&seen[1].body).unwrap();
    assert_eq!(update["Status"], "warning");
    assert_eq!(update["Output"], "slow");
    assert_eq!(seen[2].path, "/v1/session/create");
    let sent: serde_json::Value = serde_json::from_slice(&seen[2].body).unwrap();
    assert_eq!(sent["TTL"], "15s");
    assert_eq!(
        (seen[3].method.clone(), seen[3].path.as_str()),
        (Method::PUT, "/v1/session/renew/0b0c-sess")
    );
    assert_eq!(seen[4].path, "/v1/agent/service/deregister/web-1");
}

#[tokio::test]
async fn spawned_watch_publishes_changes() {
    let (client, _script) = start(vec![
        ok(2, r#"{"web":[]}"#),
        ok(3, r#"{"web":[]}"#),
        ok(4, r#"{"web":[],"db":[]}"#),
    ])
    .await;
    let mut rx = Watch::catalog_services(client, QueryOptions::default())
        .with_config(fast())
        .spawn();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(Option::is_some))
        .await
        .unwrap()
        .unwrap()
        .clone()
        .unwrap();
    assert!(first.contains_key("web"));
    let later = tokio::time::timeout(
        Duration::from_secs(5),
        rx.wait_for(|v| v.as_ref().is_some_and(|m| m.contains_key("db"))),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    assert_eq!(later.unwrap().len(), 2);
}

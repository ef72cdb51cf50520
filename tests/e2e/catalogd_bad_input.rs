//! Bad input: malformed JSON, wrong field types, unknown statuses, missing required fields, huge
//! values and invalid keys are refused with a 4xx naming the problem and change nothing; then a
//! seeded fuzz run over every route never gets a 5xx (beyond the documented `dc` 500) or a
//! dropped connection, and leaves the server healthy.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use cairn_tests::{Catalogd, Http, Resp};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};

/// Everything a bad request could have changed, read through the API.
async fn snapshot(h: &Http) -> Vec<(String, u16, String)> {
    let mut out = vec![(
        format!("raft index {}", h.raft_index().await),
        200,
        String::new(),
    )];
    for (path, read) in [
        ("/v1/catalog/nodes", true),
        ("/v1/catalog/services", true),
        ("/v1/kv/?recurse", true),
        ("/v1/session/list", true),
        // Agent endpoints answer without the read headers, as Consul's do.
        ("/v1/agent/checks", false),
        ("/v1/agent/services", false),
    ] {
        let r = h.get(path).await;
        let index = if read {
            r.index().to_string()
        } else {
            String::new()
        };
        out.push((format!("{path} @ {index}"), r.status, r.text()));
    }
    out
}

/// Sends a bad request and checks it is refused with `status`, that the message names
/// `needle`, and that nothing changed.
async fn refused(
    h: &Http,
    method: &str,
    path: &str,
    body: impl Into<Vec<u8>>,
    status: u16,
    needle: &str,
) {
    let before = snapshot(h).await;
    let r = h.send(method, path, Some(body.into())).await;
    assert_eq!(r.status, status, "{method} {path}: {}", r.text());
    assert!(
        r.text().contains(needle),
        "{method} {path}: the message should name {needle:?}: {}",
        r.text()
    );
    assert_eq!(snapshot(h).await, before, "{method} {path} changed state");
}

#[tokio::test]
async fn bad_bodies_are_refused_naming_the_problem() {
    let c = Catalogd::start().await;
    let h = &c.http;
    // Some state for the refusals not to disturb.
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n1", "Address": "10.0.0.1",
                "Service": {"ID": "web-1", "Service": "web", "Port": 80}}),
    )
    .await;
    h.put("/v1/kv/keep", "v").await;

    let reg = "/v1/catalog/register";
    refused(
        h,
        "PUT",
        reg,
        r#"{"Node": "n2", "Address": "#,
        400,
        "Request decode failed",
    )
    .await;
    refused(h, "PUT", reg, "", 400, "Request decode failed: EOF").await;
    refused(h, "PUT", reg, r#""a string""#, 400, "invalid type").await;
    refused(h, "PUT", reg, "[1, 2]", 400, "invalid type").await;
    refused(
        h,
        "PUT",
        reg,
        r#"{"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "api", "Port": "eighty"}}"#,
        400,
        "Port",
    )
    .await;
    refused(
        h,
        "PUT",
        reg,
        r#"{"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "api", "Port": 70000}}"#,
        400,
        "Port",
    )
    .await;
    refused(
        h,
        "PUT",
        reg,
        r#"{"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "api", "Tags": "x"}}"#,
        400,
        "Tags",
    )
    .await;
    refused(
        h,
        "PUT",
        reg,
        r#"{"Node": "n2", "Address": "10.0.0.2", "Check": {"CheckID": "c", "Status": "ok"}}"#,
        400,
        "Status",
    )
    .await;
    refused(h, "PUT", reg, r#"{"Address": "10.0.0.2"}"#, 400, "Node").await;
    refused(h, "PUT", reg, r#"{"Node": "n2"}"#, 400, "Address").await;
    refused(
        h,
        "PUT",
        reg,
        r#"{"Node": "n2", "Address": "10.0.0.2", "Service": {"Port": 80}}"#,
        400,
        "service name",
    )
    .await;
    refused(
        h,
        "PUT",
        reg,
        r#"{"Node": "n2", "Address": "10.0.0.2", "Check": {"CheckID": "c", "Definition": {"Interval": "often"}}}"#,
        400,
        "time: invalid duration \"often\"",
    )
    .await;
    refused(
        h,
        "PUT",
        "/v1/catalog/deregister",
        r#"{"ServiceID": "web-1"}"#,
        400,
        "Node",
    )
    .await;

    let agent = "/v1/agent/service/register";
    refused(
        h,
        "PUT",
        agent,
        r#"{"Port": 80}"#,
        400,
        "Missing service name",
    )
    .await;
    refused(
        h,
        "PUT",
        agent,
        r#"{"Name": "api", "Port": "eighty"}"#,
        400,
        "Port",
    )
    .await;
    refused(
        h,
        "PUT",
        agent,
        r#"{"Name": "api", "Tags": {"a": 1}}"#,
        400,
        "Tags",
    )
    .await;
    refused(
        h,
        "PUT",
        agent,
        r#"{"Name": "api", "Check": {"TTL": "10s", "Status": "ok"}}"#,
        400,
        "Status",
    )
    .await;
    refused(
        h,
        "PUT",
        agent,
        r#"{"Name": "api", "Check": {"TTL": "10s", "HTTP": "http://x/"}}"#,
        400,
        "Invalid check: Interval must be > 0",
    )
    .await;
    refused(
        h,
        "PUT",
        "/v1/agent/check/register",
        r#"{"TTL": "10s"}"#,
        400,
        "Missing check name",
    )
    .await;
    refused(
        h,
        "PUT",
        "/v1/agent/check/register",
        r#"{"Name": "c", "TTL": "ten seconds"}"#,
        400,
        "Request decode failed: time: invalid duration \"ten seconds\"",
    )
    .await;

    // Huge values.
    refused(
        h,
        "PUT",
        "/v1/kv/huge",
        vec![b'x'; 512 * 1024 + 1],
        413,
        "524288",
    )
    .await;
    let huge_txn = json!([{"KV": {"Verb": "set", "Key": "huge-txn",
        "Value": base64_of(&vec![b'y'; 512 * 1024 + 1])}}]);
    let before = snapshot(h).await;
    let r = h.put_json("/v1/txn", &huge_txn).await;
    // Consul's txn_max_req_len (512 KiB) refuses the body before its ops are looked at.
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("txn_max_req_len"), "{}", r.text());
    assert_eq!(snapshot(h).await, before);
    let long_key = format!("/v1/kv/{}", "k".repeat(9000));
    refused(h, "PUT", &long_key, "v", 400, "8192").await;

    // Invalid keys and query parameters.
    refused(h, "PUT", "/v1/kv//abs", "v", 400, "'/'").await;
    refused(h, "PUT", "/v1/kv/", "v", 400, "key").await;
    refused(h, "DELETE", "/v1/kv/", "", 400, "key").await;
    // Consul answers number parameters it cannot parse with 500 and the parse error.
    refused(h, "PUT", "/v1/kv/k?flags=1e9", "v", 500, "\"1e9\"").await;
    refused(h, "PUT", "/v1/kv/k?flags=-1", "v", 500, "\"-1\"").await;
    refused(h, "PUT", "/v1/kv/k?cas=x", "v", 500, "ParseUint").await;
    refused(h, "PUT", "/v1/kv/k?acquire=", "v", 500, "missing session").await;
    refused(
        h,
        "PUT",
        "/v1/kv/k?acquire=a&release=a",
        "v",
        400,
        "Conflicting flags: acquire=a&release=a",
    )
    .await;
    refused(
        h,
        "DELETE",
        "/v1/kv/keep?recurse&cas=1",
        "",
        400,
        "Conflicting flags",
    )
    .await;

    // Reads with bad parameters are refused too, naming the parameter.
    for (path, needle) in [
        ("/v1/kv/keep?index=-1", "index"),
        ("/v1/kv/keep?index=1&wait=zzz", "wait"),
        ("/v1/catalog/services?filter=((", "filter"),
        ("/v1/catalog/nodes?node-meta=novalue", "node-meta"),
        ("/v1/health/state/sick", "sick"),
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(r.text().contains(needle), "{path}: {}", r.text());
    }
    assert_eq!(h.get("/v1/kv/keep?raw").await.text(), "v");
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One route of the API with its methods (from `catalogd/src/http/mod.rs`); `{}` marks a path
/// parameter.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/catalog/register", &["PUT", "POST"]),
    ("/v1/catalog/deregister", &["PUT", "POST"]),
    ("/v1/catalog/services", &["GET"]),
    ("/v1/catalog/service/{}", &["GET"]),
    ("/v1/catalog/nodes", &["GET"]),
    ("/v1/catalog/node/{}", &["GET"]),
    ("/v1/catalog/datacenters", &["GET"]),
    ("/v1/health/service/{}", &["GET"]),
    ("/v1/health/checks/{}", &["GET"]),
    ("/v1/health/node/{}", &["GET"]),
    ("/v1/health/state/{}", &["GET"]),
    ("/v1/agent/self", &["GET"]),
    ("/v1/agent/members", &["GET"]),
    ("/v1/agent/services", &["GET"]),
    ("/v1/agent/service/{}", &["GET"]),
    ("/v1/agent/checks", &["GET"]),
    ("/v1/agent/service/register", &["PUT", "POST"]),
    ("/v1/agent/service/deregister/{}", &["PUT", "POST"]),
    ("/v1/agent/service/maintenance/{}", &["PUT", "POST"]),
    ("/v1/agent/maintenance", &["PUT", "POST"]),
    ("/v1/agent/check/register", &["PUT", "POST"]),
    ("/v1/agent/check/deregister/{}", &["PUT", "POST"]),
    ("/v1/agent/check/pass/{}", &["PUT", "POST"]),
    ("/v1/agent/check/warn/{}", &["PUT", "POST"]),
    ("/v1/agent/check/fail/{}", &["PUT", "POST"]),
    ("/v1/agent/check/update/{}", &["PUT", "POST"]),
    ("/v1/kv/", &["GET", "PUT", "DELETE"]),
    ("/v1/kv/{}", &["GET", "PUT", "POST", "DELETE"]),
    ("/v1/session/create", &["PUT", "POST"]),
    ("/v1/session/destroy/{}", &["PUT", "POST"]),
    ("/v1/session/renew/{}", &["PUT", "POST"]),
    ("/v1/session/info/{}", &["GET"]),
    ("/v1/session/list", &["GET"]),
    ("/v1/session/node/{}", &["GET"]),
    ("/v1/txn", &["PUT", "POST"]),
    ("/v1/status/leader", &["GET"]),
    ("/v1/status/peers", &["GET"]),
    ("/v1/cairn/catalog", &["GET"]),
    ("/v1/cairn/prometheus/targets", &["GET"]),
    ("/metrics", &["GET"]),
    ("/v1/agent/metrics", &["GET"]),
    ("/v1/agent/version", &["GET"]),
    ("/v1/agent/reload", &["PUT"]),
    ("/v1/agent/force-leave/{}", &["PUT"]),
    ("/v1/agent/token/{}", &["PUT"]),
    ("/v1/catalog/connect/{}", &["GET"]),
    ("/v1/catalog/gateway-services/{}", &["GET"]),
    ("/v1/health/connect/{}", &["GET"]),
    ("/v1/health/ingress/{}", &["GET"]),
    ("/v1/event/fire/{}", &["PUT"]),
    ("/v1/event/list", &["GET"]),
    ("/v1/coordinate/datacenters", &["GET"]),
    ("/v1/coordinate/nodes", &["GET"]),
    ("/v1/coordinate/node/{}", &["GET"]),
    ("/v1/coordinate/update", &["PUT"]),
    ("/v1/operator/raft/configuration", &["GET"]),
    ("/v1/operator/raft/transfer-leader", &["POST"]),
    ("/v1/operator/raft/peer", &["DELETE"]),
    ("/v1/operator/autopilot/configuration", &["GET", "PUT"]),
    ("/v1/operator/autopilot/health", &["GET"]),
    ("/v1/operator/autopilot/state", &["GET"]),
    ("/v1/operator/keyring", &["GET", "POST", "PUT", "DELETE"]),
    ("/v1/operator/usage", &["GET"]),
    ("/v1/config", &["PUT"]),
    ("/v1/config/{}", &["GET", "DELETE"]),
    ("/v1/config/service-defaults/{}", &["GET", "DELETE"]),
    ("/v1/discovery-chain/{}", &["GET", "POST"]),
    ("/v1/snapshot", &["GET", "PUT"]),
    ("/v1/query", &["GET", "POST"]),
    ("/v1/query/{}", &["GET", "PUT", "DELETE"]),
    ("/v1/query/{}/execute", &["GET"]),
    ("/v1/query/{}/explain", &["GET"]),
    ("/v1/agent/health/service/id/{}", &["GET"]),
    ("/v1/agent/health/service/name/{}", &["GET"]),
    ("/v1/catalog/node-services/{}", &["GET"]),
    ("/v1/peerings", &["GET"]),
    ("/v1/peering/{}", &["GET", "DELETE"]),
    ("/v1/peering/token", &["POST"]),
    // Not fuzzed: /v1/agent/leave stops the server, and /v1/agent/monitor streams until the
    // client goes away; both have tests of their own.
];

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE"];

/// Query strings that are wrong in some way, or right but unusual. None may block for long: a
/// valid `index` always comes with a short `wait`.
const QUERIES: &[&str] = &[
    "index=-1",
    "wait=zzz",
    "filter=((",
    "flags=1e9",
    "dc=dc9",
    "dc=dc1",
    "index=abc",
    "index=1&wait=20ms",
    "index=18446744073709551615&wait=10ms",
    "wait=99999999999h",
    "wait=-5s",
    "recurse",
    "keys&separator=/",
    "raw",
    "cas=abc",
    "cas=0",
    "acquire=",
    "acquire=nope",
    "release=nope",
    "enable=maybe",
    "enable=true&reason=fuzz",
    "enable=false",
    "note=%FF%FE",
    "passing",
    "passing=false",
    "tag=x&tag=",
    "node-meta=novalue",
    "node-meta=a:b",
    "replace-existing-checks",
    "filter=Service.Port%20%3D%3D",
    "filter=not%20not%20not",
    "token=abc",
    "%%%",
    "a=%zz&=&&",
    "stale&consistent",
];

/// Path parameter values: real names, unknown ones and awkward ones.
const PARAMS: &[&str] = &[
    "web",
    "web-1",
    "service:web-1",
    "cairn-test",
    "n1",
    "ttl-check",
    "any",
    "passing",
    "critical",
    "sick",
    "00000000-0000-0000-0000-000000000000",
    "a%2Fb",
    "%FF%FE",
    "a%00b",
    "..",
    "with%20space",
    "d%C3%A9j%C3%A0",
    "deep/key/path",
];

/// Field names the server knows, mixed with random ones.
const FIELDS: &[&str] = &[
    "Node",
    "Address",
    "Service",
    "ID",
    "Name",
    "Port",
    "Tags",
    "Meta",
    "NodeMeta",
    "Check",
    "Checks",
    "CheckID",
    "Status",
    "ServiceID",
    "TTL",
    "HTTP",
    "Interval",
    "LockDelay",
    "Behavior",
    "NodeChecks",
    "ServiceChecks",
    "KV",
    "Verb",
    "Key",
    "Value",
    "Flags",
    "Index",
    "Session",
    "Output",
    "Weights",
    "Datacenter",
    "SkipNodeUpdate",
    "Definition",
    "node",
    "service_id",
    "zzz",
    "",
];

fn random_string(rng: &mut StdRng) -> String {
    const PIECES: &[&str] = &[
        "",
        "web",
        "1s",
        "10s",
        "0s",
        "-5s",
        "99999999h",
        "passing",
        "critical",
        "ok",
        "release",
        "delete",
        "set",
        "cas",
        "lock",
        "get-tree",
        "explode",
        "10.0.0.1",
        "cairn-test",
        "%%%",
        "\u{0}",
        "é",
        "/abs",
        "a/b/",
        "ZmFrZQ==",
    ];
    match rng.random_range(0..3) {
        0 => PIECES[rng.random_range(0..PIECES.len())].to_string(),
        1 => (0..rng.random_range(0..20))
            .map(|_| char::from(rng.random_range(0x20u8..0x7f)))
            .collect(),
        _ => "x".repeat(rng.random_range(0..5000)),
    }
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    let pick = if depth > 4 {
        rng.random_range(0..6)
    } else {
        rng.random_range(0..8)
    };
    match pick {
        0 => Value::Null,
        1 => Value::Bool(rng.random_bool(0.5)),
        2 => json!(rng.random_range(-1_000_000i64..1_000_000)),
        3 => [
            json!(u64::MAX),
            json!(i64::MIN),
            json!(1e300),
            json!(0.5),
            json!(65536),
        ][rng.random_range(0..5)]
        .clone(),
        4 | 5 => Value::String(random_string(rng)),
        6 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut map = serde_json::Map::new();
            for _ in 0..rng.random_range(0..6) {
                let field = if rng.random_bool(0.8) {
                    FIELDS[rng.random_range(0..FIELDS.len())].to_string()
                } else {
                    random_string(rng)
                };
                map.insert(field, random_json(rng, depth + 1));
            }
            Value::Object(map)
        }
    }
}

/// Valid bodies of the write routes, to truncate or send whole.
fn valid_bodies() -> Vec<Value> {
    vec![
        json!({"Node": "n1", "Address": "10.0.0.1",
               "Service": {"ID": "web-1", "Service": "web", "Port": 80, "Tags": ["a"]},
               "Check": {"CheckID": "c1", "Status": "passing", "ServiceID": "web-1"}}),
        json!({"Node": "n1", "ServiceID": "web-1"}),
        json!({"Name": "web", "ID": "web-1", "Port": 8080, "Check": {"TTL": "10s"}}),
        json!({"Name": "ttl-check", "TTL": "30s"}),
        json!({"Status": "passing", "Output": "ok"}),
        json!({"Name": "s", "TTL": "30s", "Behavior": "delete", "LockDelay": "1s"}),
        json!([{"KV": {"Verb": "set", "Key": "fuzz/a", "Value": "YQ=="}},
               {"KV": {"Verb": "get-tree", "Key": "fuzz/"}}]),
    ]
}

fn random_body(rng: &mut StdRng, valid: &[Value]) -> (String, Option<Vec<u8>>) {
    match rng.random_range(0..8) {
        0 => ("none".into(), None),
        1 => {
            let mut bytes = vec![0u8; rng.random_range(0..2000)];
            rng.fill_bytes(&mut bytes);
            ("random bytes".into(), Some(bytes))
        }
        2 => {
            let text = valid[rng.random_range(0..valid.len())].to_string();
            let cut = rng.random_range(0..text.len());
            (
                format!("truncated at {cut}"),
                Some(text.as_bytes()[..cut].to_vec()),
            )
        }
        3 => {
            let depth = 10_000;
            let body = if rng.random_bool(0.5) {
                format!("{}{}", "[".repeat(depth), "]".repeat(depth))
            } else {
                let mut s = String::new();
                for _ in 0..depth {
                    s.push_str("{\"KV\":");
                }
                s.push('1');
                s.push_str(&"}".repeat(depth));
                s
            };
            ("10k deep".into(), Some(body.into_bytes()))
        }
        4 => {
            let body = valid[rng.random_range(0..valid.len())].to_string();
            ("valid".into(), Some(body.into_bytes()))
        }
        _ => {
            let v = random_json(rng, 0);
            ("random JSON".into(), Some(v.to_string().into_bytes()))
        }
    }
}

fn random_query(rng: &mut StdRng) -> String {
    let n = rng.random_range(0..4);
    let parts: Vec<&str> = (0..n)
        .map(|_| QUERIES[rng.random_range(0..QUERIES.len())])
        .collect();
    parts.join("&")
}

/// A 5xx that is a deliberate answer: Consul answers RPC-level refusals (an unknown datacenter,
/// a session TTL out of range, a config entry that does not validate...) with 500 and the reason
/// as the body, and catalogd does the same. A crash or an unexplained failure has no reason.
fn is_explained_500(resp: &Resp) -> bool {
    let text = resp.text();
    resp.status == 500 && !text.trim().is_empty() && !text.contains("Internal Server Error")
}

/// Consul's limits on stored meta, and cairn's on tags, hold on every registration path: a
/// 30 MiB meta value once made every whole-catalog answer 30 MiB.
#[tokio::test]
async fn oversized_registrations_are_refused_on_every_path() {
    let c = Catalogd::start().await;
    let h = &c.http;
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n1", "Address": "10.0.0.1"}),
    )
    .await;
    let big = "v".repeat(1024 * 1024);
    let many_tags: Vec<String> = (0..129).map(|i| format!("t{i}")).collect();
    let many_meta: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/catalog/register",
            json!({"Node": "n1", "Address": "10.0.0.1",
                   "Service": {"Service": "api", "Meta": {"blob": big}}}),
            "Invalid Service Meta: Couldn't load metadata pair ('blob', 'vvvv",
        ),
        (
            "/v1/catalog/register",
            json!({"Node": "n1", "Address": "10.0.0.1",
                   "Service": {"Service": "api", "Meta": many_meta}}),
            "Node metadata cannot contain more than 64 key/value pairs",
        ),
        (
            "/v1/catalog/register",
            json!({"Node": "n1", "Address": "10.0.0.1",
                   "Service": {"Service": "api", "Tags": many_tags}}),
            "Invalid Service Tags: 129 tags; a service may have at most 128",
        ),
        (
            "/v1/catalog/register",
            json!({"Node": "n2", "Address": "10.0.0.2", "NodeMeta": {"blob": big}}),
            "Invalid Node Meta: Couldn't load metadata pair",
        ),
        (
            "/v1/agent/service/register",
            json!({"Name": "api", "Tags": ["x".repeat(2000)]}),
            "Invalid Service Tags: tag 0 is 2000 bytes long",
        ),
        (
            "/v1/agent/service/register",
            json!({"Name": "api", "Meta": {"blob": big}}),
            "Value is too long (limit: 512 characters)",
        ),
    ];
    for (path, body, needle) in cases {
        let body = serde_json::to_vec(&body).unwrap();
        refused(h, "PUT", path, body, 400, needle).await;
    }
    // The error names the value without echoing a megabyte of it.
    let r = h
        .put_json(
            "/v1/catalog/register",
            &json!({"Node": "n1", "Address": "10.0.0.1",
                    "Service": {"Service": "api", "Meta": {"blob": big}}}),
        )
        .await;
    assert!(r.text().len() < 1024, "{} bytes of error", r.text().len());
}

#[tokio::test]
async fn fuzzed_requests_never_break_the_server() {
    let seed: u64 = std::env::var("CAIRN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0ca1_a10d);
    println!("fuzz seed {seed} (set CAIRN_FUZZ_SEED to replay another)");
    let mut rng = StdRng::seed_from_u64(seed);
    let c = Catalogd::start_with(&["--session-ttl-min", "1s"]).await;
    let h = &c.http;
    // Something for the requests to hit.
    h.put_json(
        "/v1/catalog/register",
        &json!({"Node": "n1", "Address": "10.0.0.1",
                "Service": {"ID": "web-1", "Service": "web", "Port": 80}}),
    )
    .await;
    h.put_json(
        "/v1/agent/service/register",
        &json!({"Name": "web", "ID": "web-1", "Port": 80, "Check": {"TTL": "30s"}}),
    )
    .await;
    h.put("/v1/kv/deep/key/path", "v").await;

    let valid = valid_bodies();
    let mut log = String::new();
    let mut problems: Vec<String> = Vec::new();
    for i in 0..300 {
        let (route, allowed) = ROUTES[rng.random_range(0..ROUTES.len())];
        let method = if rng.random_bool(0.75) {
            allowed[rng.random_range(0..allowed.len())]
        } else {
            METHODS[rng.random_range(0..METHODS.len())]
        };
        let param = PARAMS[rng.random_range(0..PARAMS.len())];
        let path = route.replace("{}", param);
        let query = random_query(&mut rng);
        let (kind, body) = random_body(&mut rng, &valid);
        let url = if query.is_empty() {
            path
        } else {
            format!("{path}?{query}")
        };
        log.push_str(&format!("#{i} {method} {url} body: {kind}\n"));
        match h.try_send(method, &url, body).await {
            Err(e) => problems.push(format!("#{i} {method} {url} ({kind}) got no answer: {e:?}")),
            Ok(resp) => {
                log.push_str(&format!("    -> {}\n", resp.status));
                if resp.status >= 500 && !is_explained_500(&resp) {
                    problems.push(format!(
                        "#{i} {method} {url} ({kind}) answered {}: {}",
                        resp.status,
                        resp.text()
                    ));
                }
            }
        }
    }
    println!("{log}");

    // Still healthy: status, a KV round trip, and the agent answering.
    let leader = h.get("/v1/status/leader").await;
    assert_eq!(leader.status, 200, "seed {seed}");
    let r = h.put("/v1/kv/after-fuzz", "still here").await;
    assert_eq!(r.text(), "true", "seed {seed}");
    assert_eq!(
        h.get("/v1/kv/after-fuzz?raw").await.text(),
        "still here",
        "seed {seed}"
    );
    let me = h.get("/v1/agent/self").await;
    assert_eq!(me.status, 200, "seed {seed}");
    assert_eq!(me.value()["Config"]["NodeName"], "cairn-test");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.pid())).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("gone");
    assert!(
        state != "Z" && state != "gone",
        "seed {seed}: catalogd is not running (state {state})"
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} of 300 requests failed:\n{}\n(every request is listed in the test's \
         stdout)\ncatalogd log:\n{}",
        problems.len(),
        problems.join("\n"),
        c.log_text()
    );
}

/// Reads one HTTP/1.1 response (headers and a Content-Length body) from `stream`; returns the
/// lowercased head and the body, or None when the connection ends first.
fn read_response(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some((head, body))
}

/// Sends `method path` with a body of `body_len` bytes, then a plain `GET /v1/status/leader` on
/// the same keep-alive connection. Ok when the second request is answered, or when the first
/// answer announced `Connection: close` (so a client knows not to reuse the connection).
fn keep_alive_survives(port: u16, method: &str, path: &str, body_len: usize) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {body_len}\r\n\r\n"
    );
    let sender = std::thread::spawn(move || {
        // The server may answer and stop reading before the body is all sent: ignore errors.
        let _ = writer.write_all(head.as_bytes());
        // See above.
        let _ = writer.write_all(&vec![b'x'; body_len]);
    });
    let first = read_response(&mut stream);
    // The sender's own errors were ignored on purpose; it cannot panic.
    let _ = sender.join();
    let Some((head, _)) = first else {
        return Err(format!("{method} {path}: no answer at all"));
    };
    let status = head.lines().next().unwrap_or_default().to_string();
    if head.contains("\r\nconnection: close") {
        return Ok(());
    }
    let second = stream
        .write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()
        .and_then(|_| read_response(&mut stream));
    match second {
        Some((h, _)) if h.starts_with("http/1.1 200") => Ok(()),
        Some((h, _)) => Err(format!(
            "{method} {path} ({status}), then GET /v1/status/leader on the same connection: {}",
            h.lines().next().unwrap_or_default()
        )),
        None => Err(format!(
            "{method} {path} was answered `{status}` without `Connection: close`, then the \
             connection was closed: the next request on it got no answer"
        )),
    }
}

#[tokio::test]
async fn ignored_request_bodies_do_not_break_keep_alive_connections() {
    let c = Catalogd::start().await;
    let port = c.port;
    c.http
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "beat", "TTL": "60s"}),
        )
        .await;
    let outcome = tokio::task::spawn_blocking(move || {
        // Control: a handler that reads its body keeps the connection usable.
        let control = keep_alive_survives(port, "PUT", "/v1/kv/big", 256 * 1024);
        let mut failures = Vec::new();
        for (method, path) in [
            // A body the handler has no use for (clients do send `{}` or a note here).
            ("PUT", "/v1/agent/check/pass/beat"),
            // A typo in the URL of an upload.
            ("PUT", "/v1/kvv/typo"),
            // A method the route does not have.
            ("DELETE", "/v1/txn"),
            // A read sent with a body.
            ("GET", "/v1/status/leader"),
        ] {
            if let Err(e) = keep_alive_survives(port, method, path, 1024 * 1024) {
                failures.push(e);
            }
        }
        (control, failures)
    })
    .await
    .expect("the raw HTTP exchange ran");
    assert_eq!(outcome.0, Ok(()), "control case");
    assert!(
        outcome.1.is_empty(),
        "a request whose body the server did not read left the connection unusable without \
         saying so (Consul's Go server drains the body or sends `Connection: close`):\n{}",
        outcome.1.join("\n")
    );
    assert_eq!(c.http.get("/v1/kv/big?raw").await.body.len(), 256 * 1024);
}

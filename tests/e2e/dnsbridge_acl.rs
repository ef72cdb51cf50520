//! dnsbridge reading a catalogd with ACLs on: with its own `--token` it answers the services and
//! prepared queries that token may read, and nothing else (a name it may not see is NXDOMAIN, as
//! if it did not exist).

use cairn_tests::{Catalogd, Http};
use hickory_proto::rr::RecordType;
use serde_json::json;

use super::dnsbridge_common::Bridge;

const ROOT: &str = "0d9c1a37-5d2e-4f61-8b0a-3f7e2c1d9a55";

#[tokio::test]
async fn dnsbridge_answers_only_what_its_token_may_read() {
    let c = Catalogd::start_with(&[
        "--acl-enabled",
        "--acl-default-policy",
        "deny",
        "--acl-initial-management-token",
        ROOT,
    ])
    .await;
    let root = Http::new(&c.url).with_header("X-Consul-Token", ROOT);
    for (node, addr, service) in [("n1", "10.0.0.1", "web"), ("n2", "10.0.0.2", "db")] {
        let reg =
            json!({"Node": node, "Address": addr, "Service": {"Service": service, "Port": 80}});
        let r = root.put_json("/v1/catalog/register", &reg).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for (name, service) in [("web-q", "web"), ("db-q", "db")] {
        let body =
            serde_json::to_vec(&json!({"Name": name, "Service": {"Service": service}})).unwrap();
        let r = root.send("POST", "/v1/query", Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let policy = json!({"Name": "dns", "Rules": r#"
service "web" { policy = "read" }
node_prefix "" { policy = "read" }
query "web-q" { policy = "read" }
"#});
    assert_eq!(root.put_json("/v1/acl/policy", &policy).await.status, 200);
    let token = root
        .put_json("/v1/acl/token", &json!({"Policies": [{"Name": "dns"}]}))
        .await
        .value()["SecretID"]
        .as_str()
        .unwrap()
        .to_string();

    let b = Bridge::start(&c.url, &["--token", &token]);
    b.wait_for_addrs("web.service.consul", RecordType::A, &["10.0.0.1"]);
    b.wait_for_addrs("web-q.query.consul", RecordType::A, &["10.0.0.1"]);
    // The same view that answers web does not hold db: hidden, not merely slow.
    for name in ["db.service.consul", "db-q.query.consul"] {
        let d = b.dig(&["+norecurse", name, "A"]);
        assert_eq!(d.status, "NXDOMAIN", "{name}: {}", d.out);
    }
    assert!(!b.log_text().contains(&token), "dnsbridge logged its token");

    // Without a token it sees nothing at all, and says so in its log rather than serving stale
    // or invented answers.
    let anonymous = Bridge::start(&c.url, &[]);
    let d = anonymous.dig(&["+norecurse", "web.service.consul", "A"]);
    assert_ne!(d.status, "NOERROR", "{}", d.out);
}

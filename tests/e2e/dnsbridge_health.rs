//! dnsbridge health filtering against a real catalogd: an instance with a critical service check
//! is never answered, a critical node-level check hides every instance on that node, warning
//! instances are answered by default and left out with `--only-passing`, a service whose
//! instances are all critical is NXDOMAIN with the SOA, and a check changing state changes the
//! answers.

use cairn_tests::Catalogd;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dnsbridge_common::{Bridge, Inst, addrs, node_check, register_all, set};

async fn catalog() -> Catalogd {
    let c = Catalogd::start().await;
    register_all(
        &c,
        &[
            Inst::new("api", "api-1", "n1", "127.0.0.21", 9001).check("passing"),
            Inst::new("api", "api-2", "n2", "127.0.0.22", 9002).check("critical"),
            Inst::new("api", "api-3", "n3", "127.0.0.23", 9003).check("warning"),
            // Passing itself, but its node is critical (below).
            Inst::new("api", "api-4", "n4", "127.0.0.24", 9004).check("passing"),
            // No checks at all: passing.
            Inst::new("api", "api-5", "n5", "127.0.0.25", 9005),
            // Passing itself, its node is warning (below).
            Inst::new("api", "api-6", "n6", "127.0.0.26", 9006).check("passing"),
            Inst::new("cache", "cache-1", "n1", "127.0.0.21", 6379),
            Inst::new("cache", "cache-4", "n4", "127.0.0.24", 6379),
            Inst::new("dead", "dead-2", "n2", "127.0.0.22", 7000).check("critical"),
            Inst::new("dead", "dead-3", "n3", "127.0.0.23", 7000).check("critical"),
            // Alive itself but on the critical node: the whole service is hidden.
            Inst::new("lonely", "lonely-4", "n4", "127.0.0.24", 7100),
        ],
    )
    .await;
    node_check(&c, "n4", "127.0.0.24", "critical").await;
    node_check(&c, "n6", "127.0.0.26", "warning").await;
    c
}

/// Every form of `api` must give exactly `want` (addresses; SRV through the glue).
fn assert_api(b: &Bridge, want: &[&str], label: &str) {
    let want_set = set(want);
    let d = b.dig(&["+norecurse", "api.service.consul", "A"]);
    assert_eq!(d.status, "NOERROR", "{label}: {}", d.out);
    assert_eq!(d.addrs(), want_set, "{label}: {}", d.out);
    let r = b.udp("api.service.consul", RecordType::A);
    assert_eq!(r.addrs(), want_set, "{label}: {}", r.summary());
    let srv = b.tcp("_api._tcp.service.consul", RecordType::SRV);
    assert_eq!(
        srv.msg.answers.len(),
        want.len(),
        "{label}: {}",
        srv.summary()
    );
    assert_eq!(
        addrs(&srv.msg.additionals),
        want_set,
        "{label}: SRV glue: {}",
        srv.summary()
    );
}

fn assert_nxdomain_with_soa(b: &Bridge, name: &str, rtype: RecordType, label: &str) {
    let r = b.udp(name, rtype);
    assert_eq!(
        r.rcode(),
        ResponseCode::NXDomain,
        "{label}: {}",
        r.summary()
    );
    assert!(r.msg.answers.is_empty(), "{label}: {}", r.summary());
    assert_eq!(r.msg.authorities.len(), 1, "{label}: {}", r.summary());
    assert_eq!(
        r.msg.authorities[0].record_type(),
        RecordType::SOA,
        "{label}: {}",
        r.summary()
    );
    let d = b.dig(&["+norecurse", name, &rtype.to_string()]);
    assert_eq!(d.status, "NXDOMAIN", "{label}: {}", d.out);
    assert_eq!(d.authority.len(), 1, "{label}: {}", d.out);
    assert_eq!(d.authority[0].rtype, "SOA", "{label}: {}", d.out);
}

#[tokio::test]
async fn critical_never_warning_unless_only_passing() {
    let c = catalog().await;
    let default = Bridge::start(&c.url, &[]);
    let strict = Bridge::start(&c.url, &["--only-passing"]);
    let everyone_ok = ["127.0.0.21", "127.0.0.23", "127.0.0.25", "127.0.0.26"];
    let passing_only = ["127.0.0.21", "127.0.0.25"];
    default.wait_for_addrs("api.service.consul", RecordType::A, &everyone_ok);
    strict.wait_for_addrs("api.service.consul", RecordType::A, &passing_only);

    // Critical service check (api-2) and critical node check (api-4) never; warning service
    // check (api-3) and warning node check (api-6) only by default.
    assert_api(&default, &everyone_ok, "default");
    assert_api(&strict, &passing_only, "--only-passing");

    for (b, label) in [(&default, "default"), (&strict, "--only-passing")] {
        // The critical node hides its other services too.
        let r = b.udp("cache.service.consul", RecordType::A);
        assert_eq!(r.addrs(), set(&["127.0.0.21"]), "{label}: {}", r.summary());
        // Only critical instances: NXDOMAIN with the SOA, for every form.
        assert_nxdomain_with_soa(b, "dead.service.consul", RecordType::A, label);
        assert_nxdomain_with_soa(b, "_dead._tcp.service.consul", RecordType::SRV, label);
        assert_nxdomain_with_soa(b, "lonely.service.consul", RecordType::A, label);
    }

    // Checks change: api-1 turns critical, api-2 recovers, n4's node check passes again.
    register_all(
        &c,
        &[
            Inst::new("api", "api-1", "n1", "127.0.0.21", 9001).check("critical"),
            Inst::new("api", "api-2", "n2", "127.0.0.22", 9002).check("passing"),
        ],
    )
    .await;
    node_check(&c, "n4", "127.0.0.24", "passing").await;
    let took = default.wait_for_addrs(
        "api.service.consul",
        RecordType::A,
        &[
            "127.0.0.22",
            "127.0.0.23",
            "127.0.0.24",
            "127.0.0.25",
            "127.0.0.26",
        ],
    );
    println!("health changes showed in default answers after {took:?}");
    strict.wait_for_addrs(
        "api.service.consul",
        RecordType::A,
        &["127.0.0.22", "127.0.0.24", "127.0.0.25"],
    );
    strict.wait_for_addrs("lonely.service.consul", RecordType::A, &["127.0.0.24"]);
    let r = strict.udp("cache.service.consul", RecordType::A);
    assert_eq!(
        r.addrs(),
        set(&["127.0.0.21", "127.0.0.24"]),
        "{}",
        r.summary()
    );
}

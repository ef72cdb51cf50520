//! dnsbridge name forms and record types against a real catalogd, asked with real `dig` and with
//! hickory-proto over UDP and TCP: `[tag.]<svc>.service[.<dc>].consul`, RFC 2782
//! `_<svc>._<tag|tcp|udp>.service…` (SRV targets the node name, addresses in the additional
//! section), `<node>.node[.<dc>].consul`, case-insensitivity, A/AAAA/ANY/SRV, the apex SOA and NS,
//! NXDOMAIN and NODATA with the SOA in the authority section, and a custom domain, datacenter and
//! TTL.

use std::collections::BTreeSet;

use cairn_tests::Catalogd;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::json;

use crate::dnsbridge_common::{Bridge, Dig, Inst, Reply, register, register_all, rr_set, set};

/// What one question must get.
struct Case {
    name: &'static str,
    rtype: RecordType,
    rcode: ResponseCode,
    /// The answer section as "TYPE rdata" (SOA answers are checked by shape instead).
    answers: &'static [&'static str],
    /// The additional section as "owner TYPE rdata" (checked when not empty).
    glue: &'static [&'static str],
}

const SRV_ALL: &[&str] = &[
    "SRV 1 1 8080 n1.node.dc1.consul.",
    "SRV 1 1 8081 n2.node.dc1.consul.",
    "SRV 1 1 8082 n3.node.dc1.consul.",
];
const GLUE_ALL: &[&str] = &[
    "n1.node.dc1.consul. A 127.0.0.11",
    "n2.node.dc1.consul. A 127.0.0.12",
    "n3.node.dc1.consul. AAAA fd00::5",
];
const WEB_V4: &[&str] = &["A 127.0.0.11", "A 127.0.0.12"];

fn cases() -> Vec<Case> {
    use RecordType::*;
    let ok = ResponseCode::NoError;
    let nx = ResponseCode::NXDomain;
    let c = |name, rtype, rcode, answers, glue| Case {
        name,
        rtype,
        rcode,
        answers,
        glue,
    };
    vec![
        // Services: plain, with the datacenter, any case, by tag, per address family.
        c("web.service.consul", A, ok, WEB_V4, &[]),
        c("web.service.consul.", A, ok, WEB_V4, &[]),
        c("WEB.Service.CONSUL", A, ok, WEB_V4, &[]),
        c("web.service.dc1.consul", A, ok, WEB_V4, &[]),
        c("Web.SERVICE.Dc1.Consul.", A, ok, WEB_V4, &[]),
        c("prod.web.service.consul", A, ok, &["A 127.0.0.11"], &[]),
        c("PROD.web.service.dc1.consul", A, ok, &["A 127.0.0.11"], &[]),
        c("canary.web.service.consul", A, ok, &["A 127.0.0.12"], &[]),
        c("web.service.consul", AAAA, ok, &["AAAA fd00::5"], &[]),
        c(
            "canary.web.service.consul",
            AAAA,
            ok,
            &["AAAA fd00::5"],
            &[],
        ),
        c(
            "web.service.consul",
            ANY,
            ok,
            &["A 127.0.0.11", "A 127.0.0.12", "AAAA fd00::5"],
            &[],
        ),
        c(
            "canary.web.service.consul",
            ANY,
            ok,
            &["A 127.0.0.12", "AAAA fd00::5"],
            &[],
        ),
        // Registered as "Api": names are case-insensitive on the catalog side too.
        c("api.service.consul", A, ok, &["A 127.0.0.12"], &[]),
        // SRV: RFC 2782 forms and the plain form, targets are node names, glue in additional.
        c("_web._tcp.service.consul", SRV, ok, SRV_ALL, GLUE_ALL),
        c("_web._udp.service.dc1.consul", SRV, ok, SRV_ALL, GLUE_ALL),
        c("_WEB._TCP.Service.Consul", SRV, ok, SRV_ALL, GLUE_ALL),
        c("web.service.consul", SRV, ok, SRV_ALL, GLUE_ALL),
        c(
            "_web._prod.service.consul",
            SRV,
            ok,
            &["SRV 1 1 8080 n1.node.dc1.consul."],
            &["n1.node.dc1.consul. A 127.0.0.11"],
        ),
        c(
            "_web._canary.service.consul",
            SRV,
            ok,
            &[
                "SRV 1 1 8081 n2.node.dc1.consul.",
                "SRV 1 1 8082 n3.node.dc1.consul.",
            ],
            &[
                "n2.node.dc1.consul. A 127.0.0.12",
                "n3.node.dc1.consul. AAAA fd00::5",
            ],
        ),
        c(
            "_web._prod.service.dc1.consul",
            SRV,
            ok,
            &["SRV 1 1 8080 n1.node.dc1.consul."],
            &["n1.node.dc1.consul. A 127.0.0.11"],
        ),
        // Two instances on one node: two SRV records, one glue record.
        c(
            "_pair._tcp.service.consul",
            SRV,
            ok,
            &[
                "SRV 1 1 7001 n1.node.dc1.consul.",
                "SRV 1 1 7002 n1.node.dc1.consul.",
            ],
            &["n1.node.dc1.consul. A 127.0.0.11"],
        ),
        c(
            "prod.web.service.consul",
            SRV,
            ok,
            &["SRV 1 1 8080 n1.node.dc1.consul."],
            &["n1.node.dc1.consul. A 127.0.0.11"],
        ),
        // Nodes.
        c("n1.node.consul", A, ok, &["A 127.0.0.11"], &[]),
        c("N1.Node.DC1.consul", A, ok, &["A 127.0.0.11"], &[]),
        c("gate.node.consul", A, ok, &["A 127.0.0.20"], &[]),
        c("v6node.node.consul", AAAA, ok, &["AAAA fd00::7"], &[]),
        c("n1.node.consul", ANY, ok, &["A 127.0.0.11"], &[]),
        // The apex.
        c("consul.", SOA, ok, &[], &[]),
        c("CONSUL", SOA, ok, &[], &[]),
        c(
            "consul.",
            NS,
            ok,
            &["NS ns.consul."],
            &["ns.consul. A 127.0.0.1"],
        ),
        // NODATA: the name exists, not with this type.
        c("web.service.consul", TXT, ok, &[], &[]),
        c("n1.node.consul", AAAA, ok, &[], &[]),
        c("v6node.node.consul", A, ok, &[], &[]),
        c("n1.node.consul", SRV, ok, &[], &[]),
        c("prod.web.service.consul", AAAA, ok, &[], &[]),
        c("consul.", A, ok, &[], &[]),
        // NXDOMAIN: other datacenter, unknown service, tag, node, or no such name form.
        c("web.service.dc2.consul", A, nx, &[], &[]),
        c("_web._tcp.service.dc2.consul", SRV, nx, &[], &[]),
        c("db.service.consul", A, nx, &[], &[]),
        c("_db._tcp.service.consul", SRV, nx, &[], &[]),
        c("nosuchtag.web.service.consul", A, nx, &[], &[]),
        c("nosuch.node.consul", A, nx, &[], &[]),
        c("a.b.web.service.consul", A, nx, &[], &[]),
        c("web.consul", A, nx, &[], &[]),
        c("web.nothing.consul", A, nx, &[], &[]),
        c("service.consul", A, nx, &[], &[]),
        c("node.consul", A, nx, &[], &[]),
        c("dc1.consul", A, nx, &[], &[]),
    ]
}

fn dig_status(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        other => panic!("no dig status for {other}"),
    }
}

/// An SOA rdata of the consul zone ("ns.consul. hostmaster.consul. SERIAL ...").
fn is_zone_soa(rdata: &str) -> bool {
    rdata.starts_with("ns.consul. hostmaster.consul. ")
}

fn check_dig(case: &Case, d: &Dig) {
    let what = format!("dig {} {}:\n{}", case.name, case.rtype, d.out);
    assert_eq!(d.status, dig_status(case.rcode), "{what}");
    assert!(
        d.has_flag("qr") && d.has_flag("aa"),
        "authoritative: {what}"
    );
    assert!(!d.has_flag("tc"), "{what}");
    assert!(d.answer.iter().all(|r| r.ttl == 0), "TTL 0: {what}");
    if case.rtype == RecordType::SOA {
        assert_eq!(d.answer.len(), 1, "{what}");
        assert_eq!(d.answer[0].name, "consul.", "{what}");
        assert_eq!(d.answer[0].rtype, "SOA", "{what}");
        assert!(is_zone_soa(&d.answer[0].data), "{what}");
        return;
    }
    assert_eq!(d.answer_set(), set(case.answers), "{what}");
    assert_eq!(d.answer.len(), case.answers.len(), "no duplicates: {what}");
    let owner = format!("{}.", case.name.trim_end_matches('.'));
    for r in &d.answer {
        assert!(
            r.name.eq_ignore_ascii_case(&owner),
            "answers are owned by the question's name: {what}"
        );
    }
    if !case.glue.is_empty() {
        assert_eq!(d.glue_set(), set(case.glue), "{what}");
    }
    if case.answers.is_empty() {
        assert_eq!(d.authority.len(), 1, "SOA in the authority section: {what}");
        let soa = &d.authority[0];
        assert_eq!(
            (soa.name.as_str(), soa.rtype.as_str()),
            ("consul.", "SOA"),
            "{what}"
        );
        assert!(is_zone_soa(&soa.data), "{what}");
    }
}

fn check_reply(case: &Case, r: &Reply, transport: &str) {
    let what = format!("{transport} {} {}: {}", case.name, case.rtype, r.summary());
    assert_eq!(r.rcode(), case.rcode, "{what}");
    assert!(r.msg.metadata.authoritative, "{what}");
    assert!(!r.msg.metadata.truncation, "{what}");
    if case.rtype == RecordType::SOA {
        assert_eq!(r.msg.answers.len(), 1, "{what}");
        assert_eq!(r.msg.answers[0].name.to_string().to_lowercase(), "consul.");
        assert!(
            is_zone_soa(&r.msg.answers[0].data.to_string()),
            "{what}: {}",
            r.msg.answers[0].data
        );
        return;
    }
    assert_eq!(r.answer_set(), set(case.answers), "{what}");
    assert_eq!(r.msg.answers.len(), case.answers.len(), "{what}");
    if !case.glue.is_empty() {
        assert_eq!(r.glue_set(), set(case.glue), "{what}");
    }
    if case.answers.is_empty() {
        let auth = rr_set(&r.msg.authorities);
        assert_eq!(r.msg.authorities.len(), 1, "{what}");
        assert_eq!(r.msg.authorities[0].name.to_string(), "consul.", "{what}");
        assert!(
            auth.iter()
                .all(|a| a.strip_prefix("SOA ").is_some_and(is_zone_soa)),
            "SOA in the authority section: {what}"
        );
    }
}

async fn catalog() -> Catalogd {
    let c = Catalogd::start().await;
    register_all(
        &c,
        &[
            Inst::new("web", "web-1", "n1", "127.0.0.11", 8080).tags(&["Prod", "v1"]),
            Inst::new("web", "web-2", "n2", "127.0.0.12", 8081).tags(&["canary"]),
            Inst::new("web", "web-3", "n3", "127.0.0.13", 8082)
                .tags(&["canary"])
                .service_addr("fd00::5"),
            Inst::new("Api", "api-1", "n2", "127.0.0.12", 9000),
            Inst::new("pair", "pair-1", "n1", "127.0.0.11", 7001),
            Inst::new("pair", "pair-2", "n1", "127.0.0.11", 7002),
        ],
    )
    .await;
    register(&c, &json!({"Node": "Gate", "Address": "127.0.0.20"})).await;
    register(&c, &json!({"Node": "v6node", "Address": "fd00::7"})).await;
    c
}

#[tokio::test]
async fn every_name_form_and_record_type() {
    let c = catalog().await;
    let b = Bridge::start(&c.url, &[]);
    // The last registration is in the view once this node answers.
    b.wait_for_addrs("v6node.node.consul", RecordType::AAAA, &["fd00::7"]);

    for case in cases() {
        let rtype = case.rtype.to_string();
        check_dig(&case, &b.dig(&["+norecurse", case.name, &rtype]));
        check_reply(&case, &b.udp(case.name, case.rtype), "UDP");
        check_reply(&case, &b.tcp(case.name, case.rtype), "TCP");
    }

    // dig over TCP and without EDNS gives the same answers.
    let d = b.dig(&["+tcp", "+norecurse", "_web._tcp.service.consul", "SRV"]);
    assert!(d.over_tcp, "{}", d.out);
    assert_eq!(d.answer_set(), set(SRV_ALL), "{}", d.out);
    assert_eq!(d.glue_set(), set(GLUE_ALL), "{}", d.out);
    let d = b.dig(&["+noedns", "+norecurse", "web.service.consul", "A"]);
    assert_eq!(d.answer_set(), set(WEB_V4), "{}", d.out);
    assert_eq!(
        d.edns_udp, None,
        "no OPT in an answer to a query without EDNS"
    );

    // A query with EDNS gets EDNS back.
    let d = b.dig(&["+bufsize=1232", "+norecurse", "web.service.consul"]);
    assert!(d.edns_udp.is_some(), "OPT echoed: {}", d.out);
    let r = b.udp("web.service.consul", RecordType::A);
    assert!(r.msg.edns.is_some(), "OPT echoed: {}", r.summary());
}

#[tokio::test]
async fn custom_domain_datacenter_and_ttl() {
    let c = catalog().await;
    let b = Bridge::start(
        &c.url,
        &[
            "--domain",
            "Cairn.Local",
            "--datacenter",
            "East",
            "--ttl",
            "30s",
        ],
    );
    b.wait_for_addrs(
        "web.service.cairn.local",
        RecordType::A,
        &["127.0.0.11", "127.0.0.12"],
    );

    let d = b.dig(&["+norecurse", "web.service.east.cairn.local"]);
    assert_eq!(d.status, "NOERROR", "{}", d.out);
    assert_eq!(d.addrs(), set(&["127.0.0.11", "127.0.0.12"]), "{}", d.out);
    assert!(d.answer.iter().all(|r| r.ttl == 30), "TTL 30: {}", d.out);

    let r = b.tcp("_web._prod.service.EAST.cairn.local", RecordType::SRV);
    assert_eq!(
        r.answer_set(),
        set(&["SRV 1 1 8080 n1.node.east.cairn.local."]),
        "{}",
        r.summary()
    );
    assert_eq!(
        r.glue_set(),
        set(&["n1.node.east.cairn.local. A 127.0.0.11"]),
        "{}",
        r.summary()
    );
    assert!(r.msg.answers.iter().all(|a| a.ttl == 30), "{}", r.summary());

    let soa = b.udp("cairn.local.", RecordType::SOA);
    assert_eq!(soa.rcode(), ResponseCode::NoError);
    assert!(
        soa.msg.answers[0]
            .data
            .to_string()
            .starts_with("ns.cairn.local. hostmaster.cairn.local. "),
        "{}",
        soa.summary()
    );

    // dc1 is another datacenter now; consul. is not this bridge's domain (no recursor: REFUSED).
    let nx = b.udp("web.service.dc1.cairn.local", RecordType::A);
    assert_eq!(nx.rcode(), ResponseCode::NXDomain, "{}", nx.summary());
    assert_eq!(
        nx.msg
            .authorities
            .iter()
            .map(|a| a.record_type())
            .collect::<BTreeSet<_>>(),
        [RecordType::SOA].into_iter().collect()
    );
    let d = b.dig(&["+norecurse", "web.service.consul"]);
    assert_eq!(d.status, "REFUSED", "{}", d.out);
    assert!(d.answer.is_empty(), "{}", d.out);
}

/// The apex names `ns.<domain>` in its NS answer (with an A record in the additional section) and
/// as the SOA's MNAME; the same server must then not deny that name exists.
#[tokio::test]
async fn the_nameserver_named_at_the_apex_resolves() {
    let c = catalog().await;
    let b = Bridge::start(&c.url, &[]);
    b.wait_for_addrs("v6node.node.consul", RecordType::AAAA, &["fd00::7"]);

    let ns = b.dig(&["+norecurse", "consul.", "NS"]);
    assert_eq!(ns.answer_set(), set(&["NS ns.consul."]), "{}", ns.out);
    assert_eq!(
        ns.glue_set(),
        set(&["ns.consul. A 127.0.0.1"]),
        "{}",
        ns.out
    );
    let d = b.dig(&["+norecurse", "ns.consul.", "A"]);
    assert_eq!(
        (d.status.as_str(), d.answer_set()),
        ("NOERROR", set(&["A 127.0.0.1"])),
        "ns.consul. is the zone's nameserver (NS target, SOA MNAME, glue 127.0.0.1): the same \
         server must not answer that it does not exist:\n{}",
        d.out
    );
}

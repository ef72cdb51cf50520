//! dnsbridge spreads load: every answer lists all instances in a fresh order, for A answers (UDP,
//! TCP and dig) and for SRV answers.

use std::collections::BTreeSet;

use cairn_tests::Catalogd;
use hickory_proto::rr::{RData, RecordType};

use crate::dnsbridge_common::{Bridge, Inst, register_all, set};

const ADDRS: [&str; 5] = [
    "127.0.0.31",
    "127.0.0.32",
    "127.0.0.33",
    "127.0.0.34",
    "127.0.0.35",
];

#[tokio::test]
async fn order_is_shuffled_per_answer() {
    let c = Catalogd::start().await;
    let instances: Vec<Inst> = ADDRS
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Inst::new(
                "web",
                &format!("web-{i}"),
                &format!("n{i}"),
                a,
                8000 + i as u16,
            )
        })
        .collect();
    register_all(&c, &instances).await;
    let b = Bridge::start(&c.url, &[]);
    b.wait_for_addrs("web.service.consul", RecordType::A, &ADDRS);

    let mut firsts = BTreeSet::new();
    let mut orders = BTreeSet::new();
    for i in 0..30 {
        let r = if i % 2 == 0 {
            b.udp("web.service.consul", RecordType::A)
        } else {
            b.tcp("web.service.consul", RecordType::A)
        };
        assert_eq!(
            r.addrs(),
            set(&ADDRS),
            "every answer has all: {}",
            r.summary()
        );
        assert_eq!(r.msg.answers.len(), 5, "{}", r.summary());
        let order: Vec<String> = r.msg.answers.iter().map(|a| a.data.to_string()).collect();
        firsts.insert(order[0].clone());
        orders.insert(order);
    }
    println!(
        "30 A answers: {} distinct first addresses, {} distinct orders",
        firsts.len(),
        orders.len()
    );
    assert!(
        firsts.len() > 1,
        "30 answers all started with the same address: {firsts:?}"
    );

    // dig sees the shuffle too.
    let mut dig_firsts = BTreeSet::new();
    for _ in 0..12 {
        let d = b.dig(&["+norecurse", "web.service.consul"]);
        assert_eq!(d.addrs(), set(&ADDRS), "{}", d.out);
        dig_firsts.insert(d.answer[0].data.clone());
    }
    assert!(
        dig_firsts.len() > 1,
        "12 dig answers all started with the same address: {dig_firsts:?}"
    );

    // SRV answers are shuffled as well.
    let mut srv_firsts = BTreeSet::new();
    for _ in 0..30 {
        let r = b.udp("_web._tcp.service.consul", RecordType::SRV);
        assert_eq!(r.msg.answers.len(), 5, "{}", r.summary());
        match &r.msg.answers[0].data {
            RData::SRV(srv) => srv_firsts.insert(srv.port),
            other => panic!("not an SRV record: {other:?}"),
        };
    }
    assert!(
        srv_firsts.len() > 1,
        "30 SRV answers all started with the same target: {srv_firsts:?}"
    );
}

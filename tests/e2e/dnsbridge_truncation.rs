//! dnsbridge answer sizes: 60 instances of one service do not fit a classic 512-byte UDP answer,
//! so it is cut with the TC bit set; an EDNS0 buffer big enough gets all 60 over UDP; a smaller
//! EDNS0 buffer is honoured; TCP always gets the full set; and dig, left to itself, retries over
//! TCP and shows all 60. SRV answers with their glue behave the same.

use std::collections::BTreeSet;

use cairn_tests::Catalogd;
use hickory_proto::rr::RecordType;

use crate::dnsbridge_common::{Bridge, Inst, addrs, ask_udp, register_all};

const N: usize = 60;

fn all_addrs() -> BTreeSet<String> {
    (1..=N).map(|i| format!("127.0.1.{i}")).collect()
}

#[tokio::test]
async fn udp_is_cut_with_tc_and_tcp_has_everything() {
    let c = Catalogd::start().await;
    let instances: Vec<Inst> = (1..=N)
        .map(|i| {
            Inst::new(
                "big",
                &format!("big-{i}"),
                &format!("m{i}"),
                &format!("127.0.1.{i}"),
                20000 + i as u16,
            )
        })
        .collect();
    register_all(&c, &instances).await;
    let b = Bridge::start(&c.url, &[]);
    let all = all_addrs();
    // 60 A records fit the 1232-byte EDNS buffer the poll uses.
    b.wait_for(
        "all 60 instances",
        "big.service.consul",
        RecordType::A,
        |r| r.addrs() == all,
    );

    // Classic UDP (no EDNS): cut to 512 bytes with TC, and what is there is valid.
    let d = b.dig(&[
        "+noedns",
        "+notcp",
        "+ignore",
        "+norecurse",
        "big.service.consul",
    ]);
    assert!(d.has_flag("tc"), "TC set: {}", d.out);
    assert!(!d.over_tcp, "{}", d.out);
    assert!(d.size <= 512, "{} bytes > 512: {}", d.size, d.out);
    assert!(d.answer.len() < N, "{}", d.out);
    assert_eq!(d.counts[1], d.answer.len(), "{}", d.out);
    assert!(d.addrs().is_subset(&all), "{}", d.out);
    let r = ask_udp(b.port, "big.service.consul", RecordType::A, None);
    assert!(r.msg.metadata.truncation, "TC set: {}", r.summary());
    assert!(r.len <= 512, "{} bytes > 512", r.len);
    assert!(r.msg.answers.len() < N, "{}", r.summary());
    assert!(r.addrs().is_subset(&all), "{}", r.summary());
    println!(
        "no EDNS: {} bytes, {} of {N} answers, TC",
        r.len,
        r.msg.answers.len()
    );

    // A big enough EDNS0 buffer: everything over UDP, no TC.
    let d = b.dig(&[
        "+bufsize=4096",
        "+notcp",
        "+ignore",
        "+norecurse",
        "big.service.consul",
    ]);
    assert!(!d.has_flag("tc"), "{}", d.out);
    assert!(!d.over_tcp, "{}", d.out);
    assert_eq!(d.answer.len(), N, "{}", d.out);
    assert_eq!(d.addrs(), all, "{}", d.out);
    let r = ask_udp(b.port, "big.service.consul", RecordType::A, Some(4096));
    assert!(!r.msg.metadata.truncation, "{}", r.summary());
    assert_eq!(r.msg.answers.len(), N, "{}", r.summary());
    assert_eq!(r.addrs(), all);
    assert!(
        r.len > 512,
        "the full answer needs more than 512 bytes: {}",
        r.len
    );
    let full = r.len;

    // A smaller EDNS0 buffer is honoured: cut at that size, with TC.
    let limit = u16::try_from(full - 200).expect("small");
    let r = ask_udp(b.port, "big.service.consul", RecordType::A, Some(limit));
    assert!(
        r.msg.metadata.truncation,
        "TC set at EDNS {limit}: {}",
        r.summary()
    );
    assert!(
        r.len <= usize::from(limit),
        "{} bytes > the client's EDNS buffer of {limit}",
        r.len
    );
    assert!(
        r.len > 512,
        "EDNS {limit} allows more than 512 bytes: {}",
        r.len
    );
    assert!(r.addrs().is_subset(&all), "{}", r.summary());
    // Buffers below 512 count as 512 (RFC 6891).
    let r = ask_udp(b.port, "big.service.consul", RecordType::A, Some(100));
    assert!(r.msg.metadata.truncation, "{}", r.summary());
    assert!(r.len <= 512, "{}", r.len);

    // TCP: everything, whatever the EDNS size.
    let d = b.dig(&["+tcp", "+norecurse", "big.service.consul"]);
    assert!(d.over_tcp && !d.has_flag("tc"), "{}", d.out);
    assert_eq!(d.addrs(), all, "{}", d.out);
    assert_eq!(d.answer.len(), N, "{}", d.out);
    let r = b.tcp("big.service.consul", RecordType::A);
    assert!(!r.msg.metadata.truncation, "{}", r.summary());
    assert_eq!(r.addrs(), all);
    assert_eq!(r.msg.answers.len(), N);

    // dig on its own: truncated over UDP, retried over TCP, all 60.
    let d = b.dig(&["+noedns", "+norecurse", "big.service.consul"]);
    assert!(d.retried_over_tcp, "dig should retry over TCP: {}", d.out);
    assert!(d.over_tcp, "{}", d.out);
    assert!(!d.has_flag("tc"), "{}", d.out);
    assert_eq!(d.addrs(), all, "{}", d.out);
    assert_eq!(d.answer.len(), N, "{}", d.out);

    // SRV with glue: cut over classic UDP, whole over TCP.
    let r = ask_udp(b.port, "_big._tcp.service.consul", RecordType::SRV, None);
    assert!(r.msg.metadata.truncation, "{}", r.summary());
    assert!(r.len <= 512, "{}", r.len);
    let r = b.tcp("_big._tcp.service.consul", RecordType::SRV);
    assert!(!r.msg.metadata.truncation, "{}", r.summary());
    assert_eq!(r.msg.answers.len(), N, "{}", r.summary());
    assert_eq!(addrs(&r.msg.additionals), all, "glue for every target");
    let d = b.dig(&["+norecurse", "_big._tcp.service.consul", "SRV"]);
    assert!(!d.has_flag("tc"), "{}", d.out);
    assert_eq!(d.answer.len(), N, "{}", d.out);
    assert_eq!(d.additional.len(), N, "{}", d.out);
}

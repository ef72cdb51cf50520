//! dnsbridge follows the catalog live: a registration or deregistration shows in answers soon
//! (polled every 5 ms with a generous deadline; the measured delays are printed, not asserted
//! tightly), the SOA serial moves with the catalog, answers keep coming from the last view while
//! catalogd is killed with SIGKILL, and after catalogd is restarted on the same port dnsbridge
//! reconnects and shows new changes.

use std::time::{Duration, Instant};

use cairn_tests::Catalogd;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::dnsbridge_common::{Bridge, Inst, deregister, set, try_ask_tcp, try_ask_udp};

/// The SOA serial (the catalog index the view was built at).
fn serial(b: &Bridge) -> u32 {
    let r = b.udp("consul.", RecordType::SOA);
    match r.msg.answers.first().map(|a| &a.data) {
        Some(RData::SOA(soa)) => soa.serial,
        _ => panic!("no SOA answer: {}", r.summary()),
    }
}

#[tokio::test]
async fn catalog_changes_show_soon_and_survive_a_catalogd_restart() {
    let mut c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", "127.0.0.51", 8080)
        .register(&c)
        .await;
    let b = Bridge::start(&c.url, &[]);
    b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.51"]);
    let serial_before = serial(&b);

    // A new instance of a known service.
    let t0 = Instant::now();
    Inst::new("web", "web-2", "n2", "127.0.0.52", 8080)
        .register(&c)
        .await;
    let acked = t0.elapsed();
    let seen = b.wait_for_addrs(
        "web.service.consul",
        RecordType::A,
        &["127.0.0.51", "127.0.0.52"],
    );
    println!("new instance answered {seen:?} after the registration was acknowledged ({acked:?})");
    assert!(
        serial(&b) > serial_before,
        "the SOA serial follows the catalog index"
    );
    let srv = b.tcp("_web._tcp.service.consul", RecordType::SRV);
    assert_eq!(srv.msg.answers.len(), 2, "{}", srv.summary());

    // A new service (NXDOMAIN until then).
    let r = b.udp("fresh.service.consul", RecordType::A);
    assert_eq!(r.rcode(), ResponseCode::NXDomain, "{}", r.summary());
    Inst::new("fresh", "fresh-1", "n3", "127.0.0.53", 9000)
        .register(&c)
        .await;
    let seen = b.wait_for_addrs("fresh.service.consul", RecordType::A, &["127.0.0.53"]);
    println!("new service answered {seen:?} after its registration was acknowledged");
    let seen = b.wait_for_addrs("n3.node.consul", RecordType::A, &["127.0.0.53"]);
    println!("its node answered {seen:?} later");

    // Deregistration: the instance leaves; the last instance leaving makes it NXDOMAIN.
    deregister(&c, "n1", "web-1").await;
    let seen = b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.52"]);
    println!("deregistered instance gone {seen:?} after the deregistration was acknowledged");
    deregister(&c, "n3", "fresh-1").await;
    let seen = b.wait_for("fresh gone", "fresh.service.consul", RecordType::A, |r| {
        r.rcode() == ResponseCode::NXDomain
    });
    println!("deregistered service NXDOMAIN {seen:?} after the deregistration was acknowledged");

    // catalogd dies hard: the last view keeps being answered, over UDP and TCP.
    c.kill9();
    let killed = Instant::now();
    while killed.elapsed() < Duration::from_secs(3) {
        let udp = try_ask_udp(b.port, "web.service.consul", RecordType::A, Some(1232));
        assert_eq!(
            udp.as_ref().map(|r| (r.rcode(), r.addrs())),
            Some((ResponseCode::NoError, set(&["127.0.0.52"]))),
            "{:?} after catalogd was killed: the last view must still be answered; log:\n{}",
            killed.elapsed(),
            b.log_text()
        );
        let tcp = try_ask_tcp(b.port, "_web._tcp.service.consul", RecordType::SRV);
        assert_eq!(
            tcp.as_ref().map(|r| r.msg.answers.len()),
            Some(1),
            "{:?} after catalogd was killed; log:\n{}",
            killed.elapsed(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let d = b.dig(&["+norecurse", "fresh.service.consul"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.out);
    assert_eq!(d.authority.len(), 1, "SOA still served: {}", d.out);

    // catalogd comes back on the same port: dnsbridge reconnects and follows new changes.
    c.restart().await;
    let restarted = Instant::now();
    Inst::new("web", "web-3", "n4", "127.0.0.54", 8080)
        .register(&c)
        .await;
    let seen = b.wait_for_addrs(
        "web.service.consul",
        RecordType::A,
        &["127.0.0.52", "127.0.0.54"],
    );
    println!(
        "after the catalogd restart: a change answered {seen:?} after it was acknowledged \
         ({:?} after the restart)",
        restarted.elapsed()
    );
    // And keeps following (the watch is live again, not a one-off read).
    deregister(&c, "n2", "web-2").await;
    let seen = b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.54"]);
    println!("after the restart, a deregistration showed {seen:?} after it was acknowledged");
}

#[tokio::test]
async fn starts_without_catalogd_and_catches_up() {
    let mut c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", "127.0.0.55", 8080)
        .register(&c)
        .await;
    c.kill9();
    // dnsbridge starts and serves DNS although catalogd is down: nothing known yet, so
    // nothing is denied either (SERVFAIL, no SOA to cache a denial under), over UDP and TCP.
    let b = Bridge::start_unsynced(&c.url, &[]);
    b.wait_log("catalog watch failed");
    let r = b.udp("web.service.consul", RecordType::A);
    assert_eq!(r.rcode(), ResponseCode::ServFail, "{}", r.summary());
    assert!(r.msg.authorities.is_empty(), "no SOA: {}", r.summary());
    let r = b.tcp("consul.", RecordType::SOA);
    assert_eq!(r.rcode(), ResponseCode::ServFail, "{}", r.summary());

    c.restart().await;
    let restarted = Instant::now();
    b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.55"]);
    println!(
        "catalogd up after dnsbridge: its catalog answered {:?} after catalogd was ready",
        restarted.elapsed()
    );
}

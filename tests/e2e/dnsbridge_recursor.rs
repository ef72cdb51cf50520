//! dnsbridge and names outside its domain: forwarded to `--recursor` (a real dnsmasq on
//! loopback, with no upstream of its own) over UDP and TCP, recursors tried in order, SERVFAIL
//! when none answers, a recursor's truncated answer still marked truncated, a silent recursor not
//! holding up local answers, and REFUSED without a recursor. Names under the domain are still
//! answered locally. Nothing here touches the system resolver.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, free_port};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dnsbridge_common::{Bridge, Dnsmasq, Inst, ask_udp, query, set, try_ask_udp};

#[tokio::test]
async fn other_names_go_to_the_recursor() {
    let c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", "127.0.0.41", 80)
        .register(&c)
        .await;
    let dnsmasq = Dnsmasq::start();
    let recursor = format!("127.0.0.1:{}", dnsmasq.port);
    let b = Bridge::start(&c.url, &["--recursor", &recursor]);
    b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.41"]);

    // dig, as a stub resolver asks (recursion desired), over UDP and TCP.
    for transport in ["+notcp", "+tcp"] {
        let d = b.dig(&[transport, "host.example.test"]);
        assert_eq!(d.status, "NOERROR", "{}", d.out);
        assert_eq!(
            d.answer_set(),
            set(&["A 127.0.0.9"]),
            "dnsmasq's answer: {}\ndnsmasq log:\n{}",
            d.out,
            dnsmasq.log_text()
        );
        assert!(d.has_flag("ra"), "recursion available: {}", d.out);
        assert!(!d.has_flag("aa"), "not authoritative for it: {}", d.out);
        assert_eq!(d.over_tcp, transport == "+tcp", "{}", d.out);
    }
    // The library, with and without EDNS, and over TCP.
    for r in [
        b.udp("deep.name.example.test", RecordType::A),
        ask_udp(b.port, "x.example.test", RecordType::A, None),
        b.tcp("Mixed.Case.Example.Test", RecordType::A),
    ] {
        assert_eq!(r.rcode(), ResponseCode::NoError, "{}", r.summary());
        assert_eq!(r.addrs(), set(&["127.0.0.9"]), "{}", r.summary());
    }
    // What the recursor refuses comes back refused.
    let r = b.udp("elsewhere.invalid", RecordType::A);
    assert_eq!(r.rcode(), ResponseCode::Refused, "{}", r.summary());

    // The domain is still answered locally, authoritatively.
    let d = b.dig(&["web.service.consul"]);
    assert_eq!(d.answer_set(), set(&["A 127.0.0.41"]), "{}", d.out);
    assert!(d.has_flag("aa"), "{}", d.out);
    let r = b.udp("nothing.service.consul", RecordType::A);
    assert_eq!(r.rcode(), ResponseCode::NXDomain, "{}", r.summary());

    // Recursors are tried in order: a dead one first, then dnsmasq.
    let dead = format!("127.0.0.1:{}", free_port());
    let two = Bridge::start(&c.url, &["--recursor", &dead, "--recursor", &recursor]);
    let r = two.udp("host.example.test", RecordType::A);
    assert_eq!(r.addrs(), set(&["127.0.0.9"]), "{}", r.summary());
    let r = two.tcp("host.example.test", RecordType::A);
    assert_eq!(r.addrs(), set(&["127.0.0.9"]), "{}", r.summary());

    // Only a dead recursor: SERVFAIL, not silence.
    let none = Bridge::start(&c.url, &["--recursor", &dead]);
    let r = try_ask_udp(none.port, "host.example.test", RecordType::A, Some(1232));
    let r = r.expect("an answer even when the recursor is down");
    assert_eq!(r.rcode(), ResponseCode::ServFail, "{}", r.summary());
    assert!(r.msg.answers.is_empty(), "{}", r.summary());
}

#[tokio::test]
async fn without_a_recursor_other_names_are_refused() {
    let c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", "127.0.0.42", 80)
        .register(&c)
        .await;
    let b = Bridge::start(&c.url, &[]);
    b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.42"]);

    for name in [
        "host.example.test",
        "localhost",
        "consul.example.test",
        "notconsul",
    ] {
        let d = b.dig(&[name]);
        assert_eq!(d.status, "REFUSED", "{}", d.out);
        assert!(d.answer.is_empty(), "{}", d.out);
        assert!(!d.has_flag("ra"), "no recursion available: {}", d.out);
        let r = b.udp(name, RecordType::A);
        assert_eq!(r.rcode(), ResponseCode::Refused, "{}", r.summary());
        let r = b.tcp(name, RecordType::SRV);
        assert_eq!(r.rcode(), ResponseCode::Refused, "{}", r.summary());
    }
    // The root zone is not ours either.
    let r = b.udp(".", RecordType::NS);
    assert_eq!(r.rcode(), ResponseCode::Refused, "{}", r.summary());
}

/// Records dnsmasq holds for `big.many.test`: more than its 1232-byte UDP answers carry.
const MANY: usize = 150;

#[tokio::test]
async fn a_truncated_forwarded_answer_stays_truncated() {
    let c = Catalogd::start().await;
    let records: Vec<String> = (1..=MANY)
        .map(|i| {
            format!(
                "--host-record=big.many.test,127.0.{}.{}",
                2 + i / 200,
                i % 200 + 1
            )
        })
        .collect();
    let dnsmasq = Dnsmasq::start_with(&records);
    let recursor = format!("127.0.0.1:{}", dnsmasq.port);
    let b = Bridge::start(&c.url, &["--recursor", &recursor]);

    // Over TCP the whole set comes through.
    let r = b.tcp("big.many.test", RecordType::A);
    assert_eq!(r.rcode(), ResponseCode::NoError, "{}", r.summary());
    assert_eq!(r.msg.answers.len(), MANY, "{}", r.summary());

    // Over UDP the recursor cuts its answer (TC): passing part of it on without TC would make
    // the client take a partial set for the whole one.
    for edns in [None, Some(1232), Some(4096)] {
        let r = ask_udp(b.port, "big.many.test", RecordType::A, edns);
        assert!(
            r.msg.metadata.truncation || r.msg.answers.len() == MANY,
            "UDP with EDNS {edns:?}: {} of {MANY} records and no TC bit (the recursor's answer \
             was truncated): {}",
            r.msg.answers.len(),
            r.summary()
        );
    }
    // dig left to itself must end up with all of them (retrying over TCP on TC).
    let d = b.dig(&["big.many.test"]);
    assert_eq!(
        d.answer.len(),
        MANY,
        "dig got a partial answer without being told it was truncated: {} of {MANY}, TC={}, \
         retried over TCP={}",
        d.answer.len(),
        d.has_flag("tc"),
        d.retried_over_tcp
    );
}

#[tokio::test]
async fn a_silent_recursor_does_not_hold_up_local_answers() {
    let c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", "127.0.0.43", 80)
        .register(&c)
        .await;
    // A "recursor" that answers nothing.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("udp");
    let recursor = silent.local_addr().expect("addr").to_string();
    let b = Bridge::start(&c.url, &["--recursor", &recursor]);
    b.wait_for_addrs("web.service.consul", RecordType::A, &["127.0.0.43"]);

    // 50 forwarded questions left hanging.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.connect(b.addr()).expect("connect");
    let mut ids = Vec::new();
    for i in 0..50 {
        let q = query(&format!("host{i}.slow.test"), RecordType::A, None);
        ids.push(q.metadata.id);
        sock.send(&q.to_vec().expect("encode")).expect("send");
    }
    // All 50 reached the recursor: they are forwarded and hang there.
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut forwarded = vec![0u8; 4096];
    for i in 0..ids.len() {
        silent
            .recv(&mut forwarded)
            .unwrap_or_else(|e| panic!("only {i} of {} questions forwarded: {e}", ids.len()));
    }
    let r = b.udp("web.service.consul", RecordType::A);
    assert_eq!(r.addrs(), set(&["127.0.0.43"]), "{}", r.summary());
    // The local answer did not wait behind them: none of the forwarded questions has been
    // answered (they end in SERVFAIL only at the recursor timeout, below).
    sock.set_nonblocking(true).expect("nonblocking");
    let mut buf = vec![0u8; 4096];
    match sock.recv(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a forwarded question was answered before the local one: {other:?}"),
    }
    sock.set_nonblocking(false).expect("blocking");
    let r = b.tcp("web.service.consul", RecordType::A);
    assert_eq!(r.addrs(), set(&["127.0.0.43"]), "{}", r.summary());

    // Each hanging question ends in SERVFAIL once the recursor times out.
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut servfail = 0;
    while servfail < ids.len() {
        let n = sock
            .recv(&mut buf)
            .expect("a SERVFAIL for every forwarded question");
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).expect("parses");
        assert!(ids.contains(&m.metadata.id));
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{m:?}");
        servfail += 1;
    }
}

/// A recursor on loopback that plays the hostile network: for every question it first sends a
/// reply with the wrong ID, then one with the right ID to another question, then the real
/// answer (127.0.0.77). With `silent`, it only counts questions and never answers.
struct RogueRecursor {
    port: u16,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl RogueRecursor {
    fn start(silent: bool) -> RogueRecursor {
        use hickory_proto::op::OpCode;
        use hickory_proto::rr::rdata::A;
        use hickory_proto::rr::{Name, Record};
        use std::sync::atomic::Ordering;

        let sock = UdpSocket::bind("127.0.0.1:0").expect("rogue recursor socket");
        let port = sock.local_addr().unwrap().port();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let reply = |id: u16, name: &Name, addr: [u8; 4]| {
                let mut m = hickory_proto::op::Message::new(
                    id,
                    hickory_proto::op::MessageType::Response,
                    OpCode::Query,
                );
                m.add_query(hickory_proto::op::Query::query(name.clone(), RecordType::A));
                m.add_answer(Record::from_rdata(
                    name.clone(),
                    60,
                    hickory_proto::rr::RData::A(A::from(std::net::Ipv4Addr::from(addr))),
                ));
                m.to_vec().expect("encode")
            };
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                counter.fetch_add(1, Ordering::SeqCst);
                if silent {
                    continue;
                }
                let Ok(q) = hickory_proto::op::Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(name) = q.queries.first().map(|q| q.name().clone()) else {
                    continue;
                };
                let id = q.metadata.id;
                let other = Name::from_ascii("other.example.test.").unwrap();
                for bytes in [
                    reply(id.wrapping_add(1), &name, [127, 0, 0, 66]),
                    reply(id, &other, [127, 0, 0, 67]),
                    reply(id, &name, [127, 0, 0, 77]),
                ] {
                    // A fake upstream: a lost datagram is a timeout the test would see.
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        RogueRecursor { port, asked }
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test]
async fn replies_to_other_questions_are_dropped() {
    let c = Catalogd::start().await;
    let rogue = RogueRecursor::start(false);
    let b = Bridge::start(
        &c.url,
        &["--recursor", &format!("127.0.0.1:{}", rogue.port)],
    );
    for name in ["a.example.test", "b.example.test"] {
        let r = b.udp(name, RecordType::A);
        assert_eq!(r.rcode(), ResponseCode::NoError, "{}", r.summary());
        assert_eq!(r.addrs(), set(&["127.0.0.77"]), "{}", r.summary());
    }
}

/// With `--max-forwards 3` and a recursor that never answers, eight questions at once: three
/// are forwarded (and fail when the recursor times out), five get SERVFAIL without being
/// forwarded. Every one of them is answered.
#[tokio::test]
async fn forwarding_is_bounded() {
    let c = Catalogd::start().await;
    let rogue = RogueRecursor::start(true);
    let b = Bridge::start(
        &c.url,
        &[
            "--recursor",
            &format!("127.0.0.1:{}", rogue.port),
            "--max-forwards",
            "3",
        ],
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", b.port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..8u16 {
        let mut q = query(&format!("n{i}.example.test"), RecordType::A, None);
        q.metadata.id = 1000 + i;
        ids.insert(q.metadata.id);
        sock.send(&q.to_vec().unwrap()).unwrap();
    }
    let mut buf = [0u8; 4096];
    while !ids.is_empty() {
        let n = sock.recv(&mut buf).expect("every question is answered");
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(
            ids.remove(&m.metadata.id),
            "answered twice: {}",
            m.metadata.id
        );
    }
    assert_eq!(
        rogue.asked(),
        3,
        "only --max-forwards questions reach the recursor"
    );

    // Once those are done, forwarding resumes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while rogue.asked() < 4 {
        assert!(Instant::now() < deadline, "forwarding never resumed");
        // Only makes the rogue upstream be asked; the answer does not matter.
        let _ = try_ask_udp(b.port, "later.example.test", RecordType::A, None);
    }
}

//! dnsbridge under malformed input on raw UDP and TCP sockets: random bytes, a truncated header,
//! compression pointer loops, names over 255 bytes and labels over 63, counts promising records
//! that are not there, empty and short TCP frames. Each gets FORMERR or no answer at all, and the
//! next valid query is answered (the process is alive). Then ~500 seeded random packets over UDP
//! and 100 over TCP (the seed is printed; `DNSBRIDGE_FUZZ_SEED` replays another one).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use cairn_tests::Catalogd;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::dnsbridge_common::{Bridge, Inst, query, read_frame, udp_exchange};

const ADDR: &str = "127.0.0.61";
const NAME: &str = "web.service.consul";

/// How long "no answer" is waited for.
const SILENCE: Duration = Duration::from_millis(400);

async fn setup() -> (Catalogd, Bridge) {
    let c = Catalogd::start().await;
    Inst::new("web", "web-1", "n1", ADDR, 80).register(&c).await;
    let b = Bridge::start(&c.url, &[]);
    b.wait_for_addrs(NAME, RecordType::A, &[ADDR]);
    (c, b)
}

/// A 12-byte header: ID 0xBEEF, the given flags and counts.
fn header(flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    let mut h = vec![0xBE, 0xEF];
    for v in [flags, qd, an, ns, ar] {
        h.extend_from_slice(&v.to_be_bytes());
    }
    h
}

/// `labels` in wire form, ending with the root label.
fn wire_name(labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in labels {
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    out.push(0);
    out
}

const QTYPE_A_IN: [u8; 4] = [0, 1, 0, 1];

fn valid_query_bytes() -> Vec<u8> {
    query(NAME, RecordType::A, None).to_vec().expect("encode")
}

/// Malformed messages, each with what it is.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let long = [b'a'; 63];
    let mut cases: Vec<(&'static str, Vec<u8>)> = Vec::new();
    cases.push((
        "random bytes",
        vec![
            0x5e, 0x11, 0xf3, 0x9a, 0x00, 0x7c, 0xde, 0xad, 0xbe, 0xef, 0x42, 0x13, 0x37, 0xc0,
            0xff, 0xee, 0x01, 0x02, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
        ],
    ));
    cases.push((
        "5-byte truncated header",
        vec![0xBE, 0xEF, 0x01, 0x00, 0x00],
    ));
    cases.push(("11-byte header", header(0, 1, 0, 0, 0)[..11].to_vec()));
    // A name that is a compression pointer to itself (offset 12 = where the name starts).
    let mut p = header(0, 1, 0, 0, 0);
    p.extend_from_slice(&[0xC0, 0x0C]);
    p.extend_from_slice(&QTYPE_A_IN);
    cases.push(("compression pointer to itself", p));
    // Two pointers pointing at each other.
    let mut p = header(0, 1, 0, 0, 0);
    p.extend_from_slice(&[0xC0, 0x0E, 0xC0, 0x0C]);
    p.extend_from_slice(&QTYPE_A_IN);
    cases.push(("compression pointers pointing at each other", p));
    // A label, then a pointer back to the start of that same name.
    let mut p = header(0, 1, 0, 0, 0);
    p.extend_from_slice(&[3, b'w', b'e', b'b', 0xC0, 0x0C]);
    p.extend_from_slice(&QTYPE_A_IN);
    cases.push(("compression loop through a label", p));
    let mut p = header(0, 1, 0, 0, 0);
    p.extend_from_slice(&[0xC0, 0xFF]);
    p.extend_from_slice(&QTYPE_A_IN);
    cases.push(("compression pointer past the end", p));
    // 5 labels of 63 bytes: 321 bytes of name.
    let mut p = header(0, 1, 0, 0, 0);
    p.extend(wire_name(&[&long, &long, &long, &long, &long]));
    p.extend_from_slice(&QTYPE_A_IN);
    cases.push(("name longer than 255 bytes", p));
    // A 64-byte label (its length byte has the reserved 01 prefix).
    let mut p = header(0, 1, 0, 0, 0);
    p.push(64);
    p.extend_from_slice(&[b'b'; 64]);
    p.extend(wire_name(&[b"service", b"consul"]));
    p.extend_from_slice(&QTYPE_A_IN);
    cases.push(("label longer than 63 bytes", p));
    // A label whose length runs past the end of the message.
    let mut p = header(0, 1, 0, 0, 0);
    p.extend_from_slice(&[40, b'a', b'b', b'c']);
    cases.push(("label running past the end", p));
    cases.push(("50 questions, none present", header(0, 50, 0, 0, 0)));
    let mut p = valid_query_bytes();
    p.truncate(p.len() - 3);
    cases.push(("question cut in the middle", p));
    // A valid question, then counts promising records that are not there.
    let mut p = valid_query_bytes();
    p[6..12].copy_from_slice(&[0, 5, 0, 3, 0, 2]);
    cases.push(("answer/authority/additional counts with no records", p));
    // Two OPT records (RFC 6891: FORMERR).
    let mut p = valid_query_bytes();
    p[10..12].copy_from_slice(&[0, 2]);
    for _ in 0..2 {
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 0]);
    }
    cases.push(("two OPT records", p));
    cases
}

/// A reply to malformed input may only be FORMERR for our ID.
fn assert_formerr(case: &str, transport: &str, sent: &[u8], reply: &[u8]) {
    assert!(
        reply.len() >= 12,
        "{transport} {case}: a reply shorter than a header: {reply:02x?}"
    );
    assert!(
        reply[2] & 0x80 != 0,
        "{transport} {case}: the reply is not a response: {reply:02x?}"
    );
    if sent.len() >= 2 {
        assert_eq!(
            reply[..2],
            sent[..2],
            "{transport} {case}: the reply carries the query's ID"
        );
    }
    let rcode = reply[3] & 0x0F;
    assert_eq!(
        rcode, 1,
        "{transport} {case}: expected FORMERR (1) or no answer, got RCODE {rcode}: {reply:02x?}"
    );
}

#[tokio::test]
async fn malformed_udp_gets_formerr_or_nothing() {
    let (_c, mut b) = setup().await;
    let mut formerr = 0;
    for (case, packet) in malformed() {
        if let Some(reply) = udp_exchange(b.port, &packet, SILENCE) {
            assert_formerr(case, "UDP", &packet, &reply);
            formerr += 1;
        }
        b.assert_healthy(NAME, &[ADDR], &format!("UDP {case}"));
    }
    println!(
        "UDP: {formerr} of {} malformed messages got FORMERR, the rest no answer",
        malformed().len()
    );

    // An empty datagram.
    assert_eq!(udp_exchange(b.port, &[], SILENCE), None, "empty datagram");
    b.assert_healthy(NAME, &[ADDR], "an empty datagram");

    // A well-formed *response* is never answered (no reflection loops).
    let mut resp = valid_query_bytes();
    resp[2] |= 0x80;
    assert_eq!(
        udp_exchange(b.port, &resp, SILENCE),
        None,
        "a response sent to the server must not be answered"
    );

    // Other opcodes (IQUERY, STATUS, NOTIFY, UPDATE, DSO): NOTIMP.
    for opcode in [1u16, 2, 4, 5, 6] {
        let mut p = valid_query_bytes();
        let flags = u16::from_be_bytes([p[2], p[3]]) & !0x7800 | (opcode << 11);
        p[2..4].copy_from_slice(&flags.to_be_bytes());
        let reply = udp_exchange(b.port, &p, SILENCE).expect("an answer to a well-formed query");
        let m = Message::from_vec(&reply).expect("parses");
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NotImp,
            "opcode {opcode}: {m:?}"
        );
    }

    // Two questions: FORMERR (or nothing).
    let mut p = valid_query_bytes();
    let question = p[12..].to_vec();
    p[5] = 2;
    p.extend(question);
    if let Some(reply) = udp_exchange(b.port, &p, SILENCE) {
        assert_formerr("two questions", "UDP", &p, &reply);
    }

    // No question at all: FORMERR.
    let p = header(0, 0, 0, 0, 0);
    let reply = udp_exchange(b.port, &p, SILENCE);
    if let Some(reply) = reply {
        assert_formerr("no question", "UDP", &p, &reply);
    }

    // A datagram bigger than any DNS message is dropped or refused, and the server lives on.
    let mut huge = valid_query_bytes();
    huge.resize(60_000, 0xAB);
    if let Some(reply) = udp_exchange(b.port, &huge, SILENCE) {
        assert!(reply.len() >= 12 && reply[2] & 0x80 != 0, "{reply:02x?}");
    }
    b.assert_healthy(NAME, &[ADDR], "a 60000-byte datagram");
}

#[tokio::test]
async fn giant_but_valid_names_are_answered() {
    let (_c, mut b) = setup().await;
    // The longest legal name: 255 bytes on the wire, under consul.
    let l63 = "a".repeat(63);
    let l54 = "b".repeat(54);
    let name = format!("{l63}.{l63}.{l63}.{l54}.consul.");
    assert_eq!(name.len() + 1, 255, "255 bytes on the wire");
    for r in [
        crate::dnsbridge_common::ask_udp(b.port, &name, RecordType::A, None),
        b.tcp(&name, RecordType::A),
    ] {
        assert_eq!(r.rcode(), ResponseCode::NXDomain, "{}", r.summary());
        assert_eq!(r.msg.authorities.len(), 1, "{}", r.summary());
    }
    // A long tag and a long service name.
    let tagged = format!("{l63}.web.service.consul");
    let r = b.udp(&tagged, RecordType::A);
    assert_eq!(r.rcode(), ResponseCode::NXDomain, "{}", r.summary());
    let d = b.dig(&["+norecurse", &format!("{l63}.service.consul")]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.out);
    // Labels with bytes outside letters and digits.
    let mut odd = header(0, 1, 0, 0, 0);
    odd.extend(wire_name(&[b"w\x00b", b"\xff\xfe", b"service", b"consul"]));
    odd.extend_from_slice(&QTYPE_A_IN);
    let reply = udp_exchange(b.port, &odd, Duration::from_secs(2));
    if let Some(reply) = reply {
        let m = Message::from_vec(&reply).expect("a well-formed reply");
        assert!(
            matches!(
                m.metadata.response_code,
                ResponseCode::NXDomain | ResponseCode::FormErr
            ),
            "{m:?}"
        );
    }
    b.assert_healthy(NAME, &[ADDR], "giant and odd names");
}

/// Sends `bytes` on a new TCP connection (optionally half-closing), then collects whatever
/// frames come back until EOF, reset or `SILENCE`.
fn tcp_send(port: u16, bytes: &[u8], half_close: bool) -> Vec<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("TCP connect");
    s.set_read_timeout(Some(SILENCE)).expect("timeout");
    // The server may close early on garbage; a failed write is an answer of its own.
    if s.write_all(bytes).is_err() {
        return Vec::new();
    }
    if half_close {
        // The server may have closed the connection already; what it answered is checked below.
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut frames = Vec::new();
    while let Ok(f) = read_frame(&mut s) {
        frames.push(f);
    }
    frames
}

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut f = (packet.len() as u16).to_be_bytes().to_vec();
    f.extend_from_slice(packet);
    f
}

#[tokio::test]
async fn malformed_tcp_gets_formerr_or_nothing() {
    let (_c, mut b) = setup().await;
    for (case, packet) in malformed() {
        for half_close in [false, true] {
            for reply in tcp_send(b.port, &framed(&packet), half_close) {
                assert_formerr(case, "TCP", &packet, &reply);
            }
        }
        b.assert_healthy(NAME, &[ADDR], &format!("TCP {case}"));
    }

    let odd: [(&str, Vec<u8>); 5] = [
        ("an empty TCP frame", vec![0, 0]),
        (
            "an empty frame then a partial one",
            vec![0, 0, 0, 30, 1, 2, 3],
        ),
        ("one byte of length", vec![0]),
        ("a length longer than the data", {
            let mut f = vec![0x01, 0x00];
            f.extend_from_slice(&valid_query_bytes());
            f
        }),
        (
            "a 65535 length and little data",
            vec![0xFF, 0xFF, 1, 2, 3, 4],
        ),
    ];
    for (case, bytes) in odd {
        for half_close in [false, true] {
            for reply in tcp_send(b.port, &bytes, half_close) {
                assert_formerr(case, "TCP", &bytes[2.min(bytes.len())..], &reply);
            }
        }
        b.assert_healthy(NAME, &[ADDR], case);
    }

    // Many connections opened and dropped without a byte.
    for _ in 0..50 {
        drop(TcpStream::connect(("127.0.0.1", b.port)).expect("connect"));
    }
    b.assert_healthy(NAME, &[ADDR], "50 connections dropped at once");

    // Two valid queries pipelined in one write: two answers on the same connection.
    let q1 = query(NAME, RecordType::A, None);
    let q2 = query("_web._tcp.service.consul", RecordType::SRV, None);
    let mut both = framed(&q1.to_vec().expect("encode"));
    both.extend(framed(&q2.to_vec().expect("encode")));
    let mut s = TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(&both).expect("write");
    let ids: BTreeSet<u16> = (0..2)
        .map(|_| {
            let f = read_frame(&mut s).expect("an answer to each pipelined query");
            Message::from_vec(&f).expect("parses").metadata.id
        })
        .collect();
    assert_eq!(
        ids,
        [q1.metadata.id, q2.metadata.id].into_iter().collect(),
        "one answer per pipelined query"
    );
}

/// One random packet: pure noise, a mutated or cut valid query, or a random header with a tail.
fn random_packet(rng: &mut StdRng, i: usize) -> Vec<u8> {
    let names = [
        NAME,
        "_web._tcp.service.consul",
        "prod.web.service.dc1.consul",
        "n1.node.consul",
        "consul.",
        "host.example.test",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::ANY,
        RecordType::SOA,
        RecordType::NS,
        RecordType::TXT,
    ];
    let base = || {
        let name = names[i % names.len()];
        let rtype = types[(i / names.len()) % types.len()];
        let edns = i.is_multiple_of(3).then_some(1232);
        query(name, rtype, edns).to_vec().expect("encode")
    };
    match i % 4 {
        0 => {
            let mut p = vec![0u8; rng.random_range(0..=600)];
            rng.fill(&mut p[..]);
            p
        }
        1 => {
            let mut p = base();
            for _ in 0..rng.random_range(1..=6) {
                let at = rng.random_range(0..p.len());
                p[at] = rng.random();
            }
            p
        }
        2 => {
            let mut p = base();
            p.truncate(rng.random_range(0..p.len()));
            p
        }
        _ => {
            let mut p = vec![rng.random(), rng.random()];
            // Mostly queries (QR clear), any opcode and flags.
            let flags: u16 =
                rng.random::<u16>() & if rng.random_bool(0.8) { 0x7FFF } else { 0xFFFF };
            p.extend_from_slice(&flags.to_be_bytes());
            for _ in 0..4 {
                let count: u16 = if rng.random_bool(0.7) {
                    rng.random_range(0..3)
                } else {
                    rng.random()
                };
                p.extend_from_slice(&count.to_be_bytes());
            }
            let mut tail = vec![0u8; rng.random_range(0..80)];
            rng.fill(&mut tail[..]);
            p.extend(tail);
            p
        }
    }
}

/// Any reply to anything: a parseable DNS response, to one of the IDs sent when those are known
/// (a frame with a wrong length makes the server read messages out of the middle of one).
fn assert_sane_reply(
    reply: &[u8],
    sent_ids: Option<&BTreeSet<[u8; 2]>>,
    seed: u64,
    transport: &str,
) {
    assert!(
        reply.len() >= 12 && reply[2] & 0x80 != 0,
        "{transport} seed {seed}: a reply that is not a DNS response: {reply:02x?}"
    );
    if let Some(ids) = sent_ids {
        assert!(
            ids.contains(&[reply[0], reply[1]]),
            "{transport} seed {seed}: a reply with an ID never sent: {reply:02x?}"
        );
    }
    if let Err(e) = Message::from_vec(reply) {
        panic!(
            "{transport} seed {seed}: the server sent a reply that does not parse ({e}): {reply:02x?}"
        );
    }
}

fn fuzz_seed() -> u64 {
    std::env::var("DNSBRIDGE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xCA1_2026)
}

#[tokio::test]
async fn seeded_random_packets_never_crash_it() {
    let (_c, mut b) = setup().await;
    let seed = fuzz_seed();
    println!("dnsbridge fuzz seed: {seed} (replay with DNSBRIDGE_FUZZ_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    // UDP: 500 packets from one socket, replies drained in batches.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp");
    sock.connect(("127.0.0.1", b.port)).expect("connect");
    let mut sent_ids = BTreeSet::new();
    let mut replies = 0;
    let mut buf = vec![0u8; 65535];
    for i in 0..500 {
        let p = random_packet(&mut rng, i);
        if p.len() >= 2 {
            sent_ids.insert([p[0], p[1]]);
        }
        sock.send(&p).expect("send");
        if i % 25 == 24 {
            sock.set_read_timeout(Some(Duration::from_millis(60)))
                .expect("timeout");
            while let Ok(n) = sock.recv(&mut buf) {
                assert_sane_reply(&buf[..n], Some(&sent_ids), seed, "UDP");
                replies += 1;
            }
            assert!(
                b.alive(),
                "dnsbridge died during UDP packet {i} (seed {seed}); log:\n{}",
                b.log_text()
            );
        }
    }
    println!(
        "UDP: 500 random packets, {replies} replies, {:?}",
        started.elapsed()
    );
    b.assert_healthy(
        NAME,
        &[ADDR],
        &format!("500 random UDP packets (seed {seed})"),
    );

    // TCP: 100 packets, each framed (sometimes with a wrong length) on its own connection.
    let started = Instant::now();
    let mut tcp_replies = 0;
    for i in 0..100 {
        let p = random_packet(&mut rng, i);
        let mut sent_ids = BTreeSet::new();
        if p.len() >= 2 {
            sent_ids.insert([p[0], p[1]]);
        }
        let wrong_length = i % 5 == 4;
        let bytes = if wrong_length {
            let mut f = rng.random::<u16>().to_be_bytes().to_vec();
            f.extend_from_slice(&p);
            f
        } else {
            framed(&p)
        };
        for reply in tcp_send(b.port, &bytes, true) {
            let ids = (!wrong_length).then_some(&sent_ids);
            assert_sane_reply(&reply, ids, seed, "TCP");
            tcp_replies += 1;
        }
        if i % 10 == 9 {
            assert!(
                b.alive(),
                "dnsbridge died during TCP packet {i} (seed {seed}); log:\n{}",
                b.log_text()
            );
        }
    }
    println!(
        "TCP: 100 random frames, {tcp_replies} replies, {:?}",
        started.elapsed()
    );
    b.assert_healthy(
        NAME,
        &[ADDR],
        &format!("100 random TCP frames (seed {seed})"),
    );
    let log = b.log_text();
    assert!(!log.contains("panicked"), "a panic in the log:\n{log}");
}

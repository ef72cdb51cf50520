//! The UDP fast path. hickory-server funnels every UDP query through one task that owns the only
//! socket and spawns a task per query; that caps throughput near half of Knot's on two cores. Here
//! each core gets its own `SO_REUSEPORT` socket and a plain thread that answers inline.
//!
//! Answers for a question are encoded once per view (a few shuffled orderings each) and cached by
//! the question's exact bytes, so a hit costs a hash lookup, a copy and two patched header bytes.
//! Messages are parsed and built with hickory-proto; anything unusual (no single question, other
//! opcodes, compressed question names) takes the general path through the same [`Resolver`].
//! Names that are not ours are relayed raw to a recursor from the tokio runtime.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use rand::Rng;

use crate::resolve::{Decision, Resolver};
use crate::view::View;

/// Orderings encoded per answer; one is picked at random per query.
const ORDERINGS: usize = 4;
/// Entries kept per worker before the cache starts over.
const MAX_CACHED: usize = 200_000;
/// How often a worker checks for shutdown while idle.
const IDLE_TICK: Duration = Duration::from_millis(200);
/// Payload size we advertise in our own OPT record.
const OUR_PAYLOAD: u16 = 4096;

/// A question's prepared answers.
struct Prepared {
    /// Full responses with ID 0 and RD clear, one per ordering.
    variants: Vec<Vec<u8>>,
    /// The first ordering as a message, to cut down for clients whose buffer it exceeds.
    message: Message,
    /// Cut-down responses already made, by client buffer size.
    truncated: HashMap<usize, Vec<u8>>,
}

/// As many answers as fit in `limit` bytes, TC set (additionals and authority go first).
fn cut(message: &Message, limit: usize) -> Vec<u8> {
    let mut m = message.clone();
    m.metadata.truncation = true;
    m.additionals.clear();
    m.authorities.clear();
    let mut bytes = m.to_vec().unwrap_or_default();
    while bytes.len() > limit && !m.answers.is_empty() {
        // Drop roughly the overflow's worth of records at once, then settle one by one.
        let per = bytes.len() / (m.answers.len() + 1).max(1);
        let excess = (bytes.len() - limit)
            .div_ceil(per.max(1))
            .clamp(1, m.answers.len());
        m.answers.truncate(m.answers.len() - excess);
        bytes = m.to_vec().unwrap_or_default();
    }
    bytes
}

/// What the fast path does with a packet.
enum Reply {
    Send(Vec<u8>),
    Forward,
    Drop,
}

/// Binds one socket per worker on `addr` with `SO_REUSEPORT` (the kernel spreads queries).
pub fn bind(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    (0..workers.max(1))
        .map(|_| {
            let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_port(true)?;
            s.set_recv_buffer_size(4 << 20).ok();
            s.bind(&addr.into())?;
            let s: UdpSocket = s.into();
            s.set_read_timeout(Some(IDLE_TICK))?;
            Ok(s)
        })
        .collect()
}

/// Starts one worker thread per socket; they stop when `stop` is cancelled.
pub fn spawn(
    sockets: Vec<UdpSocket>,
    resolver: Arc<Resolver>,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, sock)| {
            let (resolver, runtime, stop) = (resolver.clone(), runtime.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .spawn(move || worker(sock, resolver, runtime, stop))
        })
        .collect()
}

fn worker(
    sock: UdpSocket,
    resolver: Arc<Resolver>,
    runtime: tokio::runtime::Handle,
    stop: CancellationToken,
) {
    let mut buf = vec![0u8; 65535];
    let mut cache: HashMap<Vec<u8>, Prepared> = HashMap::new();
    let mut cached_for: Option<Arc<View>> = None;
    let sock = Arc::new(sock);
    while !stop.is_cancelled() {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue, // the idle tick, or a transient error (e.g. ICMP feedback)
        };
        let view = resolver.view.load_full();
        if !cached_for.as_ref().is_some_and(|v| Arc::ptr_eq(v, &view)) || cache.len() > MAX_CACHED {
            cache.clear();
            cached_for = Some(view.clone());
        }
        match respond(&buf[..n], &resolver, &view, &mut cache) {
            Reply::Send(bytes) => {
                // A reply that cannot be sent is a lost datagram: the client asks again.
                let _ = sock.send_to(&bytes, src);
            }
            Reply::Forward => {
                let Some(permit) = resolver.forward_permit() else {
                    if let Some(bytes) = error_reply(&buf[..n], ResponseCode::ServFail) {
                        // A lost datagram: the client asks again.
                        let _ = sock.send_to(&bytes, src);
                    }
                    continue;
                };
                let (raw, resolver, sock) = (buf[..n].to_vec(), resolver.clone(), sock.clone());
                runtime.spawn(async move {
                    let reply = match resolver.forward(permit, &raw, false).await {
                        Some(mut m) => {
                            // Some recursors leave the question out of refusals; the client
                            // still needs it echoed.
                            if m.queries.is_empty()
                                && let Ok(asked) = Message::from_vec(&raw)
                            {
                                m.queries = asked.queries;
                            }
                            m.to_vec().ok()
                        }
                        .map(|mut b| {
                            // Relayed, so not authoritative; recursion is available through us.
                            b[2] &= !0x04;
                            b[3] |= 0x80;
                            b
                        }),
                        None => error_reply(&raw, ResponseCode::ServFail),
                    };
                    if let Some(bytes) = reply {
                        // A lost datagram: the client asks again.
                        let _ = sock.send_to(&bytes, src);
                    }
                });
            }
            Reply::Drop => {}
        }
    }
}

/// The fixed-form question this path serves from cache: one question with an uncompressed
/// name, optionally one OPT record.
struct Question<'a> {
    /// Question bytes (name, type, class) exactly as sent.
    raw: &'a [u8],
    /// The client's UDP buffer (512 without EDNS).
    limit: usize,
    edns: bool,
}

fn parse_question(req: &[u8]) -> Option<Question<'_>> {
    if req.len() < 12 {
        return None;
    }
    let flags = u16::from_be_bytes([req[2], req[3]]);
    let (qd, an, ns, ar) = (
        u16::from_be_bytes([req[4], req[5]]),
        u16::from_be_bytes([req[6], req[7]]),
        u16::from_be_bytes([req[8], req[9]]),
        u16::from_be_bytes([req[10], req[11]]),
    );
    // A query (QR=0), opcode QUERY, one question, nothing but an optional OPT after it.
    if flags & 0x8000 != 0 || (flags >> 11) & 0xF != 0 || qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*req.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None; // compression or an invalid label: the general path decides
        }
        at += 1 + len;
    }
    let end = at + 4;
    let raw = req.get(12..end)?;
    let (mut limit, mut edns) = (512, false);
    if ar == 1 {
        // OPT: root name, type 41, class = payload size, ttl, rdlength, rdata.
        let opt = req.get(end..)?;
        if opt.len() < 11 || opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != 41 {
            return None;
        }
        if opt[6] != 0 {
            return None; // EDNS version above 0: BADVERS from the general path
        }
        limit = usize::from(u16::from_be_bytes([opt[3], opt[4]])).max(512);
        edns = true;
    }
    Some(Question { raw, limit, edns })
}

fn respond(
    req: &[u8],
    resolver: &Resolver,
    view: &View,
    cache: &mut HashMap<Vec<u8>, Prepared>,
) -> Reply {
    let Some(q) = parse_question(req) else {
        return general(req, resolver, view);
    };
    let mut key = Vec::with_capacity(q.raw.len() + 1);
    key.extend_from_slice(q.raw);
    key.push(u8::from(q.edns));
    if !cache.contains_key(&key) {
        match prepare(req, q.edns, resolver, view) {
            Some(Ok(p)) => {
                cache.insert(key.clone(), p);
            }
            Some(Err(reply)) => return reply,
            None => return general(req, resolver, view),
        }
    }
    let Some(prepared) = cache.get_mut(&key) else {
        return Reply::Drop;
    };
    let pick = if prepared.variants.len() > 1 {
        rand::rng().random_range(0..prepared.variants.len())
    } else {
        0
    };
    let chosen = &prepared.variants[pick];
    let mut out = if chosen.len() <= q.limit {
        chosen.clone()
    } else {
        let message = &prepared.message;
        prepared
            .truncated
            .entry(q.limit)
            .or_insert_with(|| cut(message, q.limit))
            .clone()
    };
    // Our ID and RD bit are the client's.
    out[0] = req[0];
    out[1] = req[1];
    out[2] = (out[2] & !0x01) | (req[2] & 0x01);
    Reply::Send(out)
}

/// Encodes the answers to a cacheable question; Err for what must not be cached (forwarding).
fn prepare(
    req: &[u8],
    edns: bool,
    resolver: &Resolver,
    view: &View,
) -> Option<Result<Prepared, Reply>> {
    let mut decoder = BinDecoder::new(req.get(12..)?);
    let query = Query::read(&mut decoder).ok()?;
    let build = |code: ResponseCode, aa: bool| {
        let mut m = Message::new(0, MessageType::Response, OpCode::Query);
        m.metadata.authoritative = aa;
        m.metadata.recursion_available = !resolver.recursors.is_empty();
        m.metadata.response_code = code;
        m.add_query(query.clone());
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(OUR_PAYLOAD);
            m.set_edns(e);
        }
        m
    };
    let mut variants = Vec::with_capacity(ORDERINGS);
    let mut first: Option<Message> = None;
    for _ in 0..ORDERINGS {
        let msg = match resolver.decide(view, query.name(), query.query_type()) {
            Decision::Forward => return Some(Err(Reply::Forward)),
            Decision::Refused => build(ResponseCode::Refused, false),
            Decision::Local(a) => {
                let mut m = build(a.code, true);
                m.add_answers(a.answers);
                m.add_authorities(a.authority);
                m.add_additionals(a.additionals);
                m
            }
        };
        let bytes = msg.to_vec().ok()?;
        let single = msg.answers.len() <= 1;
        variants.push(bytes);
        if first.is_none() {
            first = Some(msg);
        }
        if single {
            break; // nothing to shuffle
        }
    }
    Some(Ok(Prepared {
        variants,
        message: first?,
        truncated: HashMap::new(),
    }))
}

/// Everything the cache does not take: full parse, then FORMERR/NOTIMP/BADVERS or an answer.
fn general(req: &[u8], resolver: &Resolver, view: &View) -> Reply {
    let msg = match Message::from_vec(req) {
        Ok(m) => m,
        Err(_) => return error_reply(req, ResponseCode::FormErr).map_or(Reply::Drop, Reply::Send),
    };
    if msg.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    if msg.metadata.op_code != OpCode::Query {
        return error_reply(req, ResponseCode::NotImp).map_or(Reply::Drop, Reply::Send);
    }
    if msg.edns.as_ref().is_some_and(|e| e.version() > 0) {
        return error_reply(req, ResponseCode::BADVERS).map_or(Reply::Drop, Reply::Send);
    }
    let [query] = msg.queries.as_slice() else {
        return error_reply(req, ResponseCode::FormErr).map_or(Reply::Drop, Reply::Send);
    };
    let limit = msg
        .edns
        .as_ref()
        .map_or(512, |e| usize::from(e.max_payload()).max(512));
    let mut out = Message::new(msg.metadata.id, MessageType::Response, OpCode::Query);
    out.metadata.recursion_desired = msg.metadata.recursion_desired;
    out.metadata.recursion_available = !resolver.recursors.is_empty();
    out.add_query(query.clone());
    if msg.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(OUR_PAYLOAD);
        out.set_edns(e);
    }
    match resolver.decide(view, query.name(), query.query_type()) {
        Decision::Forward => return Reply::Forward,
        Decision::Refused => out.metadata.response_code = ResponseCode::Refused,
        Decision::Local(a) => {
            out.metadata.authoritative = true;
            out.metadata.response_code = a.code;
            out.add_answers(a.answers);
            out.add_authorities(a.authority);
            out.add_additionals(a.additionals);
        }
    }
    let Ok(bytes) = out.to_vec() else {
        return Reply::Drop;
    };
    if bytes.len() <= limit {
        Reply::Send(bytes)
    } else {
        Reply::Send(cut(&out, limit))
    }
}

/// A header-only reply with `code` (and the question when it can be read), for bad requests.
fn error_reply(req: &[u8], code: ResponseCode) -> Option<Vec<u8>> {
    if req.len() < 12 || req[2] & 0x80 != 0 {
        return None; // too short to answer, or itself a response
    }
    let id = u16::from_be_bytes([req[0], req[1]]);
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = req[2] & 0x01 != 0;
    m.metadata.response_code = code;
    if let Ok(asked) = Message::from_vec(req) {
        m.queries = asked.queries;
    }
    if code == ResponseCode::BADVERS {
        let mut e = Edns::new();
        e.set_rcode_high(code.high());
        e.set_max_payload(OUR_PAYLOAD);
        m.set_edns(e);
    }
    m.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_form_questions_are_recognised() {
        // id, flags RD, 1 question, www.example.com A IN
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in ["www", "example", "com"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let parsed = parse_question(&q).unwrap();
        assert_eq!((parsed.limit, parsed.edns), (512, false));
        // With OPT (payload 1232).
        let mut e = q.clone();
        e[11] = 1;
        e.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        let parsed = parse_question(&e).unwrap();
        assert_eq!((parsed.limit, parsed.edns), (1232, true));
        // A compression pointer in the question goes to the general path.
        let mut c = q[..12].to_vec();
        c.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert!(parse_question(&c).is_none());
        assert!(parse_question(&q[..7]).is_none());
    }
}

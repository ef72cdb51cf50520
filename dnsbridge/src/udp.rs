//! The UDP fast path. hickory-server funnels every UDP query through one task that owns the only
//! socket and spawns a task per query; that caps throughput near half of Knot's on two cores. Here
//! each core gets its own `SO_REUSEPORT` socket and a plain thread that answers inline.
//!
//! Answers for a question are encoded once (a few shuffled orderings each) and cached by the
//! question's exact bytes, so a hit costs a hash lookup, a copy and two patched header bytes. A
//! new view drops only the answers it may have changed: those of the services and nodes its
//! updates redid (the view's history says which), and those carrying the catalog index (negative
//! answers and SOA, whose serial it is) or read from prepared queries; a rebuilt view, or one
//! further ahead than its history reaches, drops everything. Under a steady stream of catalog
//! changes the cache so stays warm instead of starting over with every view.
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

use crate::names::Lookup;
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

/// What a prepared answer was read from, so the cache knows when a new view changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dep {
    /// A service's instances (lowercase name).
    Service(String),
    /// A node's address (lowercase name).
    Node(String),
    /// Changes with every view: the SOA serial (negative answers, SOA), prepared queries, the
    /// SERVFAIL answered before the first view.
    Every,
    /// Nothing in the view: refusals, the apex NS and the name server's address.
    Nothing,
}

/// A worker's prepared answers with what each was read from.
#[derive(Default)]
struct Cache {
    entries: HashMap<Vec<u8>, Prepared>,
    by_service: HashMap<String, Vec<Vec<u8>>>,
    by_node: HashMap<String, Vec<Vec<u8>>>,
    every: Vec<Vec<u8>>,
    /// The view the entries are valid for.
    view: Option<Arc<View>>,
}

impl Cache {
    fn clear(&mut self) {
        self.entries.clear();
        self.by_service.clear();
        self.by_node.clear();
        self.every.clear();
    }

    /// Keeps what `view` answers as the cached view did; drops the rest.
    fn follow(&mut self, view: &Arc<View>) {
        let Some(old) = &self.view else {
            self.view = Some(view.clone());
            return;
        };
        if Arc::ptr_eq(old, view) {
            return;
        }
        let steps = if old.loaded {
            view.changes_since(old.generation)
        } else {
            None
        };
        match steps {
            Some(steps) if self.entries.len() <= MAX_CACHED => {
                for key in self.every.drain(..) {
                    self.entries.remove(&key);
                }
                for step in steps {
                    for name in &step.services {
                        for key in self.by_service.remove(name).into_iter().flatten() {
                            self.entries.remove(&key);
                        }
                    }
                    for name in &step.nodes {
                        for key in self.by_node.remove(name).into_iter().flatten() {
                            self.entries.remove(&key);
                        }
                    }
                }
            }
            _ => self.clear(),
        }
        self.view = Some(view.clone());
    }

    fn insert(&mut self, key: Vec<u8>, prepared: Prepared) {
        match &prepared.dep {
            Dep::Service(name) => self
                .by_service
                .entry(name.clone())
                .or_default()
                .push(key.clone()),
            Dep::Node(name) => self
                .by_node
                .entry(name.clone())
                .or_default()
                .push(key.clone()),
            Dep::Every => self.every.push(key.clone()),
            Dep::Nothing => {}
        }
        self.entries.insert(key, prepared);
    }
}

/// A question's prepared answers.
struct Prepared {
    /// Full responses with ID 0 and RD clear, one per ordering.
    variants: Vec<Vec<u8>>,
    /// Cut-down responses already made, by client buffer size.
    truncated: HashMap<usize, Vec<u8>>,
    /// What they were read from.
    dep: Dep,
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
    let mut cache = Cache::default();
    let sock = Arc::new(sock);
    while !stop.is_cancelled() {
        let received = sock.recv_from(&mut buf);
        // Also on the idle tick: a worker that no query reached for a while keeps up with the
        // views (each drops what it changed) instead of falling further behind than their
        // history reaches and starting over cold.
        {
            let current = resolver.view.load();
            if !cache
                .view
                .as_ref()
                .is_some_and(|v| Arc::ptr_eq(v, &current))
            {
                cache.follow(&current);
            }
        }
        let (n, src) = match received {
            Ok(r) => r,
            Err(_) => continue, // the idle tick, or a transient error (e.g. ICMP feedback)
        };
        if cache.entries.len() > MAX_CACHED {
            cache.clear();
        }
        let Some(view) = cache.view.clone() else {
            continue;
        };
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

fn respond(req: &[u8], resolver: &Resolver, view: &View, cache: &mut Cache) -> Reply {
    let Some(q) = parse_question(req) else {
        return general(req, resolver, view);
    };
    let mut key = Vec::with_capacity(q.raw.len() + 1);
    key.extend_from_slice(q.raw);
    key.push(u8::from(q.edns));
    if !cache.entries.contains_key(&key) {
        match prepare(req, q.edns, resolver, view) {
            Some(Ok(p)) => cache.insert(key.clone(), p),
            Some(Err(reply)) => return reply,
            None => return general(req, resolver, view),
        }
    }
    let Some(prepared) = cache.entries.get_mut(&key) else {
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
    } else if let Some(cut_down) = prepared.truncated.get(&q.limit) {
        cut_down.clone()
    } else {
        // Made again from the view the entry belongs to (no message is kept per entry: a
        // service of 100 instances made each one tens of kilobytes).
        let Some(Ok((messages, _))) = answer_messages(req, q.edns, resolver, view, 1) else {
            return general(req, resolver, view);
        };
        let cut_down = cut(&messages[0], q.limit);
        prepared.truncated.insert(q.limit, cut_down.clone());
        cut_down
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
    let (messages, dep) = match answer_messages(req, edns, resolver, view, ORDERINGS)? {
        Ok(made) => made,
        Err(reply) => return Some(Err(reply)),
    };
    let variants = messages
        .iter()
        .map(|m| m.to_vec().ok())
        .collect::<Option<Vec<_>>>()?;
    Some(Ok(Prepared {
        variants,
        truncated: HashMap::new(),
        dep,
    }))
}

/// Up to `orderings` answers to the question in `req` (one when it has a single record), with
/// what they were read from; Err for what must not be cached (forwarding).
fn answer_messages(
    req: &[u8],
    edns: bool,
    resolver: &Resolver,
    view: &View,
    orderings: usize,
) -> Option<Result<(Vec<Message>, Dep), Reply>> {
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
    let lookup = resolver.lookup(query.name());
    let mut messages = Vec::with_capacity(orderings);
    let mut dep = Dep::Nothing;
    for _ in 0..orderings {
        let msg =
            match resolver.decide_lookup(view, lookup.as_ref(), query.name(), query.query_type()) {
                Decision::Forward => return Some(Err(Reply::Forward)),
                Decision::Refused => build(ResponseCode::Refused, false),
                Decision::Local(a) => {
                    dep = dependency(lookup.as_ref(), &a);
                    let mut m = build(a.code, true);
                    m.add_answers(a.answers);
                    m.add_authorities(a.authority);
                    m.add_additionals(a.additionals);
                    m
                }
            };
        let single = msg.answers.len() <= 1;
        messages.push(msg);
        if single {
            break; // nothing to shuffle
        }
    }
    Some(Ok((messages, dep)))
}

/// What an answer to `lookup` was read from.
fn dependency(lookup: Option<&Lookup>, answer: &crate::answer::Answer) -> Dep {
    // The SOA (in a negative answer's authority, or asked for) carries the catalog index.
    let carries_index = answer
        .answers
        .iter()
        .chain(&answer.authority)
        .any(|r| r.record_type() == hickory_proto::rr::RecordType::SOA);
    match lookup {
        _ if carries_index || answer.code == ResponseCode::ServFail => Dep::Every,
        Some(Lookup::Service { name, .. }) => Dep::Service(name.clone()),
        Some(Lookup::Node { name }) => Dep::Node(name.clone()),
        Some(Lookup::Query { .. }) => Dep::Every,
        Some(Lookup::Apex | Lookup::NameServer | Lookup::Unknown) | None => Dep::Nothing,
    }
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

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::answer::Zone;
    use arc_swap::ArcSwap;
    use cairn_wire::{
        CatalogDelta, CheckStatus, HealthCheck, Node, NodeHealth, NodeService, ServiceEntry,
    };
    use hickory_proto::rr::{Name, RecordType};

    fn entry(service: &str, node: &str, addr: &str, status: CheckStatus) -> ServiceEntry {
        ServiceEntry {
            node: Node {
                node: node.into(),
                address: addr.into(),
                ..Default::default()
            },
            service: NodeService {
                id: format!("{service}-{node}"),
                service: service.into(),
                port: 80,
                ..Default::default()
            },
            checks: vec![HealthCheck {
                status,
                ..Default::default()
            }],
        }
    }

    fn node(name: &str, addr: &str) -> NodeHealth {
        NodeHealth {
            node: Node {
                node: name.into(),
                address: addr.into(),
                ..Default::default()
            },
            checks: Vec::new(),
        }
    }

    fn resolver() -> Resolver {
        let zone = Zone {
            domain: Name::from_ascii("consul.").unwrap(),
            datacenter: "dc1".into(),
            ttl: 0,
            ns_addr: "127.0.0.1".parse().unwrap(),
        };
        Resolver::new(
            zone,
            Arc::new(ArcSwap::from_pointee(View::default())),
            Vec::new(),
            1,
        )
    }

    fn ask(name: &str) -> Vec<u8> {
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        m.to_vec().unwrap()
    }

    /// The A records and response code of what the worker would send for `name`.
    fn answer(resolver: &Resolver, cache: &mut Cache, name: &str) -> (ResponseCode, Vec<String>) {
        let view = cache.view.clone().unwrap();
        let Reply::Send(bytes) = respond(&ask(name), resolver, &view, cache) else {
            panic!("no answer for {name}");
        };
        let m = Message::from_vec(&bytes).unwrap();
        let mut addrs: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
        addrs.sort();
        (m.metadata.response_code, addrs)
    }

    fn cached(cache: &Cache, name: &str) -> bool {
        let q = ask(name);
        let parsed = parse_question(&q).unwrap();
        let mut key = parsed.raw.to_vec();
        key.push(0);
        cache.entries.contains_key(&key)
    }

    /// A new view drops the answers its update redid and those carrying the index, keeps the
    /// rest, and the answers given after it are the new view's; a rebuilt view drops all.
    #[test]
    fn a_new_view_drops_only_what_it_changed() {
        let resolver = resolver();
        let mut catalog = crate::held::Held::slim();
        catalog.apply(CatalogDelta {
            full: true,
            nodes: vec![node("n1", "10.0.0.1"), node("n2", "10.0.0.2")],
            services: vec![
                entry("web", "n1", "10.0.0.1", CheckStatus::Passing),
                entry("db", "n1", "10.0.0.1", CheckStatus::Passing),
                entry("db", "n2", "10.0.0.2", CheckStatus::Passing),
            ],
            ..CatalogDelta::default()
        });
        let first = Arc::new(View::build(&catalog, Vec::new(), 1, false));
        let mut cache = Cache::default();
        cache.follow(&first);
        let names = [
            "web.service.consul.",
            "db.service.consul.",
            "n1.node.consul.",
            "n2.node.consul.",
            "nosuch.service.consul.",
            "ns.consul.",
        ];
        for name in names {
            answer(&resolver, &mut cache, name);
            assert!(cached(&cache, name), "{name}");
        }
        assert_eq!(
            answer(&resolver, &mut cache, "db.service.consul.").1,
            vec!["10.0.0.1", "10.0.0.2"]
        );

        // db on n2 turns critical; n2 gets a new address.
        let touched = catalog.apply(CatalogDelta {
            nodes: vec![node("n2", "10.0.0.9")],
            services: vec![entry("db", "n2", "10.0.0.9", CheckStatus::Critical)],
            ..CatalogDelta::default()
        });
        let second = Arc::new(first.update(&catalog, &touched, 2));
        // Two updates at once: the worker may skip a view.
        let touched = catalog.apply(CatalogDelta {
            services: vec![entry("web", "n1", "10.0.0.1", CheckStatus::Warning)],
            ..CatalogDelta::default()
        });
        let third = Arc::new(second.update(&catalog, &touched, 3));
        cache.follow(&second);
        assert!(cached(&cache, "web.service.consul."));
        assert!(cached(&cache, "n1.node.consul."));
        assert!(cached(&cache, "ns.consul."));
        for gone in [
            "db.service.consul.",
            "n2.node.consul.",
            "nosuch.service.consul.",
        ] {
            assert!(!cached(&cache, gone), "{gone}");
        }
        assert_eq!(
            answer(&resolver, &mut cache, "db.service.consul.").1,
            vec!["10.0.0.1"]
        );
        assert_eq!(
            answer(&resolver, &mut cache, "n2.node.consul.").1,
            vec!["10.0.0.9"]
        );
        cache.follow(&third);
        assert!(!cached(&cache, "web.service.consul."));
        assert!(cached(&cache, "db.service.consul."));
        // Negative answers carry the new serial.
        let view = cache.view.clone().unwrap();
        let Reply::Send(bytes) =
            respond(&ask("nosuch.service.consul."), &resolver, &view, &mut cache)
        else {
            panic!("no answer");
        };
        let m = Message::from_vec(&bytes).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(
            m.authorities[0].data.to_string().contains(" 3 "),
            "{}",
            m.authorities[0].data
        );

        // From the first view straight to the third: both updates' names dropped.
        let mut behind = Cache::default();
        behind.follow(&first);
        for name in names {
            answer(&resolver, &mut behind, name);
        }
        behind.follow(&third);
        for gone in [
            "web.service.consul.",
            "db.service.consul.",
            "n2.node.consul.",
        ] {
            assert!(!cached(&behind, gone), "{gone}");
        }
        assert!(cached(&behind, "n1.node.consul."));

        // A rebuilt view (new prepared queries, a whole catalog) starts over.
        let rebuilt = Arc::new(View::build(&catalog, Vec::new(), 4, false));
        cache.follow(&rebuilt);
        assert!(cache.entries.is_empty());
    }
}

//! Shared pieces of the `dnsbridge` end-to-end tests: the real `dnsbridge serve` on a loopback
//! port (with its log), catalog registrations against a real catalogd, real `dig` with its
//! output parsed into sections, a small DNS client over UDP and TCP sockets built on
//! hickory-proto (queries built and answers parsed by the library, sockets by hand), and a local
//! dnsmasq to forward to. Every address contacted is on 127.0.0.1.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cairn_tests::{Catalogd, bin, free_port};
use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{Value, json};

/// How long the tests wait for a catalog change to show in answers ("soon", generously).
pub const SOON: Duration = Duration::from_secs(10);

/// How long one DNS exchange may take before it counts as "no answer".
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);

// ---------------------------------------------------------------------------------------------
// The binary under test.

/// A running `dnsbridge serve` on 127.0.0.1:PORT (UDP and TCP).
pub struct Bridge {
    child: Option<Child>,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl Bridge {
    /// Starts `dnsbridge serve --catalog CATALOG EXTRA...` and waits until it answers from its
    /// first view of the catalog (before that it answers SERVFAIL).
    pub fn start(catalog: &str, extra: &[&str]) -> Bridge {
        let b = Self::start_unsynced(catalog, extra);
        // The apex of the bridge's domain (`--domain`, `consul.` by default).
        let domain = extra
            .iter()
            .position(|a| *a == "--domain")
            .and_then(|i| extra.get(i + 1))
            .map_or("consul.".to_string(), |d| {
                format!("{}.", d.trim_end_matches('.'))
            });
        b.wait_synced(&domain);
        b
    }

    /// Starts dnsbridge and waits only until it answers DNS (a catalogd that is down or frozen
    /// has given it no view yet).
    pub fn start_unsynced(catalog: &str, extra: &[&str]) -> Bridge {
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("log file");
            let child = Command::new(bin("dnsbridge"))
                .arg("serve")
                .arg("--catalog")
                .arg(catalog)
                .arg("--dns-addr")
                .arg(format!("127.0.0.1:{port}"))
                .args(extra)
                .env("RUST_LOG", "info")
                .env_remove("CAIRN_CATALOG")
                .env_remove("CONSUL_HTTP_ADDR")
                .env_remove("CAIRN_TOKEN")
                .env_remove("CONSUL_HTTP_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.reopen().expect("log file"))
                .spawn()
                .expect("starting dnsbridge");
            let mut b = Bridge {
                child: Some(child),
                port,
                log,
            };
            if b.wait_ready() {
                return b;
            }
            // The port was taken between free_port() and the bind (UDP or TCP): try another.
            last_log = b.log_text();
            assert!(
                last_log.contains("binding"),
                "dnsbridge exited early; log:\n{last_log}"
            );
        }
        panic!("dnsbridge could not bind a free port in 5 tries; last log:\n{last_log}");
    }

    /// Waits until the SOA of `domain` is answered (NOERROR): the bridge has its first view.
    fn wait_synced(&self, domain: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = query(domain, RecordType::SOA, Some(1232));
            let answer = udp_exchange(
                self.port,
                &probe.to_vec().expect("encode"),
                EXCHANGE_TIMEOUT,
            )
            .and_then(|bytes| Message::from_vec(&bytes).ok());
            if answer.is_some_and(|m| m.metadata.response_code == ResponseCode::NoError) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsbridge had no view of the catalog within 20 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True once DNS is answered over TCP and UDP; false when the process exited.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if TcpStream::connect(self.addr()).is_ok() {
                let probe = query("consul.", RecordType::SOA, Some(1232));
                if udp_exchange(
                    self.port,
                    &probe.to_vec().expect("encode"),
                    EXCHANGE_TIMEOUT,
                )
                .is_some()
                {
                    return true;
                }
            }
            assert!(
                Instant::now() < deadline,
                "dnsbridge did not answer DNS within 20 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends `signal` (e.g. "-TERM") and waits up to `within` for the exit: (status, time taken).
    pub fn signal_and_wait(&mut self, signal: &str, within: Duration) -> (ExitStatus, Duration) {
        let mut c = self.child.take().expect("dnsbridge is running");
        let sent = Instant::now();
        let ok = Command::new("kill")
            .arg(signal)
            .arg(c.id().to_string())
            .status()
            .expect("running kill");
        assert!(ok.success(), "kill {signal} {}", c.id());
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return (status, sent.elapsed());
            }
            if sent.elapsed() > within {
                // The process may have exited already; the wait below reaps it either way.
                let _ = c.kill();
                // Only reaps it; how a killed process exited says nothing here.
                let _ = c.wait();
                panic!(
                    "dnsbridge did not stop within {within:?} of kill {signal}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `dig @127.0.0.1 -p PORT ARGS...` (one try, 3 s timeout), parsed.
    pub fn dig(&self, args: &[&str]) -> Dig {
        dig(self.port, args)
    }

    /// One question over UDP with an EDNS0 buffer of 1232 bytes.
    pub fn udp(&self, name: &str, rtype: RecordType) -> Reply {
        ask_udp(self.port, name, rtype, Some(1232))
    }

    /// One question over TCP.
    pub fn tcp(&self, name: &str, rtype: RecordType) -> Reply {
        ask_tcp(self.port, name, rtype)
    }

    /// Waits until dnsbridge's log holds `text` (panics after [`SOON`] with the log).
    pub fn wait_log(&self, text: &str) {
        let start = Instant::now();
        while !self.log_text().contains(text) {
            assert!(
                start.elapsed() < SOON,
                "{text:?} not logged within {SOON:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `name`/`rtype` over UDP every 5 ms until `ok` holds; returns how long it took.
    /// Panics after [`SOON`] with the last answer and the log.
    pub fn wait_for(
        &self,
        what: &str,
        name: &str,
        rtype: RecordType,
        ok: impl Fn(&Reply) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let reply = try_ask_udp(self.port, name, rtype, Some(1232));
            if let Some(r) = &reply
                && ok(r)
            {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < SOON,
                "{what}: not seen within {SOON:?} ({name} {rtype}); last answer: {:?}\nlog:\n{}",
                reply.map(|r| r.summary()),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until `name` (A, AAAA or ANY) answers exactly the addresses `want`.
    pub fn wait_for_addrs(&self, name: &str, rtype: RecordType, want: &[&str]) -> Duration {
        let want = set(want);
        self.wait_for(&format!("{name} = {want:?}"), name, rtype, |r| {
            r.msg.metadata.response_code == ResponseCode::NoError && r.addrs() == want
        })
    }

    /// Asserts the process is alive and still answers a known name over UDP and TCP.
    pub fn assert_healthy(&mut self, name: &str, want: &[&str], context: &str) {
        assert!(
            self.alive(),
            "dnsbridge died after {context}; log:\n{}",
            self.log_text()
        );
        let want = set(want);
        let udp = try_ask_udp(self.port, name, RecordType::A, Some(1232));
        assert_eq!(
            udp.as_ref().map(Reply::addrs),
            Some(want.clone()),
            "after {context}: a valid UDP query must still be answered; log:\n{}",
            self.log_text()
        );
        let tcp = try_ask_tcp(self.port, name, RecordType::A);
        assert_eq!(
            tcp.as_ref().map(Reply::addrs),
            Some(want),
            "after {context}: a valid TCP query must still be answered; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // The process may have exited already; the wait below reaps it either way.
            let _ = c.kill();
            // Only reaps it; how a killed process exited says nothing here.
            let _ = c.wait();
        }
    }
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// The catalog.

/// One service instance to register through `PUT /v1/catalog/register`.
#[derive(Clone, Debug)]
pub struct Inst {
    pub service: String,
    pub id: String,
    pub node: String,
    pub node_addr: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub service_addr: String,
    /// Status of a service-level check, if any.
    pub check: Option<String>,
}

impl Inst {
    pub fn new(service: &str, id: &str, node: &str, node_addr: &str, port: u16) -> Inst {
        Inst {
            service: service.into(),
            id: id.into(),
            node: node.into(),
            node_addr: node_addr.into(),
            port,
            tags: Vec::new(),
            service_addr: String::new(),
            check: None,
        }
    }

    pub fn tags(mut self, tags: &[&str]) -> Inst {
        self.tags = tags.iter().map(|t| t.to_string()).collect();
        self
    }

    pub fn service_addr(mut self, addr: &str) -> Inst {
        self.service_addr = addr.into();
        self
    }

    pub fn check(mut self, status: &str) -> Inst {
        self.check = Some(status.into());
        self
    }

    pub fn body(&self) -> Value {
        let mut body = json!({
            "Node": self.node,
            "Address": self.node_addr,
            "Service": {
                "ID": self.id,
                "Service": self.service,
                "Tags": self.tags,
                "Port": self.port,
                "Address": self.service_addr,
            },
        });
        if let Some(status) = &self.check {
            body["Check"] = json!({
                "CheckID": format!("chk-{}", self.id),
                "Name": "service check",
                "Status": status,
                "ServiceID": self.id,
            });
        }
        body
    }

    pub async fn register(&self, c: &Catalogd) {
        register(c, &self.body()).await;
    }
}

/// `PUT /v1/catalog/register`, asserted to succeed.
pub async fn register(c: &Catalogd, body: &Value) {
    let r = c.http.put_json("/v1/catalog/register", body).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "true"),
        "register {body}"
    );
}

/// Registers every instance in turn.
pub async fn register_all(c: &Catalogd, instances: &[Inst]) {
    for i in instances {
        i.register(c).await;
    }
}

/// A node-level check (no ServiceID) with `status` on `node`.
pub async fn node_check(c: &Catalogd, node: &str, addr: &str, status: &str) {
    register(
        c,
        &json!({
            "Node": node,
            "Address": addr,
            "Check": {"CheckID": format!("node-{node}"), "Name": "node check", "Status": status},
        }),
    )
    .await;
}

/// `PUT /v1/catalog/deregister` of one service instance.
pub async fn deregister(c: &Catalogd, node: &str, service_id: &str) {
    let body = json!({"Node": node, "ServiceID": service_id});
    let r = c.http.put_json("/v1/catalog/deregister", &body).await;
    assert_eq!(r.status, 200, "deregister {body}: {}", r.text());
}

// ---------------------------------------------------------------------------------------------
// The DNS client library: hickory-proto messages over std sockets.

/// A query message for one question, recursion not desired, with an EDNS0 OPT of `edns` bytes
/// when given.
pub fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Message {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let mut m = Message::query();
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(
        Name::from_ascii(&fqdn).unwrap_or_else(|e| panic!("bad test name {name:?}: {e}")),
        rtype,
    ));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m
}

/// Sends one datagram and returns the first datagram back, or None after `timeout`.
pub fn udp_exchange(port: u16, packet: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    sock.connect(("127.0.0.1", port)).expect("udp connect");
    sock.set_read_timeout(Some(timeout)).expect("timeout");
    sock.send(packet).expect("udp send");
    let mut buf = vec![0u8; 65535];
    match sock.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Sends one length-prefixed message over a new TCP connection and reads one framed answer.
pub fn tcp_exchange(port: u16, packet: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(packet);
    s.write_all(&framed)?;
    read_frame(&mut s)
}

/// Reads one 2-byte-length-prefixed DNS message from a TCP stream.
pub fn read_frame(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// A parsed answer and its size on the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    pub msg: Message,
    pub len: usize,
}

impl Reply {
    fn parse(question: &Message, bytes: &[u8]) -> Reply {
        let msg = Message::from_vec(bytes).unwrap_or_else(|e| {
            panic!("the answer does not parse ({e}): {bytes:02x?}");
        });
        assert_eq!(
            msg.metadata.id, question.metadata.id,
            "the answer carries the query's ID"
        );
        assert_eq!(msg.metadata.message_type, MessageType::Response);
        assert_eq!(
            msg.queries, question.queries,
            "the answer echoes the question"
        );
        Reply {
            msg,
            len: bytes.len(),
        }
    }

    pub fn rcode(&self) -> ResponseCode {
        self.msg.metadata.response_code
    }

    /// A/AAAA addresses of the answer section.
    pub fn addrs(&self) -> BTreeSet<String> {
        addrs(&self.msg.answers)
    }

    /// The answer section as "TYPE rdata" strings.
    pub fn answer_set(&self) -> BTreeSet<String> {
        rr_set(&self.msg.answers)
    }

    /// The additional section as "owner TYPE rdata" strings (the OPT record is not in it).
    pub fn glue_set(&self) -> BTreeSet<String> {
        self.msg
            .additionals
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    }

    /// One line for failure messages (long sections shortened).
    pub fn summary(&self) -> String {
        fn short(items: BTreeSet<String>) -> String {
            let n = items.len();
            let mut shown: Vec<String> = items.into_iter().take(8).collect();
            if n > 8 {
                shown.push(format!("… {} more", n - 8));
            }
            format!("{shown:?}")
        }
        format!(
            "{} tc={} aa={} answers={} authority={} additional={} ({} bytes)",
            self.rcode(),
            self.msg.metadata.truncation,
            self.msg.metadata.authoritative,
            short(self.answer_set()),
            short(rr_set(&self.msg.authorities)),
            short(self.glue_set()),
            self.len
        )
    }
}

pub fn addrs(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

pub fn rr_set(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect()
}

pub fn try_ask_udp(port: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Option<Reply> {
    let q = query(name, rtype, edns);
    let bytes = udp_exchange(port, &q.to_vec().expect("encode"), EXCHANGE_TIMEOUT)?;
    Some(Reply::parse(&q, &bytes))
}

pub fn ask_udp(port: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Reply {
    // Loopback UDP does not lose datagrams in practice; one retry covers a busy machine.
    try_ask_udp(port, name, rtype, edns)
        .or_else(|| try_ask_udp(port, name, rtype, edns))
        .unwrap_or_else(|| panic!("no UDP answer to {name} {rtype} from 127.0.0.1:{port}"))
}

pub fn try_ask_tcp(port: u16, name: &str, rtype: RecordType) -> Option<Reply> {
    let q = query(name, rtype, None);
    let bytes = tcp_exchange(port, &q.to_vec().expect("encode"), EXCHANGE_TIMEOUT).ok()?;
    Some(Reply::parse(&q, &bytes))
}

pub fn ask_tcp(port: u16, name: &str, rtype: RecordType) -> Reply {
    let q = query(name, rtype, None);
    let bytes = tcp_exchange(port, &q.to_vec().expect("encode"), EXCHANGE_TIMEOUT)
        .unwrap_or_else(|e| panic!("no TCP answer to {name} {rtype} from 127.0.0.1:{port}: {e}"));
    Reply::parse(&q, &bytes)
}

// ---------------------------------------------------------------------------------------------
// dig.

/// One resource record as dig prints it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DigRr {
    pub name: String,
    pub ttl: u32,
    pub rtype: String,
    pub data: String,
}

/// dig's output, split into what the tests look at (the last answer when dig retried).
#[derive(Debug, Clone, Default)]
pub struct Dig {
    /// The whole output (dig prints its own command line first).
    pub out: String,
    pub status: String,
    pub flags: Vec<String>,
    pub answer: Vec<DigRr>,
    pub authority: Vec<DigRr>,
    pub additional: Vec<DigRr>,
    /// Counts from the flags line (QUERY, ANSWER, AUTHORITY, ADDITIONAL).
    pub counts: [usize; 4],
    pub size: usize,
    pub over_tcp: bool,
    pub retried_over_tcp: bool,
    /// The EDNS UDP size of the answer's OPT record, if any.
    pub edns_udp: Option<u16>,
}

impl Dig {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// "TYPE data" of the answer section.
    pub fn answer_set(&self) -> BTreeSet<String> {
        self.answer
            .iter()
            .map(|r| format!("{} {}", r.rtype, r.data))
            .collect()
    }

    /// Addresses of A/AAAA records in the answer section.
    pub fn addrs(&self) -> BTreeSet<String> {
        self.answer
            .iter()
            .filter(|r| r.rtype == "A" || r.rtype == "AAAA")
            .map(|r| r.data.clone())
            .collect()
    }

    /// "owner TYPE data" of the additional section.
    pub fn glue_set(&self) -> BTreeSet<String> {
        self.additional
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.rtype, r.data))
            .collect()
    }
}

/// Runs `dig @127.0.0.1 -p PORT +time=3 +tries=1 ARGS...` and parses its output.
pub fn dig(port: u16, args: &[&str]) -> Dig {
    let mut all: Vec<String> = vec![
        "@127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        "+time=3".into(),
        "+tries=1".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    let out = Command::new("dig")
        .args(&all)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("dig is not installed (package bind9-dnsutils) or does not run: {e}")
        });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "dig {all:?} failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_dig(text)
}

fn parse_dig(out: String) -> Dig {
    let mut d = Dig {
        retried_over_tcp: out.contains("Truncated, retrying in TCP mode"),
        ..Default::default()
    };
    // When dig retried, only the last answer counts.
    let start = out.rfind(";; ->>HEADER<<-").unwrap_or_else(|| {
        panic!("dig printed no answer header:\n{out}");
    });
    let text = &out[start..];
    let mut section: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            d.status = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("status: "))
                .unwrap_or_default()
                .to_string();
        } else if let Some(rest) = line.strip_prefix(";; flags:") {
            let (flags, counts) = rest.split_once(';').unwrap_or((rest, ""));
            d.flags = flags.split_whitespace().map(str::to_string).collect();
            for (i, key) in ["QUERY:", "ANSWER:", "AUTHORITY:", "ADDITIONAL:"]
                .iter()
                .enumerate()
            {
                if let Some(n) = counts.split(',').find_map(|p| p.trim().strip_prefix(key)) {
                    d.counts[i] = n.trim().parse().unwrap_or(0);
                }
            }
        } else if let Some(rest) = line.strip_prefix("; EDNS:") {
            d.edns_udp = rest
                .rsplit_once("udp:")
                .and_then(|(_, n)| n.trim().parse().ok());
        } else if let Some(rest) = line.strip_prefix(";; MSG SIZE  rcvd:") {
            d.size = rest.trim().parse().unwrap_or(0);
        } else if line.starts_with(";; SERVER:") {
            d.over_tcp = line.ends_with("(TCP)");
        } else if line.starts_with(";; ANSWER SECTION:") {
            section = Some("answer");
        } else if line.starts_with(";; AUTHORITY SECTION:") {
            section = Some("authority");
        } else if line.starts_with(";; ADDITIONAL SECTION:") {
            section = Some("additional");
        } else if line.is_empty() || line.starts_with(';') {
            section = None;
        } else if let Some(which) = section {
            let mut parts = line.split_whitespace();
            let (Some(name), Some(ttl), Some(_class), Some(rtype)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                panic!("unexpected record line from dig: {line:?}\n{out}");
            };
            let rr = DigRr {
                name: name.to_ascii_lowercase(),
                ttl: ttl.parse().unwrap_or(u32::MAX),
                rtype: rtype.to_string(),
                data: parts.collect::<Vec<_>>().join(" "),
            };
            match which {
                "answer" => d.answer.push(rr),
                "authority" => d.authority.push(rr),
                _ => d.additional.push(rr),
            }
        }
    }
    d.out = out;
    d
}

// ---------------------------------------------------------------------------------------------
// dnsmasq as the recursor.

/// A dnsmasq in the foreground on 127.0.0.1:PORT with no upstream, answering
/// `*.example.test` with 127.0.0.9 (plus whatever `extra` options add) and refusing everything
/// else.
pub struct Dnsmasq {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl Dnsmasq {
    pub fn start() -> Dnsmasq {
        Dnsmasq::start_with(&[])
    }

    pub fn start_with(extra: &[String]) -> Dnsmasq {
        let exe = which("dnsmasq").unwrap_or_else(|| {
            panic!(
                "dnsmasq is not installed (package dnsmasq-base); run scripts/test to set up the \
                 test dependencies"
            )
        });
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(exe)
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                &format!("--port={port}"),
                "--pid-file=",
                "--log-facility=-",
                "--address=/example.test/127.0.0.9",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("starting dnsmasq");
        let mut d = Dnsmasq { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", d.port)).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("dnsmasq exited with {status}; log:\n{}", d.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not listen within 10 s; log:\n{}",
                d.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        // The process may have exited already; the wait below reaps it either way.
        let _ = self.child.kill();
        // Only reaps it; how a killed process exited says nothing here.
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

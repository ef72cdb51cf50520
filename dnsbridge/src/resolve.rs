//! What to do with a question, shared by the UDP fast path and the hickory-server handler (TCP):
//! answer it from the view, forward it to a recursor, or refuse it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::answer::{Answer, Zone};
use crate::names;
use crate::view::View;

/// How long a recursor gets to answer.
const RECURSOR_TIMEOUT: Duration = Duration::from_secs(2);
/// Default for `--max-forwards`: questions forwarded at once. Each holds a task, a socket and
/// a 64 KiB buffer until its recursor answers or times out; past the bound, SERVFAIL at once.
pub const DEFAULT_MAX_FORWARDS: usize = 256;

/// The outcome for one question.
pub enum Decision {
    /// Ours: answered authoritatively.
    Local(Answer),
    /// Not ours, and a recursor is configured.
    Forward,
    /// Not ours, and no recursor.
    Refused,
}

/// The zone, the live view and the recursors.
pub struct Resolver {
    pub zone: Zone,
    domain_labels: Vec<String>,
    pub view: Arc<ArcSwap<View>>,
    pub recursors: Vec<SocketAddr>,
    forwards: Arc<Semaphore>,
}

/// Leave to forward one question: [`Resolver::forward`] takes one, so no path forwards
/// without counting against `--max-forwards`.
pub struct ForwardPermit {
    _held: OwnedSemaphorePermit,
}

/// A name's labels in lowercase.
pub fn lower_labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

impl Resolver {
    pub fn new(
        zone: Zone,
        view: Arc<ArcSwap<View>>,
        recursors: Vec<SocketAddr>,
        max_forwards: usize,
    ) -> Resolver {
        let domain_labels = lower_labels(&zone.domain);
        Resolver {
            zone,
            domain_labels,
            view,
            recursors,
            forwards: Arc::new(Semaphore::new(max_forwards)),
        }
    }

    /// A permit to forward, or None when `--max-forwards` questions are already out.
    pub fn forward_permit(&self) -> Option<ForwardPermit> {
        match self.forwards.clone().try_acquire_owned() {
            Ok(held) => Some(ForwardPermit { _held: held }),
            Err(_) => {
                tracing::debug!("too many questions forwarded at once; answering SERVFAIL");
                None
            }
        }
    }

    pub fn decide(&self, view: &View, qname: &Name, qtype: RecordType) -> Decision {
        self.decide_lookup(view, self.lookup(qname).as_ref(), qname, qtype)
    }

    /// What a name under the domain asks for; None when it is not under the domain.
    pub fn lookup(&self, qname: &Name) -> Option<names::Lookup> {
        names::parse(
            &lower_labels(qname),
            &self.domain_labels,
            &self.zone.datacenter,
        )
    }

    /// [`Resolver::decide`] for a name already parsed by [`Resolver::lookup`].
    pub fn decide_lookup(
        &self,
        view: &View,
        lookup: Option<&names::Lookup>,
        qname: &Name,
        qtype: RecordType,
    ) -> Decision {
        match lookup {
            Some(lookup) => Decision::Local(self.zone.answer(view, lookup, qname, qtype)),
            None if self.recursors.is_empty() => Decision::Refused,
            None => Decision::Forward,
        }
    }

    /// Asks the recursors in turn (over TCP when `tcp`) and returns the first answer to the
    /// question in `raw`. A reply whose ID or question differs from the one asked (a stale or
    /// spoofed datagram) is dropped, and the wait for the real one goes on.
    pub async fn forward(&self, _permit: ForwardPermit, raw: &[u8], tcp: bool) -> Option<Message> {
        let asked = Message::from_vec(raw).ok()?;
        let answers_it = |m: &Message| {
            m.metadata.id == asked.metadata.id
                && m.metadata.message_type == MessageType::Response
                && (m.queries.is_empty() || m.queries == asked.queries)
        };
        for r in &self.recursors {
            let reply = async {
                if tcp {
                    let mut s = tokio::net::TcpStream::connect(r).await.ok()?;
                    let mut framed = (raw.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(raw);
                    s.write_all(&framed).await.ok()?;
                    let len = s.read_u16().await.ok()?;
                    let mut buf = vec![0u8; usize::from(len)];
                    s.read_exact(&mut buf).await.ok()?;
                    Message::from_vec(&buf).ok().filter(answers_it)
                } else {
                    let bind = if r.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
                    // Connected: datagrams from other addresses never reach recv.
                    sock.connect(r).await.ok()?;
                    sock.send(raw).await.ok()?;
                    let mut buf = vec![0u8; 65535];
                    loop {
                        let n = sock.recv(&mut buf).await.ok()?;
                        match Message::from_vec(&buf[..n]) {
                            Ok(m) if answers_it(&m) => return Some(m),
                            _ => {
                                tracing::debug!(recursor = %r, "dropped a reply to another question")
                            }
                        }
                    }
                }
            };
            match tokio::time::timeout(RECURSOR_TIMEOUT, reply).await {
                Ok(Some(m)) => return Some(m),
                _ => tracing::debug!(recursor = %r, "recursor gave no answer"),
            }
        }
        None
    }
}

//! What to do with a question, shared by the UDP fast path and the hickory-server handler (TCP):
//! answer it from the view, forward it to a recursor, or refuse it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::Message;
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::answer::{Answer, Zone};
use crate::names;
use crate::view::View;

/// How long a recursor gets to answer.
const RECURSOR_TIMEOUT: Duration = Duration::from_secs(2);

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
}

/// A name's labels in lowercase.
pub fn lower_labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

impl Resolver {
    pub fn new(zone: Zone, view: Arc<ArcSwap<View>>, recursors: Vec<SocketAddr>) -> Resolver {
        let domain_labels = lower_labels(&zone.domain);
        Resolver {
            zone,
            domain_labels,
            view,
            recursors,
        }
    }

    pub fn decide(&self, view: &View, qname: &Name, qtype: RecordType) -> Decision {
        match names::parse(
            &lower_labels(qname),
            &self.domain_labels,
            &self.zone.datacenter,
        ) {
            Some(lookup) => Decision::Local(self.zone.answer(view, &lookup, qname, qtype)),
            None if self.recursors.is_empty() => Decision::Refused,
            None => Decision::Forward,
        }
    }

    /// Asks the recursors in turn (over TCP when `tcp`) and returns the first answer.
    pub async fn forward(&self, raw: &[u8], tcp: bool) -> Option<Message> {
        for r in &self.recursors {
            let asked = async {
                if tcp {
                    let mut s = tokio::net::TcpStream::connect(r).await.ok()?;
                    let mut framed = (raw.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(raw);
                    s.write_all(&framed).await.ok()?;
                    let len = s.read_u16().await.ok()?;
                    let mut buf = vec![0u8; usize::from(len)];
                    s.read_exact(&mut buf).await.ok()?;
                    Message::from_vec(&buf).ok()
                } else {
                    let bind = if r.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                    let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
                    sock.connect(r).await.ok()?;
                    sock.send(raw).await.ok()?;
                    let mut buf = vec![0u8; 65535];
                    let n = sock.recv(&mut buf).await.ok()?;
                    Message::from_vec(&buf[..n]).ok()
                }
            };
            match tokio::time::timeout(RECURSOR_TIMEOUT, asked).await {
                Ok(Some(m)) => return Some(m),
                _ => tracing::debug!(recursor = %r, "recursor gave no answer"),
            }
        }
        None
    }
}

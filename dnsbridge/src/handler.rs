//! The hickory-server request handler: names under the domain are answered from the current
//! view (no I/O on the query path); other names go to the recursors, or are REFUSED.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_proto::rr::{Name, Record};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::answer::{Answer, Zone};
use crate::names;
use crate::view::View;

/// How long a recursor gets to answer.
const RECURSOR_TIMEOUT: Duration = Duration::from_secs(2);

/// Answers DNS requests.
pub struct Handler {
    zone: Zone,
    domain_labels: Vec<String>,
    view: Arc<ArcSwap<View>>,
    recursors: Vec<SocketAddr>,
}

fn lower_labels(name: &Name) -> Vec<String> {
    name.iter()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect()
}

impl Handler {
    pub fn new(zone: Zone, view: Arc<ArcSwap<View>>, recursors: Vec<SocketAddr>) -> Handler {
        let domain_labels = lower_labels(&zone.domain);
        Handler {
            zone,
            domain_labels,
            view,
            recursors,
        }
    }

    /// Asks the recursors in turn (over the client's protocol) and returns the first answer.
    async fn forward(&self, raw: &[u8], protocol: Protocol) -> Option<Message> {
        for r in &self.recursors {
            let asked = async {
                if protocol == Protocol::Tcp {
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

async fn send<R: ResponseHandler>(
    request: &Request,
    mut handle: R,
    metadata: Metadata,
    edns: Option<&Edns>,
    answer: &Answer,
) -> ResponseInfo {
    let response = MessageResponseBuilder::new(&request.queries, edns).build(
        metadata,
        answer.answers.iter(),
        std::iter::empty::<&Record>(),
        answer.authority.iter(),
        answer.additionals.iter(),
    );
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "cannot send a response");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        // Echo EDNS so the client's buffer size applies (the encoder truncates and sets TC past it).
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = !self.recursors.is_empty();
        let fail = |code: ResponseCode| Answer {
            code,
            ..Default::default()
        };
        if request.metadata.message_type != MessageType::Query
            || request.metadata.op_code != OpCode::Query
        {
            metadata.response_code = ResponseCode::NotImp;
            return send(
                request,
                handle,
                metadata,
                edns.as_ref(),
                &fail(ResponseCode::NotImp),
            )
            .await;
        }
        let info = match request.request_info() {
            Ok(info) => info,
            Err(_) => {
                metadata.response_code = ResponseCode::FormErr;
                return send(
                    request,
                    handle,
                    metadata,
                    edns.as_ref(),
                    &fail(ResponseCode::FormErr),
                )
                .await;
            }
        };
        let qname: Name = info.query.name().clone().into();
        let qtype = info.query.query_type();
        let labels = lower_labels(&qname);
        match names::parse(&labels, &self.domain_labels, &self.zone.datacenter) {
            Some(lookup) => {
                let view = self.view.load();
                let answer = self.zone.answer(&view, &lookup, &qname, qtype);
                metadata.authoritative = true;
                metadata.response_code = answer.code;
                send(request, handle, metadata, edns.as_ref(), &answer).await
            }
            None if self.recursors.is_empty() => {
                metadata.response_code = ResponseCode::Refused;
                send(
                    request,
                    handle,
                    metadata,
                    edns.as_ref(),
                    &fail(ResponseCode::Refused),
                )
                .await
            }
            None => match self.forward(request.as_slice(), request.protocol()).await {
                Some(reply) => {
                    metadata.response_code = reply.metadata.response_code;
                    metadata.authoritative = false;
                    let answer = Answer {
                        code: reply.metadata.response_code,
                        answers: reply.answers,
                        authority: reply.authorities,
                        additionals: reply.additionals,
                    };
                    send(request, handle, metadata, edns.as_ref(), &answer).await
                }
                None => {
                    metadata.response_code = ResponseCode::ServFail;
                    send(
                        request,
                        handle,
                        metadata,
                        edns.as_ref(),
                        &fail(ResponseCode::ServFail),
                    )
                    .await
                }
            },
        }
    }
}

//! The hickory-server request handler (TCP; UDP has its own fast path in [`crate::udp`]): names
//! under the domain are answered from the current view, others forwarded or REFUSED.

use std::sync::Arc;

use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{Name, Record};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::answer::Answer;
use crate::resolve::{Decision, Resolver};

/// Answers DNS requests that arrive through hickory-server.
pub struct Handler {
    resolver: Arc<Resolver>,
}

impl Handler {
    pub fn new(resolver: Arc<Resolver>) -> Handler {
        Handler { resolver }
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
        metadata.recursion_available = !self.resolver.recursors.is_empty();
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
        let view = self.resolver.view.load();
        match self.resolver.decide(&view, &qname, qtype) {
            Decision::Local(answer) => {
                metadata.authoritative = true;
                metadata.response_code = answer.code;
                send(request, handle, metadata, edns.as_ref(), &answer).await
            }
            Decision::Refused => {
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
            Decision::Forward => {
                let tcp = request.protocol() == Protocol::Tcp;
                let reply = match self.resolver.forward_permit() {
                    Some(permit) => self.resolver.forward(permit, request.as_slice(), tcp).await,
                    None => None,
                };
                match reply {
                    Some(reply) => {
                        metadata.response_code = reply.metadata.response_code;
                        // A cut answer stays marked as cut, so the client retries over TCP.
                        metadata.truncation = reply.metadata.truncation;
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
                }
            }
        }
    }
}

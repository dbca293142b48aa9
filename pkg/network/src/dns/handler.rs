//! One DNS request to its response: decode, answer from Records (following CNAMEs), or plan
//! the network part (forwarding upstream, resolving an external CNAME target), and encode
//! within the transport's size limit (the TC bit when a UDP answer does not fit).

use std::net::SocketAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::records::{Lookup, Records};
use super::upstream::forward;

/// The UDP payload size minik advertises (the DNS flag day's 1232).
const EDNS_PAYLOAD: u16 = 1232;

/// How many CNAMEs inside the cluster domain one answer follows.
const MAX_CNAME_HOPS: usize = 8;

/// The largest message over TCP.
pub(crate) const TCP_LIMIT: usize = 65535;

/// What to do about one request.
pub(crate) enum Start {
    /// Not a query (a response, garbage): say nothing.
    Ignore,
    /// The encoded response.
    Reply(Vec<u8>),
    /// The rest needs the upstream resolvers.
    Network(Box<Pending>),
}

/// A request waiting on the upstream resolvers.
pub(crate) struct Pending {
    raw: Vec<u8>,
    limit: usize,
    work: Work,
}

enum Work {
    /// Relay the upstream's answer to the whole query.
    Forward { request: Message },
    /// `response` ends in a CNAME to `target`, outside the cluster: add its upstream records.
    Chase {
        response: Message,
        target: Name,
        qtype: RecordType,
    },
}

/// Start answering `raw` (`tcp`: no size limit but TCP's) from `records`.
pub(crate) fn start(records: &Records, raw: &[u8], has_upstreams: bool, tcp: bool) -> Start {
    let request = match Message::from_vec(raw) {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(error = %e, "undecodable DNS request");
            return match raw.get(..2) {
                // Enough header to say which query was bad.
                Some(id) if raw.len() >= 12 && raw[2] & 0x80 == 0 => {
                    let id = u16::from_be_bytes([id[0], id[1]]);
                    let msg = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
                    encode(&msg, 512).map_or(Start::Ignore, Start::Reply)
                }
                _ => Start::Ignore,
            };
        }
    };
    if request.metadata.message_type != MessageType::Query {
        return Start::Ignore;
    }
    let limit = if tcp {
        TCP_LIMIT
    } else {
        usize::from(request.max_payload())
    };
    let mut response = response_to(&request);
    let query = match (request.metadata.op_code, request.queries.as_slice()) {
        (OpCode::Query, [query]) => query.clone(),
        (OpCode::Query, _) => return reply(response, ResponseCode::FormErr, limit),
        _ => return reply(response, ResponseCode::NotImp, limit),
    };
    match records.lookup(&query.name, query.query_type) {
        Lookup::Forward if has_upstreams => Start::Network(Box::new(Pending {
            raw: raw.to_vec(),
            limit,
            work: Work::Forward { request },
        })),
        Lookup::Forward => reply(response, ResponseCode::ServFail, limit),
        Lookup::NxDomain => {
            response.metadata.authoritative = true;
            response.add_authority(records.soa().clone());
            reply(response, ResponseCode::NXDomain, limit)
        }
        Lookup::Answer {
            answers,
            additionals,
        } => {
            response.metadata.authoritative = true;
            if answers.is_empty() {
                response.add_authority(records.soa().clone());
            }
            response.add_answers(answers);
            response.add_additionals(additionals);
            match follow_cnames(records, &mut response, &query) {
                Some(target) if has_upstreams => Start::Network(Box::new(Pending {
                    raw: Vec::new(),
                    limit,
                    work: Work::Chase {
                        response,
                        target,
                        qtype: query.query_type,
                    },
                })),
                _ => reply(response, ResponseCode::NoError, limit),
            }
        }
    }
}

impl Pending {
    /// The encoded response, once the upstreams had their say.
    pub(crate) async fn finish(self, upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
        match self.work {
            Work::Forward { request } => match forward(upstreams, &self.raw).await {
                Some(answer) => relay(answer, self.limit),
                None => {
                    let response = response_to(&request);
                    encode_with(response, ResponseCode::ServFail, self.limit)
                }
            },
            Work::Chase {
                mut response,
                target,
                qtype,
            } => {
                let mut query = Message::query();
                query.metadata.recursion_desired = true;
                query.add_query(Query::query(target, qtype));
                let answer = match query.to_vec() {
                    Ok(q) => forward(upstreams, &q).await,
                    Err(e) => {
                        tracing::debug!(error = %e, "encoding a CNAME target query");
                        None
                    }
                };
                if let Some(upstream) = answer.and_then(|a| Message::from_vec(&a).ok()) {
                    response.add_answers(upstream.answers);
                }
                encode(&response, self.limit)
            }
        }
    }
}

/// A response echoing the request's ID, flags and question (and EDNS, if it used EDNS).
fn response_to(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

/// Resolve CNAMEs of the answer that point inside the cluster domain; the first target
/// outside it, if one is left to ask upstream.
fn follow_cnames(records: &Records, response: &mut Message, query: &Query) -> Option<Name> {
    let qtype = query.query_type;
    if matches!(qtype, RecordType::CNAME | RecordType::ANY) {
        return None;
    }
    for _ in 0..MAX_CNAME_HOPS {
        let target = cname_target(&response.answers, qtype)?;
        match records.lookup(&target, qtype) {
            Lookup::Forward => return Some(target),
            Lookup::Answer { answers, .. } if !answers.is_empty() => {
                response.add_answers(answers);
            }
            _ => return None,
        }
    }
    None
}

/// The name the last CNAME points to, if no answer has the asked type yet.
fn cname_target(answers: &[Record], qtype: RecordType) -> Option<Name> {
    if answers.iter().any(|r| r.record_type() == qtype) {
        return None;
    }
    answers.iter().rev().find_map(|r| match &r.data {
        RData::CNAME(c) => Some(c.0.clone()),
        _ => None,
    })
}

fn reply(response: Message, code: ResponseCode, limit: usize) -> Start {
    encode_with(response, code, limit).map_or(Start::Ignore, Start::Reply)
}

fn encode_with(mut response: Message, code: ResponseCode, limit: usize) -> Option<Vec<u8>> {
    response.metadata.response_code = code;
    encode(&response, limit)
}

/// Encode `msg`; if it is over `limit`, only its header and question, with TC set.
fn encode(msg: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = match msg.to_vec() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "encoding a DNS response");
            return None;
        }
    };
    if bytes.len() <= limit {
        return Some(bytes);
    }
    msg.truncate().to_vec().ok()
}

/// An upstream's answer as it came, or truncated if it is over `limit`.
fn relay(answer: Vec<u8>, limit: usize) -> Option<Vec<u8>> {
    if answer.len() <= limit {
        return Some(answer);
    }
    encode(&Message::from_vec(&answer).ok()?, limit)
}

//! The DNS server over real sockets on 127.0.0.1: UDP and TCP answers from Records,
//! NXDOMAIN, truncation, forwarding to a fake upstream (with its TCP retry and failover),
//! CNAME targets resolved upstream, records swapped while serving, and bind errors.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::upstream::{read_framed, write_framed};
use super::{Dns, DnsError, DnsOptions, Records};

const WAIT: Duration = Duration::from_secs(5);

fn records() -> Arc<Records> {
    let svc = |v: serde_json::Value| -> Service { serde_json::from_value(v).unwrap() };
    let services = [
        svc(
            json!({"metadata": {"namespace": "default", "name": "web"}, "spec": {"clusterIP": "10.43.0.20"}}),
        ),
        svc(
            json!({"metadata": {"namespace": "default", "name": "many"}, "spec": {"clusterIP": "None"}}),
        ),
        svc(json!({"metadata": {"namespace": "default", "name": "ext"},
                   "spec": {"type": "ExternalName", "externalName": "target.example."}})),
    ];
    // Sixty endpoints: an answer over 512 bytes.
    let endpoints: Vec<_> = (1..=60)
        .map(|i| json!({"addresses": [format!("10.42.1.{i}")]}))
        .collect();
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "many-1", "labels": {"kubernetes.io/service-name": "many"}},
        "addressType": "IPv4", "endpoints": endpoints,
    }))
    .unwrap();
    Arc::new(Records::build("cluster.local", &services, &[slice]))
}

/// A fake upstream on 127.0.0.1 answering every A question with 192.0.2.<n> records: one
/// for most names; for names starting with "big", TC over UDP and forty records over TCP.
async fn fake_upstream(stop: CancellationToken) -> SocketAddr {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = udp.local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let answer = |raw: &[u8], tcp: bool| -> Vec<u8> {
        let request = Message::from_vec(raw).unwrap();
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.add_queries(request.queries.clone());
        let name = request.queries[0].name.clone();
        let big = name.to_ascii().starts_with("big");
        if big && !tcp {
            response.metadata.truncation = true;
        } else {
            for i in 1..=if big { 40 } else { 1 } {
                let ip = A::new(192, 0, 2, i);
                response.add_answer(Record::from_rdata(name.clone(), 60, RData::A(ip)));
            }
        }
        response.to_vec().unwrap()
    };
    let s = stop.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65535];
        loop {
            tokio::select! {
                () = s.cancelled() => return,
                Ok((n, peer)) = udp.recv_from(&mut buf) => {
                    udp.send_to(&answer(&buf[..n], false), peer).await.unwrap();
                }
            }
        }
    });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Ok((mut conn, _)) = tcp.accept() => {
                    let raw = read_framed(&mut conn).await.unwrap();
                    write_framed(&mut conn, &answer(&raw, true)).await.unwrap();
                }
            }
        }
    });
    addr
}

/// A running server: its address, the records' sender, and the stop token (cancelled on drop).
struct Running {
    addr: SocketAddr,
    records: watch::Sender<Arc<Records>>,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start(upstreams: Vec<SocketAddr>) -> Running {
    let listen = vec!["127.0.0.1:0".parse().unwrap()];
    let options = DnsOptions {
        listen,
        domain: "cluster.local".into(),
        upstreams,
    };
    let dns = Dns::bind(options).await.unwrap();
    let addr = dns.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    let (records, rx) = watch::channel(records());
    let stop = CancellationToken::new();
    tokio::spawn(dns.serve(rx, stop.clone()));
    Running {
        addr,
        records,
        stop,
    }
}

fn query(name: &str, qtype: RecordType) -> Message {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    q
}

async fn udp(server: SocketAddr, q: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let response = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(response.metadata.id, q.metadata.id);
    response
}

async fn tcp(server: SocketAddr, q: &Message) -> Message {
    let mut conn = TcpStream::connect(server).await.unwrap();
    write_framed(&mut conn, &q.to_vec().unwrap()).await.unwrap();
    let raw = tokio::time::timeout(WAIT, read_framed(&mut conn))
        .await
        .unwrap()
        .unwrap();
    let response = Message::from_vec(&raw).unwrap();
    assert_eq!(response.metadata.id, q.metadata.id);
    response
}

fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn answers_cluster_names_over_udp_and_tcp() {
    let server = start(vec![]).await;
    let q = query("Web.Default.svc.cluster.local.", RecordType::A);
    for response in [udp(server.addr, &q).await, tcp(server.addr, &q).await] {
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.metadata.authoritative);
        assert_eq!(response.queries, q.queries);
        assert_eq!(addresses(&response), [ip("10.43.0.20")]);
        assert_eq!(response.answers[0].ttl, 5);
    }
}

#[tokio::test]
async fn missing_cluster_names_are_nxdomain_with_an_soa() {
    let server = start(vec![]).await;
    let response = udp(
        server.addr,
        &query("nope.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert!(response.answers.is_empty());
    assert_eq!(response.authorities.len(), 1);
    assert_eq!(response.authorities[0].record_type(), RecordType::SOA);
    // No upstreams: other names fail.
    let response = udp(server.addr, &query("example.com.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_only() {
    let server = start(vec![]).await;
    let q = query("many.default.svc.cluster.local.", RecordType::A);
    let response = udp(server.addr, &q).await;
    assert!(response.metadata.truncation);
    assert!(response.answers.is_empty());
    let response = tcp(server.addr, &q).await;
    assert!(!response.metadata.truncation);
    assert_eq!(addresses(&response).len(), 60);
    // With EDNS the client takes a larger UDP answer.
    let mut q = q;
    let mut edns = hickory_proto::op::Edns::new();
    edns.set_max_payload(4096);
    q.set_edns(edns);
    let response = udp(server.addr, &q).await;
    assert!(!response.metadata.truncation);
    assert_eq!(addresses(&response).len(), 60);
    assert!(response.edns.is_some());
}

#[tokio::test]
async fn forwards_other_names_upstream() {
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let upstream = fake_upstream(stop.clone()).await;
    let server = start(vec![upstream]).await;
    let q = query("www.example.com.", RecordType::A);
    assert_eq!(addresses(&udp(server.addr, &q).await), [ip("192.0.2.1")]);
    assert_eq!(addresses(&tcp(server.addr, &q).await), [ip("192.0.2.1")]);
    // Truncated upstream: retried over TCP; too big for the client's UDP, so TC to it.
    let q = query("big.example.com.", RecordType::A);
    let response = udp(server.addr, &q).await;
    assert!(response.metadata.truncation);
    assert_eq!(addresses(&tcp(server.addr, &q).await).len(), 40);
    // An ExternalName's target is resolved upstream after the CNAME.
    let response = udp(
        server.addr,
        &query("ext.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(response.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addresses(&response), [ip("192.0.2.1")]);
}

#[tokio::test]
async fn a_silent_upstream_is_skipped_after_the_timeout() {
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let upstream = fake_upstream(stop.clone()).await;
    let server = start(vec![silent.local_addr().unwrap(), upstream]).await;
    let response = udp(server.addr, &query("www.example.com.", RecordType::A)).await;
    assert_eq!(addresses(&response), [ip("192.0.2.1")]);
}

#[tokio::test]
async fn swapped_records_are_served() {
    let server = start(vec![]).await;
    let q = query("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(addresses(&udp(server.addr, &q).await), [ip("10.43.0.20")]);
    server
        .records
        .send_replace(Arc::new(Records::build("cluster.local", &[], &[])));
    let response = udp(server.addr, &q).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn binding_a_taken_port_is_a_clear_error() {
    let server = start(vec![]).await;
    let options = DnsOptions {
        listen: vec![server.addr],
        domain: "cluster.local".into(),
        upstreams: vec![],
    };
    let err = Dns::bind(options).await.err().unwrap();
    assert!(matches!(err, DnsError::Bind { proto: "UDP", .. }), "{err}");
    assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
    let none = DnsOptions {
        listen: vec![],
        domain: "cluster.local".into(),
        upstreams: vec![],
    };
    assert!(matches!(
        Dns::bind(none).await,
        Err(DnsError::NoListenAddress)
    ));
}

#[tokio::test]
async fn serve_returns_when_stopped() {
    let listen = vec!["127.0.0.1:0".parse().unwrap()];
    let options = DnsOptions {
        listen,
        domain: "cluster.local".into(),
        upstreams: vec![],
    };
    let dns = Dns::bind(options).await.unwrap();
    let (_tx, rx) = watch::channel(records());
    let stop = CancellationToken::new();
    let task = tokio::spawn(dns.serve(rx, stop.clone()));
    stop.cancel();
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

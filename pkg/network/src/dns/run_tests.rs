//! `Dns::run` against a fake API server: answers follow the Services and EndpointSlices it
//! lists and the watch events the test sends, and `run` returns on stop.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{Dns, DnsOptions};
use crate::testing::{FakeApi, SERVICES, SLICES, stop_and_join};

fn service(name: &str, cluster_ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": "default", "name": name, "resourceVersion": "2"},
           "spec": {"clusterIP": cluster_ip}})
}

/// The A records a UDP query for `name` gets.
async fn resolve(server: SocketAddr, name: &str) -> Vec<IpAddr> {
    let mut q = Message::query();
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&q.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let wait = Duration::from_millis(500);
    let Ok(Ok((n, _))) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await else {
        return Vec::new();
    };
    let answer = Message::from_vec(&buf[..n]).unwrap();
    let ips = answer.answers.iter().filter_map(|r| match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        _ => None,
    });
    ips.collect()
}

/// Wait (up to 10 s) until `name` resolves to `want`.
async fn until_resolves(server: SocketAddr, name: &str, want: &str) {
    let want: IpAddr = want.parse().unwrap();
    for _ in 0..200 {
        if resolve(server, name).await == [want] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never resolved to {want}");
}

#[tokio::test]
async fn answers_follow_the_cluster() {
    let headless = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"namespace": "default", "name": "db", "resourceVersion": "2"},
        "spec": {"clusterIP": "None"}});
    let api = FakeApi::new(vec![
        (SERVICES, vec![service("web", "10.43.0.20"), headless]),
        (SLICES, vec![]),
    ]);
    let listen = vec!["127.0.0.1:0".parse().unwrap()];
    let options = DnsOptions {
        listen,
        domain: "cluster.local".into(),
        upstreams: vec![],
    };
    let dns = Dns::bind(options).await.unwrap();
    let server = dns.local_addrs()[0];
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    let running = tokio::spawn(dns.run(api.client(), stop.clone()));

    until_resolves(server, "web.default.svc.cluster.local.", "10.43.0.20").await;
    api.until_watched(&[SERVICES, SLICES]).await;
    api.added(SERVICES, service("api", "10.43.0.30"));
    until_resolves(server, "api.default.svc.cluster.local.", "10.43.0.30").await;
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "db-1", "resourceVersion": "3",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.0.9"], "hostname": "db-0"}]});
    api.added(SLICES, slice);
    until_resolves(server, "db-0.db.default.svc.cluster.local.", "10.42.0.9").await;

    stop_and_join(&stop, running).await;
}

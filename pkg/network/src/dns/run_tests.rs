//! `Dns::run` against a fake API server: answers follow the Services and EndpointSlices it
//! lists and the watch events the test sends, and `run` returns on stop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use http_body::Frame;
use http_body_util::StreamBody;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Dns, DnsOptions};

const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";

/// A client whose lists return `lists[path]` and whose watches stream what is sent on the
/// returned channel as (path, event).
fn fake_api(
    lists: HashMap<&'static str, Value>,
) -> (kube::Client, broadcast::Sender<(String, Bytes)>) {
    let (events, _) = broadcast::channel::<(String, Bytes)>(64);
    let sender = events.clone();
    let service = tower::service_fn(move |req: http::Request<Body>| {
        let path = req.uri().path().to_owned();
        let watch = req.uri().query().unwrap_or_default().contains("watch=true");
        let chunks = if watch {
            let rx = sender.subscribe();
            futures::stream::unfold((rx, path), |(mut rx, path)| async move {
                loop {
                    match rx.recv().await {
                        Ok((p, event)) if p == path => return Some((event, (rx, path))),
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
            })
            .boxed()
        } else {
            let list = lists
                .get(path.as_str())
                .cloned()
                .unwrap_or_else(|| json!({"items": []}));
            futures::stream::iter([Bytes::from(list.to_string())]).boxed()
        };
        let body = StreamBody::new(chunks.map(|b| Ok::<_, Infallible>(Frame::data(b))));
        let response = http::Response::builder()
            .header("content-type", "application/json")
            .body(body)
            .unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    (kube::Client::new(service, "default"), events)
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn service(name: &str, cluster_ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"namespace": "default", "name": name, "resourceVersion": "2"},
           "spec": {"clusterIP": cluster_ip}})
}

fn added(obj: Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": "ADDED", "object": obj})))
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
    let lists = HashMap::from([
        (
            SERVICES,
            list("ServiceList", vec![service("web", "10.43.0.20"), headless]),
        ),
        (SLICES, list("EndpointSliceList", vec![])),
    ]);
    let (client, events) = fake_api(lists);
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
    let running = tokio::spawn(dns.run(client, stop.clone()));

    until_resolves(server, "web.default.svc.cluster.local.", "10.43.0.20").await;
    // Both watches open (events sent before would reach nobody).
    for _ in 0..200 {
        if events.receiver_count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events
        .send((SERVICES.into(), added(service("api", "10.43.0.30"))))
        .unwrap();
    until_resolves(server, "api.default.svc.cluster.local.", "10.43.0.30").await;
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"namespace": "default", "name": "db-1", "resourceVersion": "3",
                     "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.0.9"], "hostname": "db-0"}]});
    events.send((SLICES.into(), added(slice))).unwrap();
    until_resolves(server, "db-0.db.default.svc.cluster.local.", "10.42.0.9").await;

    stop.cancel();
    let done = tokio::time::timeout(Duration::from_secs(5), running).await;
    done.unwrap().unwrap().unwrap();
}

//! `make bench-net` (root): the service proxy and the cluster DNS.
//! - Proxy: 1,000 ClusterIP services with 10 endpoints each rendered into one nftables
//!   script and applied (one transaction) inside a scratch network namespace: the first
//!   sync, a sync after one endpoint changed (an update of what changed, as the proxy
//!   applies it), and the scripts' sizes.
//! - DNS: a server on 127.0.0.1 answering from the same 1,000 services; 64 concurrent UDP
//!   clients ask A records of random service names for 3 s: answers per second.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use minik_bench::report::{Table, ms, rate};
use minik_network::dns::{Dns, DnsOptions, Records};
use minik_network::proxy::{ProxyOptions, render, render_body, update_script};
use serde_json::json;

const SERVICES: usize = 1000;
const ENDPOINTS: usize = 10;

fn cluster() -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for i in 0..SERVICES {
        let name = format!("svc-{i}");
        let ip = format!("10.43.{}.{}", i / 250, i % 250 + 1);
        services.push(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "bench"},
                "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}))
            .expect("service"),
        );
        let endpoints: Vec<_> = (0..ENDPOINTS)
            .map(|e| {
                let n = i * ENDPOINTS + e;
                json!({"addresses": [format!("10.42.{}.{}", n / 250, n % 250 + 2)],
                    "conditions": {"ready": true}, "nodeName": "bench"})
            })
            .collect();
        slices.push(
            serde_json::from_value(json!({"metadata": {"name": format!("{name}-abc"),
                    "namespace": "bench", "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": endpoints,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
            .expect("slice"),
        );
    }
    (services, slices)
}

/// A network namespace that goes away with the benchmark.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Apply `script` with nft inside `ns`: how long it took.
fn apply(ns: &Netns, script: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script");
    assert!(
        child.wait().expect("nft").success(),
        "nft refused the script"
    );
    start.elapsed()
}

fn proxy(table: &mut Table) {
    let (services, mut slices) = cluster();
    let ns = Netns(format!("minik-bench-{}", std::process::id()));
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .expect("ip netns")
            .success()
    );
    let options = ProxyOptions {
        node_name: "bench".into(),
        cluster_cidr: "10.42.0.0/16".into(),
        skip_ips: Vec::new(),
        table: "minik-proxy".into(),
    };
    let start = Instant::now();
    let script = render(&services, &slices, &options);
    let rendered = start.elapsed();
    let first = apply(&ns, &script);
    // As the proxy's later syncs: render, then apply only what changed.
    let before = render_body(&services, &slices, &options);
    slices[0].endpoints.as_mut().expect("endpoints").pop();
    let start = Instant::now();
    let after = render_body(&services, &slices, &options);
    let update = update_script(&options, &before, &after);
    let again = start.elapsed() + apply(&ns, &update);
    table.row(
        format!("proxy: render {SERVICES} services x {ENDPOINTS} endpoints (ms)"),
        vec![ms(rendered.as_secs_f64() * 1000.0)],
    );
    table.row(
        "proxy: first sync, render + nft apply (ms)",
        vec![ms((rendered + first).as_secs_f64() * 1000.0)],
    );
    table.row(
        "proxy: sync after one endpoint changed (ms)",
        vec![ms(again.as_secs_f64() * 1000.0)],
    );
    table.row(
        "proxy: script size, whole table / that update (KiB)",
        vec![format!("{} / {}", script.len() / 1024, update.len() / 1024)],
    );
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.id = id;
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        RecordType::A,
    ));
    m.to_vec().expect("query")
}

async fn dns(table: &mut Table) {
    let (services, slices) = cluster();
    let records = Arc::new(Records::build("cluster.local", &services, &slices));
    let (_tx, rx) = tokio::sync::watch::channel(records);
    let server = Dns::bind(DnsOptions {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        domain: "cluster.local".into(),
        upstreams: Vec::new(),
    })
    .await
    .expect("bind");
    let addr: SocketAddr = server.local_addrs()[0];
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(server.serve(rx, stop.clone()));
    let answers = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for c in 0..64u16 {
        let answers = answers.clone();
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("socket");
            socket.connect(addr).await.expect("connect");
            let mut buf = [0u8; 1500];
            let mut i = usize::from(c);
            while Instant::now() < deadline {
                i = (i * 7919 + 13) % SERVICES;
                let q = query(c, &format!("svc-{i}.bench.svc.cluster.local."));
                socket.send(&q).await.expect("send");
                let got = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await;
                if let Ok(Ok(n)) = got {
                    let m = Message::from_vec(&buf[..n]).expect("answer");
                    assert_eq!(m.answers.len(), 1, "one A record");
                    answers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    stop.cancel();
    let qps = answers.load(Ordering::Relaxed) as f64 / 3.0;
    table.row(
        "dns: A queries answered/s (64 UDP clients, 1,000 services)",
        vec![rate(qps)],
    );
}

#[tokio::main]
async fn main() {
    let mut table = Table::new(
        "minik network (bench build): service proxy on nftables and cluster DNS",
        &["minik"],
    );
    proxy(&mut table);
    dns(&mut table).await;
    println!("{}", table.render());
}

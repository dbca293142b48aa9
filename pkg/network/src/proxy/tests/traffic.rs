//! Real packets through the rendered rules (root): a client namespace holding the table and
//! a veth pair to an "endpoint" namespace with a TCP listener. A connect to the cluster IP
//! and to a node port reaches the listener; a service without endpoints is refused.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use serde_json::json;

use super::fixtures::{options, ready, service, slice};
use super::netns::Netns;
use crate::proxy::render;

/// Run `f` on a thread inside `ns`.
fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let file = File::open(format!("/run/netns/{}", ns.name)).unwrap();
    std::thread::spawn(move || {
        setns(file, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
}

fn connect(ns: &Netns, addr: &str) -> std::io::Result<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut got = String::new();
        s.read_to_string(&mut got)?;
        Ok(got)
    })
    .join()
    .unwrap()
}

/// A client namespace (10.42.0.1, cluster IPs routed to the peer) and an endpoint
/// namespace (10.42.0.2 and 10.42.0.3), joined by a veth pair.
fn pair() -> (Netns, Netns) {
    let client = Netns::new("cli");
    let server = Netns::new("srv");
    client.ip(&[
        "link",
        "add",
        "a0",
        "type",
        "veth",
        "peer",
        "name",
        "b0",
        "netns",
        &server.name,
    ]);
    client.ip(&["addr", "add", "10.42.0.1/24", "dev", "a0"]);
    server.ip(&["addr", "add", "10.42.0.2/24", "dev", "b0"]);
    server.ip(&["addr", "add", "10.42.0.3/24", "dev", "b0"]);
    for (ns, dev) in [(&client, "a0"), (&server, "b0")] {
        ns.ip(&["link", "set", "lo", "up"]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    client.ip(&["route", "add", "10.43.0.0/16", "dev", "a0"]);
    (client, server)
}

/// A listener on port 8080 of every address of `server` answering `n` connections with
/// the address they reached; it returns (endpoint address, peer address) of each.
fn listen(server: &Netns, n: usize) -> std::thread::JoinHandle<Vec<(String, String)>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = in_netns(server, move || {
        let l = TcpListener::bind("0.0.0.0:8080").unwrap();
        tx.send(()).unwrap();
        (0..n)
            .map(|_| {
                let (mut s, peer) = l.accept().unwrap();
                let local = s.local_addr().unwrap().ip().to_string();
                s.write_all(local.as_bytes()).unwrap();
                (local, peer.ip().to_string())
            })
            .collect()
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    handle
}

#[test]
fn connections_reach_the_endpoint() {
    let (client, server) = pair();

    let svcs = vec![
        service(
            "default",
            "web",
            json!({"type": "NodePort", "clusterIP": "10.43.0.100",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}),
        ),
        service("default", "empty", json!({"clusterIP": "10.43.0.101"})),
    ];
    let slices = vec![slice(
        "default",
        "web",
        &[("http", 8080, "TCP")],
        vec![ready("10.42.0.2", "node-b")],
    )];
    client.nft(&render(&svcs, &slices, &options())).unwrap();

    let listener = listen(&server, 2);

    assert_eq!(connect(&client, "10.43.0.100:80").unwrap(), "10.42.0.2");
    // A node port on the client's own address, DNATed and masqueraded.
    assert_eq!(connect(&client, "10.42.0.1:30080").unwrap(), "10.42.0.2");
    let seen = listener.join().unwrap();
    assert!(seen.iter().all(|(_, peer)| peer == "10.42.0.1"), "{seen:?}");
    // No endpoints: refused at once (tcp reset), not a timeout.
    let err = connect(&client, "10.43.0.101:80").unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn session_affinity_keeps_a_client_on_one_endpoint() {
    let (client, server) = pair();
    let svcs = vec![service(
        "default",
        "sticky",
        json!({"clusterIP": "10.43.0.102",
        "sessionAffinity": "ClientIP"}),
    )];
    let eps = vec![ready("10.42.0.2", "node-b"), ready("10.42.0.3", "node-b")];
    let slices = vec![slice("default", "sticky", &[("http", 8080, "TCP")], eps)];
    client.nft(&render(&svcs, &slices, &options())).unwrap();
    let listener = listen(&server, 12);
    let got: Vec<String> = (0..12)
        .map(|_| connect(&client, "10.43.0.102:80").unwrap())
        .collect();
    listener.join().unwrap();
    // Without affinity all twelve would agree with probability 1/2048.
    assert!(got.iter().all(|g| *g == got[0]), "{got:?}");
    assert!(got[0] == "10.42.0.2" || got[0] == "10.42.0.3");
    let set = client
        .exec(
            "nft",
            &[
                "list",
                "set",
                "ip",
                "minik-proxy",
                &format!("aff-default/sticky/tcp/80__{}/8080/10800s", got[0]),
            ],
            None,
        )
        .unwrap();
    assert!(set.contains("elements = { 10.42.0.1 expires"), "{set}");
}

//! Real traffic through a rendered table: three pod namespaces (client1, client2, server) on
//! a bridge inside a node namespace whose kernel runs the table (br_netfilter sends bridged
//! IPv4 through the inet forward hook). All addresses live only in these namespaces.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use serde_json::json;

use super::netns::NetNs;
use super::{namespace, options, pod, pod_on, policy};
use crate::policy::render;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Run `f` on a thread that has entered the network namespace at `path`.
fn inside<T: Send + 'static>(path: String, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn listen(ns: &NetNs, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = inside(ns.path(), move || TcpListener::bind(addr).unwrap());
    listener.set_nonblocking(true).unwrap();
    listener
}

/// Connect from `ns` to `addr` and send `hello`.
fn connect(ns: &NetNs, addr: &str, hello: &'static [u8]) -> std::io::Result<()> {
    let addr: SocketAddr = addr.parse().unwrap();
    inside(ns.path(), move || {
        let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
        stream.write_all(hello)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        assert_eq!(reply, b"ok");
        Ok(())
    })
}

/// Accept what is queued on `listener`, answer each connection and return what each said.
fn accept_all(listener: &TcpListener) -> Vec<Vec<u8>> {
    let mut heard = Vec::new();
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                let mut buf = [0u8; 16];
                let n = stream.read(&mut buf).unwrap();
                heard.push(buf[..n].to_vec());
                stream.write_all(b"ok").unwrap();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return heard,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn policy_admits_client1_and_refuses_client2_and_server_egress() {
    let node = NetNs::new();
    let client1 = NetNs::new();
    let client2 = NetNs::new();
    let server = NetNs::new();
    node.ip(&["link", "add", "br0", "type", "bridge"]);
    node.ip(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    node.ip(&["link", "set", "br0", "up"]);
    node.exec(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"]);
    for (i, (ns, ip)) in [
        (&client1, "10.99.0.11"),
        (&client2, "10.99.0.12"),
        (&server, "10.99.0.20"),
    ]
    .into_iter()
    .enumerate()
    {
        let veth = format!("veth{i}");
        node.ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        node.ip(&["link", "set", &veth, "master", "br0", "up"]);
        ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["link", "set", "lo", "up"]);
    }

    let pods = [
        pod("client1", "c", "10.99.0.11", json!({"app": "client"})),
        pod("client2", "c", "10.99.0.12", json!({"app": "client"})),
        pod_on(
            super::NODE,
            "server",
            "s",
            "10.99.0.20",
            json!({"app": "server"}),
            &[("http", 8080, "TCP")],
        ),
    ];
    let namespaces = ["client1", "client2", "server"].map(|n| namespace(n, json!({})));
    let spec = json!({
        "podSelector": {"matchLabels": {"app": "server"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "client1"}}}],
            "ports": [{"port": "http"}],
        }],
    });
    let script = render(
        &pods,
        &namespaces,
        &[policy("server", "only-client1", spec)],
        &options(),
    );
    node.nft(&script).unwrap();

    let http = listen(&server, "10.99.0.20:8080");
    let other = listen(&server, "10.99.0.20:9090");
    let back = listen(&client1, "10.99.0.11:7000");
    let accepting = std::thread::spawn(move || {
        // Answer while the clients try (they block until answered).
        let mut heard = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(8);
        while std::time::Instant::now() < deadline && heard.len() < 2 {
            heard.extend(accept_all(&http));
            std::thread::sleep(Duration::from_millis(20));
        }
        heard.extend(accept_all(&http));
        (heard, accept_all(&other))
    });
    connect(&client1, "10.99.0.20:8080", b"client1").unwrap();
    let refused = connect(&client2, "10.99.0.20:8080", b"client2").unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::HostUnreachable, "{refused}");
    // The policy names port 8080 only.
    assert!(connect(&client1, "10.99.0.20:9090", b"other").is_err());
    // The node itself may always reach its pods.
    connect(&node, "10.99.0.20:8080", b"node").unwrap();
    let (heard, heard_other) = accepting.join().unwrap();
    assert_eq!(heard, [b"client1".to_vec(), b"node".to_vec()]);
    assert!(heard_other.is_empty());
    // Egress is isolated with no rules: the server may answer, but not open connections.
    assert!(connect(&server, "10.99.0.11:7000", b"server").is_err());
    assert!(accept_all(&back).is_empty());
    // Without the table, client2 gets through.
    node.nft("delete table inet minik-policy\n").unwrap();
    let open = listen(&server, "10.99.0.20:8081");
    let answering = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        accept_all(&open)
    });
    connect(&client2, "10.99.0.20:8081", b"client2").unwrap();
    assert_eq!(answering.join().unwrap(), [b"client2".to_vec()]);
}

//! The bridge network on real devices (root): a pod namespace the test makes gets a veth,
//! its address and a route, answers the host through the bridge, and detaching removes it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use minik_network::bridge::{BridgeNetwork, BridgeOptions, host_if};
use minik_network::links::KernelLinks;
use minik_network::{PodNetwork, PodRef};

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace and a bridge that go away with the test.
struct Cleanup {
    netns: String,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let table = format!("{}-hostports", self.bridge);
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .status();
    }
}

#[test]
fn a_pod_namespace_joins_the_bridge_and_leaves_it() {
    let n = std::process::id() % 200 + 20;
    let cleanup = Cleanup {
        netns: format!("minik-bridge-test-{n}"),
        bridge: format!("mkbt{n}"),
    };
    assert!(
        Command::new("ip")
            .args(["netns", "add", &cleanup.netns])
            .status()
            .unwrap()
            .success()
    );
    let dir = tempfile::tempdir().unwrap();
    let options = BridgeOptions {
        bridge: cleanup.bridge.clone(),
        state_dir: dir.path().to_path_buf(),
        hostport_table: format!("mkbt{n}-hostports"),
        mtu: minik_network::bridge::MTU,
    };
    let nft = Arc::new(minik_network::nft::NftCommand);
    let net = BridgeNetwork::new(options, Arc::new(KernelLinks), nft).unwrap();
    net.set_subnet(format!("10.251.{n}.0/24").parse().unwrap())
        .unwrap();
    let pod = PodRef {
        uid: format!("0000{n:04}-aaaa-bbbb-cccc-dddddddddddd"),
        namespace: "default".into(),
        name: "web".into(),
        ports: vec![minik_network::hostports::HostPort {
            protocol: "tcp".into(),
            host_port: 18080,
            container_port: 8080,
            host_ip: None,
        }],
    };
    let netns = PathBuf::from(format!("/run/netns/{}", cleanup.netns));
    let ips = net.add(&pod, &netns).unwrap();
    let want = format!("10.251.{n}.2");
    assert_eq!(ips, vec![want.parse::<std::net::IpAddr>().unwrap()]);
    let inside = ip(&["-n", &cleanup.netns, "-4", "addr", "show", "eth0"]);
    assert!(inside.contains(&format!("{want}/24")), "{inside}");
    let routes = ip(&["-n", &cleanup.netns, "route"]);
    assert!(
        routes.contains(&format!("default via 10.251.{n}.1")),
        "{routes}"
    );
    // The pod answers the host through the bridge (busybox-static's ping).
    let ping = Command::new("busybox")
        .args(["ping", "-c", "1", "-W", "2", &want])
        .output()
        .unwrap();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // Its hostPort is a DNAT rule in the kernel.
    let table = format!("{}-hostports", cleanup.bridge);
    let rules = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(
        rules.contains(&format!("tcp dport 18080 dnat to {want}:8080")),
        "{rules}"
    );
    assert_eq!(net.add(&pod, &netns).unwrap(), ips);
    let veth = host_if(&pod.uid);
    let details = ip(&["-d", "link", "show", &veth]);
    assert!(
        details.contains(&format!("master {}", cleanup.bridge)),
        "{details}"
    );
    assert!(details.contains("hairpin on"), "{details}");
    assert!(details.contains("state UP"), "{details}");
    let eth0 = ip(&["-n", &cleanup.netns, "link", "show", "eth0"]);
    let mtu = format!("mtu {}", minik_network::bridge::MTU);
    assert!(eth0.contains(&mtu) && eth0.contains("UP"), "{eth0}");
    net.del(&pod, Some(&netns)).unwrap();
    assert!(ip(&["link", "show", &veth]).is_empty());
    let rules = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains("dnat to"));
    assert!(ip(&["-n", &cleanup.netns, "link", "show", "eth0"]).is_empty());
    net.del(&pod, Some(&netns)).unwrap();
}

//! The real Debian plugins (bridge + host-local from /usr/lib/cni) in network namespaces
//! the tests make, each with its own bridge and subnet; no traffic is sent. The bridge
//! gets no address (isGateway false) so the host's routes and sysctls stay untouched.
//! Namespaces and bridges go in Drop guards, even when a test fails.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;

use serde_json::json;

use super::{Setup, pod, random};
use crate::cni::Cni;
use crate::pod::PodNetwork;

/// Runs `ip` with `args`; its stdout, or None if it failed.
fn ip(args: &[&str]) -> Option<String> {
    let out = Command::new("ip").args(args).output().unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace made for a test, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(name: String) -> Netns {
        assert!(
            ip(&["netns", "add", &name]).is_some(),
            "ip netns add {name}"
        );
        Netns { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// eth0's addresses in the namespace, or None if there is no eth0.
    fn eth0(&self) -> Option<String> {
        ip(&["-n", &self.name, "-o", "addr", "show", "dev", "eth0"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A bridge + host-local network of its own, its bridge deleted on drop.
struct Net {
    s: Setup,
    bridge: String,
    subnet: u8,
    tag: String,
}

impl Net {
    fn new() -> Net {
        let r = random();
        let tag = format!("{:08x}", r as u32);
        let net = Net {
            s: Setup::new(),
            bridge: format!("mkt{tag}"),
            subnet: (r >> 32) as u8,
            tag,
        };
        net.s.write_conf(
            "10-bridge.conflist",
            &json!({
                "cniVersion": "1.0.0",
                "name": "minik-test",
                "plugins": [{
                    "type": "bridge",
                    "bridge": net.bridge,
                    "isGateway": false,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("10.199.{}.0/24", net.subnet)}]],
                        "dataDir": net.s.path("ipam"),
                    },
                }],
            }),
        );
        net
    }

    fn cni(&self) -> Cni {
        self.s.cni_with(vec![
            PathBuf::from("/opt/cni/bin"),
            PathBuf::from("/usr/lib/cni"),
        ])
    }

    fn netns(&self, n: u32) -> Netns {
        Netns::new(format!("mkt{}-{n}", self.tag))
    }

    fn in_subnet(&self, addr: &IpAddr) -> bool {
        matches!(addr, IpAddr::V4(v4) if v4.octets()[..3] == [10, 199, self.subnet])
    }

    /// Files host-local keeps per address in use.
    fn leases(&self) -> Vec<String> {
        let dir = self.s.path("ipam").join("minik-test");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("10.199."))
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

#[test]
fn bridge_add_check_del() {
    let net = Net::new();
    let ns = net.netns(1);
    let cni = net.cni();
    let p = pod(&format!("uid-{}", net.tag));
    let addrs = cni.add(&p, &ns.path()).unwrap();
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    assert!(net.in_subnet(&addrs[0]), "{addrs:?}");
    let eth0 = ns.eth0().unwrap();
    assert!(eth0.contains(&format!("inet {}/24", addrs[0])), "{eth0}");
    assert_eq!(net.leases(), [addrs[0].to_string()]);
    assert_eq!(cni.add(&p, &ns.path()).unwrap(), addrs);
    cni.check(&p, &ns.path()).unwrap();

    // CHECK notices the address is gone.
    ip(&["-n", &ns.name, "addr", "flush", "dev", "eth0"]).unwrap();
    match cni.check(&p, &ns.path()) {
        Err(crate::pod::NetworkError::Failed(msg)) => {
            assert!(
                msg.starts_with("plugin type=\"bridge\" name=\"minik-test\" failed (check): "),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }

    cni.del(&p, Some(&ns.path())).unwrap();
    assert_eq!(ns.eth0(), None);
    assert!(net.leases().is_empty());
    assert!(!net.s.cache_file(&p.uid).exists());
    cni.del(&p, Some(&ns.path())).unwrap();
    cni.del(&p, None).unwrap();
}

#[test]
fn bridge_gc_releases_gone_pods() {
    let net = Net::new();
    let (ns1, ns2) = (net.netns(1), net.netns(2));
    let cni = net.cni();
    let (p1, p2) = (
        pod(&format!("a-{}", net.tag)),
        pod(&format!("b-{}", net.tag)),
    );
    let a1 = cni.add(&p1, &ns1.path()).unwrap();
    let a2 = cni.add(&p2, &ns2.path()).unwrap();
    assert_ne!(a1, a2);
    assert_eq!(net.leases().len(), 2);

    // After a restart (a new Cni over the same cache), p2 is no longer live.
    let live: HashSet<String> = [p1.uid.clone()].into();
    net.cni().gc(&live).unwrap();
    assert_eq!(ns2.eth0(), None);
    assert!(ns1.eth0().is_some());
    assert_eq!(net.leases(), [a1[0].to_string()]);

    // The namespace already gone: DEL still releases the address.
    drop(ns1);
    cni.del(&p1, Some(&PathBuf::from("/run/netns/does-not-exist")))
        .unwrap();
    assert!(net.leases().is_empty());
}

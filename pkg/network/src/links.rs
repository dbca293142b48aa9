//! Network devices, through rtnetlink: the node's bridge and a veth pair per pod, the pod's
//! end moved into its network namespace as eth0 with its address and a default route
//! through the bridge. Behind a trait with a fake, so the bridge
//! network is tested without root.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use netlink_packet_route::link::InfoKind;

use crate::netlink::{Rtnl, Veth};
use crate::pod::NetworkError;

/// One pod's link: its host-side veth, bridge and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attach {
    pub host_if: String,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
}

/// What the bridge network does to devices.
pub trait Links: Send + Sync {
    /// The bridge exists, is up and holds `gateway/prefix`.
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<(), NetworkError>;
    /// Whether a device of this name exists in the host's namespace.
    fn exists(&self, name: &str) -> bool;
    /// A veth pair: the host end on the bridge (hairpin on), the other end eth0 in `netns`
    /// with the address and a default route through the gateway.
    fn attach(&self, netns: &Path, link: &Attach) -> Result<(), NetworkError>;
    /// Delete the host end (its peer goes with it); a missing device is fine.
    fn detach(&self, host_if: &str) -> Result<(), NetworkError>;
}

fn sysctl(key: &str, value: &str) -> Result<(), NetworkError> {
    let path = Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(NetworkError::io(format!("setting {}", path.display())))
}

/// Hold `ip` on this host, on the dummy interface `dummy` (made if missing; on lo where
/// the kernel has no dummy driver), so pods reach a server bound to it through their
/// default route (the cluster DNS address).
pub fn hold_address(dummy: &str, ip: std::net::IpAddr) -> Result<(), NetworkError> {
    let prefix = if ip.is_ipv4() { 32 } else { 128 };
    let mut nl = Rtnl::open().map_err(NetworkError::io("opening rtnetlink"))?;
    let made = nl.index(dummy).ok().flatten().is_some()
        || nl
            .add_link(dummy, InfoKind::Dummy, None)
            .inspect_err(|e| tracing::info!(error = %e, "no dummy interface; using lo"))
            .is_ok();
    let device = if made { dummy } else { "lo" };
    nl.existing(device)
        .and_then(|index| {
            nl.address(index, ip, prefix, true)?;
            nl.up(index)
        })
        .map_err(NetworkError::io(format!("holding {ip} on {device}")))
}

/// Whether /proc/net/dev's text lists interface `name`.
fn interface_listed(dev: &str, name: &str) -> bool {
    dev.lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(n, _)| n.trim() == name)
}

/// The real devices, through rtnetlink.
#[derive(Debug, Clone, Default)]
pub struct KernelLinks;

impl Links for KernelLinks {
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<(), NetworkError> {
        let what = || format!("setting up the bridge {name}");
        let mut nl = Rtnl::open().map_err(NetworkError::io("opening rtnetlink"))?;
        if nl.index(name).map_err(NetworkError::io(what()))?.is_none() {
            nl.add_link(name, InfoKind::Bridge, Some(mtu))
                .map_err(NetworkError::io(what()))?;
        }
        // Pods' traffic is routed through the host, and bridged traffic goes through
        // netfilter, so service replies between pods on one bridge are un-DNATed.
        sysctl("net/ipv4/ip_forward", "1")?;
        if Path::new("/proc/sys/net/bridge").exists() {
            sysctl("net/bridge/bridge-nf-call-iptables", "1")?;
        } else {
            tracing::warn!(
                "br_netfilter is not loaded: service traffic between pods of one node may fail"
            );
        }
        nl.existing(name)
            .and_then(|index| {
                nl.address(index, gateway.into(), prefix, true)?;
                nl.up(index)
            })
            .map_err(NetworkError::io(what()))
    }

    fn exists(&self, name: &str) -> bool {
        // The interfaces of this process's network namespace (/sys/class/net shows those
        // of the namespace sysfs was mounted in, which is not always ours).
        std::fs::read_to_string("/proc/self/net/dev").is_ok_and(|dev| interface_listed(&dev, name))
    }

    fn attach(&self, netns: &Path, link: &Attach) -> Result<(), NetworkError> {
        let Attach {
            host_if,
            bridge,
            ip,
            prefix,
            gateway,
            mtu,
        } = link;
        let what = || format!("attaching {} through {host_if}", netns.display());
        let namespace = Rtnl::namespace(netns).map_err(NetworkError::io(what()))?;
        let mut host = Rtnl::open().map_err(NetworkError::io("opening rtnetlink"))?;
        host.delete(host_if).map_err(NetworkError::io(what()))?;
        let veth = Veth {
            name: host_if,
            peer: "eth0",
            peer_netns: &namespace,
            mtu: *mtu,
        };
        host.add_veth(&veth).map_err(NetworkError::io(what()))?;
        let configured = host
            .existing(host_if)
            .and_then(|index| host.enslave_hairpin(index, bridge))
            .and_then(|()| {
                let mut pod = Rtnl::open_in(&namespace)?;
                let eth0 = pod.existing("eth0")?;
                pod.address(eth0, (*ip).into(), *prefix, false)?;
                pod.up(eth0)?;
                pod.default_route(eth0, *gateway)
            });
        configured
            .map_err(NetworkError::io(what()))
            .inspect_err(|_| {
                let _ = host.delete(host_if);
            })
    }

    fn detach(&self, host_if: &str) -> Result<(), NetworkError> {
        Rtnl::open()
            .and_then(|mut nl| nl.delete(host_if))
            .map(drop)
            .map_err(NetworkError::io(format!("deleting {host_if}")))
    }
}

/// A fake that keeps devices in memory.
#[derive(Debug, Clone, Default)]
pub struct FakeLinks {
    pub bridges: Arc<Mutex<Vec<(String, Ipv4Addr, u8)>>>,
    pub veths: Arc<Mutex<Vec<Attach>>>,
}

impl Links for FakeLinks {
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        _mtu: u32,
    ) -> Result<(), NetworkError> {
        let mut bridges = self.bridges.lock().unwrap_or_else(|p| p.into_inner());
        bridges.retain(|(n, _, _)| n != name);
        bridges.push((name.to_string(), gateway, prefix));
        Ok(())
    }

    fn exists(&self, name: &str) -> bool {
        let veths = self.veths.lock().unwrap_or_else(|p| p.into_inner());
        veths.iter().any(|v| v.host_if == name)
    }

    fn attach(&self, _netns: &Path, link: &Attach) -> Result<(), NetworkError> {
        self.detach(&link.host_if)?;
        let mut veths = self.veths.lock().unwrap_or_else(|p| p.into_inner());
        veths.push(link.clone());
        Ok(())
    }

    fn detach(&self, host_if: &str) -> Result<(), NetworkError> {
        let mut veths = self.veths.lock().unwrap_or_else(|p| p.into_inner());
        veths.retain(|v| v.host_if != host_if);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_are_read_from_proc_net_dev() {
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 1 2 3\n  eth0: 4 5\nminik0:6 7\n";
        assert!(interface_listed(dev, "lo"));
        assert!(interface_listed(dev, "eth0"));
        assert!(interface_listed(dev, "minik0"));
        assert!(!interface_listed(dev, "eth"));
        assert!(!interface_listed(dev, "face |bytes"));
        // This process's namespace has a loopback interface.
        assert!(KernelLinks.exists("lo"));
        assert!(!KernelLinks.exists("no-such-if0"));
    }
}

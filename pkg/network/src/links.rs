//! Network devices, through iproute2's `ip` (one batch per call): the node's bridge and a
//! veth pair per pod, the pod's end moved into its network namespace as eth0 with its
//! address and a default route through the bridge. Behind a trait with a fake, so the bridge
//! network is tested without root.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

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

/// Run `ip -batch -` with `commands` (in the namespace of `netns` if given).
fn ip_batch(netns: Option<&Path>, commands: &str) -> Result<(), NetworkError> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let mut child = cmd
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NetworkError::io("running ip (iproute2)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(commands.as_bytes())
            .map_err(NetworkError::io("writing to ip"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(NetworkError::io("running ip (iproute2)"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::Failed(format!(
        "ip: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
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
    let made = IpCommand.exists(dummy)
        || ip_batch(None, &format!("link add {dummy} type dummy\n"))
            .inspect_err(|e| tracing::info!(error = %e, "no dummy interface; using lo"))
            .is_ok();
    let device = if made { dummy } else { "lo" };
    ip_batch(
        None,
        &format!("addr replace {ip}/{prefix} dev {device}\nlink set {device} up\n"),
    )
}

/// Whether /proc/net/dev's text lists interface `name`.
fn interface_listed(dev: &str, name: &str) -> bool {
    dev.lines()
        .filter_map(|l| l.split_once(':'))
        .any(|(n, _)| n.trim() == name)
}

/// The real devices, through iproute2 and util-linux's nsenter.
#[derive(Debug, Clone, Default)]
pub struct IpCommand;

impl Links for IpCommand {
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<(), NetworkError> {
        if !self.exists(name) {
            ip_batch(None, &format!("link add {name} mtu {mtu} type bridge\n"))?;
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
        ip_batch(
            None,
            &format!("addr replace {gateway}/{prefix} dev {name}\nlink set {name} up\n"),
        )
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
        self.detach(host_if)?;
        ip_batch(
            None,
            &format!(
                "link add {host_if} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {}\n\
                 link set {host_if} master {bridge}\n\
                 link set {host_if} type bridge_slave hairpin on\n\
                 link set {host_if} up\n",
                netns.display()
            ),
        )?;
        let inside = format!(
            "addr add {ip}/{prefix} dev eth0\nlink set eth0 up\n\
             route add default via {gateway} dev eth0\n"
        );
        ip_batch(Some(netns), &inside).inspect_err(|_| {
            let _ = self.detach(host_if);
        })
    }

    fn detach(&self, host_if: &str) -> Result<(), NetworkError> {
        if !self.exists(host_if) {
            return Ok(());
        }
        match ip_batch(None, &format!("link del {host_if}\n")) {
            Err(_) if !self.exists(host_if) => Ok(()),
            other => other,
        }
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
        assert!(IpCommand.exists("lo"));
        assert!(!IpCommand.exists("no-such-if0"));
    }
}

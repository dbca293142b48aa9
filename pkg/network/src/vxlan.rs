//! Routes between nodes over VXLAN (flannel's vxlan backend), for nodes that are not on one
//! L2 segment: each node has a VXLAN device (`<prefix>-vxlan`, VNI 1, UDP 8472) holding
//! its VTEP address (the first address of its podCIDR, /32) and a MAC derived from its
//! podCIDR, so no node has to publish anything beyond its podCIDR and InternalIP. For every
//! other node: a permanent neighbour (its VTEP address -> its MAC), a forwarding entry (its
//! MAC -> its InternalIP) and a route to its podCIDR through its VTEP address, onlink.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::ipam::Subnet;
use crate::pod::NetworkError;

/// Bytes VXLAN adds to each packet (outer IPv4, UDP, VXLAN and Ethernet headers).
pub const OVERHEAD: u32 = 50;
/// flannel's VNI and port.
const VNI: &str = "1";
const PORT: &str = "8472";

/// A node's VTEP address: its podCIDR's first address.
pub fn vtep(cidr: Subnet) -> Ipv4Addr {
    cidr.base
}

/// A node's VTEP MAC: locally administered, from its podCIDR's base address.
pub fn mac(cidr: Subnet) -> String {
    let [a, b, c, d] = cidr.base.octets();
    format!("0e:6d:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// Run `program` with `args`; its standard error becomes the error.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<(), NetworkError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(NetworkError::io(format!("running {program}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Failed(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The VXLAN device `device` for the node whose podCIDR is `own` and address `local`.
pub fn ensure_device(device: &str, own: Subnet, local: Ipv4Addr) -> Result<(), NetworkError> {
    let local = local.to_string();
    let exists = Command::new("ip")
        .args(["link", "show", "dev", device])
        .output()
        .is_ok_and(|o| o.status.success());
    if !exists {
        let mtu = crate::bridge::VXLAN_MTU.to_string();
        run(
            "ip",
            &[
                "link",
                "add",
                device,
                "mtu",
                &mtu,
                "type",
                "vxlan",
                "id",
                VNI,
                "local",
                &local,
                "dstport",
                PORT,
                "nolearning",
            ],
        )?;
    }
    run("ip", &["link", "set", device, "address", &mac(own)])?;
    run(
        "ip",
        &[
            "addr",
            "replace",
            &format!("{}/32", vtep(own)),
            "dev",
            device,
        ],
    )?;
    run("ip", &["link", "set", device, "up"])
}

/// Make `device`'s peers what `peers` (podCIDR -> InternalIP) says: neighbour, forwarding
/// entry and route for each; `gone` (podCIDRs routed before and no longer wanted) lose
/// theirs. Routes carry `proto`.
pub fn apply(
    device: &str,
    peers: &BTreeMap<String, String>,
    gone: &[String],
    proto: &str,
) -> Result<(), NetworkError> {
    for (cidr, node_ip) in peers {
        let subnet: Subnet = cidr.parse()?;
        let (vtep, mac) = (vtep(subnet).to_string(), mac(subnet));
        run(
            "ip",
            &[
                "neigh",
                "replace",
                &vtep,
                "lladdr",
                &mac,
                "dev",
                device,
                "nud",
                "permanent",
            ],
        )?;
        run(
            "bridge",
            &[
                "fdb",
                "replace",
                &mac,
                "dev",
                device,
                "dst",
                node_ip,
                "self",
                "permanent",
            ],
        )?;
        run(
            "ip",
            &[
                "route", "replace", cidr, "via", &vtep, "dev", device, "onlink", "proto", proto,
            ],
        )?;
        tracing::info!(cidr, node_ip, "route to another node's pods over VXLAN");
    }
    for cidr in gone {
        let subnet: Subnet = cidr.parse()?;
        // The route may already be gone with the device; the rest is best effort.
        let _ = run("ip", &["route", "del", cidr, "proto", proto]);
        let _ = run(
            "ip",
            &["neigh", "del", &vtep(subnet).to_string(), "dev", device],
        );
        let _ = run(
            "bridge",
            &["fdb", "del", &mac(subnet), "dev", device, "self"],
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_addresses_and_macs_come_from_the_pod_cidr() {
        let cidr: Subnet = "10.42.7.0/24".parse().unwrap();
        assert_eq!(vtep(cidr), Ipv4Addr::new(10, 42, 7, 0));
        assert_eq!(mac(cidr), "0e:6d:0a:2a:07:00");
        let other: Subnet = "10.42.8.0/24".parse().unwrap();
        assert_ne!(mac(other), mac(cidr));
    }
}

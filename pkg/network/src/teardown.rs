//! Removing a stopped node's network from the host (`minik stop --all`): its pods' veths,
//! the bridge `<prefix>0` and what is still attached to it, the dummy interface
//! `<prefix>-dns` (or the cluster DNS address on lo, where the kernel has no dummy driver),
//! the VXLAN device `<prefix>-vxlan`, the nftables tables `ip <prefix>-proxy`, `inet <prefix>-policy` and
//! `ip <prefix>-hostports`, and minik's routes (proto 77) into the cluster CIDR.
//!
//! Each step checks first, so a second teardown finds nothing and says nothing.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::ipam::Subnet;
use crate::routes::PROTO;

/// What to remove.
#[derive(Debug, Clone)]
pub struct TeardownOptions {
    /// `--network-prefix`: the node's devices and tables are named after it.
    pub prefix: String,
    /// Pod uids whose veths go (the host end is named after the uid).
    pub pods: Vec<String>,
    /// The cluster DNS address the node held.
    pub cluster_dns: Option<IpAddr>,
    /// Routes minik made into this range are removed.
    pub cluster_cidr: Option<Subnet>,
}

/// What was removed and what could not be.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TeardownReport {
    pub removed: Vec<String>,
    pub errors: Vec<String>,
}

impl TeardownReport {
    fn step(&mut self, what: String, result: Result<(), String>) {
        match result {
            Ok(()) => self.removed.push(what),
            Err(e) => self.errors.push(format!("{what}: {e}")),
        }
    }
}

/// The nftables tables of a node: (family, name).
pub fn tables(prefix: &str) -> [(&'static str, String); 3] {
    [
        ("ip", format!("{prefix}-proxy")),
        ("inet", format!("{prefix}-policy")),
        ("ip", format!("{prefix}-hostports")),
    ]
}

/// Remove the node's network (best effort: every step is tried).
pub fn teardown(options: &TeardownOptions) -> TeardownReport {
    let mut report = TeardownReport::default();
    let bridge = format!("{}0", options.prefix);
    let mut links: Vec<String> = options
        .pods
        .iter()
        .map(|uid| crate::bridge::host_if(uid))
        .collect();
    // Ports still on the bridge are its pods' veths.
    if let Ok(ports) = std::fs::read_dir(Path::new("/sys/class/net").join(&bridge).join("brif")) {
        links.extend(
            ports
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    links.sort();
    links.dedup();
    links.push(bridge);
    links.push(format!("{}-dns", options.prefix));
    links.push(format!("{}-vxlan", options.prefix));
    for link in links {
        if link_exists(&link) {
            // A pod's veth also goes by itself once its namespace is gone.
            let deleted = run("ip", &["link", "del", &link])
                .or_else(|e| if link_exists(&link) { Err(e) } else { Ok(()) });
            report.step(format!("interface {link}"), deleted);
        }
    }
    if let Some(dns) = options.cluster_dns {
        let prefix = if dns.is_ipv4() { 32 } else { 128 };
        let address = format!("{dns}/{prefix}");
        if on_loopback(&address) {
            report.step(
                format!("address {address} on lo"),
                run("ip", &["addr", "del", &address, "dev", "lo"]),
            );
        }
    }
    for (family, table) in tables(&options.prefix) {
        if run("nft", &["list", "table", family, &table]).is_ok() {
            report.step(
                format!("nftables table {family} {table}"),
                run("nft", &["delete", "table", family, &table]),
            );
        }
    }
    if let Some(cluster) = options.cluster_cidr {
        for cidr in routes_into(cluster) {
            report.step(
                format!("route {cidr} (proto {PROTO})"),
                run("ip", &["route", "del", &cidr, "proto", PROTO]),
            );
        }
    }
    report
}

fn link_exists(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && Path::new("/sys/class/net").join(name).exists()
}

/// Whether lo holds `address` (e.g. "10.43.0.10/32").
fn on_loopback(address: &str) -> bool {
    let Ok(out) = output("ip", &["-o", "addr", "show", "dev", "lo"]) else {
        return false;
    };
    out.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.any(|w| w == "inet" || w == "inet6") && words.next() == Some(address)
    })
}

/// The proto 77 routes whose destination lies in `cluster`.
fn routes_into(cluster: Subnet) -> Vec<String> {
    let Ok(out) = output("ip", &["-4", "route", "show", "proto", PROTO]) else {
        return Vec::new();
    };
    parse_routes(&out, cluster)
}

fn parse_routes(table: &str, cluster: Subnet) -> Vec<String> {
    table
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|cidr| {
            cidr.parse::<Subnet>()
                .is_ok_and(|s| s.prefix >= cluster.prefix && cluster.contains(s.base))
        })
        .map(String::from)
        .collect()
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    output(program, args).map(|_| ())
}

/// A command's stdout, or its error output when it fails.
fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_routes_into_the_cluster() {
        let table = "10.42.1.0/24 via 192.168.1.5 dev eth0 proto 77\n\
                     10.99.1.0/24 via 192.168.1.6 dev eth0 proto 77\n\
                     10.42.0.0/8 via 192.168.1.7 dev eth0 proto 77\n";
        let cluster: Subnet = "10.42.0.0/16".parse().unwrap();
        assert_eq!(parse_routes(table, cluster), ["10.42.1.0/24"]);
    }

    #[test]
    fn names_the_tables_after_the_prefix() {
        assert_eq!(
            tables("mk7"),
            [
                ("ip", "mk7-proxy".to_string()),
                ("inet", "mk7-policy".to_string()),
                ("ip", "mk7-hostports".to_string())
            ]
        );
    }

    #[test]
    fn a_missing_network_is_nothing_to_do() {
        let report = teardown(&TeardownOptions {
            prefix: "zzq9absent".into(),
            pods: vec!["00000000-no-such-pod".into()],
            cluster_dns: None,
            cluster_cidr: None,
        });
        assert_eq!(report, TeardownReport::default());
    }
}

//! hostPort: a container port published on the node's addresses (what the CNI portmap
//! plugin does for other runtimes): one nftables table of DNAT rules for every pod of the
//! node that asks for one, rewritten whole when a pod comes or goes.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::ipam::Ipam;
use crate::nft::Nft;
use crate::pod::NetworkError;

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct HostPort {
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    pub host_port: u16,
    pub container_port: u16,
    /// Only this node address (None: all of them).
    pub host_ip: Option<IpAddr>,
}

/// The published ports of a node's pods: a file per pod (`<dir>/<uid>.json`, so they
/// survive a restart) and the table made from them.
pub struct HostPorts {
    dir: PathBuf,
    table: String,
    nft: Arc<dyn Nft>,
}

impl HostPorts {
    pub fn new(dir: PathBuf, table: String, nft: Arc<dyn Nft>) -> HostPorts {
        HostPorts { dir, table, nft }
    }

    fn file(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.json"))
    }

    /// Record the pod's ports (none: nothing to do) and rewrite the table.
    pub fn publish(&self, uid: &str, ports: &[HostPort], ipam: &Ipam) -> Result<(), NetworkError> {
        if ports.is_empty() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)
            .map_err(NetworkError::io("creating the hostPort directory"))?;
        let json = serde_json::to_vec(ports).map_err(|e| NetworkError::Failed(e.to_string()))?;
        fs::write(self.file(uid), json).map_err(NetworkError::io("recording hostPorts"))?;
        self.sync(ipam)
    }

    /// Forget the ports of pods not in `live` (or of one pod) and rewrite the table if any went.
    pub fn withdraw(&self, keep: impl Fn(&str) -> bool, ipam: &Ipam) -> Result<(), NetworkError> {
        let mut gone = false;
        for (uid, _) in self.recorded() {
            if !keep(&uid) {
                fs::remove_file(self.file(&uid)).map_err(NetworkError::io("removing hostPorts"))?;
                gone = true;
            }
        }
        if gone { self.sync(ipam) } else { Ok(()) }
    }

    /// Forget the ports of pods not in `live`.
    pub fn collect(&self, live: &HashSet<String>, ipam: &Ipam) -> Result<(), NetworkError> {
        self.withdraw(|uid| live.contains(uid), ipam)
    }

    fn recorded(&self) -> Vec<(String, Vec<HostPort>)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let uid = name.strip_suffix(".json")?.to_string();
                let ports = serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
                Some((uid, ports))
            })
            .collect()
    }

    /// Rewrite the table from what is recorded (pods' addresses from `ipam`).
    pub fn sync(&self, ipam: &Ipam) -> Result<(), NetworkError> {
        let held: BTreeMap<String, IpAddr> = ipam
            .allocated()
            .into_iter()
            .map(|(ip, uid)| (uid, IpAddr::V4(ip)))
            .collect();
        let pods: BTreeMap<IpAddr, Vec<HostPort>> = self
            .recorded()
            .into_iter()
            .filter_map(|(uid, ports)| Some((*held.get(&uid)?, ports)))
            .collect();
        self.nft
            .apply(&render(&self.table, &pods))
            .map_err(|e| NetworkError::Failed(format!("hostPort rules: {e}")))
    }
}

/// The table `ip <table>` holding every pod's published ports (pod IP -> its ports).
pub fn render(table: &str, pods: &BTreeMap<IpAddr, Vec<HostPort>>) -> String {
    let mut rules = String::new();
    for (ip, ports) in pods {
        let IpAddr::V4(ip) = ip else { continue };
        for p in ports {
            let only = match p.host_ip {
                Some(IpAddr::V4(h)) if !h.is_unspecified() => format!("ip daddr {h} "),
                Some(_) => continue,
                None => String::new(),
            };
            let proto = p.protocol.to_ascii_lowercase();
            rules.push_str(&format!(
                "    {only}{proto} dport {} dnat to {ip}:{}\n",
                p.host_port, p.container_port
            ));
            // A pod reaching its own hostPort comes back to itself: masquerade it.
            rules.push_str(&format!(
                "    ip saddr {ip} {only}{proto} dport {} meta mark set mark or 0x8000\n",
                p.host_port
            ));
        }
    }
    format!(
        "table ip {table} {{}}\ndelete table ip {table}\ntable ip {table} {{\n\
         \x20 chain hostports {{\n{rules}  }}\n\
         \x20 chain prerouting {{\n    type nat hook prerouting priority -110; policy accept;\n\
         \x20   fib daddr type local jump hostports\n  }}\n\
         \x20 chain output {{\n    type nat hook output priority -110; policy accept;\n\
         \x20   fib daddr type local jump hostports\n  }}\n\
         \x20 chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   meta mark & 0x8000 == 0x8000 masquerade\n  }}\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_become_dnat_rules() {
        let mut pods = BTreeMap::new();
        pods.insert(
            "10.42.0.5".parse().unwrap(),
            vec![
                HostPort {
                    protocol: "TCP".into(),
                    host_port: 8080,
                    container_port: 80,
                    host_ip: None,
                },
                HostPort {
                    protocol: "UDP".into(),
                    host_port: 5353,
                    container_port: 53,
                    host_ip: Some("192.168.1.2".parse().unwrap()),
                },
            ],
        );
        let script = render("minik-hostports", &pods);
        assert!(
            script.starts_with("table ip minik-hostports {}\ndelete table ip minik-hostports\n")
        );
        assert!(
            script.contains("    tcp dport 8080 dnat to 10.42.0.5:80\n"),
            "{script}"
        );
        assert!(
            script.contains("    ip daddr 192.168.1.2 udp dport 5353 dnat to 10.42.0.5:53\n"),
            "{script}"
        );
        assert!(script.contains("fib daddr type local jump hostports"));
    }
}

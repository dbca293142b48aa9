//! minik's own pod network (what flannel's host-gw backend and the bridge CNI plugin give
//! k3s): a bridge on the node holding the first address of the node's podCIDR, a veth per
//! pod on it, addresses from ipam.rs. The podCIDR arrives once the node IPAM controller
//! gives the Node one; it is kept in the state directory, so after a restart pods get and
//! release addresses before the API is reached.

use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::hostports::HostPorts;
use crate::ipam::{Ipam, Subnet};
use crate::links::{Attach, Links};
use crate::nft::Nft;
use crate::pod::{NetworkError, PodNetwork, PodRef};

/// The MTU of pods' interfaces and the bridge on a plain network; VXLAN takes 50 bytes.
pub const MTU: u32 = 1500;
pub const VXLAN_MTU: u32 = MTU - crate::vxlan::OVERHEAD;

/// Settings of the bridge network.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    pub bridge: String,
    /// `<data-dir>/agent/network`: the podCIDR, the address files and the hostPorts.
    pub state_dir: PathBuf,
    /// The nftables table (family ip) of the pods' hostPorts.
    pub hostport_table: String,
    /// Of the bridge and pods' interfaces (`VXLAN_MTU` when traffic between nodes is
    /// encapsulated).
    pub mtu: u32,
}

/// The bridge network of one node.
pub struct BridgeNetwork {
    options: BridgeOptions,
    links: Arc<dyn Links>,
    ipam: Mutex<Option<Ipam>>,
    ports: HostPorts,
}

/// The host end of a pod's veth: "veth" and 11 hex digits of the pod's uid (IFNAMSIZ).
pub fn host_if(uid: &str) -> String {
    let hex: String = uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .take(11)
        .collect();
    format!("veth{hex:0<11}")
}

impl BridgeNetwork {
    /// The network as the state directory left it (the podCIDR of an earlier run, if any).
    pub fn new(
        options: BridgeOptions,
        links: Arc<dyn Links>,
        nft: Arc<dyn Nft>,
    ) -> Result<BridgeNetwork, NetworkError> {
        fs::create_dir_all(&options.state_dir).map_err(NetworkError::io(format!(
            "creating {}",
            options.state_dir.display()
        )))?;
        let ports = HostPorts::new(
            options.state_dir.join("hostports"),
            options.hostport_table.clone(),
            nft,
        );
        let net = BridgeNetwork {
            options,
            links,
            ipam: Mutex::new(None),
            ports,
        };
        if let Ok(text) = fs::read_to_string(net.subnet_file()) {
            let subnet: Subnet = text.trim().parse()?;
            *net.lock() = Some(Ipam::new(&net.ipam_dir(), subnet)?);
        }
        Ok(net)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Ipam>> {
        self.ipam.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn subnet_file(&self) -> PathBuf {
        self.options.state_dir.join("subnet")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.options.state_dir.join("ipam")
    }

    /// The node's podCIDR, once known.
    pub fn subnet(&self) -> Option<Subnet> {
        self.lock().as_ref().map(Ipam::subnet)
    }

    /// The node's podCIDR is `subnet`: set up the bridge and hand out its addresses.
    pub fn set_subnet(&self, subnet: Subnet) -> Result<(), NetworkError> {
        let mut ipam = self.lock();
        if ipam.as_ref().map(Ipam::subnet) != Some(subnet) {
            fs::write(self.subnet_file(), subnet.to_string())
                .map_err(NetworkError::io("recording the pod subnet"))?;
            *ipam = Some(Ipam::new(&self.ipam_dir(), subnet)?);
        }
        self.ensure_bridge(subnet)?;
        if let Some(ipam) = ipam.as_ref() {
            self.ports.sync(ipam)?;
        }
        tracing::info!(bridge = self.options.bridge, %subnet, "pod network ready");
        Ok(())
    }

    fn ensure_bridge(&self, subnet: Subnet) -> Result<(), NetworkError> {
        let options = &self.options;
        (self.links).ensure_bridge(
            &options.bridge,
            subnet.gateway(),
            subnet.prefix,
            options.mtu,
        )
    }

    fn ready(&self) -> Result<Ipam, NetworkError> {
        self.lock()
            .clone()
            .ok_or_else(|| NetworkError::NotReady("the node has no podCIDR yet".into()))
    }
}

impl PodNetwork for BridgeNetwork {
    fn network_ready(&self) -> Result<(), NetworkError> {
        self.ready().map(|_| ())
    }

    fn add(&self, pod: &PodRef, netns: &Path) -> Result<Vec<IpAddr>, NetworkError> {
        let ipam = self.ready()?;
        let subnet = ipam.subnet();
        let host_if = host_if(&pod.uid);
        let held = ipam.allocated().into_iter().find(|(_, u)| *u == pod.uid);
        if let Some((ip, _)) = held
            && self.links.exists(&host_if)
        {
            self.ports.publish(&pod.uid, &pod.ports, &ipam)?;
            return Ok(vec![IpAddr::V4(ip)]);
        }
        if !self.links.exists(&self.options.bridge) {
            self.ensure_bridge(subnet)?;
        }
        let ip = ipam.allocate(&pod.uid)?;
        let link = Attach {
            host_if,
            bridge: self.options.bridge.clone(),
            ip,
            prefix: subnet.prefix,
            gateway: subnet.gateway(),
            mtu: self.options.mtu,
        };
        let attached = self.links.attach(netns, &link);
        if let Err(e) = attached.and_then(|()| self.ports.publish(&pod.uid, &pod.ports, &ipam)) {
            let _ = self.links.detach(&link.host_if);
            let _ = ipam.release(&pod.uid);
            return Err(e);
        }
        tracing::debug!(pod = pod.name, namespace = pod.namespace, %ip, "pod attached");
        Ok(vec![IpAddr::V4(ip)])
    }

    fn del(&self, pod: &PodRef, _netns: Option<&Path>) -> Result<(), NetworkError> {
        self.links.detach(&host_if(&pod.uid))?;
        if let Some(ipam) = self.lock().clone() {
            self.ports.withdraw(|uid| uid != pod.uid, &ipam)?;
            ipam.release(&pod.uid)?;
        }
        Ok(())
    }

    fn gc(&self, live: &HashSet<String>) -> Result<(), NetworkError> {
        let Some(ipam) = self.lock().clone() else {
            return Ok(());
        };
        self.ports.collect(live, &ipam)?;
        for uid in ipam.gc(live)? {
            tracing::info!(uid, "released the address of a pod that is gone");
            self.links.detach(&host_if(&uid))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostports::HostPort;
    use crate::links::FakeLinks;
    use crate::nft::FakeNft;

    fn pod(uid: &str) -> PodRef {
        PodRef {
            uid: uid.into(),
            namespace: "default".into(),
            name: format!("pod-{uid}"),
            ports: Vec::new(),
        }
    }

    fn network(dir: &Path, links: &FakeLinks) -> BridgeNetwork {
        network_with(dir, links, &FakeNft::default())
    }

    fn network_with(dir: &Path, links: &FakeLinks, nft: &FakeNft) -> BridgeNetwork {
        let options = BridgeOptions {
            bridge: "minik0".into(),
            state_dir: dir.to_path_buf(),
            hostport_table: "minik-hostports".into(),
            mtu: MTU,
        };
        BridgeNetwork::new(options, Arc::new(links.clone()), Arc::new(nft.clone())).unwrap()
    }

    #[test]
    fn veth_names_fit_ifnamsiz() {
        assert_eq!(
            host_if("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"),
            "veth0b1c2d3e4f5"
        );
        assert_eq!(host_if("ab"), "vethab000000000");
        assert!(host_if("0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0").len() <= 15);
    }

    #[test]
    fn pods_wait_for_the_pod_cidr_then_get_addresses_on_the_bridge() {
        let dir = tempfile::tempdir().unwrap();
        let links = FakeLinks::default();
        let net = network(dir.path(), &links);
        let ns = Path::new("/run/netns/x");
        let err = net.add(&pod("a1"), ns).unwrap_err();
        assert!(matches!(err, NetworkError::NotReady(_)), "{err}");
        net.set_subnet("10.42.7.0/24".parse().unwrap()).unwrap();
        assert_eq!(
            links.bridges.lock().unwrap().as_slice(),
            [("minik0".to_string(), "10.42.7.1".parse().unwrap(), 24)]
        );
        let ips = net.add(&pod("a1"), ns).unwrap();
        assert_eq!(ips, vec!["10.42.7.2".parse::<IpAddr>().unwrap()]);
        // Adding again (a restart adopting the pod) keeps the address and the veth.
        assert_eq!(net.add(&pod("a1"), ns).unwrap(), ips);
        assert_eq!(links.veths.lock().unwrap().len(), 1);
        let b = net.add(&pod("b2"), ns).unwrap();
        assert_eq!(b, vec!["10.42.7.3".parse::<IpAddr>().unwrap()]);
        net.del(&pod("a1"), None).unwrap();
        net.del(&pod("a1"), None).unwrap();
        let veths = links.veths.lock().unwrap().clone();
        assert_eq!(veths.len(), 1);
        assert_eq!(veths[0].host_if, host_if("b2"));
        assert_eq!(
            veths[0].gateway,
            "10.42.7.1".parse::<std::net::Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn a_restart_keeps_the_subnet_and_gc_frees_pods_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let links = FakeLinks::default();
        let net = network(dir.path(), &links);
        net.set_subnet("10.42.1.0/24".parse().unwrap()).unwrap();
        net.add(&pod("a1"), Path::new("/x")).unwrap();
        net.add(&pod("b2"), Path::new("/y")).unwrap();
        drop(net);
        let again = network(dir.path(), &links);
        assert_eq!(again.subnet(), Some("10.42.1.0/24".parse().unwrap()));
        again.gc(&["b2".to_string()].into()).unwrap();
        let veths = links.veths.lock().unwrap().clone();
        assert_eq!(
            veths.iter().map(|v| v.host_if.clone()).collect::<Vec<_>>(),
            [host_if("b2")]
        );
        // a1's address is free again: the next pods can have it once the range wraps.
        let c = again.add(&pod("c3"), Path::new("/z")).unwrap();
        assert_eq!(c, vec!["10.42.1.4".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn host_ports_follow_their_pods_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (links, nft) = (FakeLinks::default(), FakeNft::default());
        let net = network_with(dir.path(), &links, &nft);
        net.set_subnet("10.42.2.0/24".parse().unwrap()).unwrap();
        let mut web = pod("a1");
        web.ports = vec![HostPort {
            protocol: "tcp".into(),
            host_port: 8080,
            container_port: 80,
            host_ip: None,
        }];
        net.add(&web, Path::new("/x")).unwrap();
        let rules = nft.last().unwrap();
        assert!(
            rules.contains("tcp dport 8080 dnat to 10.42.2.2:80"),
            "{rules}"
        );
        drop(net);
        // A restart rewrites the table from what was recorded.
        let again = network_with(dir.path(), &links, &nft);
        again.set_subnet("10.42.2.0/24".parse().unwrap()).unwrap();
        assert!(nft.last().unwrap().contains("dnat to 10.42.2.2:80"));
        again.del(&web, None).unwrap();
        assert!(!nft.last().unwrap().contains("dnat to"));
    }
}

//! What the API objects mean for this node: which pods a policy isolates, which addresses a
//! rule's peers stand for, and which ports its `ports` name (named ports resolved against a
//! pod's container ports).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minik_controllers::util::{is_terminal, matches};

use super::addr::AddrSet;

/// Which way traffic goes, seen from the selected pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    /// Short name used in chain, set and map names.
    pub fn short(self) -> &'static str {
        match self {
            Direction::Ingress => "in",
            Direction::Egress => "eg",
        }
    }

    /// The packet field that holds the peer's address.
    pub fn peer_field(self) -> &'static str {
        match self {
            Direction::Ingress => "saddr",
            Direction::Egress => "daddr",
        }
    }

    /// The packet field that holds the selected pod's address.
    pub fn pod_field(self) -> &'static str {
        match self {
            Direction::Ingress => "daddr",
            Direction::Egress => "saddr",
        }
    }
}

/// A pod's IPs (status.podIPs, else status.podIP).
pub fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let listed = status.pod_ips.iter().flatten().map(|p| p.ip.as_str());
    let mut ips: Vec<IpAddr> = listed.filter_map(|ip| ip.parse().ok()).collect();
    if ips.is_empty()
        && let Some(ip) = status.pod_ip.as_deref().and_then(|ip| ip.parse().ok())
    {
        ips.push(ip);
    }
    ips
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// A pod that may be a peer: it has a pod-network address of its own and still runs.
pub fn is_peer(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_ref())
        .is_some()
        && !host_network(pod)
        && !is_terminal(pod)
}

/// A pod this node's rules isolate (when some policy selects it).
pub fn is_local(pod: &Pod, node_name: &str) -> bool {
    is_peer(pod) && pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name)
}

fn labels<K: kube::Resource>(obj: &K) -> BTreeMap<String, String> {
    obj.meta().labels.clone().unwrap_or_default()
}

/// Whether `policy` applies to `dir` traffic (policyTypes, or by default Ingress, plus
/// Egress when the policy has egress rules).
pub fn has_type(policy: &NetworkPolicy, dir: Direction) -> bool {
    let Some(spec) = &policy.spec else {
        return false;
    };
    match spec.policy_types.as_deref() {
        Some(types) if !types.is_empty() => types.iter().any(|t| match dir {
            Direction::Ingress => t == "Ingress",
            Direction::Egress => t == "Egress",
        }),
        _ => match dir {
            Direction::Ingress => true,
            Direction::Egress => spec.egress.is_some(),
        },
    }
}

/// Whether `policy` selects `pod` (same namespace, podSelector matches its labels).
pub fn selects(policy: &NetworkPolicy, pod: &Pod) -> bool {
    let empty = LabelSelector::default();
    let selector = policy
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.as_ref())
        .unwrap_or(&empty);
    policy.metadata.namespace == pod.metadata.namespace && matches(selector, &labels(pod))
}

/// One ingress or egress rule: its peers (None: everyone) and ports (None: all).
pub struct Rule<'a> {
    pub peers: Option<&'a [NetworkPolicyPeer]>,
    pub ports: Option<&'a [NetworkPolicyPort]>,
}

/// The rules of `policy` for `dir`, in order (none: that direction is denied).
pub fn rules(policy: &NetworkPolicy, dir: Direction) -> Vec<Rule<'_>> {
    let Some(spec) = &policy.spec else {
        return Vec::new();
    };
    match dir {
        Direction::Ingress => (spec.ingress.iter().flatten())
            .map(|r| Rule {
                peers: non_empty(&r.from),
                ports: non_empty(&r.ports),
            })
            .collect(),
        Direction::Egress => (spec.egress.iter().flatten())
            .map(|r| Rule {
                peers: non_empty(&r.to),
                ports: non_empty(&r.ports),
            })
            .collect(),
    }
}

/// A list that is present and not empty.
fn non_empty<T>(v: &Option<Vec<T>>) -> Option<&[T]> {
    v.as_deref().filter(|v| !v.is_empty())
}

/// The cluster as the rules see it.
pub struct Cluster<'a> {
    /// Pods that can be peers.
    pub peers: Vec<&'a Pod>,
    /// Namespace labels, with `kubernetes.io/metadata.name` always present.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

impl<'a> Cluster<'a> {
    pub fn new(pods: &'a [impl Borrow<Pod>], namespaces: &[impl Borrow<Namespace>]) -> Self {
        let namespaces = namespaces
            .iter()
            .map(Borrow::borrow)
            .filter_map(|ns: &Namespace| {
                let name = ns.metadata.name.clone()?;
                let mut l = labels(ns);
                l.insert("kubernetes.io/metadata.name".into(), name.clone());
                Some((name, l))
            })
            .collect();
        Cluster {
            peers: pods
                .iter()
                .map(Borrow::borrow)
                .filter(|p| is_peer(p))
                .collect(),
            namespaces,
        }
    }

    fn pods_of_peer(&self, policy_ns: &str, peer: &NetworkPolicyPeer) -> Vec<&'a Pod> {
        let all = LabelSelector::default();
        let pod_selector = peer.pod_selector.as_ref().unwrap_or(&all);
        self.peers
            .iter()
            .copied()
            .filter(|pod| {
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                let ns_ok = match &peer.namespace_selector {
                    None => ns == policy_ns,
                    Some(sel) => self.namespaces.get(ns).is_some_and(|l| matches(sel, l)),
                };
                ns_ok && matches(pod_selector, &labels(*pod))
            })
            .collect()
    }

    /// The addresses of `peers` of a policy in `policy_ns`, and the pods among them.
    pub fn resolve(&self, policy_ns: &str, peers: &[NetworkPolicyPeer]) -> (AddrSet, Vec<&'a Pod>) {
        let mut set = AddrSet::default();
        let mut pods: Vec<&'a Pod> = Vec::new();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                let except = block.except.as_deref().unwrap_or_default();
                if let Err(e) = set.add_block(&block.cidr, except) {
                    tracing::warn!(namespace = policy_ns, error = %e, "ipBlock skipped");
                }
                continue;
            }
            if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
                continue;
            }
            for pod in self.pods_of_peer(policy_ns, peer) {
                if !pods.iter().any(|p| std::ptr::eq(*p, pod)) {
                    pods.push(pod);
                }
            }
        }
        for pod in &pods {
            for ip in pod_ips(pod) {
                set.add_ip(&ip);
            }
        }
        (set, pods)
    }
}

/// A transport protocol a NetworkPolicy port may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From the API's spelling (absent: TCP); None for anything else.
    pub fn parse(name: Option<&str>) -> Option<Protocol> {
        match name.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    pub fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One entry of a rule's `ports`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Port {
    /// Every port of the protocol.
    All(Protocol),
    /// `port` to `endPort` (equal when there is no endPort).
    Range(Protocol, u16, u16),
    /// A container port's name.
    Named(Protocol, String),
}

/// The usable entries of `ports` (unknown protocols and out-of-range numbers dropped).
pub fn ports(ports: &[NetworkPolicyPort]) -> Vec<Port> {
    ports
        .iter()
        .filter_map(|p| {
            let proto = Protocol::parse(p.protocol.as_deref())?;
            Some(match &p.port {
                None => Port::All(proto),
                Some(IntOrString::Int(n)) => {
                    let lo = u16::try_from(*n).ok()?;
                    let hi = p.end_port.map_or(Some(lo), |e| u16::try_from(e).ok())?;
                    Port::Range(proto, lo, hi.max(lo))
                }
                Some(IntOrString::String(name)) => match name.parse::<u16>() {
                    Ok(n) => Port::Range(proto, n, n),
                    Err(_) => Port::Named(proto, name.clone()),
                },
            })
        })
        .collect()
}

/// The numbers `pod`'s containers give the port `name` of `proto`.
pub fn named_port(pod: &Pod, proto: Protocol, name: &str) -> Vec<u16> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut found: Vec<u16> = containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| {
            p.name.as_deref() == Some(name) && Protocol::parse(p.protocol.as_deref()) == Some(proto)
        })
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

//! What the proxy needs of Services and EndpointSlices, in one flat form: one `PortPlan` per
//! service port (its addresses, node port, policies and the endpoints it may use), so the
//! nftables renderer never looks at API objects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};

/// The label naming an EndpointSlice's service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services (and slices) carrying this label belong to another proxy.
const PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Session affinity's default memory (3 hours), as the API defaults it.
const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// A transport protocol a service port may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// nft's name for it.
    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One endpoint a service port may send traffic to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// One service port, everything the rules need.
#[derive(Debug, Clone)]
pub struct PortPlan {
    /// `namespace/name/proto/port`: unique, and the base of its chain names.
    pub id: String,
    pub proto: Proto,
    pub port: u16,
    pub cluster_ip: Ipv4Addr,
    /// externalIPs and load-balancer ingress IPs: reached like the cluster IP, treated as
    /// external traffic (masqueraded, or local endpoints only under policy Local).
    pub external_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    /// externalTrafficPolicy Local.
    pub external_local: bool,
    /// internalTrafficPolicy Local.
    pub internal_local: bool,
    /// sessionAffinity ClientIP's timeout.
    pub affinity_seconds: Option<u32>,
    /// Usable endpoints of the whole cluster.
    pub cluster: Vec<Backend>,
    /// Usable endpoints on this node.
    pub local: Vec<Backend>,
}

impl PortPlan {
    /// Whether it takes external traffic (a node port, external or load-balancer IPs).
    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

/// The plans of every proxied service port, sorted by id.
pub fn plan(
    services: &[Service],
    slices: &[EndpointSlice],
    node: &str,
    skip: &[IpAddr],
) -> Vec<PortPlan> {
    let by_service = group_slices(slices);
    let mut plans = Vec::new();
    for svc in services {
        let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
            continue;
        };
        if has_label(&svc.metadata.labels, PROXY_NAME_LABEL) {
            continue;
        }
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let Some(cluster_ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue; // headless ("None"), unset, or IPv6
        };
        if skip.contains(&IpAddr::V4(cluster_ip)) {
            continue;
        }
        let mut external_ips: BTreeSet<Ipv4Addr> = spec
            .external_ips
            .iter()
            .flatten()
            .filter_map(|ip| ip.parse().ok())
            .collect();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref());
            for i in ingress
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
            {
                // ipMode Proxy: the load balancer delivers to the node, not to the VIP.
                if i.ip_mode.as_deref() == Some("Proxy") {
                    continue;
                }
                external_ips.extend(i.ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()));
            }
        }
        let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_AFFINITY_SECONDS)
        });
        let key = (ns.clone(), name.clone());
        let svc_slices = by_service.get(&key).map(Vec::as_slice).unwrap_or_default();
        for sp in spec.ports.iter().flatten() {
            let (Some(proto), Ok(port)) =
                (Proto::parse(sp.protocol.as_deref()), u16::try_from(sp.port))
            else {
                continue;
            };
            let port_name = sp.name.as_deref().unwrap_or_default();
            let all = backends(svc_slices, port_name, proto, None);
            let mine = backends(svc_slices, port_name, proto, Some(node));
            plans.push(PortPlan {
                id: format!("{ns}/{name}/{}/{port}", proto.nft()),
                proto,
                port,
                cluster_ip,
                external_ips: external_ips.iter().copied().collect(),
                node_port: sp
                    .node_port
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0),
                external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                affinity_seconds,
                cluster: usable(&all),
                local: usable(&mine),
            });
        }
    }
    plans.sort_by(|a, b| a.id.cmp(&b.id));
    plans
}

fn has_label(labels: &Option<BTreeMap<String, String>>, key: &str) -> bool {
    labels.as_ref().is_some_and(|l| l.contains_key(key))
}

/// IPv4 slices by (namespace, service name).
fn group_slices(slices: &[EndpointSlice]) -> BTreeMap<(String, String), Vec<&EndpointSlice>> {
    let mut out: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if s.address_type != "IPv4" || has_label(&s.metadata.labels, PROXY_NAME_LABEL) {
            continue;
        }
        let Some(ns) = &s.metadata.namespace else {
            continue;
        };
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
        else {
            continue;
        };
        out.entry((ns.clone(), svc.clone())).or_default().push(s);
    }
    out
}

/// An endpoint's state, as kube-proxy reads its conditions.
#[derive(Debug, Clone, Copy)]
struct State {
    ready: bool,
    serving: bool,
    terminating: bool,
}

fn state(ep: &Endpoint) -> State {
    let c = ep.conditions.as_ref();
    let ready = c.and_then(|c| c.ready).unwrap_or(true);
    State {
        ready,
        serving: c.and_then(|c| c.serving).unwrap_or(ready),
        terminating: c.and_then(|c| c.terminating).unwrap_or(false),
    }
}

/// Every endpoint of the port named `port_name` (on `node` only if given), with its state.
fn backends(
    slices: &[&EndpointSlice],
    port_name: &str,
    proto: Proto,
    node: Option<&str>,
) -> BTreeMap<Backend, State> {
    let mut out = BTreeMap::new();
    for s in slices {
        let port = s.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && Proto::parse(p.protocol.as_deref()) == Some(proto)
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in s.endpoints.iter().flatten() {
            if node.is_some() && ep.node_name.as_deref() != node {
                continue;
            }
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let st = state(ep);
            // The same endpoint in two slices (during a move): ready wins.
            out.entry(Backend { ip, port })
                .and_modify(|old: &mut State| {
                    if st.ready {
                        *old = st;
                    }
                })
                .or_insert(st);
        }
    }
    out
}

/// The ready endpoints, or, if none is ready, the serving ones that are terminating.
fn usable(eps: &BTreeMap<Backend, State>) -> Vec<Backend> {
    let ready: Vec<Backend> = eps
        .iter()
        .filter(|(_, s)| s.ready)
        .map(|(b, _)| b.clone())
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.iter()
        .filter(|(_, s)| s.serving && s.terminating)
        .map(|(b, _)| b.clone())
        .collect()
}

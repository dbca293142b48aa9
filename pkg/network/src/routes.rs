//! Routes between nodes. On one L2 segment (flannel's host-gw backend) every other node's
//! podCIDR is routed through that node's InternalIP; otherwise through a VXLAN device
//! (vxlan.rs). Either way pods reach pods of other nodes by their own addresses. The
//! routes carry their own protocol number, so the ones minik made are found again (and
//! stale ones removed) after a restart.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use minik_controllers::Informer;
use tokio_util::sync::CancellationToken;

use crate::ipam::Subnet;
use crate::pod::NetworkError;

/// The protocol number minik's routes carry (`ip route ... proto 77`).
pub(crate) const PROTO: &str = "77";

/// How traffic reaches other nodes' pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Routed through the other node's address (one L2 segment).
    HostGw,
    /// Encapsulated by the VXLAN device of this name.
    Vxlan { device: String },
}

/// This node's podCIDR and IPv4 InternalIP, once both are known.
fn own_node(nodes: &[Node], own: &str) -> Option<(Subnet, std::net::Ipv4Addr)> {
    let node = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(own))?;
    let cidr = node.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
    let ip = node
        .status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()?;
    Some((cidr, ip))
}

/// podCIDR -> gateway for every other node that has both.
pub fn desired(nodes: &[Node], own: &str) -> BTreeMap<String, String> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(own))
        .filter_map(|n| {
            let cidr = n.spec.as_ref()?.pod_cidr.clone()?;
            let address = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| {
                    a.type_ == "InternalIP" && a.address.parse::<std::net::Ipv4Addr>().is_ok()
                })?
                .address
                .clone();
            Some((cidr, address))
        })
        .collect()
}

/// The routes minik made earlier: podCIDR -> gateway.
fn current() -> Result<BTreeMap<String, String>, NetworkError> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "proto", PROTO])
        .output()
        .map_err(NetworkError::io("running ip route"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let cidr = words.next()?.to_string();
            let via = words.skip_while(|w| *w != "via").nth(1)?.to_string();
            Some((cidr, via))
        })
        .collect())
}

fn ip_route(args: &[&str]) -> Result<(), NetworkError> {
    let mut all = vec!["route"];
    all.extend_from_slice(args);
    crate::vxlan::run("ip", &all)
}

/// The routes minik made into `cluster` (routes of other clusters on the host are not ours).
fn ours(cluster: Subnet) -> Result<BTreeMap<String, String>, NetworkError> {
    let inside = |cidr: &str| {
        cidr.parse::<Subnet>()
            .is_ok_and(|s| s.prefix >= cluster.prefix && cluster.contains(s.base))
    };
    Ok(current()?.into_iter().filter(|(c, _)| inside(c)).collect())
}

/// Route `want` (other nodes' podCIDR -> InternalIP) the way `backend` says, on the node
/// whose own podCIDR and address `own` gives (None: not known yet).
pub fn apply_backend(
    backend: &Backend,
    cluster: Subnet,
    own: Option<(Subnet, std::net::Ipv4Addr)>,
    want: &BTreeMap<String, String>,
) -> Result<(), NetworkError> {
    match backend {
        Backend::HostGw => apply(cluster, want),
        Backend::Vxlan { device } => {
            let Some((cidr, ip)) = own else {
                return Err(NetworkError::NotReady(
                    "this node's podCIDR and address are not known yet".into(),
                ));
            };
            crate::vxlan::ensure_device(device, cidr, ip)?;
            let gone: Vec<String> = ours(cluster)?
                .into_keys()
                .filter(|c| !want.contains_key(c))
                .collect();
            crate::vxlan::apply(device, want, &gone, PROTO)
        }
    }
}

/// Make the host's routes into `cluster` what `want` says (routes of other clusters on
/// the host are left alone).
pub fn apply(cluster: Subnet, want: &BTreeMap<String, String>) -> Result<(), NetworkError> {
    let have = ours(cluster)?;
    for (cidr, via) in want {
        if have.get(cidr) != Some(via) {
            ip_route(&["replace", cidr, "via", via, "proto", PROTO])?;
            tracing::info!(cidr, via, "route to another node's pods");
        }
    }
    for cidr in have.keys().filter(|c| !want.contains_key(*c)) {
        ip_route(&["del", cidr, "proto", PROTO])?;
    }
    Ok(())
}

/// Keep the routes to other nodes' pods (of the cluster CIDR `cluster`) until `stop`.
pub async fn run(
    client: kube::Client,
    own: String,
    cluster: Subnet,
    backend: Backend,
    stop: CancellationToken,
) {
    let nodes: Arc<Informer<Node>> = Informer::new(Api::all(client));
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    nodes.on(move |_: &Node, _| notify.notify_one());
    tokio::spawn(nodes.clone().run(stop.clone()));
    let mut applied = None;
    loop {
        let list: Vec<Node> = nodes
            .store()
            .state()
            .iter()
            .map(|n| (**n).clone())
            .collect();
        let want = (desired(&list, &own), own_node(&list, &own));
        if applied.as_ref() != Some(&want) {
            let (w, b) = (want.clone(), backend.clone());
            match tokio::task::spawn_blocking(move || apply_backend(&b, cluster, w.1, &w.0)).await {
                Ok(Ok(())) => applied = Some(want),
                Ok(Err(e)) => tracing::warn!(error = %e, "routes to other nodes' pods"),
                Err(e) => tracing::warn!(error = %e, "routes to other nodes' pods"),
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = changed.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": ip}]}}))
        .unwrap()
    }

    #[test]
    fn every_other_node_with_a_pod_cidr_gets_a_route() {
        let nodes = [
            node("a", Some("10.42.0.0/24"), "192.168.1.10"),
            node("b", Some("10.42.1.0/24"), "192.168.1.11"),
            node("c", None, "192.168.1.12"),
            node("d", Some("10.42.3.0/24"), "fd00::4"),
        ];
        let want = desired(&nodes, "a");
        assert_eq!(
            want.into_iter().collect::<Vec<_>>(),
            [("10.42.1.0/24".to_string(), "192.168.1.11".to_string())]
        );
    }
}

//! The node's network, as k3s's agent runs flannel, kube-proxy, CoreDNS and its network
//! policy controller, but as tasks of this process: the pod network (minik's bridge, or
//! CNI plugins with `--flannel-backend=none`), the service proxy on nftables, the cluster
//! DNS on the cluster DNS address (held by a dummy interface on each node, so every node
//! answers its own pods), and NetworkPolicy. The bridge learns the node's podCIDR once the
//! node IPAM controller has set it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use minik_network::bridge::{BridgeNetwork, BridgeOptions};
use minik_network::cni::{Cni, CniOptions};
use minik_network::links::KernelLinks;
use minik_network::nft::{Nft, NftCommand};
use minik_network::{NetworkError, PodNetwork};
use tokio_util::sync::CancellationToken;

/// What the user asked of the node's network.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// minik's own bridge network; false (`--flannel-backend=none`) calls the CNI plugins
    /// configured in `cni_conf_dir` instead.
    pub embedded: bool,
    /// `--flannel-backend vxlan`: traffic to other nodes' pods goes through a VXLAN device
    /// (else host-gw routes).
    pub vxlan: bool,
    /// `--cluster-cidr`.
    pub cluster_cidr: String,
    /// Run the service proxy (`--disable-kube-proxy` turns it off).
    pub proxy: bool,
    /// Run the cluster DNS (`--disable coredns` turns it off).
    pub dns: bool,
    /// Enforce NetworkPolicy (`--disable-network-policy` turns it off).
    pub policy: bool,
    /// What the node's devices and nftables tables are named after (`--network-prefix`,
    /// "minik": bridge minik0, dummy interface minik-dns, tables minik-proxy and
    /// minik-policy), so several minik nodes can share one host (tests do).
    pub prefix: String,
    /// `--cni-conf-dir` and `--cni-bin-dir`.
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: PathBuf,
}

/// The node's pod network.
pub struct PodNetworks {
    pub network: Arc<dyn PodNetwork>,
    /// minik's bridge, told the node's podCIDR.
    bridge: Option<Arc<BridgeNetwork>>,
}

/// The pod network the node's sandboxes join.
pub fn pod_network(config: &NetworkConfig, data_dir: &Path) -> Result<PodNetworks, NetworkError> {
    let agent = data_dir.join("agent");
    if !config.embedded {
        let cni = Cni::new(CniOptions {
            conf_dir: config.cni_conf_dir.clone(),
            bin_dirs: vec![config.cni_bin_dir.clone(), "/usr/lib/cni".into()],
            cache_dir: agent.join("cni").join("results"),
        });
        return Ok(PodNetworks {
            network: Arc::new(cni),
            bridge: None,
        });
    }
    let options = BridgeOptions {
        bridge: format!("{}0", config.prefix),
        state_dir: agent.join("network"),
        hostport_table: format!("{}-hostports", config.prefix),
        mtu: if config.vxlan {
            minik_network::bridge::VXLAN_MTU
        } else {
            minik_network::bridge::MTU
        },
    };
    let bridge = Arc::new(BridgeNetwork::new(
        options,
        Arc::new(KernelLinks),
        Arc::new(NftCommand),
    )?);
    Ok(PodNetworks {
        network: bridge.clone(),
        bridge: Some(bridge),
    })
}

/// Start the node's network tasks until `stop`. `client` acts as the node.
pub fn start(
    agent: &crate::AgentConfig,
    node: &str,
    networks: &PodNetworks,
    client: kube::Client,
    stop: &CancellationToken,
) {
    let config = &agent.network;
    if let Some(bridge) = &networks.bridge {
        tokio::spawn(follow_pod_cidr(
            bridge.clone(),
            client.clone(),
            node.to_string(),
            stop.clone(),
        ));
        match config.cluster_cidr.parse() {
            Ok(cluster) => {
                let (client, node, stop) = (client.clone(), node.to_string(), stop.clone());
                let backend = if config.vxlan {
                    minik_network::routes::Backend::Vxlan {
                        device: format!("{}-vxlan", config.prefix),
                    }
                } else {
                    minik_network::routes::Backend::HostGw
                };
                tokio::spawn(minik_network::routes::run(
                    client, node, cluster, backend, stop,
                ));
            }
            Err(e) => tracing::error!(error = %e, "no routes to other nodes' pods"),
        }
    }
    let nft: Arc<dyn Nft> = Arc::new(NftCommand);
    if config.proxy {
        let options = minik_network::proxy::ProxyOptions {
            node_name: node.to_string(),
            cluster_cidr: config.cluster_cidr.clone(),
            table: format!("{}-proxy", config.prefix),
            skip_ips: if config.dns {
                vec![agent.cluster_dns]
            } else {
                Vec::new()
            },
        };
        let (client, nft, stop) = (client.clone(), nft.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = minik_network::proxy::run(client, options, nft, stop).await {
                tracing::error!(error = %e, "the service proxy stopped");
            }
        });
    }
    if config.policy {
        let options = minik_network::policy::PolicyOptions {
            node_name: node.to_string(),
            table: format!("{}-policy", config.prefix),
        };
        let (client, nft, stop) = (client.clone(), nft.clone(), stop.clone());
        tokio::spawn(async move {
            if let Err(e) = minik_network::policy::run(client, options, nft, stop).await {
                tracing::error!(error = %e, "the network policy controller stopped");
            }
        });
    }
    if config.dns {
        let (address, domain) = (agent.cluster_dns, agent.cluster_domain.clone());
        let dummy = format!("{}-dns", config.prefix);
        tokio::spawn(dns(dummy, address, domain, client, stop.clone()));
    }
}

/// Serve the cluster DNS on the cluster DNS address, held by a dummy interface.
async fn dns(
    dummy: String,
    address: IpAddr,
    domain: String,
    client: kube::Client,
    stop: CancellationToken,
) {
    let held =
        tokio::task::spawn_blocking(move || minik_network::links::hold_address(&dummy, address))
            .await
            .map_err(|e| NetworkError::Failed(e.to_string()))
            .and_then(|r| r);
    if let Err(e) = held {
        tracing::error!(error = %e, %address, "the cluster DNS address could not be set up");
        return;
    }
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let options = minik_network::dns::DnsOptions {
        listen: vec![SocketAddr::new(address, 53)],
        domain,
        upstreams: minik_network::dns::upstreams_from_resolv_conf(&resolv),
    };
    let served = match minik_network::dns::Dns::bind(options).await {
        Ok(dns) => dns.run(client, stop).await,
        Err(e) => Err(e),
    };
    if let Err(e) = served {
        tracing::error!(error = %e, "the cluster DNS stopped");
    }
}

/// Wait for the node's podCIDR, then set up the bridge with it (and again if it changes).
async fn follow_pod_cidr(
    bridge: Arc<BridgeNetwork>,
    client: kube::Client,
    node: String,
    stop: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client);
    let mut applied = None;
    loop {
        let cidr = match nodes.get_opt(&node).await {
            Ok(n) => n.and_then(|n| n.spec?.pod_cidr),
            Err(e) => {
                tracing::debug!(error = %e, "reading the node's podCIDR");
                None
            }
        };
        if let Some(cidr) = cidr.filter(|c| applied.as_ref() != Some(c)) {
            let result = match cidr.parse() {
                Ok(subnet) => {
                    let bridge = bridge.clone();
                    tokio::task::spawn_blocking(move || bridge.set_subnet(subnet))
                        .await
                        .map_err(|e| NetworkError::Failed(e.to_string()))
                        .and_then(|r| r)
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => applied = Some(cidr),
                Err(e) => tracing::error!(error = %e, cidr, "setting up the pod network"),
            }
        }
        let wait = if applied.is_some() { 30 } else { 1 };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(wait * 500)) => {}
        }
    }
}

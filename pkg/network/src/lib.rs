//! Pod networking for minik, in its own process (no flannel, kube-proxy or CoreDNS):
//!
//! - nft.rs: nftables, the one way rules reach the kernel (`nft -f -`, one atomic
//!   transaction per sync), behind a trait with a fake for tests.
//! - pod network: `PodNetwork` (add a pod's sandbox to the network, remove it); the
//!   embedded bridge (bridge.rs, links.rs and netlink.rs, ipam.rs) and standard CNI plugins (cni.rs).
//! - routes.rs: routes to other nodes' podCIDRs through their addresses (host-gw).
//! - proxy/: Services and EndpointSlices to nftables DNAT rules (kube-proxy's nftables mode).
//! - dns/: cluster DNS (services, endpoints, pods; other names forwarded upstream).
//! - policy/: NetworkPolicy to nftables filter rules.

pub mod bridge;
pub mod hostports;
pub mod ipam;
pub mod links;
pub mod netlink;
pub mod nft;
pub mod pod;
pub mod routes;
pub mod teardown;
#[cfg(test)]
pub(crate) mod testing;
pub mod vxlan;

pub use pod::{NetworkError, PodNetwork, PodRef};

pub mod cni;
pub mod dns;
pub mod policy;
pub mod proxy;

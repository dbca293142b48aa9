//! Flags of `minik stop`.

use std::net::IpAddr;
use std::path::PathBuf;

/// `minik stop`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Stop every container of this node, unmount what its pods mounted, and remove its
    /// network (bridge, DNS interface or address, nftables tables, routes to other nodes);
    /// required, so nothing happens by accident.
    #[arg(long)]
    pub all: bool,

    /// The data directory of the node to stop.
    #[arg(
        long,
        short = 'd',
        default_value = "/var/lib/minik",
        env = "MINIK_DATA_DIR"
    )]
    pub data_dir: PathBuf,

    /// The cluster DNS address the node held (the server's --cluster-dns); removed from lo
    /// where the kernel has no dummy interface driver.
    #[arg(long, default_value = "10.43.0.10")]
    pub cluster_dns: IpAddr,

    /// The cluster's pod network (the server's --cluster-cidr): minik's routes to other
    /// nodes' pods in it are removed.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: String,

    /// What the node's bridge, dummy interface and nftables tables are named after (the
    /// node's --network-prefix).
    #[arg(long, default_value = "minik", hide = true, value_parser = super::node::network_prefix)]
    pub network_prefix: String,

    /// Seconds a container gets to exit after SIGTERM before it is killed.
    #[arg(long, default_value_t = 5)]
    pub grace_period: u64,
}

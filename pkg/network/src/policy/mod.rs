//! NetworkPolicy (networking.k8s.io/v1) enforced with nftables: `render` turns the pods,
//! namespaces and policies into the table `inet minik-policy` (render.rs, with select.rs for
//! what the objects mean and addr.rs for address sets), and `run` keeps the kernel's copy in
//! step with the API (run.rs).
//!
//! Only pods of this node are isolated here; every node enforces its own pods. Traffic from
//! the node itself to its pods is always allowed, as in most CNIs.

mod addr;
mod render;
mod run;
mod select;

#[cfg(test)]
mod tests;

pub use render::render;
pub use run::run;

/// How this node enforces policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOptions {
    /// Only pods on this node (spec.nodeName) are isolated by this node's rules.
    pub node_name: String,
    /// The table's name (family inet), "minik-policy".
    pub table: String,
}

/// Why enforcement stopped or could not clean up.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("nftables: {0}")]
    Nft(#[from] crate::nft::NftError),
    #[error("nft task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

//! What the kubelet asks of a pod network: attach a pod's network namespace (addresses
//! back), detach it, and release what pods that are gone still hold. Implemented by
//! minik's own bridge network (bridge.rs) and by standard CNI plugins (cni.rs). Calls block
//! (they run commands and plugins): the kubelet makes them from a blocking thread.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

/// The pod a call is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// Its container ports published on the node (hostPort).
    pub ports: Vec<crate::hostports::HostPort>,
}

/// Why a pod could not be attached or detached.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("the pod network is not ready: {0}")]
    NotReady(String),
    #[error("no address left in {0}")]
    Exhausted(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

impl NetworkError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
        let what = what.into();
        move |source| NetworkError::Io { what, source }
    }
}

/// A pod network.
pub trait PodNetwork: Send + Sync {
    /// Attach the pod whose network namespace is the file `netns`; returns its addresses
    /// (the first is status.podIP). Attaching a pod already attached returns its addresses.
    fn add(&self, pod: &PodRef, netns: &Path) -> Result<Vec<IpAddr>, NetworkError>;
    /// Detach the pod and release its addresses. `netns` is None when the namespace is
    /// already gone. Detaching a pod not attached is not an error.
    fn del(&self, pod: &PodRef, netns: Option<&Path>) -> Result<(), NetworkError>;
    /// Release what pods not in `live` (pod uids) still hold, after a crash.
    fn gc(&self, live: &HashSet<String>) -> Result<(), NetworkError>;
    /// Whether pods can be attached now (kubelet's NetworkReady): the node reports itself
    /// not Ready with the reason while they cannot.
    fn network_ready(&self) -> Result<(), NetworkError> {
        Ok(())
    }
}

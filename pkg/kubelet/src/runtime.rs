//! What the kubelet needs from a container runtime. The embedded runtime, a CRI client and
//! the fake of simulated nodes all implement it.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Why the runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("pod {0} is not known to the runtime")]
    UnknownPod(String),
    #[error("{0}")]
    Failed(String),
}

/// A container's state, as the CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting {
        reason: String,
    },
    Running {
        started: Timestamp,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        started: Timestamp,
        finished: Timestamp,
    },
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub id: String,
    pub state: State,
    /// The state before the last restart.
    pub last: Option<State>,
    pub restart_count: i32,
}

/// The runtime's view of one pod: its sandbox address and containers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodState {
    pub ip: Option<String>,
    pub containers: Vec<Container>,
}

/// A running container's resource counters, as the CRI's ContainerStats gives them (a
/// runtime reads them from the container's cgroup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    pub name: String,
    /// When this run of the container started.
    pub started: Timestamp,
    /// When the counters were read.
    pub timestamp: Timestamp,
    /// CPU time used since it started.
    pub cpu_usage_core_nanoseconds: u64,
    pub memory_working_set_bytes: u64,
}

/// A container runtime, per node.
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Create the pod's sandbox (network address `ip`) and start its containers.
    fn start_pod(
        &self,
        pod: &Pod,
        ip: Option<String>,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The pod's containers now; None if the runtime does not know the pod.
    fn pod_state(&self, uid: &str) -> Option<PodState>;

    /// Start an exited container again.
    fn restart_container(
        &self,
        uid: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stop every container (TERM, then KILL after `grace`) and remove the sandbox.
    fn stop_pod(
        &self,
        uid: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// When the runtime next expects a container of the pod to change by itself (None: it
    /// will say so through other means, or never).
    fn next_change(&self, _uid: &str) -> Option<Duration> {
        None
    }

    /// The uids of every pod the runtime has.
    fn pods(&self) -> Vec<String>;

    /// The counters of the pod's running containers; None when the runtime keeps none.
    fn container_stats(&self, _uid: &str) -> Option<Vec<ContainerStats>> {
        None
    }
}

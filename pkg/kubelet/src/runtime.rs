//! What the kubelet needs from a container runtime. The embedded runtime, a CRI client and
//! the fake of simulated nodes all implement it.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use minik_streaming::{CommandOptions, Duplex, Streams};

/// The pod's terminationGracePeriodSeconds (30 by default): how long its containers get
/// between SIGTERM and SIGKILL.
pub fn termination_grace(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

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
        /// Why, in words (ErrImagePull's error, CreateContainerConfigError's cause).
        message: Option<String>,
    },
    Running {
        started: Timestamp,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        /// The termination message (terminationMessagePath, or the log tail).
        message: Option<String>,
        started: Timestamp,
        finished: Timestamp,
    },
}

impl State {
    /// Waiting for `reason`, with no message.
    pub fn waiting(reason: &str) -> State {
        State::Waiting {
            reason: reason.into(),
            message: None,
        }
    }
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub image_id: String,
    /// "<runtime>://<id>", empty while it was never created.
    pub id: String,
    pub state: State,
    /// The state before the last restart.
    pub last: Option<State>,
    /// The id of the run `last` describes ("" when none or not known).
    pub last_id: String,
    pub restart_count: i32,
}

/// What a running container's probes say; None where it has no such probe (then a running
/// container is started, and ready once started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Probed {
    /// The startup probe passed.
    pub started: Option<bool>,
    /// The readiness probe passes.
    pub ready: Option<bool>,
}

/// The runtime's view of one pod: its sandbox address and containers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodState {
    pub ip: Option<String>,
    /// Whether the sandbox is there (the PodReadyToStartContainers condition).
    pub sandbox_ready: bool,
    /// spec.initContainers, in order (sidecars included).
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    /// spec.ephemeralContainers, in order (runtimes that run them).
    pub ephemeral_containers: Vec<Container>,
    /// Probe results of running containers, by container name (runtimes that probe).
    pub probes: std::collections::BTreeMap<String, Probed>,
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

    /// Advance a pod the runtime has, on every sync before `pod_state`: set up what it
    /// lacks, start the containers due next (init containers one at a time, then the app
    /// containers), retry those that could not be created; stop what is left running once
    /// the pod is Succeeded or Failed. When to look again.
    fn sync_pod(
        &self,
        _pod: &Pod,
    ) -> impl Future<Output = Result<Option<Duration>, RuntimeError>> + Send {
        async { Ok(None) }
    }

    /// Whether the pod's containers can start without a pull (every image present and no
    /// pull policy asking for one): then its first sync starts them at once, with no interim
    /// "ContainerCreating" status written in between.
    fn images_present(&self, _pod: &Pod) -> bool {
        false
    }

    /// The pod's containers now; None if the runtime does not know the pod.
    fn pod_state(&self, uid: &str) -> Option<PodState>;

    /// Start an exited container (init or app) again.
    fn restart_container(
        &self,
        uid: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stop every container (TERM, then KILL after `grace`) but keep their exited state, so
    /// the final status can report how each ended before the pod is removed. Runtimes
    /// without that distinction do it all in `stop_pod`.
    fn kill_pod(
        &self,
        _uid: &str,
        _grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send {
        async { Ok(()) }
    }

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

    /// Run `opts.command` in the running container `name` of pod `uid` (`kubectl exec`).
    fn exec(
        &self,
        _uid: &str,
        _name: &str,
        _opts: CommandOptions,
    ) -> impl Future<Output = Result<Streams, String>> + Send {
        async { Err("this runtime does not run commands in containers".to_string()) }
    }

    /// Where the runtime's own streaming server serves an exec (`opts.command`) or, with
    /// `attach`, an attachment to the running container `name` of pod `uid` (a CRI
    /// runtime's URL); None: `exec` and `attach` serve it here.
    fn stream_url(
        &self,
        _uid: &str,
        _name: &str,
        _opts: &CommandOptions,
        _attach: bool,
    ) -> impl Future<Output = Result<Option<String>, String>> + Send {
        async { Ok(None) }
    }

    /// Attach to the running container `name` of pod `uid` (`kubectl attach`).
    fn attach(
        &self,
        _uid: &str,
        _name: &str,
        _opts: CommandOptions,
    ) -> impl Future<Output = Result<Streams, String>> + Send {
        async { Err("this runtime does not attach to containers".to_string()) }
    }

    /// Connect to `port` on the loopback of pod `uid`'s network (`kubectl port-forward`).
    fn port_forward(
        &self,
        _uid: &str,
        _port: u16,
    ) -> impl Future<Output = std::io::Result<Box<dyn Duplex>>> + Send {
        async { Err(std::io::Error::other("this runtime does not forward ports")) }
    }
}

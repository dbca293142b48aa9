//! The data the kubelet and the runtime exchange (CRI-shaped, no Kubernetes types).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Why the runtime could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("image {0} is not present")]
    ImageNotFound(String),
    #[error("container {0} is not known")]
    ContainerNotFound(String),
    #[error("sandbox {0} is not known")]
    SandboxNotFound(String),
    #[error("pulling {image}: {message}")]
    Pull { image: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// "sha256:<config digest>", what containerStatuses[].imageID and `crictl images` show.
    pub id: String,
    /// Normalized references, e.g. "docker.io/library/busybox:latest".
    pub repo_tags: Vec<String>,
    /// "docker.io/library/busybox@sha256:<manifest digest>".
    pub repo_digests: Vec<String>,
    /// Bytes of the compressed layers.
    pub size: u64,
}

/// What the image's config says about running it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// "KEY=value" entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// Credentials for one registry (from an imagePullSecret or registries.yaml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub username: String,
    pub password: String,
}

/// A pod sandbox: the namespaces its containers share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// The pod's uid.
    pub id: String,
    pub hostname: String,
    /// Share the host's network (and UTS) namespace instead of a new one.
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
    /// Labels kept with the sandbox (pod namespace, name, uid).
    pub labels: BTreeMap<String, String>,
    /// Container ports published on the node (hostPort), for the pod network.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

/// A container port published on the node's addresses (a pod's hostPort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// "TCP", "UDP" or "SCTP".
    pub protocol: String,
    pub container_port: u16,
    pub host_port: u16,
    /// Only this node address ("" for all).
    #[serde(default)]
    pub host_ip: String,
}

/// A sandbox the runtime holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    pub config: SandboxConfig,
    /// The bind-mounted network namespace file (None with host_network).
    pub netns: Option<PathBuf>,
    pub created: SystemTime,
    /// The pod's address from the pod network (minik's bridge, CNI plugins, or a CRI
    /// runtime's own); None with host_network or no pod network.
    #[serde(default)]
    pub ip: Option<String>,
}

/// A bind mount into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    /// Absolute path in the container.
    pub destination: String,
    pub readonly: bool,
}

/// cgroup limits, already converted from the pod's requests and limits as the kubelet does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// cpu.shares (v1; converted to cpu.weight on v2).
    pub cpu_shares: Option<u64>,
    /// CFS quota and period in microseconds.
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// Bytes.
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// Who and with what privileges the process runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    pub uid: u32,
    pub gid: u32,
    pub supplemental_groups: Vec<u32>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    /// Capability names without the CAP_ prefix ("NET_ADMIN"), "ALL" allowed.
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub no_new_privileges: bool,
    /// seccomp RuntimeDefault.
    pub seccomp_default: bool,
}

/// A container to create and start in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Unique, chosen by the caller (64 hex characters, like containerd's).
    pub id: String,
    pub sandbox_id: String,
    /// The container's name in the pod.
    pub name: String,
    /// The image's id ("sha256:...") and the reference the pod asked for.
    pub image_id: String,
    pub image_ref: String,
    /// Unpacked layer directories, lowest first (from the image store); the root
    /// filesystem is an overlay of these with a writable layer of the container's own.
    pub layers: Vec<PathBuf>,
    /// argv, already resolved from the image's entrypoint/cmd and the pod's command/args.
    pub args: Vec<String>,
    /// "KEY=value" entries, already resolved.
    pub env: Vec<String>,
    pub working_dir: String,
    pub mounts: Vec<Mount>,
    pub resources: Resources,
    pub security: Security,
    /// Allocate a terminal (stdout and stderr then share it).
    pub tty: bool,
    /// Keep stdin open (for attach, in the streaming issue).
    pub stdin: bool,
    /// The CRI-format log file, e.g. /var/log/pods/<ns>_<pod>_<uid>/<name>/<attempt>.log.
    pub log_path: PathBuf,
    /// Restart number of this container in the pod (0 for the first run).
    pub attempt: u32,
    pub labels: BTreeMap<String, String>,
    /// Join the PID namespace of this container (its id) instead of having one of its own
    /// (an ephemeral container's targetContainerName, `kubectl debug --target`).
    #[serde(default)]
    pub target_pid_ns: Option<String>,
}

/// A container's state as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, its process not started (or the shim still starting it).
    Created,
    Running {
        pid: i32,
        started: SystemTime,
    },
    Exited {
        exit_code: i32,
        /// "Completed", "Error", "OOMKilled" or "StartError", as the kubelet reports them.
        reason: String,
        message: Option<String>,
        started: Option<SystemTime>,
        finished: SystemTime,
    },
}

/// A container the runtime has (running or exited, until removed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub created: SystemTime,
}

/// Counters read from a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_usage_nanoseconds: u64,
    pub memory_working_set_bytes: u64,
    pub timestamp: SystemTime,
}

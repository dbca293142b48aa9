//! The kubelet's sandbox and container configs in CRI terms, as kubelet's kuberuntime
//! builds `PodSandboxConfig` and `ContainerConfig`: metadata from the pod labels, the pod's
//! log directory, namespace modes, the cgroup parent, mounts, resources and the security
//! context; a container's log path relative to its pod's log directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use minik_cri::image_spec;
use minik_cri::proto::{
    Capability, ContainerConfig as CriContainerConfig, ContainerMetadata, KeyValue,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, MountPropagation, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PortMapping, Protocol, SecurityProfile,
    security_profile,
};
use minik_runtime::{ContainerConfig, SandboxConfig};

/// The pod labels the kubelet puts on sandboxes and containers.
pub(super) const POD_NAME: &str = "io.kubernetes.pod.name";
pub(super) const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// The pod uid on the sandboxes and containers minik made (a kubelet sharing the runtime
/// would put `io.kubernetes.pod.uid` on its own): what tells ours from others'.
pub(super) const MINIK_POD_UID: &str = "minik.io/pod-uid";
/// The kubelet's id of a container, kept on the runtime's container as a label so the
/// mapping survives a restart.
pub(super) const CONTAINER_ID: &str = "minik.io/container-id";
/// The image reference the pod asked for (set by the kubelet's pod logic).
pub(super) const IMAGE_REF: &str = "minik.io/image-ref";

/// What a `Cri` adds to every sandbox: where pod logs and pod cgroups live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layout {
    /// /var/log/pods.
    pub log_root: PathBuf,
    /// The cgroupfs parent of pod cgroups ("/kubepods"); a pod's is `<root>/pod<uid>`.
    pub cgroup_root: String,
}

impl Layout {
    /// The pod's log directory, `<log_root>/<namespace>_<name>_<uid>`.
    pub(super) fn pod_log_dir(&self, config: &SandboxConfig) -> PathBuf {
        let label = |k: &str| config.labels.get(k).map_or("", String::as_str);
        self.log_root.join(format!(
            "{}_{}_{}",
            label(POD_NAMESPACE),
            label(POD_NAME),
            config.id
        ))
    }

    /// The pod's cgroup parent, `<cgroup_root>/pod<uid>` (kubelet's cgroupfs naming).
    pub(super) fn pod_cgroup(&self, uid: &str) -> String {
        format!("{}/pod{uid}", self.cgroup_root.trim_end_matches('/'))
    }
}

/// The namespace modes of a pod: the node's when asked, else the pod's (network, IPC) and
/// the container's own (PID, kubelet's default without shareProcessNamespace).
pub(super) fn namespace_options(config: &SandboxConfig) -> NamespaceOption {
    let mode = |host: bool, otherwise: NamespaceMode| {
        (if host { NamespaceMode::Node } else { otherwise }) as i32
    };
    NamespaceOption {
        network: mode(config.host_network, NamespaceMode::Pod),
        pid: mode(config.host_pid, NamespaceMode::Container),
        ipc: mode(config.host_ipc, NamespaceMode::Pod),
        target_id: String::new(),
    }
}

/// The `PodSandboxConfig` of a sandbox (attempt `attempt`).
pub(super) fn sandbox_config(
    config: &SandboxConfig,
    layout: &Layout,
    attempt: u32,
) -> PodSandboxConfig {
    let label = |k: &str| config.labels.get(k).cloned().unwrap_or_default();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: label(POD_NAME),
            uid: config.id.clone(),
            namespace: label(POD_NAMESPACE),
            attempt,
        }),
        // As kubelet: a host-network pod has the node's UTS namespace and hostname.
        hostname: if config.host_network {
            String::new()
        } else {
            config.hostname.clone()
        },
        log_directory: layout.pod_log_dir(config).to_string_lossy().into_owned(),
        // The runtime's CNI plugins (portmap) publish them.
        port_mappings: config
            .port_mappings
            .iter()
            .map(|p| PortMapping {
                protocol: match p.protocol.as_str() {
                    "UDP" => Protocol::Udp,
                    "SCTP" => Protocol::Sctp,
                    _ => Protocol::Tcp,
                } as i32,
                container_port: i32::from(p.container_port),
                host_port: i32::from(p.host_port),
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels: config
            .labels
            .clone()
            .into_iter()
            .chain([(MINIK_POD_UID.to_string(), config.id.clone())])
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: layout.pod_cgroup(&config.id),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(config)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container's log path relative to its pod's log directory, as CRI wants it:
/// `<log_dir>/<name>/<attempt>.log` gives `<name>/<attempt>.log`. A path elsewhere gives
/// the kubelet's layout from the container's name and attempt.
pub(super) fn relative_log_path(
    log_dir: &Path,
    log_path: &Path,
    name: &str,
    attempt: u32,
) -> String {
    match log_path.strip_prefix(log_dir) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.to_string_lossy().into_owned(),
        _ => format!("{name}/{attempt}.log"),
    }
}

/// "KEY=value" as a CRI key-value (a bare "KEY" has an empty value).
fn env_var(entry: &str) -> KeyValue {
    let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
    KeyValue {
        key: key.to_string(),
        value: value.to_string(),
    }
}

/// The CRI `ContainerConfig` of a container in the sandbox made from `sandbox`.
pub(super) fn container_config(
    config: &ContainerConfig,
    sandbox: &SandboxConfig,
    layout: &Layout,
) -> CriContainerConfig {
    let image = if config.image_id.is_empty() {
        &config.image_ref
    } else {
        &config.image_id
    };
    let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
    labels.insert(CONTAINER_ID.to_string(), config.id.clone());
    labels.insert(MINIK_POD_UID.to_string(), config.sandbox_id.clone());
    let mounts = config
        .mounts
        .iter()
        .map(|m| Mount {
            container_path: m.destination.clone(),
            host_path: m.source.to_string_lossy().into_owned(),
            readonly: m.readonly,
            propagation: MountPropagation::PropagationPrivate as i32,
            ..Default::default()
        })
        .collect();
    let r = &config.resources;
    let resources = LinuxContainerResources {
        cpu_period: r
            .cpu_period
            .map_or(0, |p| i64::try_from(p).unwrap_or(i64::MAX)),
        cpu_quota: r.cpu_quota.unwrap_or(0),
        cpu_shares: r
            .cpu_shares
            .map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX)),
        memory_limit_in_bytes: r.memory_limit.unwrap_or(0),
        ..Default::default()
    };
    let s = &config.security;
    let security = LinuxContainerSecurityContext {
        capabilities: Some(Capability {
            add_capabilities: s.add_capabilities.clone(),
            drop_capabilities: s.drop_capabilities.clone(),
            add_ambient_capabilities: Vec::new(),
        }),
        privileged: s.privileged,
        namespace_options: Some(namespace_options(sandbox)),
        run_as_user: Some(minik_cri::proto::Int64Value {
            value: i64::from(s.uid),
        }),
        run_as_group: Some(minik_cri::proto::Int64Value {
            value: i64::from(s.gid),
        }),
        supplemental_groups: s
            .supplemental_groups
            .iter()
            .map(|g| i64::from(*g))
            .collect(),
        readonly_rootfs: s.readonly_rootfs,
        no_new_privs: s.no_new_privileges,
        seccomp: Some(SecurityProfile {
            profile_type: (if s.seccomp_default {
                security_profile::ProfileType::RuntimeDefault
            } else {
                security_profile::ProfileType::Unconfined
            }) as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    };
    CriContainerConfig {
        metadata: Some(ContainerMetadata {
            name: config.name.clone(),
            attempt: config.attempt,
        }),
        image: Some(image_spec(image)),
        command: config.args.clone(),
        args: Vec::new(),
        working_dir: config.working_dir.clone(),
        envs: config.env.iter().map(|e| env_var(e)).collect(),
        mounts,
        labels,
        log_path: relative_log_path(
            &layout.pod_log_dir(sandbox),
            &config.log_path,
            &config.name,
            config.attempt,
        ),
        stdin: config.stdin,
        tty: config.tty,
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(security),
        }),
        ..Default::default()
    }
}

/// Make `config` join the pid namespace of the runtime's container `target` (an ephemeral
/// container's targetContainerName), as kubelet does: only when the container would have
/// had a pid namespace of its own (not with the node's).
pub(super) fn target_pid_namespace(config: &mut CriContainerConfig, target: &str) {
    let options = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut());
    if let Some(options) = options
        && options.pid == NamespaceMode::Container as i32
    {
        options.pid = NamespaceMode::Target as i32;
        options.target_id = target.to_string();
    }
}

/// The sandbox config given with a container's CreateContainer: the sandbox's, marked
/// privileged for a privileged container. kubelet makes the whole sandbox privileged when
/// any container of the pod is; the kubelet's `SandboxConfig` does not say, and containerd
/// checks the flag of the config given here.
pub(super) fn for_container(
    mut sandbox: PodSandboxConfig,
    config: &ContainerConfig,
) -> PodSandboxConfig {
    if config.security.privileged {
        let linux = sandbox.linux.get_or_insert_with(Default::default);
        linux
            .security_context
            .get_or_insert_with(Default::default)
            .privileged = true;
    }
    sandbox
}

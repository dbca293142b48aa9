//! What a CRI runtime reports, in the kubelet's terms: container states (with kubelet's
//! reasons), containers rebuilt from their status and labels after a restart, sandboxes,
//! images and stats; CRI timestamps (nanoseconds since the epoch) as `SystemTime`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minik_cri::proto::{
    self, ContainerState as CriState, ContainerStats, ContainerStatus, NamespaceMode,
    PodSandboxStatus,
};
use minik_runtime::{
    Container, ContainerConfig, ContainerState, Image, Resources, SandboxConfig, Security, Stats,
};

use super::convert::{CONTAINER_ID, IMAGE_REF, MINIK_POD_UID};

/// A CRI timestamp (nanoseconds since the epoch; 0 means unset).
pub(super) fn time(nanos: i64) -> Option<SystemTime> {
    let nanos = u64::try_from(nanos).ok().filter(|n| *n > 0)?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// The kubelet's state of a container with CRI status `s`.
pub(super) fn state(s: &ContainerStatus) -> ContainerState {
    let message = (!s.message.is_empty()).then(|| s.message.clone());
    match s.state() {
        CriState::ContainerCreated => ContainerState::Created,
        CriState::ContainerRunning => ContainerState::Running {
            pid: 0,
            started: time(s.started_at).unwrap_or(UNIX_EPOCH),
        },
        CriState::ContainerExited => {
            let reason = if !s.reason.is_empty() {
                s.reason.clone()
            } else if s.exit_code == 0 {
                "Completed".to_string()
            } else {
                "Error".to_string()
            };
            ContainerState::Exited {
                exit_code: s.exit_code,
                reason,
                message,
                started: time(s.started_at),
                finished: time(s.finished_at)
                    .or_else(|| time(s.created_at))
                    .unwrap_or(UNIX_EPOCH),
            }
        }
        CriState::ContainerUnknown => ContainerState::Exited {
            exit_code: 255,
            reason: "Unknown".to_string(),
            message,
            started: time(s.started_at),
            finished: time(s.finished_at)
                .or_else(|| time(s.created_at))
                .unwrap_or(UNIX_EPOCH),
        },
    }
}

/// The kubelet's id of a CRI container, when the container is one of ours.
pub(super) fn kubelet_id(labels: &HashMap<String, String>) -> Option<&str> {
    labels
        .get(CONTAINER_ID)
        .map(String::as_str)
        .filter(|id| !id.is_empty())
}

/// The pod uid of a CRI sandbox or container minik made.
pub(super) fn pod_uid(labels: &HashMap<String, String>) -> Option<&str> {
    labels
        .get(MINIK_POD_UID)
        .map(String::as_str)
        .filter(|id| !id.is_empty())
}

/// The id of the image a container runs: `image_ref` when it is an image id (containerd
/// gives the image's repo digest instead when it has one), else the id of the image in
/// `images` with that digest or tag.
pub(super) fn image_id(s: &ContainerStatus, images: &[Image]) -> String {
    if s.image_ref.starts_with("sha256:") {
        return s.image_ref.clone();
    }
    let wanted = [
        s.image_ref.as_str(),
        s.image.as_ref().map_or("", |i| i.image.as_str()),
    ];
    wanted
        .iter()
        .filter(|w| !w.is_empty())
        .find_map(|w| super::images::find(images, w))
        .map_or_else(|| s.image_ref.clone(), |i| i.id.clone())
}

/// A container rebuilt from its CRI status (after a restart, or one this process did not
/// start): the kubelet's ids from its labels, the rest from what the runtime reports.
pub(super) fn container(s: &ContainerStatus, images: &[Image]) -> Option<Container> {
    let id = kubelet_id(&s.labels)?.to_string();
    let sandbox_id = pod_uid(&s.labels).unwrap_or_default().to_string();
    let labels: BTreeMap<String, String> = s
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let image_ref = labels.get(IMAGE_REF).cloned().unwrap_or_else(|| {
        s.image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default()
    });
    let metadata = s.metadata.clone().unwrap_or_default();
    let config = ContainerConfig {
        id,
        sandbox_id,
        name: metadata.name,
        image_id: image_id(s, images),
        image_ref,
        layers: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        working_dir: String::new(),
        mounts: Vec::new(),
        resources: Resources::default(),
        security: Security::default(),
        tty: false,
        stdin: false,
        log_path: s.log_path.clone().into(),
        attempt: metadata.attempt,
        labels,
        target_pid_ns: None,
    };
    Some(Container {
        config,
        state: state(s),
        created: time(s.created_at).unwrap_or(UNIX_EPOCH),
    })
}

/// A sandbox's config rebuilt from its CRI status: the namespace modes the runtime reports,
/// its labels (less minik's own), and the hostname its verbose info kept (the node's with the node's network).
pub(super) fn sandbox_config(s: &PodSandboxStatus, hostname: Option<String>) -> SandboxConfig {
    let options = s
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.clone())
        .unwrap_or_default();
    let node = |m: i32| m == NamespaceMode::Node as i32;
    let labels: BTreeMap<String, String> = s
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != MINIK_POD_UID)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let hostname = hostname.filter(|h| !h.is_empty()).or_else(|| {
        node(options.network)
            .then(|| nix::unistd::gethostname().ok())
            .flatten()
            .map(|h| h.to_string_lossy().into_owned())
    });
    SandboxConfig {
        id: pod_uid(&s.labels).unwrap_or_default().to_string(),
        hostname: hostname.unwrap_or_default(),
        host_network: node(options.network),
        host_ipc: node(options.ipc),
        host_pid: node(options.pid),
        labels,
        // Not in a sandbox's status (the runtime published them at creation).
        port_mappings: Vec::new(),
    }
}

/// A CRI image as the kubelet knows images.
pub(super) fn image(i: &proto::Image) -> Image {
    Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size,
    }
}

/// A container's CPU and memory use, when the runtime reported both.
pub(super) fn stats(s: &ContainerStats) -> Option<Stats> {
    let cpu = s.cpu.as_ref()?;
    let memory = s.memory.as_ref();
    Some(Stats {
        cpu_usage_nanoseconds: cpu.usage_core_nano_seconds.as_ref().map_or(0, |v| v.value),
        memory_working_set_bytes: memory
            .and_then(|m| m.working_set_bytes.as_ref())
            .map_or(0, |v| v.value),
        timestamp: time(cpu.timestamp).unwrap_or_else(SystemTime::now),
    })
}

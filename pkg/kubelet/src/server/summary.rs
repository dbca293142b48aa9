//! The Summary API (`/stats/summary`, kubelet's stats/v1alpha1): the node's cpu, memory,
//! filesystem, image filesystem and process counts, and per pod its containers' cpu,
//! memory, root filesystem and logs, summed per pod. Containers' counters come from the
//! runtime (their cgroups), rates from the kubelet's usage collector (stats.rs).

use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::host;
use crate::machine::fs_stats;
use crate::runtime::ContainerStats;

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    pub image_fs: FsStats,
    pub container_fs: FsStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RlimitStats {
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxpid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curproc: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    pub start_time: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub fs: FsStats,
    pub runtime: RuntimeStats,
    pub rlimit: RlimitStats,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSummary {
    pub name: String,
    pub start_time: String,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub rootfs: FsStats,
    pub logs: FsStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSummary {
    pub pod_ref: PodRef,
    pub start_time: String,
    pub containers: Vec<ContainerSummary>,
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    #[serde(rename = "ephemeral-storage")]
    pub ephemeral_storage: FsStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodSummary>,
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A filesystem's size and free space (used: what `used` says, else all that is taken).
fn fs_of(path: &Path, now: &str, used: Option<u64>) -> FsStats {
    match fs_stats(path) {
        Ok(f) => FsStats {
            time: now.to_string(),
            available_bytes: Some(f.available),
            capacity_bytes: Some(f.capacity),
            used_bytes: Some(used.unwrap_or(f.capacity.saturating_sub(f.available))),
            inodes_free: Some(f.inodes_free),
            inodes: Some(f.inodes),
            inodes_used: Some(f.inodes.saturating_sub(f.inodes_free)),
        },
        Err(_) => FsStats {
            time: now.to_string(),
            used_bytes: used,
            ..Default::default()
        },
    }
}

/// A pod, its running containers' counters and their cpu rates (by container name).
pub type PodEntry<'a> = (&'a Pod, Vec<ContainerStats>, Vec<(String, u64)>);

/// What the summary is made of.
pub struct Inputs<'a> {
    pub node: &'a str,
    pub started: Timestamp,
    /// The data dir: the node's filesystem, images and container root filesystems.
    pub data_dir: &'a Path,
    /// Container logs (/var/log/pods).
    pub log_dir: &'a Path,
    /// Bytes the images take.
    pub image_bytes: u64,
    /// The node's cumulative cpu time and its rate.
    pub node_cpu: (Option<u64>, Option<u64>),
    pub memory: Option<host::Memory>,
    pub pods: Vec<PodEntry<'a>>,
}

/// The Summary of the node and its pods.
pub fn build(i: Inputs<'_>) -> Summary {
    let now = rfc3339(Timestamp::now());
    let (maxpid, curproc) = host::rlimit();
    let node = NodeStats {
        node_name: i.node.to_string(),
        start_time: rfc3339(i.started),
        cpu: CpuStats {
            time: now.clone(),
            usage_nano_cores: i.node_cpu.1,
            usage_core_nano_seconds: i.node_cpu.0,
        },
        memory: MemoryStats {
            time: now.clone(),
            available_bytes: i.memory.map(|m| m.available),
            usage_bytes: i.memory.map(|m| m.usage),
            working_set_bytes: i.memory.map(|m| m.working_set),
        },
        fs: fs_of(i.data_dir, &now, None),
        runtime: RuntimeStats {
            image_fs: fs_of(i.data_dir, &now, Some(i.image_bytes)),
            container_fs: fs_of(i.data_dir, &now, Some(i.image_bytes)),
        },
        rlimit: RlimitStats {
            time: now.clone(),
            maxpid,
            curproc,
        },
    };
    let pods = i
        .pods
        .into_iter()
        .map(|(pod, stats, rates)| pod_summary(pod, stats, &rates, i.data_dir, i.log_dir, &now))
        .collect();
    Summary { node, pods }
}

fn pod_summary(
    pod: &Pod,
    stats: Vec<ContainerStats>,
    rates: &[(String, u64)],
    data_dir: &Path,
    log_dir: &Path,
    now: &str,
) -> PodSummary {
    let (namespace, name, uid) = (
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default(),
    );
    let pod_logs = log_dir.join(format!("{namespace}_{name}_{uid}"));
    let mut cpu = CpuStats {
        time: now.to_string(),
        usage_nano_cores: None,
        usage_core_nano_seconds: Some(0),
    };
    let mut memory = MemoryStats {
        time: now.to_string(),
        working_set_bytes: Some(0),
        usage_bytes: Some(0),
        ..Default::default()
    };
    let mut logs_total = 0;
    let containers = stats
        .into_iter()
        .map(|s| {
            let rate = rates.iter().find(|(c, _)| *c == s.name).map(|(_, r)| *r);
            if let Some(r) = rate {
                cpu.usage_nano_cores = Some(cpu.usage_nano_cores.unwrap_or(0) + r);
            }
            cpu.usage_core_nano_seconds = cpu
                .usage_core_nano_seconds
                .map(|n| n + s.cpu_usage_core_nanoseconds);
            memory.working_set_bytes = memory
                .working_set_bytes
                .map(|n| n + s.memory_working_set_bytes);
            memory.usage_bytes = memory.working_set_bytes;
            let logs = host::du(&pod_logs.join(&s.name));
            logs_total += logs;
            ContainerSummary {
                name: s.name.clone(),
                start_time: rfc3339(s.started),
                cpu: CpuStats {
                    time: rfc3339(s.timestamp),
                    usage_nano_cores: rate,
                    usage_core_nano_seconds: Some(s.cpu_usage_core_nanoseconds),
                },
                memory: MemoryStats {
                    time: rfc3339(s.timestamp),
                    usage_bytes: Some(s.memory_working_set_bytes),
                    working_set_bytes: Some(s.memory_working_set_bytes),
                    available_bytes: None,
                },
                // The writable layer's size is not measured yet.
                rootfs: FsStats {
                    used_bytes: None,
                    ..fs_of(data_dir, now, None)
                },
                logs: fs_of(log_dir, now, Some(logs)),
            }
        })
        .collect();
    let start_time = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| rfc3339(t.0))
        .unwrap_or_else(|| now.to_string());
    PodSummary {
        pod_ref: PodRef {
            name,
            namespace,
            uid,
        },
        start_time,
        containers,
        cpu,
        memory,
        ephemeral_storage: fs_of(data_dir, now, Some(logs_total)),
    }
}

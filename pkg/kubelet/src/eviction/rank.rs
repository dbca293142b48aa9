//! Which pod goes first, as kubelet's eviction manager ranks them: pods whose usage of
//! the starved resource exceeds their requests first, then lower priority first, then the
//! largest usage above requests first; and the message an evicted pod gets.
//!
//! Usage per resource: memory is the containers' working set; ephemeral-storage is the
//! pod's directory (emptyDir volumes), its containers' writable layers and its logs;
//! inodes the files of the same; pids the processes in the pod's cgroup.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

use super::signals::Met;

/// A pod's usage of the resource being reclaimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The pod's whole usage.
    pub total: u64,
    /// Each container's own usage (memory: its working set; ephemeral-storage: its
    /// writable layer and logs), where kubelet reports one.
    pub containers: Vec<(String, u64)>,
}

/// A pod's request of `resource` (its app containers' requests summed, or the largest
/// init container's when more).
pub fn request(pod: &Pod, resource: &str) -> u64 {
    let of = |c: &k8s_openapi::api::core::v1::Container| container_request(c, resource);
    let Some(spec) = pod.spec.as_ref() else {
        return 0;
    };
    let apps: u64 = spec.containers.iter().map(of).sum();
    let init = spec.init_containers.iter().flatten().map(of).max();
    apps.max(init.unwrap_or(0))
}

/// One container's request of `resource` in bytes (or count).
pub fn container_request(c: &k8s_openapi::api::core::v1::Container, resource: &str) -> u64 {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource))
        .and_then(|q| minik_api::quantity::parse(&q.0))
        .and_then(|milli| u64::try_from(milli / 1000).ok())
        .unwrap_or(0)
}

fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// Order `pods` (with their usage) for eviction of `resource`: the first goes first.
pub fn rank(pods: &mut [(Pod, Usage)], resource: &str) {
    let exceeds = |p: &Pod, u: &Usage| u.total > request(p, resource);
    let above = |p: &Pod, u: &Usage| i128::from(u.total) - i128::from(request(p, resource));
    pods.sort_by(|(a, ua), (b, ub)| {
        // Requests mean nothing for pids: kubelet ranks them by priority, then usage.
        let by_requests = if resource == "pids" {
            Ordering::Equal
        } else {
            exceeds(b, ub).cmp(&exceeds(a, ua))
        };
        by_requests
            .then(priority(a).cmp(&priority(b)))
            .then(above(b, ub).cmp(&above(a, ua)))
    });
}

/// A quantity as resource.Quantity prints a binary-SI one ("300Mi", "1234").
pub fn quantity(n: u64) -> String {
    minik_api::quantity::format(i128::from(n) * 1000, false)
}

/// kubelet's eviction message: "The node was low on resource: ephemeral-storage.
/// Threshold quantity: 1Gi, available: 512Mi. Container c was using 300Mi, request is 0,
/// has larger consumption of ephemeral-storage. "
pub fn message(met: &Met, pod: &Pod, usage: &Usage) -> String {
    let resource = met.signal.resource();
    let mut m = format!(
        "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
        quantity(met.threshold),
        quantity(met.available)
    );
    if resource == "memory" || resource == "ephemeral-storage" {
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            let Some((_, used)) = usage.containers.iter().find(|(n, _)| *n == c.name) else {
                continue;
            };
            let requested = container_request(c, resource);
            if *used > requested {
                m.push_str(&format!(
                    "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                    c.name,
                    quantity(*used),
                    quantity(requested)
                ));
            }
        }
    }
    m
}

/// Bytes and inodes under `dir` (nothing when it is not there; mounts of other
/// filesystems are counted as files of this one).
pub fn walk(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut inodes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            inodes += 1;
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => bytes += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    (bytes, inodes)
}

/// Processes in the cgroup `dir` and those below it.
pub fn processes(dir: &Path) -> u64 {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        n += procs.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        if let Ok(entries) = std::fs::read_dir(&d) {
            stack.extend(
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    n
}

/// Where a pod's disk usage is: its directory, its log directory, and each container's
/// writable layer and log directory.
pub struct DiskPaths {
    pub pod_dir: PathBuf,
    pub containers: Vec<(String, Vec<PathBuf>)>,
}

/// A pod's ephemeral-storage (bytes) or inodes usage.
pub fn disk_usage(paths: &DiskPaths, inodes: bool) -> Usage {
    let pick = |(b, i): (u64, u64)| if inodes { i } else { b };
    let containers: Vec<(String, u64)> = paths
        .containers
        .iter()
        .map(|(name, dirs)| (name.clone(), dirs.iter().map(|d| pick(walk(d))).sum()))
        .collect();
    let total = pick(walk(&paths.pod_dir)) + containers.iter().map(|(_, u)| u).sum::<u64>();
    Usage { total, containers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::signals::Signal;

    fn pod(name: &str, priority: i32, request: Option<&str>) -> Pod {
        let resources = request.map_or(
            serde_json::json!({}),
            |r| serde_json::json!({"requests": {"ephemeral-storage": r, "memory": r}}),
        );
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]}
        }))
        .unwrap()
    }

    fn usage(total: u64) -> Usage {
        Usage {
            total,
            containers: vec![("c".into(), total / 2)],
        }
    }

    #[test]
    fn pods_over_their_requests_go_first_then_low_priority_then_big_users() {
        let mut pods = vec![
            (pod("within", 0, Some("1Gi")), usage(100 << 20)),
            (pod("important", 1000, None), usage(500 << 20)),
            (pod("small", 0, None), usage(1 << 20)),
            (pod("hog", 0, None), usage(300 << 20)),
        ];
        rank(&mut pods, "ephemeral-storage");
        let names: Vec<_> = pods
            .iter()
            .map(|(p, _)| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["hog", "small", "important", "within"]);
    }

    #[test]
    fn the_message_is_kubelets() {
        let met = Met {
            signal: Signal::NodeFsAvailable,
            threshold: 1 << 30,
            available: 512 << 20,
        };
        let m = message(&met, &pod("hog", 0, None), &usage(600 << 20));
        assert_eq!(
            m,
            "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, \
             available: 512Mi. Container c was using 300Mi, request is 0, has larger \
             consumption of ephemeral-storage. "
        );
        assert_eq!(quantity(1234), "1234");
        assert_eq!(request(&pod("p", 0, Some("10Mi")), "memory"), 10 << 20);
    }

    #[test]
    fn disk_usage_counts_the_pod_dir_and_its_containers() {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pod");
        std::fs::create_dir_all(pod_dir.join("volumes/e")).unwrap();
        std::fs::write(pod_dir.join("volumes/e/f"), vec![0u8; 1000]).unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(upper.join("x"), vec![0u8; 10]).unwrap();
        let paths = DiskPaths {
            pod_dir,
            containers: vec![("c".into(), vec![upper, dir.path().join("missing")])],
        };
        let u = disk_usage(&paths, false);
        assert_eq!((u.total, u.containers[0].1), (1010, 10));
        assert_eq!(disk_usage(&paths, true).total, 4);
        assert_eq!(processes(dir.path()), 0);
    }
}

//! The eviction manager, as kubelet's: every 10 s it observes the eviction signals
//! (signals.rs); while a hard threshold is met it refuses new pods (`Admission`: under
//! MemoryPressure alone only BestEffort pods that do not tolerate it, under any other
//! pressure every pod; critical pods always run), and evicts one pod per round (evict.rs),
//! the first as rank.rs orders them, with grace period 0. Under disk pressure it first
//! reclaims node-level resources (dead containers, unused images: the node's `Gc`) and
//! evicts only if the threshold is still met. Static, mirror and system-critical pods are
//! never evicted.

pub mod evict;
pub mod rank;
pub mod signals;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use minik_controllers::Store;
use minik_controllers::events::Recorder;
use tokio_util::sync::CancellationToken;

use crate::kubelet_args::Eviction;
use crate::runtime::ContainerRuntime;
use rank::{DiskPaths, Usage};
use signals::{Met, Signal};

/// kubelet's eviction monitoring period.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Priorities from here up are system-critical (system-node-critical and
/// system-cluster-critical).
const CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// Whether kubelet treats `pod` as critical: static and mirror pods, and system-critical
/// priorities. Those are admitted under pressure and never evicted.
pub fn is_critical(pod: &Pod) -> bool {
    let a = pod.annotations();
    a.get(crate::local::static_pods::manifest::SOURCE)
        .is_some_and(|s| s != "api")
        || a.contains_key(crate::local::static_pods::MIRROR)
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.priority)
            .is_some_and(|p| p >= CRITICAL_PRIORITY)
}

/// kubelet's default evictionPressureTransitionPeriod: a pressure condition stays this
/// long after its threshold was last met.
pub const PRESSURE_TRANSITION: Duration = Duration::from_secs(300);

/// The node's pressure conditions, shared by the eviction manager (which observes them),
/// the node status (which reports them) and the pod workers (which ask before starting a
/// pod): each condition with when its threshold was last met.
#[derive(Clone, Default)]
pub struct Admission(Arc<RwLock<Vec<(&'static str, Instant)>>>);

impl Admission {
    /// The thresholds met now set these conditions.
    pub fn observed(&self, conditions: &[&'static str]) {
        let mut seen = self.0.write().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        seen.retain(|(c, at)| !conditions.contains(c) && at.elapsed() < PRESSURE_TRANSITION);
        seen.extend(conditions.iter().map(|c| (*c, now)));
    }

    /// The conditions in effect: met within the transition period.
    pub fn conditions(&self) -> Vec<&'static str> {
        let seen = self.0.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<&'static str> = seen
            .iter()
            .filter(|(_, at)| at.elapsed() < PRESSURE_TRANSITION)
            .map(|(c, _)| *c)
            .collect();
        out.sort_by_key(|c| signals::ALL.iter().position(|s| s.condition() == *c));
        out
    }

    /// Why the node refuses to start `pod` now (kubelet's "The node had condition:
    /// [DiskPressure]. "), or None.
    pub fn check(&self, pod: &Pod) -> Option<String> {
        let conditions = self.conditions();
        if conditions.is_empty() || is_critical(pod) {
            return None;
        }
        if conditions == ["MemoryPressure"] {
            let best_effort = crate::status::qos_class(pod) == "BestEffort";
            let tolerates = pod
                .spec
                .iter()
                .flat_map(|s| s.tolerations.iter().flatten())
                .any(|t| {
                    let key = t.key.as_deref().unwrap_or("");
                    let any_key = key.is_empty() && t.operator.as_deref() == Some("Exists");
                    (any_key || key == "node.kubernetes.io/memory-pressure")
                        && t.effect
                            .as_deref()
                            .is_none_or(|e| e.is_empty() || e == "NoSchedule")
                });
            if !best_effort || tolerates {
                return None;
            }
        }
        Some(format!(
            "The node had condition: [{}]. ",
            conditions.join(" ")
        ))
    }
}

/// The eviction manager of one node.
pub struct Manager<R> {
    pub runtime: Arc<R>,
    /// The node's pods (from the API).
    pub pods: Store<Pod>,
    pub thresholds: Eviction,
    pub data_dir: PathBuf,
    pub log_dir: PathBuf,
    /// The image store (imagefs).
    pub image_dir: PathBuf,
    /// Acts as the node.
    pub client: kube::Client,
    pub recorder: Recorder,
    pub admission: Admission,
    /// Node-level reclaim before evicting for disk (the container and image GC).
    pub gc: Option<Arc<crate::gc::Gc>>,
}

impl<R: ContainerRuntime> Manager<R> {
    /// Run a round every `INTERVAL` until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            self.round().await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(INTERVAL) => {}
            }
        }
    }

    async fn observe(&self) -> Vec<Met> {
        let (data, images) = (self.data_dir.clone(), self.image_dir.clone());
        let observed = tokio::task::spawn_blocking(move || signals::observe(&data, &images))
            .await
            .unwrap_or_default();
        signals::met(&self.thresholds, &observed)
    }

    /// One round: observe, update admission, reclaim or evict one pod.
    pub async fn round(&self) {
        let mut met = self.observe().await;
        self.admission.observed(&signals::conditions(&met));
        let Some(first) = met.first().copied() else {
            return;
        };
        tracing::info!(
            signal = first.signal.name(),
            available = first.available,
            threshold = first.threshold,
            "eviction threshold met"
        );
        if first.signal.is_disk()
            && let Some(gc) = &self.gc
        {
            gc.reclaim().await;
            met = self.observe().await;
            self.admission.observed(&signals::conditions(&met));
            if !met.iter().any(|m| m.signal == first.signal) {
                tracing::info!(
                    signal = first.signal.name(),
                    "node-level reclaim relieved the pressure"
                );
                return;
            }
        }
        let Some(first) = met.first().copied() else {
            return;
        };
        let candidates: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && !is_critical(p))
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter(|p| {
                self.runtime
                    .pod_state(&p.uid().unwrap_or_default())
                    .is_some()
            })
            .collect();
        let mut ranked = Vec::new();
        for pod in candidates {
            let usage = self.usage(&pod, first.signal).await;
            ranked.push(((*pod).clone(), usage));
        }
        rank::rank(&mut ranked, first.signal.resource());
        let Some((pod, usage)) = ranked.first() else {
            tracing::warn!(
                signal = first.signal.name(),
                "under pressure with no pod to evict"
            );
            return;
        };
        let message = rank::message(&first, pod, usage);
        let eviction = evict::Eviction {
            client: &self.client,
            recorder: &self.recorder,
            runtime: &*self.runtime,
            pods: &self.pods,
            data_dir: &self.data_dir,
        };
        let uid = pod.uid().unwrap_or_default();
        if let Err(e) = eviction.evict(pod, &uid, &message, Duration::ZERO).await {
            tracing::warn!(pod = pod.name_any(), error = %e, "evicting a pod");
        }
    }

    /// The pod's usage of what `signal` measures.
    async fn usage(&self, pod: &Pod, signal: Signal) -> Usage {
        let uid = pod.uid().unwrap_or_default();
        match signal.resource() {
            "memory" => {
                let stats = self.runtime.container_stats(&uid).unwrap_or_default();
                let containers: Vec<(String, u64)> = stats
                    .iter()
                    .map(|s| (s.name.clone(), s.memory_working_set_bytes))
                    .collect();
                Usage {
                    total: containers.iter().map(|(_, u)| u).sum(),
                    containers,
                }
            }
            "pids" => {
                let cgroups = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"];
                let dirs: Vec<PathBuf> = cgroups
                    .iter()
                    .map(|r| PathBuf::from(r).join("kubepods").join(format!("pod{uid}")))
                    .collect();
                let total = tokio::task::spawn_blocking(move || {
                    dirs.iter().map(|d| rank::processes(d)).max().unwrap_or(0)
                })
                .await
                .unwrap_or(0);
                Usage {
                    total,
                    containers: Vec::new(),
                }
            }
            resource => {
                let paths = self.disk_paths(pod, &uid);
                let inodes = resource == "inodes";
                tokio::task::spawn_blocking(move || rank::disk_usage(&paths, inodes))
                    .await
                    .unwrap_or(Usage {
                        total: 0,
                        containers: Vec::new(),
                    })
            }
        }
    }

    /// The pod's directory and, per container, its writable layer (the embedded runtime's
    /// `<data-dir>/agent/containers/containers/<id>/upper`) and log directory.
    fn disk_paths(&self, pod: &Pod, uid: &str) -> DiskPaths {
        let layout = crate::embedded::layout::Layout::new(&self.data_dir, &self.log_dir);
        let logs = layout.pod_logs(&pod.namespace().unwrap_or_default(), &pod.name_any(), uid);
        let state = self.runtime.pod_state(uid);
        let layers = self.data_dir.join("agent/containers/containers");
        let containers = state
            .iter()
            .flat_map(|s| s.init_containers.iter().chain(&s.containers))
            .map(|c| {
                let id = c.id.rsplit("://").next().unwrap_or_default();
                let mut dirs = vec![logs.join(&c.name)];
                if !id.is_empty() {
                    dirs.push(layers.join(id).join("upper"));
                }
                (c.name.clone(), dirs)
            })
            .collect();
        DiskPaths {
            pod_dir: layout.pod(uid),
            containers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(requests: bool, annotations: serde_json::Value) -> Pod {
        let resources = if requests {
            serde_json::json!({"requests": {"memory": "10Mi"}})
        } else {
            serde_json::json!({})
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "annotations": annotations},
            "spec": {"containers": [{"name": "c", "resources": resources}]}
        }))
        .unwrap()
    }

    #[test]
    fn admission_under_pressure_is_kubelets() {
        let a = Admission::default();
        let best_effort = pod(false, serde_json::json!({}));
        let burstable = pod(true, serde_json::json!({}));
        assert_eq!(a.check(&best_effort), None);
        a.observed(&["MemoryPressure"]);
        assert_eq!(
            a.check(&best_effort).as_deref(),
            Some("The node had condition: [MemoryPressure]. ")
        );
        assert_eq!(a.check(&burstable), None);
        // A condition stays for the transition period after its threshold is no longer met.
        a.observed(&["DiskPressure"]);
        a.observed(&[]);
        assert_eq!(a.conditions(), ["MemoryPressure", "DiskPressure"]);
        assert_eq!(
            a.check(&burstable).as_deref(),
            Some("The node had condition: [MemoryPressure DiskPressure]. ")
        );
        let mirror = pod(
            false,
            serde_json::json!({"kubernetes.io/config.mirror": "h"}),
        );
        assert!(is_critical(&mirror));
        assert_eq!(a.check(&mirror), None);
    }
}

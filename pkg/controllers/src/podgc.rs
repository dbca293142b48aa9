//! The pod garbage collector, every 20 seconds (and when a node goes):
//!
//! - terminated pods (Succeeded or Failed) over the threshold of 12500 are deleted, the
//!   oldest first;
//! - pods bound to a node that no longer exists are deleted once the node has been gone for
//!   the quarantine (40 s, checked against the API, not only the cache);
//! - pods being deleted that were never scheduled are deleted at once (no kubelet will).
//!
//! Pods not yet finished are first marked Failed with a DisruptionTarget condition;
//! deletions are forced (grace period 0).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::{Change, Ctx, Queue, Reconcile, Result, util};

pub const TERMINATED_THRESHOLD: usize = 12500;
const PERIOD: Duration = Duration::from_secs(20);
const QUARANTINE: Duration = Duration::from_secs(40);
const KEY: &str = "podgc";

pub struct Controller {
    ctx: Ctx,
    /// Nodes pods are bound to that were missing, and since when.
    missing: Mutex<HashMap<String, Instant>>,
}

pub fn start(ctx: &Ctx) -> Queue {
    let queue = Queue::new("pod_garbage_collector", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.nodes.on(move |_, change| {
        if change == Change::Deleted {
            q.add(KEY);
            q.add_after(KEY, QUARANTINE + Duration::from_millis(100));
        }
    });
    queue.add(KEY);
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        missing: Mutex::default(),
    });
    ctx.spawn_workers("pod_garbage_collector", &queue, 1, this);
    queue
}

/// The terminated pods to delete so that at most `threshold` remain, oldest first.
pub fn terminated_over(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut done: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| util::is_terminal(p) && p.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    if done.len() <= threshold {
        return Vec::new();
    }
    let n = done.len() - threshold;
    done.sort_by_key(|p| (p.creation_timestamp().map(|t| t.0), p.name_any()));
    done.truncate(n);
    done
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Pods being deleted that no node will ever finish.
pub fn unscheduled_terminating(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_of(p).is_none())
        .cloned()
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Controller {
    /// Mark a pod not yet finished Failed (DisruptionTarget), then delete it at once.
    async fn remove(&self, pod: &Pod, message: &str) -> Result<()> {
        let ns = pod.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let name = pod.name_any();
        if !util::is_terminal(pod) {
            let mut conditions = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            conditions.retain(|c| c.type_ != "DisruptionTarget");
            let mut status = json!({"phase": "Failed", "conditions": conditions});
            if let Some(list) = status["conditions"].as_array_mut() {
                list.push(json!({"type": "DisruptionTarget", "status": "True",
                    "reason": "DeletionByPodGC", "message": message,
                    "lastTransitionTime": k8s_openapi::jiff::Timestamp::now()}));
            }
            let patch = json!({"status": status});
            if let Err(e) = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!(pod = name, error = %e, "marking a pod failed");
            }
        }
        tracing::info!(
            namespace = ns,
            pod = name,
            reason = message,
            "garbage-collecting a pod"
        );
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Err(e) if util::code(&e) != Some(404) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Nodes that pods are bound to and that have been gone for the quarantine.
    async fn gone_nodes(&self, pods: &[Arc<Pod>]) -> Result<(HashSet<String>, bool)> {
        let nodes = self.ctx.informers.nodes.store();
        let known: HashSet<String> = nodes.state().iter().map(|n| n.name_any()).collect();
        let wanted: HashSet<String> = pods
            .iter()
            .filter_map(|p| node_of(p))
            .filter(|n| !known.contains(*n))
            .map(str::to_string)
            .collect();
        let now = Instant::now();
        let due: Vec<String> = {
            let mut missing = lock(&self.missing);
            missing.retain(|n, _| wanted.contains(n));
            for n in &wanted {
                missing.entry(n.clone()).or_insert(now);
            }
            missing
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= QUARANTINE)
                .map(|(n, _)| n.clone())
                .collect()
        };
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let mut gone = HashSet::new();
        for n in due {
            if api.get_opt(&n).await?.is_none() {
                gone.insert(n);
            } else {
                lock(&self.missing).remove(&n);
            }
        }
        let waiting = !lock(&self.missing).is_empty();
        Ok((gone, waiting))
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, _: String) -> Result<Option<Duration>> {
        let pods = self.ctx.informers.pods.store().state();
        for pod in terminated_over(&pods, TERMINATED_THRESHOLD) {
            self.remove(&pod, "PodGC: terminated pods over the threshold")
                .await?;
        }
        let (gone, waiting) = self.gone_nodes(&pods).await?;
        for pod in pods
            .iter()
            .filter(|p| node_of(p).is_some_and(|n| gone.contains(n)))
        {
            self.remove(pod, "PodGC: node no longer exists").await?;
        }
        for pod in unscheduled_terminating(&pods) {
            self.remove(&pod, "PodGC: unscheduled pod being deleted")
                .await?;
        }
        // Come back when a quarantine ends, or at the next period.
        Ok(Some(if waiting {
            QUARANTINE.min(PERIOD) / 4
        } else {
            PERIOD
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, created: &str, phase: &str, node: Option<&str>) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns",
                "creationTimestamp": created}, "spec": {"nodeName": node, "containers": []},
                "status": {"phase": phase}}))
            .unwrap(),
        )
    }

    #[test]
    fn the_oldest_terminated_pods_over_the_threshold_go() {
        let pods = vec![
            pod("new", "2030-01-03T00:00:00Z", "Succeeded", Some("n")),
            pod("old", "2030-01-01T00:00:00Z", "Failed", Some("n")),
            pod("mid", "2030-01-02T00:00:00Z", "Succeeded", Some("n")),
            pod("running", "2029-01-01T00:00:00Z", "Running", Some("n")),
        ];
        let names = |v: Vec<Arc<Pod>>| v.iter().map(|p| p.name_any()).collect::<Vec<_>>();
        assert_eq!(names(terminated_over(&pods, 1)), ["old", "mid"]);
        assert!(terminated_over(&pods, 3).is_empty());
    }

    #[test]
    fn only_unscheduled_terminating_pods_are_deleted_at_once() {
        let mut a = (*pod("a", "2030-01-01T00:00:00Z", "Pending", None)).clone();
        a.metadata.deletion_timestamp = a.metadata.creation_timestamp.clone();
        let mut b = (*pod("b", "2030-01-01T00:00:00Z", "Running", Some("n"))).clone();
        b.metadata.deletion_timestamp = b.metadata.creation_timestamp.clone();
        let c = pod("c", "2030-01-01T00:00:00Z", "Pending", None);
        let found = unscheduled_terminating(&[Arc::new(a), Arc::new(b), c]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name_any(), "a");
    }
}

//! Preemption: when no node fits a pod, find the node where evicting the fewest and
//! least important lower-priority pods makes it fit, evict them, and nominate the node.
//! The scheduler remembers the pods that preempted (their nominations) so that they wait
//! for their victims to go rather than preempt again.

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use minik_controllers::events::Kind;
use serde_json::json;

use crate::cache::{Cache, NodeState, PodInfo};
use crate::filters::{self, Prepared, Reason};
use crate::{FitError, Scheduler};

/// Pods that preempted: uid -> (nominated node, victims' uids).
pub(crate) type Nominations = HashMap<String, (String, Vec<String>)>;

/// A node and the pods to evict from it.
#[derive(Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<Pod>>,
}

/// Whether the pod may preempt at all.
pub fn allowed(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        != Some("Never")
}

/// Whether the pod already preempted (its status names a nominated node) and lower-priority
/// pods on that node are still terminating: it waits for them rather than preempt again, as
/// kube-scheduler does. The nomination is read from the pod, so it holds across restarts.
pub fn terminating_on_nominated(p: &Prepared, cache: &Cache) -> bool {
    let nominated = p
        .info
        .pod
        .status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref());
    nominated
        .and_then(|n| cache.nodes.get(n))
        .is_some_and(|state| {
            state.pods.values().any(|v| {
                v.priority < p.info.priority && v.pod.metadata.deletion_timestamp.is_some()
            })
        })
}

/// The best candidate among nodes that failed only for reasons eviction can fix.
pub fn find(p: &Prepared, cache: &Cache, failed: &[(String, Reason)]) -> Option<Candidate> {
    let priority = p.info.priority;
    let mut best: Option<(Candidate, (i32, i64, usize))> = None;
    for (name, reason) in failed {
        if !reason.preemptable() {
            continue;
        }
        let Some(state) = cache.nodes.get(name) else {
            continue;
        };
        let Some(victims) = victims_on(p, state, priority) else {
            continue;
        };
        if victims.is_empty() {
            continue;
        }
        let rank = (
            victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN),
            victims.iter().map(|v| i64::from(v.priority)).sum(),
            victims.len(),
        );
        if best.as_ref().is_none_or(|(_, r)| rank < *r) {
            best = Some((
                Candidate {
                    node: name.clone(),
                    victims: victims.into_iter().map(|v| v.pod).collect(),
                },
                rank,
            ));
        }
    }
    best.map(|(c, _)| c)
}

/// The fewest lower-priority pods whose removal lets the pod fit on `state`: remove them
/// all, then give back the most important while it still fits.
fn victims_on(p: &Prepared, state: &NodeState, priority: i32) -> Option<Vec<PodInfo>> {
    let mut trial = state.clone();
    let mut lower: Vec<PodInfo> = state
        .pods
        .values()
        .filter(|v| v.priority < priority && v.pod.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect();
    for v in &lower {
        trial.remove(&v.uid());
    }
    if filters::filter(p, &trial).is_err() {
        return None;
    }
    lower.sort_by_key(|v| std::cmp::Reverse(v.priority));
    let mut victims = Vec::new();
    for v in lower {
        trial.add(v.clone());
        if filters::filter(p, &trial).is_err() {
            trial.remove(&v.uid());
            victims.push(v);
        }
    }
    Some(victims)
}

/// "ns/name" of a pod.
pub fn name_of(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

impl Scheduler {
    /// Pods that preempted: uid -> (nominated node, victims' uids).
    pub(crate) fn nominations(&self) -> MutexGuard<'_, Nominations> {
        self.nominated.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Try preemption for a pod that fits nowhere; the FailedScheduling message.
    pub(crate) fn preempt(self: &Arc<Self>, p: &Prepared, cache: &Cache, fit: FitError) -> String {
        if !allowed(&p.info.pod) {
            return fit.message(Some("not eligible due to preemptionPolicy=Never."));
        }
        let uid = p.info.uid();
        let waiting = self.nominations().get(&uid).is_some_and(|(node, victims)| {
            victims
                .iter()
                .any(|v| cache.node_of(v) == Some(node.as_str()))
        });
        if waiting || terminating_on_nominated(p, cache) {
            // Its victims are still going: wait for them rather than preempt again.
            return fit.message(Some(
                "not eligible due to a terminating pod on the nominated node.",
            ));
        }
        let Some(candidate) = find(p, cache, &fit.failed) else {
            return fit.message(None);
        };
        self.metrics.0.preemptions.inc();
        tracing::info!(
            pod = name_of(&p.info.pod),
            node = candidate.node,
            victims = ?candidate.victims.iter().map(|v| name_of(v)).collect::<Vec<_>>(),
            "preempting"
        );
        let victims = candidate.victims.iter().filter_map(|v| v.uid()).collect();
        self.nominations()
            .insert(uid, (candidate.node.clone(), victims));
        let this = self.clone();
        let pod = p.info.pod.clone();
        let node = candidate.node.clone();
        tokio::spawn(async move { this.evict(pod, candidate).await });
        fit.message(Some(&format!(
            "0/{} nodes are available: 1 preempting pods on node {node}.",
            fit.total
        )))
    }

    async fn evict(&self, pod: Arc<Pod>, c: Candidate) {
        let uid = pod.uid().unwrap_or_default();
        for v in &c.victims {
            let api: Api<Pod> =
                Api::namespaced(self.client.clone(), &v.namespace().unwrap_or_default());
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: v.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api.delete(&v.name_any(), &params).await {
                Ok(_) => self.recorder.event(
                    v.as_ref(),
                    Kind::Normal,
                    "Preempted",
                    &format!("Preempted by pod {uid} on node {}", c.node),
                ),
                Err(e) => tracing::debug!(victim = name_of(v), error = %e, "preempting"),
            }
        }
        let api: Api<Pod> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let patch = json!({"status": {"nominatedNodeName": c.node}});
        let _ = api
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
    }
}

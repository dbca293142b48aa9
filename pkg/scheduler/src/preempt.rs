//! Preemption: when no node fits a pod, find the node where evicting the fewest and
//! least important lower-priority pods makes it fit, evict them, and nominate the node.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use crate::cache::{Cache, NodeState, PodInfo};
use crate::filters::{self, Prepared, Reason};

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

//! The node lifecycle controller: a node whose kubelet stops renewing its Lease (and
//! posting status) for the grace period gets its conditions set Unknown; nodes are tainted
//! by their conditions (not-ready, unreachable, memory/disk/pid pressure, unschedulable) with
//! NoSchedule, and NoExecute for not-ready/unreachable; pods on a NoExecute-tainted node
//! that do not tolerate it are evicted, at once or after their tolerationSeconds.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::events::{Kind, Recorder};
use crate::{Ctx, Queue, Reconcile, Result, util};

/// node-monitor-grace-period.
pub const GRACE: Duration = Duration::from_secs(40);
const MONITOR: Duration = Duration::from_secs(5);

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Taints this controller owns: condition -> key.
const BY_CONDITION: &[(&str, &str, &str)] = &[
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
];
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub struct Controller {
    ctx: Ctx,
    recorder: Recorder,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("nodelifecycle", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.nodes.on(move |n, _| q.add(n.name_any()));
    let q = queue.clone();
    ctx.informers.leases.on(move |l, _| q.add(l.name_any()));
    // Look at every node now and then: silence is what this controller reacts to.
    let (q, nodes, stop) = (queue.clone(), ctx.informers.nodes.clone(), ctx.stop.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(MONITOR) => {}
            }
            for n in nodes.store().state() {
                q.add(n.name_any());
            }
        }
    });
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "node-controller"),
    });
    ctx.spawn_workers("nodelifecycle", &queue, workers, this);
    queue
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The taints a node should carry by its conditions and spec.
pub fn wanted_taints(node: &Node) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("True") => {}
        Some("False") => {
            out.push((NOT_READY.to_string(), "NoSchedule"));
            out.push((NOT_READY.to_string(), "NoExecute"));
        }
        // Unknown, or no status yet.
        Some(_) => {
            out.push((UNREACHABLE.to_string(), "NoSchedule"));
            out.push((UNREACHABLE.to_string(), "NoExecute"));
        }
        None => out.push((NOT_READY.to_string(), "NoSchedule")),
    }
    for (cond, status, key) in BY_CONDITION {
        if condition(node, cond).is_some_and(|c| c.status == *status) {
            out.push((key.to_string(), "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push((UNSCHEDULABLE.to_string(), "NoSchedule"));
    }
    out
}

fn managed(key: &str) -> bool {
    key == NOT_READY
        || key == UNREACHABLE
        || key == UNSCHEDULABLE
        || BY_CONDITION.iter().any(|(_, _, k)| *k == key)
}

impl Controller {
    /// When the kubelet last showed life: its Lease renewal or Ready heartbeat.
    fn last_heartbeat(&self, node: &Node) -> Option<Timestamp> {
        let lease = self
            .ctx
            .informers
            .leases
            .store()
            .get(&ObjectRef::new(&node.name_any()).within("kube-node-lease"))
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
        let ready =
            condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
        lease.into_iter().chain(ready).max()
    }

    /// Conditions to Unknown when the kubelet went silent; whether they were changed.
    async fn mark_unknown(&self, node: &Node) -> Result<bool> {
        let Some(status) = &node.status else {
            return Ok(false);
        };
        let silent = self.last_heartbeat(node).is_some_and(|t| {
            t + SignedDuration::try_from(GRACE).unwrap_or_default() < Timestamp::now()
        });
        let ready = condition(node, "Ready");
        if !silent || ready.is_some_and(|c| c.status == "Unknown") {
            return Ok(false);
        }
        let now = Time(Timestamp::now());
        let conditions: Vec<NodeCondition> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| NodeCondition {
                status: "Unknown".into(),
                reason: Some("NodeStatusUnknown".into()),
                message: Some("Kubelet stopped posting node status.".into()),
                last_transition_time: Some(now.clone()),
                ..c.clone()
            })
            .collect();
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        api.patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"conditions": conditions}})),
        )
        .await?;
        self.recorder.event(
            node,
            Kind::Normal,
            "NodeNotReady",
            &format!("Node {} status is now: NodeNotReady", node.name_any()),
        );
        Ok(true)
    }

    /// Make the node's managed taints match its conditions; the taints it has now.
    async fn sync_taints(&self, node: &Node) -> Result<Vec<Taint>> {
        let have: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let want = wanted_taints(node);
        let mut next: Vec<Taint> = have
            .iter()
            .filter(|t| !managed(&t.key) || want.iter().any(|(k, e)| *k == t.key && *e == t.effect))
            .cloned()
            .collect();
        for (key, effect) in &want {
            if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
                next.push(Taint {
                    key: key.clone(),
                    effect: effect.to_string(),
                    value: None,
                    time_added: (*effect == "NoExecute").then(|| Time(Timestamp::now())),
                });
            }
        }
        if next != have {
            let api: Api<Node> = Api::all(self.ctx.client.clone());
            api.patch(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"taints": next}})),
            )
            .await?;
        }
        Ok(next)
    }

    /// Evict pods that do not tolerate the NoExecute taints; when to look again for those
    /// that tolerate them for a while.
    async fn evict(&self, node: &str, taints: &[Taint]) -> Result<Option<Duration>> {
        let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
        if no_execute.is_empty() {
            return Ok(None);
        }
        let mut next: Option<Duration> = None;
        let now = Timestamp::now();
        for pod in self.ctx.informers.pods.store().state() {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node)
                || pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            match eviction_time(&pod, &no_execute) {
                None => {}
                Some(at) if at <= now => {
                    let api: Api<Pod> = Api::namespaced(
                        self.ctx.client.clone(),
                        &pod.namespace().unwrap_or_default(),
                    );
                    match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                        Ok(_) => self.recorder.event(
                            pod.as_ref(),
                            Kind::Normal,
                            "TaintManagerEviction",
                            &format!(
                                "Marking for deletion Pod {}/{}",
                                pod.namespace().unwrap_or_default(),
                                pod.name_any()
                            ),
                        ),
                        Err(e) if util::code(&e) == Some(404) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(at) => {
                    let d = Duration::try_from(at - now).unwrap_or_default();
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
        }
        Ok(next)
    }
}

/// When a pod on a node with these NoExecute taints must go: None if it tolerates them
/// forever.
pub fn eviction_time(pod: &Pod, taints: &[&Taint]) -> Option<Timestamp> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut at: Option<Timestamp> = None;
    for taint in taints {
        let added = taint
            .time_added
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now);
        let matching: Vec<_> = tolerations
            .iter()
            .filter(|t| util::tolerates(t, taint))
            .collect();
        let when = if matching.is_empty() {
            Some(added)
        } else if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            None
        } else {
            let secs = matching
                .iter()
                .filter_map(|t| t.toleration_seconds)
                .min()
                .unwrap_or(0);
            Some(added + SignedDuration::from_secs(secs.max(0)))
        };
        if let Some(w) = when {
            at = Some(at.map_or(w, |a| a.min(w)));
        }
    }
    at
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some(node) = self.ctx.informers.nodes.store().get(&ObjectRef::new(&key)) else {
            return Ok(None);
        };
        if self.mark_unknown(&node).await? {
            // The status write comes back through the informer.
            return Ok(None);
        }
        let taints = self.sync_taints(&node).await?;
        self.evict(&key, &taints).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeStatus, PodSpec, Toleration};

    fn node(ready: &str) -> Node {
        Node {
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn taints_follow_readiness() {
        assert!(wanted_taints(&node("True")).is_empty());
        let t = wanted_taints(&node("Unknown"));
        assert!(t.contains(&(UNREACHABLE.to_string(), "NoExecute")));
        let t = wanted_taints(&node("False"));
        assert!(t.contains(&(NOT_READY.to_string(), "NoSchedule")));
    }

    #[test]
    fn pods_go_after_their_toleration_seconds() {
        let added = Timestamp::now();
        let taint = Taint {
            key: UNREACHABLE.into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(added)),
            value: None,
        };
        let pod = |tol: Option<i64>| Pod {
            spec: Some(PodSpec {
                tolerations: Some(vec![Toleration {
                    key: Some(UNREACHABLE.into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: tol,
                    value: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(eviction_time(&pod(None), &[&taint]), None);
        assert_eq!(
            eviction_time(&pod(Some(300)), &[&taint]),
            Some(added + SignedDuration::from_secs(300))
        );
        assert_eq!(eviction_time(&Pod::default(), &[&taint]), Some(added));
    }
}

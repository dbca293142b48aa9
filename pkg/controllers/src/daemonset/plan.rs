//! What a DaemonSet sync does, decided from the caches alone: which nodes need a pod and
//! which pods go (kube's `manage`), and which old pods a rolling update replaces now
//! (maxUnavailable without surge: delete old pods; with maxSurge: start new pods beside
//! old ones and delete the old once the new are available).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use super::nodes::{is_updated, should_run};
use crate::util;

/// Pods by the node they run on or are pinned to.
pub type ByNode = BTreeMap<String, Vec<Arc<Pod>>>;

/// Pods to create (on these nodes) and pods to delete (by name), and of those the failed
/// ones as (node, pod).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<String>,
    pub delete: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn scheduled(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty())
}

/// Scheduled pods first, then the oldest, then by name.
pub fn sort_pods(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        (
            !scheduled(p),
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.name_any(),
        )
    });
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let s = ds.spec.update_strategy.as_ref();
    if s.and_then(|s| s.type_.as_deref())
        .is_some_and(|t| t != "RollingUpdate")
    {
        return None;
    }
    s.and_then(|s| s.rolling_update.as_ref())
}

/// maxSurge and maxUnavailable of `desired` nodes (unavailability 1 when both are 0).
pub fn budgets(ds: &DaemonSet, desired: i32) -> (usize, usize) {
    let r = rolling(ds);
    let surge = r.map_or(0, |r| {
        util::scaled_value(r.max_surge.as_ref(), desired, "0", true)
    });
    let mut unavailable = r.map_or(0, |r| {
        util::scaled_value(r.max_unavailable.as_ref(), desired, "1", true)
    });
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let n = |v: i32| usize::try_from(v).unwrap_or(0);
    (n(surge), n(unavailable))
}

fn allows_surge(ds: &DaemonSet) -> bool {
    budgets(ds, 1).0 > 0
}

/// Kube's `manage`: a pod for each node that should run one and has none, failed pods
/// replaced, extra pods on a node pruned (with surge: an old ready pod beside a new one
/// stays until the new one is available), pods on nodes that should not run one deleted,
/// and unscheduled pods pinned to nodes that no longer exist deleted. A failed pod is left
/// alone while its node is `backing_off` (a kubelet rejecting the daemon again and again).
pub fn manage(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &ByNode,
    hash: &str,
    backing_off: &dyn Fn(&str) -> bool,
) -> Plan {
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let mut plan = Plan::default();
    for node in nodes {
        let name = node.name_any();
        let (run, keep) = should_run(ds, node);
        let pods = by_node.get(&name);
        match pods {
            None if run => plan.create.push(name),
            Some(pods) if keep => {
                let mut running: Vec<Arc<Pod>> = Vec::new();
                for p in pods
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                {
                    match phase(p) {
                        "Failed" if backing_off(&name) => {}
                        "Failed" => {
                            plan.delete.push(p.name_any());
                            plan.failed.push((name.clone(), p.name_any()));
                        }
                        "Succeeded" => plan.delete.push(p.name_any()),
                        _ => running.push(p.clone()),
                    }
                }
                sort_pods(&mut running);
                if !allows_surge(ds) {
                    plan.delete
                        .extend(running.iter().skip(1).map(|p| p.name_any()));
                    continue;
                }
                if running.is_empty() && run {
                    plan.create.push(name);
                    continue;
                }
                let (mut newest, mut oldest) = (None, None);
                for p in &running {
                    let slot = if is_updated(ds, p, hash) {
                        &mut newest
                    } else {
                        &mut oldest
                    };
                    if slot.is_none() {
                        *slot = Some(p.clone());
                    } else {
                        plan.delete.push(p.name_any());
                    }
                }
                if let (Some(new), Some(old)) = (newest, oldest)
                    && (!util::is_ready(&old) || util::available(&new, min_ready).is_ok())
                {
                    plan.delete.push(old.name_any());
                }
            }
            Some(pods) if !keep => plan.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| p.name_any()),
            ),
            _ => {}
        }
    }
    for (name, pods) in by_node {
        if !nodes.iter().any(|n| n.name_any() == *name) {
            plan.delete.extend(
                pods.iter()
                    .filter(|p| !scheduled(p) && p.metadata.deletion_timestamp.is_none())
                    .map(|p| p.name_any()),
            );
        }
    }
    plan
}

/// A node's pod of the current revision and its older one.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// The node's new and old pod (not being deleted); None when there are more of either.
fn new_and_old(ds: &DaemonSet, pods: &[Arc<Pod>], hash: &str) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for p in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(ds, p, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.replace(p.clone()).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// Kube's `rollingUpdate`: what to replace now.
pub fn rolling_update(ds: &DaemonSet, nodes: &[Arc<Node>], by_node: &ByNode, hash: &str) -> Plan {
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| util::available(p, min_ready).is_ok();
    let mut by_node = by_node.clone();
    let mut desired = 0;
    for node in nodes.iter().filter(|n| should_run(ds, n).0) {
        desired += 1;
        by_node.entry(node.name_any()).or_default();
    }
    let (max_surge, max_unavailable) = budgets(ds, desired);
    let node_runs = |name: &str| {
        nodes
            .iter()
            .any(|n| n.name_any() == name && should_run(ds, n).0)
    };
    let mut plan = Plan::default();
    if max_surge == 0 {
        let (mut unavailable, mut allowed, mut candidates) = (0, Vec::new(), Vec::new());
        for pods in by_node.values() {
            match new_and_old(ds, pods, hash) {
                None | Some((None, None) | (Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += usize::from(!available(&new)),
                Some((None, Some(old))) if !available(&old) => {
                    allowed.push(old.name_any());
                    unavailable += 1;
                }
                Some((None, Some(old))) if unavailable < max_unavailable => {
                    candidates.push(old.name_any())
                }
                Some(_) => {}
            }
        }
        let room = max_unavailable
            .saturating_sub(unavailable)
            .min(candidates.len());
        plan.delete = allowed;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }
    let (mut surged, mut up, mut candidates, mut sunset) = (0, 0, Vec::new(), Vec::new());
    for (name, pods) in &by_node {
        let Some((new, old)) = new_and_old(ds, pods, hash) else {
            surged += 1;
            continue;
        };
        if old.as_deref().or(new.as_deref()).is_some_and(available) {
            up += 1;
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) if !available(&old) => {
                if node_runs(name) {
                    plan.create.push(name.clone());
                } else {
                    plan.delete.push(old.name_any());
                }
            }
            (None, Some(old)) if !node_runs(name) => sunset.push(old.name_any()),
            (None, Some(_)) if surged < max_surge => candidates.push(name.clone()),
            (None, Some(_)) => {}
            (Some(new), Some(_)) if !available(&new) => surged += 1,
            (Some(_), Some(old)) => plan.delete.push(old.name_any()),
        }
    }
    // Pods on nodes that no longer want one go only while enough others are available.
    let deletable = usize::try_from(up - desired).unwrap_or(0).min(sunset.len());
    plan.delete.extend(sunset.into_iter().take(deletable));
    let room = max_surge.saturating_sub(surged).min(candidates.len());
    plan.create.extend(candidates.into_iter().take(room));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(strategy: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ns", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "updateStrategy": strategy,
                     "template": {"metadata": {"labels": {"app": "a"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}}}
        }))
        .unwrap()
    }

    fn nodes(n: usize) -> Vec<Arc<Node>> {
        (0..n)
            .map(|i| {
                Arc::new(
                    serde_json::from_value(json!({"metadata": {"name": format!("n{i}")}})).unwrap(),
                )
            })
            .collect()
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"controller-revision-hash": hash}},
                "spec": {"nodeName": node, "containers": []},
                "status": {"phase": "Running", "conditions":
                    [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
            }))
            .unwrap(),
        )
    }

    fn by_node(pods: &[Arc<Pod>]) -> ByNode {
        let mut m = ByNode::new();
        for p in pods {
            let node = p.spec.as_ref().unwrap().node_name.clone().unwrap();
            m.entry(node).or_default().push(p.clone());
        }
        m
    }

    #[test]
    fn each_node_gets_one_pod_and_extra_or_stray_pods_go() {
        let d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
        let pods = [
            pod("a", "n0", "h", true),
            pod("b", "n0", "h", true),
            pod("c", "gone", "h", true),
        ];
        let plan = manage(&d, &nodes(3), &by_node(&pods), "h", &|_| false);
        assert_eq!(plan.create, ["n1", "n2"]);
        assert_eq!(plan.delete, ["b"]);
        // A failed pod is replaced, unless its node is backing off.
        let mut failed = (*pod("f", "n1", "h", false)).clone();
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        let pods = [pod("a", "n0", "h", true), Arc::new(failed)];
        let plan = manage(&d, &nodes(2), &by_node(&pods), "h", &|_| false);
        assert_eq!(plan.failed, [("n1".to_string(), "f".to_string())]);
        let plan = manage(&d, &nodes(2), &by_node(&pods), "h", &|n| n == "n1");
        assert!(plan.is_empty());
    }

    #[test]
    fn without_surge_old_pods_are_deleted_within_max_unavailable() {
        let d = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
        let old: Vec<Arc<Pod>> = (0..3)
            .map(|i| pod(&format!("p{i}"), &format!("n{i}"), "old", true))
            .collect();
        let plan = rolling_update(&d, &nodes(3), &by_node(&old), "new");
        assert_eq!(plan.delete, ["p0"]);
        assert!(plan.create.is_empty());
        // A new pod not yet ready uses up the budget.
        let mut mid = old.clone();
        mid[0] = pod("q0", "n0", "new", false);
        assert!(rolling_update(&d, &nodes(3), &by_node(&mid), "new").is_empty());
    }

    #[test]
    fn with_surge_new_pods_start_beside_old_ones() {
        let d = ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        );
        let old: Vec<Arc<Pod>> = (0..2)
            .map(|i| pod(&format!("p{i}"), &format!("n{i}"), "old", true))
            .collect();
        let plan = rolling_update(&d, &nodes(2), &by_node(&old), "new");
        assert_eq!(plan.create, ["n0"]);
        assert!(plan.delete.is_empty());
        let mut surged = old.clone();
        surged.push(pod("q0", "n0", "new", true));
        let plan = rolling_update(&d, &nodes(2), &by_node(&surged), "new");
        assert_eq!(plan.delete, ["p0"]);
    }
}

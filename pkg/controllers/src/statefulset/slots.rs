//! A StatefulSet's pods in their ordinal slots, decided from the cache alone: which
//! ordinals are missing (and at which revision each comes back), which pods are condemned,
//! the status counts, and which pods a rolling update replaces now.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;

use super::identity::{self, in_range, ordinal, revision_of, start_ordinal};
use crate::util;

/// A replica slot: the pod there, or the one to create.
pub enum Slot {
    Live(Arc<Pod>),
    Missing(Box<Pod>),
}

impl Slot {
    fn pod(&self) -> &Pod {
        match self {
            Slot::Live(p) => p,
            Slot::Missing(p) => p,
        }
    }
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && util::is_ready(pod)
}

pub fn available(pod: &Pod, min_ready: i32) -> bool {
    running_and_ready(pod) && util::available(pod, min_ready).is_ok()
}

pub fn unavailable(pod: &Pod, min_ready: i32) -> bool {
    terminating(pod) || !available(pod, min_ready)
}

/// The set's pods in their slots (by ordinal), and the condemned ones out of range
/// (highest ordinal first).
pub fn partition(
    set: &StatefulSet,
    current_set: &StatefulSet,
    update_set: &StatefulSet,
    current: &str,
    update: &str,
    pods: &[Arc<Pod>],
) -> (Vec<Slot>, Vec<Arc<Pod>>) {
    let start = start_ordinal(set);
    let count = usize::try_from(identity::replicas(set)).unwrap_or(0);
    let mut slots: Vec<Option<Arc<Pod>>> = vec![None; count];
    let mut condemned = Vec::new();
    for pod in pods {
        let Some(ord) = ordinal(pod) else {
            continue;
        };
        if in_range(set, pod) {
            if let Some(slot) = usize::try_from(ord - start)
                .ok()
                .and_then(|i| slots.get_mut(i))
            {
                *slot = Some(pod.clone());
            }
        } else {
            condemned.push(pod.clone());
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    let partition = current_set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition);
    let on_delete = current_set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        == Some("OnDelete");
    let current_count = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let slots = slots
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            Some(p) => Slot::Live(p),
            None => {
                let ord = start + i32::try_from(i).unwrap_or(i32::MAX);
                // Below the partition (or, without one, among the current replicas) a
                // replacement keeps the current revision.
                let keep_current = !on_delete
                    && match partition {
                        Some(p) => ord < start + p,
                        None => ord < start + current_count,
                    };
                Slot::Missing(Box::new(if keep_current {
                    identity::new_pod(current_set, ord, current)
                } else {
                    identity::new_pod(update_set, ord, update)
                }))
            }
        })
        .collect();
    (slots, condemned)
}

/// The status counts of the pods in `slots` and `condemned`.
pub fn count(
    status: &mut StatefulSetStatus,
    slots: &[Slot],
    condemned: &[Arc<Pod>],
    min_ready: i32,
) {
    let (current, update) = (
        status.current_revision.clone().unwrap_or_default(),
        status.update_revision.clone().unwrap_or_default(),
    );
    let (mut replicas, mut ready, mut avail, mut cur, mut upd) = (0, 0, 0, 0, 0);
    let live = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Live(p) => Some(p.as_ref()),
            Slot::Missing(_) => None,
        })
        .chain(condemned.iter().map(|p| p.as_ref()));
    for pod in live.filter(|p| !phase(p).is_empty()) {
        replicas += 1;
        if running_and_ready(pod) {
            ready += 1;
            if available(pod, min_ready) {
                avail += 1;
            }
        }
        if !terminating(pod) {
            if revision_of(pod) == current {
                cur += 1;
            }
            if revision_of(pod) == update {
                upd += 1;
            }
        }
    }
    status.replicas = replicas;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(avail);
    status.current_replicas = Some(cur);
    status.updated_replicas = Some(upd);
}

/// The slots (highest ordinal first, at or above the partition) whose pods a rolling update
/// deletes now: not at `update`, not terminating, as many as maxUnavailable allows.
pub fn update_targets(set: &StatefulSet, slots: &[Slot], update: &str) -> Vec<usize> {
    let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
    let rolling = set
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    let partition = usize::try_from(rolling.and_then(|r| r.partition).unwrap_or(0)).unwrap_or(0);
    let max_unavailable = util::scaled_value(
        rolling.and_then(|r| r.max_unavailable.as_ref()),
        identity::replicas(set),
        "1",
        false,
    )
    .max(1);
    let unavailable = slots
        .iter()
        .filter(|s| unavailable(s.pod(), min_ready))
        .count();
    let room = usize::try_from(max_unavailable)
        .unwrap_or(1)
        .saturating_sub(unavailable);
    (partition..slots.len())
        .rev()
        .filter(|&i| {
            let p = slots[i].pod();
            revision_of(p) != update && !terminating(p)
        })
        .take(room)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::ResourceExt;
    use serde_json::json;

    fn set(replicas: i32, partition: i32, max_unavailable: i32) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate":
                    {"partition": partition, "maxUnavailable": max_unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}}
            }
        }))
        .unwrap()
    }

    fn pod(s: &StatefulSet, ordinal: i32, revision: &str, ready: bool) -> Arc<Pod> {
        let mut p = identity::new_pod(s, ordinal, revision);
        p.status = serde_json::from_value(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }))
        .unwrap();
        Arc::new(p)
    }

    #[test]
    fn pods_fill_their_slots_and_the_rest_are_condemned_highest_first() {
        let s = set(3, 0, 1);
        let pods = vec![
            pod(&s, 4, "r1", true),
            pod(&s, 0, "r1", true),
            pod(&s, 3, "r1", true),
        ];
        let (slots, condemned) = partition(&s, &s, &s, "r1", "r2", &pods);
        assert!(matches!(&slots[0], Slot::Live(p) if p.name_any() == "web-0"));
        assert!(
            matches!(&slots[1], Slot::Missing(p) if p.name_any() == "web-1"
            && revision_of(p) == "r2")
        );
        let names: Vec<String> = condemned.iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["web-4", "web-3"]);
        let mut status = StatefulSetStatus {
            current_revision: Some("r1".into()),
            update_revision: Some("r2".into()),
            ..Default::default()
        };
        count(&mut status, &slots, &condemned, 0);
        assert_eq!((status.replicas, status.ready_replicas), (3, Some(3)));
        assert_eq!(
            (status.current_replicas, status.updated_replicas),
            (Some(3), Some(0))
        );
    }

    #[test]
    fn below_the_partition_missing_pods_keep_the_current_revision() {
        let s = set(3, 2, 1);
        let (slots, _) = partition(&s, &s, &s, "old", "new", &[]);
        let revisions: Vec<&str> = slots.iter().map(|s| revision_of(s.pod())).collect();
        assert_eq!(revisions, ["old", "old", "new"]);
    }

    #[test]
    fn rolling_updates_go_from_the_highest_ordinal_within_max_unavailable() {
        let s = set(4, 1, 1);
        let all_old: Vec<Arc<Pod>> = (0..4).map(|i| pod(&s, i, "old", true)).collect();
        let (slots, _) = partition(&s, &s, &s, "old", "new", &all_old);
        assert_eq!(update_targets(&s, &slots, "new"), [3]);
        // One not ready: nothing more goes down.
        let mut waiting = all_old.clone();
        waiting[3] = pod(&s, 3, "new", false);
        let (slots, _) = partition(&s, &s, &s, "old", "new", &waiting);
        assert!(update_targets(&s, &slots, "new").is_empty());
        // maxUnavailable 2: two at a time, never below the partition.
        let s2 = set(4, 1, 2);
        let mut done = all_old.clone();
        done[3] = pod(&s2, 3, "new", true);
        let (slots, _) = partition(&s2, &s2, &s2, "old", "new", &done);
        assert_eq!(update_targets(&s2, &slots, "new"), [2, 1]);
    }
}

//! What the replica controller reports and which pods it deletes first.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::Value;

use super::kinds::Replicated;
use crate::util;

/// Pods to delete first sort first: unscheduled, then pending, then not ready, then the
/// most recently ready, then the newest.
pub fn deletion_rank(
    pod: &Pod,
) -> (
    bool,
    u8,
    bool,
    std::cmp::Reverse<i64>,
    std::cmp::Reverse<i64>,
) {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| !n.is_empty());
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => 2,
        Some("Pending") => 0,
        _ => 1,
    };
    let ready = util::ready_since(pod);
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .unwrap_or(0);
    (
        scheduled,
        phase,
        ready.is_some(),
        std::cmp::Reverse(ready.map(|t| t.as_second()).unwrap_or(0)),
        std::cmp::Reverse(created),
    )
}

/// The status (as `K` stores it, JSON) of an object controlling `pods`, and when next to
/// look (a pod becoming available after minReadySeconds). `failure`: why creating or
/// deleting pods failed (the ReplicaFailure condition).
pub fn status_of<K: Replicated>(
    obj: &K,
    pods: &[Arc<Pod>],
    failure: Option<String>,
) -> (Value, Option<Duration>) {
    let min_ready = obj.min_ready_seconds();
    let template_labels: BTreeMap<String, String> = obj
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| util::is_active(p)).collect();
    let mut next: Option<Duration> = None;
    let mut available = 0;
    for p in &active {
        match util::available(p, min_ready) {
            Ok(()) => available += 1,
            Err(Some(d)) => next = Some(next.map_or(d, |n| n.min(d))),
            Err(None) => {}
        }
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let old = obj.status_json();
    let status = ReplicaSetStatus {
        replicas: count(active.len()),
        fully_labeled_replicas: Some(count(
            active
                .iter()
                .filter(|p| {
                    template_labels
                        .iter()
                        .all(|(k, v)| p.labels().get(k) == Some(v))
                })
                .count(),
        )),
        ready_replicas: Some(count(active.iter().filter(|p| util::is_ready(p)).count())),
        available_replicas: Some(available),
        terminating_replicas: K::TERMINATING.then(|| {
            count(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_some() && !util::is_terminal(p))
                    .count(),
            )
        }),
        observed_generation: obj.meta().generation,
        conditions: failure.map(|msg| {
            let since = old
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|c| c.iter().find(|c| c["type"] == "ReplicaFailure"))
                .and_then(|c| serde_json::from_value::<Time>(c["lastTransitionTime"].clone()).ok());
            vec![ReplicaSetCondition {
                type_: Some("ReplicaFailure".into()),
                status: Some("True".into()),
                reason: Some("FailedCreate".into()),
                message: Some(msg),
                last_transition_time: Some(since.unwrap_or_else(util::now)),
            }]
        }),
    };
    let status = serde_json::to_value(&status).unwrap_or(Value::Null);
    (status, next.map(|d| d + Duration::from_millis(50)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        PodCondition, PodStatus, ReplicationController, ReplicationControllerSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(ready: bool, deleting: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                deletion_timestamp: deleting.then(util::now),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    #[test]
    fn a_replication_controller_counts_as_a_replica_set_without_terminating() {
        let rc = ReplicationController {
            metadata: ObjectMeta {
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec::default()),
            status: None,
        };
        let pods = [pod(true, false), pod(false, false), pod(true, true)];
        let (status, next) = status_of(&rc, &pods, None);
        assert_eq!(status["replicas"], 2);
        assert_eq!(status["readyReplicas"], 1);
        assert_eq!(status["availableReplicas"], 1);
        assert_eq!(status["observedGeneration"], 3);
        assert!(status.get("terminatingReplicas").is_none());
        assert!(next.is_none());
        let (status, _) = status_of(&rc, &pods, Some("quota".into()));
        assert_eq!(status["conditions"][0]["type"], "ReplicaFailure");
        assert_eq!(status["conditions"][0]["message"], "quota");
    }
}

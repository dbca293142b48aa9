//! A DaemonSet's status as kube counts it: per node that should run a daemon, whether one
//! is scheduled there and whether the oldest is ready, available and of the current
//! revision; daemons on nodes that should not run one are misscheduled.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::Controller;
use super::nodes::{is_updated, should_run};
use super::plan::{ByNode, sort_pods};
use crate::{Result, util};

/// The status of `ds` given its pods by node, and when a pod will become available.
pub fn compute(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &ByNode,
    hash: &str,
) -> (DaemonSetStatus, Option<Duration>) {
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let mut s = DaemonSetStatus::default();
    let (mut available, mut updated) = (0, 0);
    let mut next: Option<Duration> = None;
    for node in nodes {
        let mut pods = by_node.get(&node.name_any()).cloned().unwrap_or_default();
        if !should_run(ds, node).0 {
            s.number_misscheduled += i32::from(!pods.is_empty());
            continue;
        }
        s.desired_number_scheduled += 1;
        sort_pods(&mut pods);
        let Some(pod) = pods.first() else {
            continue;
        };
        s.current_number_scheduled += 1;
        if util::is_ready(pod) {
            s.number_ready += 1;
            match util::available(pod, min_ready) {
                Ok(()) => available += 1,
                Err(Some(d)) => next = Some(next.map_or(d, |n| n.min(d))),
                Err(None) => {}
            }
        }
        updated += i32::from(is_updated(ds, pod, hash));
    }
    s.number_available = Some(available);
    s.number_unavailable = Some(s.desired_number_scheduled - available);
    s.updated_number_scheduled = Some(updated);
    (s, next.map(|d| d + Duration::from_millis(50)))
}

impl Controller {
    /// Write the status (observing the generation when the sync went through); when to look
    /// again for a pod becoming available.
    pub(super) async fn write_status(
        &self,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        by_node: &ByNode,
        hash: &str,
        collisions: i32,
        observed: bool,
    ) -> Result<Option<Duration>> {
        let (mut status, next) = compute(ds, nodes, by_node, hash);
        let old = ds.status.clone().unwrap_or_default();
        status.observed_generation = if observed {
            ds.metadata.generation
        } else {
            old.observed_generation
        };
        status.collision_count = Some(collisions);
        status.conditions = old.conditions.clone();
        if old == status {
            return Ok(next);
        }
        let api: Api<DaemonSet> =
            Api::namespaced(self.ctx.client.clone(), &ds.namespace().unwrap_or_default());
        match api
            .patch_status(
                &ds.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(next),
            Err(e) if util::code(&e) == Some(404) => Ok(next),
            Err(e) => Err(e.into()),
        }
    }
}

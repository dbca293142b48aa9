//! One pass of kube's `updateStatefulSet`: make every ordinal in range exist (in order and
//! one Running and Ready at a time under OrderedReady, all at once under Parallel), remove
//! the ordinals out of range from the highest down, then roll pods past the partition to the
//! update revision from the highest ordinal, at most maxUnavailable at a time.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;

use super::Controller;
use super::identity;
use super::slots::{
    Slot, available, count, partition, phase, running_and_ready, terminating, unavailable,
    update_targets,
};
use crate::util;
use crate::{Error, Result};

/// The status one pass leaves the set in, and when to look again.
#[derive(Default)]
pub struct Outcome {
    pub status: StatefulSetStatus,
    pub requeue: Option<Duration>,
}

/// Where a monotonic pass stopped waiting, and why.
fn wait(pod: &Pod, what: &str) -> Result<bool> {
    tracing::debug!(pod = %pod.name_any(), "StatefulSet is waiting for Pod to {what}");
    Ok(true)
}

impl Controller {
    /// Bring one replica slot along; true when a monotonic pass must stop here.
    async fn process_replica(
        &self,
        set: &StatefulSet,
        update_set: &StatefulSet,
        slot: &Slot,
        monotonic: bool,
    ) -> Result<bool> {
        let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
        let pod = match slot {
            Slot::Missing(pod) => {
                if self.claims_stale(set, pod) {
                    return wait(pod, "have its stale claims deleted");
                }
                self.create_pod(set, pod).await?;
                return Ok(monotonic);
            }
            Slot::Live(pod) => pod.as_ref(),
        };
        if matches!(phase(pod), "Failed" | "Succeeded") {
            if !terminating(pod) {
                self.delete_pod(set, pod).await?;
            }
            return Ok(true);
        }
        if phase(pod) == "Pending" {
            self.create_claims(set, pod).await?;
        }
        if monotonic {
            if terminating(pod) {
                return wait(pod, "Terminate");
            }
            if !running_and_ready(pod) {
                return wait(pod, "be Running and Ready");
            }
            if !available(pod, min_ready) {
                return wait(pod, "be Available");
            }
        }
        if !(identity::identity_matches(set, pod)
            && identity::storage_matches(set, pod)
            && self.claims_match_policy(update_set, pod))
        {
            self.update_pod(update_set, pod).await?;
        }
        Ok(false)
    }

    /// Remove one condemned pod; true when a monotonic pass must stop here.
    async fn process_condemned(
        &self,
        set: &StatefulSet,
        pod: &Pod,
        first_unhealthy: Option<&str>,
        monotonic: bool,
    ) -> Result<bool> {
        let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
        if terminating(pod) {
            return if monotonic {
                wait(pod, "Terminate prior to scale down")
            } else {
                Ok(false)
            };
        }
        let first = first_unhealthy == Some(pod.name_any().as_str());
        if monotonic && !first && !available(pod, min_ready) {
            return wait(pod, "be Available prior to scale down");
        }
        self.delete_pod(set, pod).await?;
        Ok(monotonic)
    }

    /// One pass over the set's pods; the status it leaves them in.
    pub(super) async fn update_set(
        &self,
        set: &StatefulSet,
        current: &ControllerRevision,
        update: &ControllerRevision,
        collisions: i32,
        pods: &[Arc<Pod>],
    ) -> (Outcome, Result<()>) {
        let mut out = Outcome::default();
        out.status.observed_generation = set.metadata.generation;
        out.status.current_revision = Some(current.name_any());
        out.status.update_revision = Some(update.name_any());
        out.status.collision_count = Some(collisions);
        let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
        let (current_set, update_set) = match (
            crate::history::apply(set, current),
            crate::history::apply(set, update),
        ) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => return (out, Err(e)),
        };
        let (slots, condemned) = partition(
            set,
            &current_set,
            &update_set,
            &current.name_any(),
            &update.name_any(),
            pods,
        );
        out.requeue = pods
            .iter()
            .filter_map(|p| util::available(p, min_ready).err().flatten())
            .min()
            .map(|d| d + Duration::from_millis(50));
        let result = self
            .converge(set, &update_set, &slots, &condemned, &update.name_any())
            .await;
        count(&mut out.status, &slots, &condemned, min_ready);
        let result = result.map(|rolled| {
            let rolled = i32::try_from(rolled).unwrap_or(0);
            out.status.current_replicas = out.status.current_replicas.map(|c| c - rolled);
        });
        (out, result)
    }

    async fn converge(
        &self,
        set: &StatefulSet,
        update_set: &StatefulSet,
        slots: &[Slot],
        condemned: &[Arc<Pod>],
        update: &str,
    ) -> Result<usize> {
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(0);
        }
        let min_ready = set.spec.min_ready_seconds.unwrap_or(0);
        let monotonic = set.spec.pod_management_policy.as_deref() != Some("Parallel");
        let mut first_error: Option<Error> = None;
        for slot in slots {
            match self.process_replica(set, update_set, slot, monotonic).await {
                Ok(true) if monotonic => return Ok(0),
                Ok(_) => {}
                Err(e) if monotonic => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for pod in condemned {
            if !self.claims_match_policy(update_set, pod) {
                self.fix_claim_owners(update_set, pod).await?;
            }
        }
        let first_unhealthy = condemned
            .iter()
            .rev()
            .find(|p| unavailable(p, min_ready))
            .map(|p| p.name_any());
        for pod in condemned {
            if self
                .process_condemned(set, pod, first_unhealthy.as_deref(), monotonic)
                .await?
            {
                return Ok(0);
            }
        }
        let strategy = set
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref());
        if strategy == Some("OnDelete") {
            return Ok(0);
        }
        let mut rolled = 0;
        for i in update_targets(set, slots, update) {
            if let Slot::Live(pod) = &slots[i] {
                tracing::debug!(pod = %pod.name_any(), "StatefulSet terminating Pod for update");
                self.delete_pod(set, pod).await?;
                rolled += 1;
            }
        }
        Ok(rolled)
    }
}

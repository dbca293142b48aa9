//! A Deployment's status and its Available and Progressing conditions, as
//! `kubectl rollout status` reads them (ProgressDeadlineExceeded after
//! progressDeadlineSeconds without progress).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{Controller, Sets, replicas};
use crate::Result;

/// Whether the rollout is done: every replica updated and available, no old ones left.
pub fn complete(d: &Deployment) -> bool {
    let want = d.spec.replicas.unwrap_or(1);
    let Some(s) = &d.status else {
        return false;
    };
    s.updated_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.observed_generation >= d.metadata.generation
}

fn condition(
    old: Option<&DeploymentCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    touched: bool,
) -> DeploymentCondition {
    let now = Time(Timestamp::now());
    let same = old.is_some_and(|o| o.status.as_deref() == Some(status));
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: if same {
            old.and_then(|o| o.last_transition_time.clone())
        } else {
            Some(now.clone())
        },
        last_update_time: if touched
            || !same
            || old.is_some_and(|o| o.reason.as_deref() != Some(reason))
        {
            Some(now)
        } else {
            old.and_then(|o| o.last_update_time.clone())
        },
    }
}

impl Controller {
    /// Write the status; when the rollout is still going, look again at its deadline.
    pub(super) async fn update_status(
        &self,
        d: &Deployment,
        ns: &str,
        sets: &Sets,
        created: bool,
    ) -> Result<Option<Duration>> {
        let spec = d.spec.clone();
        let want = spec.replicas.unwrap_or(1);
        let sum = |f: &dyn Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32| -> i32 {
            sets.all().filter_map(|r| r.status.as_ref()).map(f).sum()
        };
        let replicas_now = sum(&|s| s.replicas);
        let available = sum(&|s| s.available_replicas.unwrap_or(0));
        let updated = sets
            .new
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .map_or(0, |s| s.replicas);
        let old = d.status.clone().unwrap_or_default();
        let mut status = DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: Some(replicas_now),
            updated_replicas: Some(updated),
            ready_replicas: Some(sum(&|s| s.ready_replicas.unwrap_or(0))),
            available_replicas: Some(available),
            unavailable_replicas: Some((want - available).max(0)),
            terminating_replicas: Some(sum(&|s| s.terminating_replicas.unwrap_or(0))),
            collision_count: old.collision_count,
            conditions: None,
        };
        let find = |t: &str| {
            old.conditions
                .iter()
                .flatten()
                .find(|c| c.type_.as_deref() == Some(t))
                .cloned()
        };
        let min = want - super::rollout::max_unavailable(d);
        let available_cond = if available >= min {
            condition(
                find("Available").as_ref(),
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                false,
            )
        } else {
            condition(
                find("Available").as_ref(),
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                false,
            )
        };
        let new_name = sets.new.as_ref().map(|r| r.name_any()).unwrap_or_default();
        let progress_old = find("Progressing");
        let moved = status.replicas != old.replicas
            || status.updated_replicas != old.updated_replicas
            || status.available_replicas != old.available_replicas
            || status.ready_replicas != old.ready_replicas;
        let mut probe = d.clone();
        probe.status = Some(status.clone());
        let done = complete(&probe) && sets.old.iter().all(|r| replicas(r) == 0);
        let deadline = spec.progress_deadline_seconds.unwrap_or(600);
        let mut next = None;
        let progressing = if spec.paused == Some(true) {
            condition(
                progress_old.as_ref(),
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
                false,
            )
        } else if created {
            condition(
                progress_old.as_ref(),
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set \"{new_name}\""),
                true,
            )
        } else if done {
            condition(
                progress_old.as_ref(),
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                false,
            )
        } else if moved
            || progress_old
                .as_ref()
                .is_none_or(|c| c.reason.as_deref() == Some("DeploymentPaused"))
        {
            condition(
                progress_old.as_ref(),
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                format!("ReplicaSet \"{new_name}\" is progressing."),
                true,
            )
        } else {
            let last = progress_old
                .as_ref()
                .and_then(|c| c.last_update_time.as_ref())
                .map(|t| t.0)
                .unwrap_or_else(Timestamp::now);
            let at = last + SignedDuration::from_secs(i64::from(deadline));
            if at <= Timestamp::now() {
                condition(
                    progress_old.as_ref(),
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                    false,
                )
            } else {
                next = Duration::try_from(at - Timestamp::now()).ok();
                progress_old.clone().unwrap_or_else(|| {
                    condition(
                        None,
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{new_name}\" is progressing."),
                        true,
                    )
                })
            }
        };
        if progressing.reason.as_deref() == Some("ReplicaSetUpdated") && next.is_none() {
            next = Some(Duration::from_secs(u64::try_from(deadline).unwrap_or(600)));
        }
        status.conditions = Some(vec![available_cond, progressing]);
        if same_status(&old, &status) {
            return Ok(next);
        }
        let api: Api<Deployment> = Api::namespaced(self.ctx.client.clone(), ns);
        match api
            .patch_status(
                &d.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(next),
            Err(e) if crate::util::code(&e) == Some(404) => Ok(next),
            Err(e) => Err(e.into()),
        }
    }
}

/// Equal but for the conditions' update times (which alone are no reason to write).
fn same_status(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let strip = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_update_time = None;
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

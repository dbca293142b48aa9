//! Stale disruption conditions: a pod marked `DisruptionTarget` (by an eviction, say) that
//! is still not being deleted two minutes later was not disrupted after all; its condition
//! is set back to False, as kube-controller-manager's disruption controller does.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::{Ctx, Queue, Reconcile, Result, util};

pub const DISRUPTION_TARGET: &str = "DisruptionTarget";
const TIMEOUT: Duration = Duration::from_secs(120);

fn condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == DISRUPTION_TARGET)
}

/// How long until the pod's DisruptionTarget condition is stale; None when it has none
/// that can go stale (none, not True, the kubelet's, a finished or terminating pod).
pub fn stale_in(pod: &Pod, now: Timestamp) -> Option<Duration> {
    if pod.metadata.deletion_timestamp.is_some() || util::is_terminal(pod) {
        return None;
    }
    let c = condition(pod)?;
    if c.status != "True" || c.reason.as_deref() == Some("TerminationByKubelet") {
        return None;
    }
    let since = c.last_transition_time.as_ref().map_or(now, |t| t.0);
    let at = since + SignedDuration::try_from(TIMEOUT).unwrap_or_default();
    Some(Duration::try_from(at - now).unwrap_or_default())
}

pub struct Cleaner {
    pub ctx: Ctx,
}

/// Watch pods for DisruptionTarget conditions; the queue stops with the controllers.
pub fn start(ctx: &Ctx, workers: usize) {
    let queue = Queue::new("disruption-stale-pods", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.pods.on(move |pod, _| {
        if let Some(wait) = stale_in(pod, Timestamp::now()) {
            q.add_after(util::key(pod), wait);
        }
    });
    let this = Arc::new(Cleaner { ctx: ctx.clone() });
    ctx.spawn_workers("disruption-stale-pods", &queue, workers, this);
    let stop = ctx.stop.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        queue.shut_down();
    });
}

impl Reconcile for Cleaner {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, pod)) = self.ctx.informers.pods.namespaced(&key) else {
            return Ok(None);
        };
        match stale_in(&pod, Timestamp::now()) {
            None => return Ok(None),
            Some(wait) if !wait.is_zero() => return Ok(Some(wait)),
            Some(_) => {}
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let patch = json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": {"conditions": [{"type": DISRUPTION_TARGET, "status": "False",
                "lastTransitionTime": util::now()}]},
        });
        let params = PatchParams::apply("kube-controller-manager");
        match api
            .patch_status(&pod.name_any(), &params, &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if matches!(util::code(&e), Some(404 | 409)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(reason: &str, since: Timestamp) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: DISRUPTION_TARGET.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    last_transition_time: Some(Time(since)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn eviction_marks_go_stale_after_two_minutes() {
        let now = Timestamp::now();
        let old = now - SignedDuration::from_secs(200);
        assert_eq!(
            stale_in(&pod("EvictionByEvictionAPI", old), now),
            Some(Duration::ZERO)
        );
        let recent = now - SignedDuration::from_secs(20);
        assert_eq!(
            stale_in(&pod("EvictionByEvictionAPI", recent), now),
            Some(Duration::from_secs(100))
        );
        assert_eq!(stale_in(&pod("TerminationByKubelet", old), now), None);
        assert_eq!(stale_in(&Pod::default(), now), None);
    }
}

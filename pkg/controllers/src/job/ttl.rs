//! The TTL-after-finished controller: a finished Job with ttlSecondsAfterFinished is deleted
//! that long after it finished (checked again against a fresh read before deleting), in the
//! foreground so that its pods go first.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};

use super::conditions as cond;
use crate::{Ctx, Queue, Reconcile, Result, util};

pub struct Controller {
    ctx: Ctx,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("ttl_jobs_to_delete", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.jobs.on(move |job, change| {
        if change == crate::Change::Applied && expires_at(job).is_some() {
            q.add(util::key(job));
        }
    });
    let this = Arc::new(Controller { ctx: ctx.clone() });
    ctx.spawn_workers("ttl_jobs_to_delete", &queue, workers, this);
    queue
}

/// When a finished Job with a TTL, not yet being deleted, expires.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let at = [cond::COMPLETE, cond::FAILED]
        .iter()
        .filter_map(|t| cond::find(job, t))
        .find(|c| c.status == "True")?
        .last_transition_time
        .as_ref()?
        .0;
    Some(at + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(ttl)))
}

fn left(at: Timestamp) -> Duration {
    Duration::try_from(at - Timestamp::now()).unwrap_or_default()
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, cached)) = self.ctx.informers.jobs.namespaced(&key) else {
            return Ok(None);
        };
        let Some(at) = expires_at(&cached) else {
            return Ok(None);
        };
        if !left(at).is_zero() {
            return Ok(Some(left(at)));
        }
        // The TTL may have changed since the cache saw it: read the Job again.
        let name = &cached.name_any();
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), ns);
        let Some(fresh) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let Some(at) = expires_at(&fresh) else {
            return Ok(None);
        };
        if !left(at).is_zero() {
            return Ok(Some(left(at)));
        }
        tracing::debug!(
            job = key,
            "deleting a finished job past its ttlSecondsAfterFinished"
        );
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Foreground),
            preconditions: Some(Preconditions {
                uid: fresh.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(None),
            Err(e) if matches!(util::code(&e), Some(404 | 409)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

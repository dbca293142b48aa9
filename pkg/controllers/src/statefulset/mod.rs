//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`, hostnames and
//! claims from the volumeClaimTemplates, created in order (OrderedReady) or all at once
//! (Parallel), updated by revision (RollingUpdate with partition and maxUnavailable, or
//! OnDelete) with the revisions kept as ControllerRevisions for `kubectl rollout
//! history|undo`, and the status `kubectl rollout status` reads.

mod control;
mod identity;
mod slots;
mod sync;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::events::Recorder;
use crate::history::{self, HASH_LABEL};
use crate::util;
use crate::{Change, Ctx, Queue, Reconcile, Result};

pub struct Controller {
    ctx: Ctx,
    recorder: Recorder,
}

fn selector(o: &StatefulSet) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
    &o.spec.selector
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("statefulset", ctx.metrics.clone());
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "statefulset-controller"),
    });
    let q = queue.clone();
    ctx.informers
        .statefulsets
        .on(move |s, _| q.add(util::key(s)));
    let (q, sets) = (queue.clone(), ctx.informers.statefulsets.clone());
    ctx.informers.pods.on(move |pod, _| {
        util::queue_owners(&q, &sets, pod, "StatefulSet", selector);
    });
    let (q, sets) = (queue.clone(), ctx.informers.statefulsets.clone());
    ctx.informers.revisions.on(move |r, _| {
        util::queue_owners(&q, &sets, r, "StatefulSet", selector);
    });
    // A pod waiting for a stale claim to go goes on when it is gone.
    let (q, sets) = (queue.clone(), ctx.informers.statefulsets.clone());
    ctx.informers.pvcs.on(move |claim, change| {
        if change == Change::Deleted {
            let ns = claim.namespace().unwrap_or_default();
            util::queue_selecting(&q, &sets, &ns, claim.labels(), selector);
        }
    });
    ctx.spawn_workers("statefulset", &queue, workers, this);
    queue
}

impl Controller {
    /// The current and update revisions (creating or renumbering the update revision when
    /// the template changed), and the collision count.
    async fn revisions(
        &self,
        set: &StatefulSet,
        sorted: &[Arc<ControllerRevision>],
    ) -> Result<(ControllerRevision, ControllerRevision, i32)> {
        let mut collisions = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let data = history::template_patch(set);
        let next = history::next_number(sorted);
        let equal = sorted.iter().rev().find(|r| r.data.0 == data);
        let update = match equal {
            Some(r) if sorted.last().is_some_and(|l| Arc::ptr_eq(l, r)) => (**r).clone(),
            Some(r) => history::renumber(&self.ctx, r, next).await?,
            None => {
                let mut rev = history::new_revision(
                    set,
                    set.spec
                        .template
                        .metadata
                        .as_ref()
                        .and_then(|m| m.labels.as_ref()),
                    data.clone(),
                    next,
                );
                rev.metadata.annotations = Some(set.annotations().clone());
                let hash_of = |c: i32| history::hash(&data, Some(c));
                history::create(
                    &self.ctx,
                    &set.name_any(),
                    &rev,
                    &mut collisions,
                    hash_of,
                    HASH_LABEL,
                )
                .await?
            }
        };
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref());
        let current = sorted
            .iter()
            .find(|r| Some(r.name_any().as_str()) == current_name)
            .map(|r| (**r).clone())
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collisions))
    }

    /// Write the status unless it is what the set has; a finished rolling update makes the
    /// update revision current.
    async fn write_status(&self, set: &StatefulSet, mut status: StatefulSetStatus) -> Result<()> {
        let want = identity::replicas(set);
        let rolling = set
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .is_none_or(|t| t == "RollingUpdate");
        if rolling
            && status.updated_replicas == Some(want)
            && status.ready_replicas == Some(want)
            && status.replicas == want
        {
            status.current_replicas = status.updated_replicas;
            status.current_revision = status.update_revision.clone();
        }
        let mut old = set.status.clone().unwrap_or_default();
        old.conditions = None;
        if old == status {
            return Ok(());
        }
        let api: Api<StatefulSet> = Api::namespaced(
            self.ctx.client.clone(),
            &set.namespace().unwrap_or_default(),
        );
        match api
            .patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, set)) = self.ctx.informers.statefulsets.namespaced(&key) else {
            return Ok(None);
        };
        let revisions = history::claim(&self.ctx, set.as_ref(), &set.spec.selector).await?;
        let pods_api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
        let candidates = self.ctx.informers.pods.store().state();
        let member = |p: &Pod| identity::is_member(&set, p);
        let pods = util::claim(
            &pods_api,
            set.as_ref(),
            &set.spec.selector,
            member,
            candidates,
        )
        .await?;
        let (current, update, collisions) = self.revisions(&set, &revisions).await?;
        let (outcome, result) = self
            .update_set(&set, &current, &update, collisions, &pods)
            .await;
        self.write_status(&set, outcome.status).await?;
        result?;
        let mut live: HashSet<String> = pods
            .iter()
            .map(|p| identity::revision_of(p).to_string())
            .collect();
        live.insert(current.name_any());
        live.insert(update.name_any());
        let limit = set.spec.revision_history_limit.unwrap_or(10);
        history::truncate(&self.ctx, &revisions, &live, limit).await?;
        Ok(outcome.requeue)
    }
}

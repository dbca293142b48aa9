//! The Job controller (kube-controller-manager's): pods toward completions with parallelism
//! (NonIndexed or Indexed), every finished pod counted exactly once through the
//! `batch.kubernetes.io/job-tracking` finalizer and status.uncountedTerminatedPods,
//! backoffLimit with exponential back-off, podFailurePolicy, successPolicy,
//! activeDeadlineSeconds, suspend, and the interim FailureTarget/SuccessCriteriaMet conditions
//! before Failed/Complete once no pod is left running. The TTL-after-finished controller is in
//! `ttl`.

mod conditions;
mod indexes;
mod manage;
mod pods;
mod sync;
mod track;
pub mod ttl;
pub mod writes;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::events::Recorder;
use crate::expectations::Expectations;
use crate::util::{self, controller_of};
use crate::{Change, Ctx, Queue, Reconcile, Result};

pub struct Controller {
    ctx: Ctx,
    queue: Queue,
    orphans: Queue,
    expectations: Expectations,
    /// Per Job key: pods whose tracking finalizer was removed, until the cache shows it.
    removed_finalizers: Mutex<HashMap<String, HashSet<String>>>,
    backoffs: conditions::Backoffs,
    writes: writes::OwnWrites,
    recorder: Recorder,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("job", ctx.metrics.clone());
    let orphans = Queue::new("job_orphan_pod", ctx.metrics.clone());
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        queue: queue.clone(),
        orphans: orphans.clone(),
        expectations: Expectations::default(),
        removed_finalizers: Mutex::default(),
        backoffs: conditions::Backoffs::default(),
        writes: writes::OwnWrites::default(),
        recorder: Recorder::new(ctx.client.clone(), "job-controller"),
    });
    let me = this.clone();
    ctx.informers
        .jobs
        .on(move |job, change| me.job_changed(job, change));
    let me = this.clone();
    ctx.informers.pods.on(move |pod, _| me.pod_changed(pod));
    ctx.spawn_workers("job", &queue, workers, this.clone());
    let cleaner = Arc::new(OrphanCleaner(this));
    ctx.spawn_workers("job_orphan_pod", &orphans, 1, cleaner);
    let stop = ctx.stop.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        orphans.shut_down();
    });
    queue
}

impl Controller {
    fn job_changed(&self, job: &Job, change: Change) {
        let key = util::key(job);
        if change == Change::Deleted || conditions::is_finished(job) {
            // Its pods keep no tracking finalizer once it is finished or gone.
            for pod in self.pods_of(job) {
                if pods::has_finalizer(&pod) {
                    self.orphans.add(util::key(pod.as_ref()));
                }
            }
        }
        if change == Change::Deleted {
            self.expectations.forget(&key);
            self.backoffs.forget(&key);
            self.writes.forget(&key);
            self.finalizers_removed().remove(&key);
        }
        self.queue.add(key);
    }

    fn pod_changed(&self, pod: &Pod) {
        let ns = pod.namespace().unwrap_or_default();
        let owner = controller_of(pod).filter(|o| o.kind == "Job" && o.api_version == "batch/v1");
        let job = owner.and_then(|o| {
            let job = self
                .ctx
                .informers
                .jobs
                .store()
                .get(&ObjectRef::new(&o.name).within(&ns))?;
            (job.uid().as_deref() == Some(o.uid.as_str())).then_some(job)
        });
        match job {
            Some(job) => {
                if pods::has_finalizer(pod) && conditions::is_finished(&job) {
                    self.orphans.add(util::key(pod));
                }
                self.queue.add(util::key(job.as_ref()));
            }
            None if pods::has_finalizer(pod) => self.orphans.add(util::key(pod)),
            None => {}
        }
    }

    /// The pods `job` controls, from the cache.
    fn pods_of(&self, job: &Job) -> Vec<Arc<Pod>> {
        let (ns, uid) = (job.namespace(), job.uid());
        self.ctx
            .informers
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| {
                p.namespace() == ns
                    && controller_of(p.as_ref()).is_some_and(|o| Some(&o.uid) == uid.as_ref())
            })
            .collect()
    }

    fn finalizers_removed(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.removed_finalizers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Pods whose finalizer this controller removed but the cache still shows.
    fn expected_removals(&self, key: &str, pods: &[Arc<Pod>]) -> HashSet<String> {
        let mut map = self.finalizers_removed();
        let Some(set) = map.get_mut(key) else {
            return HashSet::new();
        };
        set.retain(|uid| {
            pods.iter()
                .any(|p| p.uid().as_deref() == Some(uid.as_str()) && pods::has_finalizer(p))
        });
        set.clone()
    }

    /// Remove the tracking finalizer from `pod`; Ok(true) once it is gone (or the pod is).
    async fn remove_finalizer(&self, key: Option<&str>, pod: &Pod) -> Result<bool> {
        let api: Api<Pod> = Api::namespaced(
            self.ctx.client.clone(),
            &pod.namespace().unwrap_or_default(),
        );
        let patch = json!({"metadata": {
            "$deleteFromPrimitiveList/finalizers": [pods::TRACKING_FINALIZER],
        }});
        let patch: Patch<serde_json::Value> = Patch::Strategic(patch);
        match api
            .patch(&pod.name_any(), &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {}
            Err(e) if util::code(&e) == Some(404) => {}
            Err(e) => return Err(e.into()),
        }
        if let (Some(key), Some(uid)) = (key, pod.uid()) {
            self.finalizers_removed()
                .entry(key.to_string())
                .or_default()
                .insert(uid);
        }
        Ok(true)
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((_, job)) = self.ctx.informers.jobs.namespaced(&key) else {
            self.expectations.forget(&key);
            self.backoffs.forget(&key);
            return Ok(None);
        };
        if !self
            .writes
            .caught_up(&key, job.resource_version().as_deref())
        {
            // Its watch event brings it back.
            return Ok(Some(Duration::from_secs(1)));
        }
        if conditions::is_finished(&job) {
            self.backoffs.forget(&key);
            return Ok(None);
        }
        self.sync(&key, &job).await
    }
}

/// Removes the tracking finalizer from pods whose Job is finished or gone.
struct OrphanCleaner(Arc<Controller>);

impl Reconcile for OrphanCleaner {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let c = &self.0;
        let Some((ns, pod)) = c.ctx.informers.pods.namespaced(&key) else {
            return Ok(None);
        };
        if !pods::has_finalizer(&pod) {
            return Ok(None);
        }
        if let Some(o) = controller_of(pod.as_ref()) {
            let job = c
                .ctx
                .informers
                .jobs
                .store()
                .get(&ObjectRef::new(&o.name).within(ns));
            if job.is_some_and(|j| {
                j.uid().as_deref() == Some(o.uid.as_str()) && !conditions::is_finished(&j)
            }) {
                return Ok(None);
            }
        }
        tracing::debug!(
            pod = key,
            "removing the job tracking finalizer of an orphan pod"
        );
        c.remove_finalizer(None, &pod).await?;
        Ok(None)
    }
}

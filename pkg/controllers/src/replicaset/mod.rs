//! The ReplicaSet and ReplicationController controllers (one implementation over both
//! kinds, as kube-controller-manager runs the ReplicationController through the ReplicaSet
//! logic): keep `replicas` active pods matching the selector, adopt orphans that match,
//! release pods that stopped matching, and report status.

mod kinds;
mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::events::{Kind, Recorder};
use crate::expectations::Expectations;
use crate::util::{self, controller_of};
use crate::{Change, Ctx, Queue, Reconcile, Result};

pub use kinds::Replicated;
pub use status::{deletion_rank, status_of};

/// At most this many pods created or deleted per sync (kube-controller-manager's burst).
const BURST: usize = 500;

pub struct Controller<K> {
    ctx: Ctx,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
    kind: std::marker::PhantomData<fn() -> K>,
}

/// The ReplicaSet controller.
pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    start_for::<ReplicaSet>(ctx, workers)
}

/// The ReplicationController controller.
pub fn start_rc(ctx: &Ctx, workers: usize) -> Queue {
    start_for::<ReplicationController>(ctx, workers)
}

fn start_for<K: Replicated>(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new(K::CONTROLLER, ctx.metrics.clone());
    let this = Arc::new(Controller::<K> {
        ctx: ctx.clone(),
        queue: queue.clone(),
        expectations: Expectations::default(),
        recorder: Recorder::new(ctx.client.clone(), K::COMPONENT),
        kind: std::marker::PhantomData,
    });
    let q = queue.clone();
    K::informer(&ctx.informers).on(move |obj, _| q.add(util::key(obj)));
    let me = this.clone();
    ctx.informers
        .pods
        .on(move |pod, change| me.pod_changed(pod, change));
    ctx.spawn_workers(K::CONTROLLER, &queue, workers, this);
    queue
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

impl<K: Replicated> Controller<K> {
    /// Queue the pod's controller, or for an orphan every object of this kind that may
    /// adopt it.
    fn pod_changed(&self, pod: &Pod, _: Change) {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(owner) = controller_of(pod) {
            if owner.kind == K::kind(&()) {
                self.queue.add(format!("{ns}/{}", owner.name));
            }
            return;
        }
        for obj in K::informer(&self.ctx.informers).store().state() {
            if obj.namespace().as_deref() == Some(ns.as_str())
                && util::matches(&obj.selector(), pod.labels())
            {
                self.queue.add(util::key(obj.as_ref()));
            }
        }
    }

    fn pods_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// Create `n` pods in slow-start batches (1, 2, 4, ...), stopping at the first failure.
    async fn create(&self, obj: &K, key: &str, ns: &str, n: usize) -> Result<()> {
        let Some(template) = obj.template() else {
            return Ok(());
        };
        let api = self.pods_api(ns);
        let mut left = n;
        let mut batch = 1;
        while left > 0 {
            let size = batch.min(left);
            let creates = (0..size).map(|_| {
                let pod = util::pod_from_template(template, obj, &obj.name_any(), None);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            });
            let mut failed = None;
            for r in futures::future::join_all(creates).await {
                match r {
                    Ok(pod) => {
                        self.expectations
                            .created(key, pod.uid().unwrap_or_default());
                        self.recorder.event(
                            obj,
                            Kind::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", pod.name_any()),
                        );
                    }
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                self.recorder.event(
                    obj,
                    Kind::Warning,
                    "FailedCreate",
                    &format!("Error creating: {}", message(&e)),
                );
                return Err(crate::Error::Other(message(&e)));
            }
            left -= size;
            batch *= 2;
        }
        Ok(())
    }

    /// Delete `n` of `pods`, the least useful first.
    async fn delete(
        &self,
        obj: &K,
        key: &str,
        ns: &str,
        pods: &[Arc<Pod>],
        n: usize,
    ) -> Result<()> {
        let mut ranked: Vec<&Arc<Pod>> = pods.iter().collect();
        ranked.sort_by_key(|p| deletion_rank(p));
        let api = self.pods_api(ns);
        let doomed = &ranked[..n.min(ranked.len())];
        let deletes = doomed.iter().map(|p| {
            let api = api.clone();
            let name = p.name_any();
            async move {
                let r = api.delete(&name, &DeleteParams::default()).await;
                (name, r)
            }
        });
        for (pod, (name, r)) in doomed.iter().zip(futures::future::join_all(deletes).await) {
            match r {
                Ok(_) => {
                    self.expectations
                        .deleted(key, pod.uid().unwrap_or_default());
                    self.recorder.event(
                        obj,
                        Kind::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    );
                }
                Err(e) if util::code(&e) == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Write the status when it changed.
    async fn write_status(&self, obj: &K, ns: &str, mut status: Value) -> Result<()> {
        if !K::TERMINATING
            && let Some(m) = status.as_object_mut()
        {
            m.remove("terminatingReplicas");
        }
        if obj.status_json() == status {
            return Ok(());
        }
        if status.get("conditions").is_none() {
            status["conditions"] = Value::Null;
        }
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), ns);
        let patch = json!({ "status": status });
        match api
            .patch_status(
                &obj.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl<K: Replicated> Reconcile for Controller<K> {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, obj)) = K::informer(&self.ctx.informers).namespaced(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        let store = self.ctx.informers.pods.store();
        let ready = self.expectations.satisfied(&key, |uid| {
            store
                .state()
                .iter()
                .find(|p| p.uid().as_deref() == Some(uid))
                .map(|p| p.metadata.deletion_timestamp.is_none())
        });
        let selector = obj.selector();
        let pods = util::claim(
            &self.pods_api(ns),
            obj.as_ref(),
            &selector,
            |_| true,
            store.state(),
        )
        .await?;
        let active: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| util::is_active(p))
            .cloned()
            .collect();
        let want = usize::try_from(obj.replicas().max(0)).unwrap_or(0);
        let mut failure = None;
        if ready && obj.meta().deletion_timestamp.is_none() {
            let result = if active.len() < want {
                let n = (want - active.len()).min(BURST);
                self.create(&obj, &key, ns, n).await
            } else if active.len() > want {
                let n = (active.len() - want).min(BURST);
                self.delete(&obj, &key, ns, &active, n).await
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::debug!(key, error = %e, "syncing replicas");
                failure = Some(e.to_string());
            }
        }
        let failed = failure.is_some();
        let (status, next) = status_of(obj.as_ref(), &pods, failure);
        self.write_status(&obj, ns, status).await?;
        if failed {
            return Err(crate::Error::Other("creating pods failed".into()));
        }
        Ok(if ready {
            next
        } else {
            Some(Duration::from_secs(1))
        })
    }
}

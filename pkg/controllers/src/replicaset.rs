//! The ReplicaSet controller: keep `spec.replicas` active pods matching the selector, adopt
//! orphans that match, release pods that stopped matching, and report status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::events::{Kind, Recorder};
use crate::expectations::Expectations;
use crate::util::{self, controller_of, controller_ref};
use crate::{Change, Ctx, Queue, Reconcile, Result};

/// At most this many pods created or deleted per sync (kube-controller-manager's burst).
const BURST: usize = 500;

pub struct Controller {
    ctx: Ctx,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("replicaset", ctx.metrics.clone());
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        queue: queue.clone(),
        expectations: Expectations::default(),
        recorder: Recorder::new(ctx.client.clone(), "replicaset-controller"),
    });
    let q = queue.clone();
    ctx.informers
        .replicasets
        .on(move |rs, _| q.add(util::key(rs)));
    let me = this.clone();
    ctx.informers
        .pods
        .on(move |pod, change| me.pod_changed(pod, change));
    crate::spawn_workers("replicaset", &queue, workers, this, &ctx.metrics);
    queue
}

impl Controller {
    /// Queue the pod's ReplicaSet, or for an orphan every ReplicaSet that may adopt it.
    fn pod_changed(&self, pod: &Pod, _: Change) {
        let ns = pod.namespace().unwrap_or_default();
        if let Some(owner) = controller_of(pod) {
            if owner.kind == "ReplicaSet" {
                self.queue.add(format!("{ns}/{}", owner.name));
            }
            return;
        }
        let labels = pod.labels();
        for rs in self.ctx.informers.replicasets.store().state() {
            if rs.namespace().as_deref() == Some(ns.as_str())
                && util::matches(&rs.spec.selector, labels)
            {
                self.queue.add(util::key(rs.as_ref()));
            }
        }
    }

    fn pods_api(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    /// The pods this ReplicaSet controls, after adopting and releasing.
    async fn claim(&self, rs: &ReplicaSet, ns: &str) -> Result<Vec<Arc<Pod>>> {
        let spec = Some(&rs.spec);
        let selector = spec.map(|s| s.selector.clone()).unwrap_or_default();
        let uid = rs.uid().unwrap_or_default();
        let mut mine = Vec::new();
        for pod in self.ctx.informers.pods.store().state() {
            if pod.namespace().as_deref() != Some(ns) {
                continue;
            }
            let matching = !util::is_empty(&selector) && util::matches(&selector, pod.labels());
            match controller_of(pod.as_ref()) {
                Some(o) if o.uid == uid => {
                    if matching {
                        mine.push(pod);
                    } else {
                        self.release(&pod, &uid, ns).await?;
                    }
                }
                Some(_) => {}
                None if matching
                    && pod.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none()
                    && self.adopt(&pod, rs, ns).await? =>
                {
                    mine.push(pod);
                }
                None => {}
            }
        }
        Ok(mine)
    }

    async fn adopt(&self, pod: &Pod, rs: &ReplicaSet, ns: &str) -> Result<bool> {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(controller_ref(rs));
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}});
        match self
            .pods_api(ns)
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self, pod: &Pod, uid: &str, ns: &str) -> Result<()> {
        let refs: Vec<_> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != uid)
            .cloned()
            .collect();
        let patch = json!({"metadata": {"ownerReferences": refs, "uid": pod.uid()}});
        match self
            .pods_api(ns)
            .patch(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 || e.code == 422 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Create `n` pods in slow-start batches (1, 2, 4, ...), stopping at the first failure.
    async fn create(&self, rs: &ReplicaSet, key: &str, ns: &str, n: usize) -> Result<()> {
        let Some(template) = rs.spec.template.as_ref() else {
            return Ok(());
        };
        let api = self.pods_api(ns);
        let mut left = n;
        let mut batch = 1;
        while left > 0 {
            let size = batch.min(left);
            let creates = (0..size).map(|_| {
                let pod = util::pod_from_template(template, rs, &rs.name_any(), None);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            });
            let results = futures::future::join_all(creates).await;
            let mut failed = None;
            for r in results {
                match r {
                    Ok(pod) => {
                        self.expectations
                            .created(key, pod.uid().unwrap_or_default());
                        self.recorder.event(
                            rs,
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
                    rs,
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
        rs: &ReplicaSet,
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
                (
                    name.clone(),
                    api.delete(&name, &DeleteParams::default()).await,
                )
            }
        });
        for (pod, (name, r)) in doomed.iter().zip(futures::future::join_all(deletes).await) {
            match r {
                Ok(_) => {
                    self.expectations
                        .deleted(key, pod.uid().unwrap_or_default());
                    self.recorder.event(
                        rs,
                        Kind::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    );
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
}

/// Pods to delete first sort first: unscheduled, then pending, then not ready, then the
/// most recently ready, then the newest.
fn deletion_rank(
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

/// The status counts of `pods` for a ReplicaSet, and when next to look (a pod becoming
/// available after minReadySeconds).
pub fn status_of(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    failure: Option<String>,
) -> (ReplicaSetStatus, Option<Duration>) {
    let spec = Some(&rs.spec);
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels: BTreeMap<String, String> = spec
        .and_then(|s| s.template.as_ref())
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
        terminating_replicas: Some(count(
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_some() && !util::is_terminal(p))
                .count(),
        )),
        observed_generation: rs.metadata.generation,
        conditions: failure.map(|msg| {
            let old = rs.status.as_ref().and_then(|s| s.conditions.as_ref());
            let since = old
                .and_then(|c| {
                    c.iter()
                        .find(|c| c.type_.as_deref() == Some("ReplicaFailure"))
                })
                .and_then(|c| c.last_transition_time.clone());
            vec![ReplicaSetCondition {
                type_: Some("ReplicaFailure".into()),
                status: Some("True".into()),
                reason: Some("FailedCreate".into()),
                message: Some(msg),
                last_transition_time: Some(since.unwrap_or_else(now)),
            }]
        }),
    };
    (status, next.map(|d| d + Duration::from_millis(50)))
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let (Some(ns), name) = util::split(&key) else {
            return Ok(None);
        };
        let Some(rs) = self
            .ctx
            .informers
            .replicasets
            .store()
            .get(&ObjectRef::new(name).within(ns))
        else {
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
        let pods = self.claim(&rs, ns).await?;
        let active: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| util::is_active(p))
            .cloned()
            .collect();
        let want = usize::try_from(rs.spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
        let mut failure = None;
        if ready && rs.metadata.deletion_timestamp.is_none() {
            let result = if active.len() < want {
                self.create(&rs, &key, ns, (want - active.len()).min(BURST))
                    .await
            } else if active.len() > want {
                self.delete(&rs, &key, ns, &active, (active.len() - want).min(BURST))
                    .await
            } else {
                Ok(())
            };
            if let Err(e) = result {
                tracing::debug!(key, error = %e, "syncing replicas");
                failure = Some(e.to_string());
            }
        }
        let failed = failure.is_some();
        let (status, next) = status_of(&rs, &pods, failure);
        if rs.status.as_ref() != Some(&status) {
            let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), ns);
            let mut patch = json!({"status": status});
            if status.conditions.is_none() {
                patch["status"]["conditions"] = json!(null);
            }
            match api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if crate::util::code(&e) == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
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

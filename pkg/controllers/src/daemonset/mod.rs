//! The DaemonSet controller: one pod on each node the template's nodeSelector, node
//! affinity and tolerations admit, pinned to it with a required node affinity on
//! `metadata.name` for the scheduler to bind; pods replaced by revision (RollingUpdate with
//! maxUnavailable or maxSurge, or OnDelete) with the revisions kept as ControllerRevisions
//! for `kubectl rollout history|undo`; and the status `kubectl rollout status` reads.

mod backoff;
mod nodes;
mod plan;
mod status;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use crate::events::{Kind, Recorder};
use crate::expectations::Expectations;
use crate::history::{self, REVISION_LABEL};
use crate::util;
use crate::{Change, Ctx, Queue, Reconcile, Result};
use plan::{ByNode, Plan};

/// At most this many pods created or deleted per sync (kube's burstReplicas).
const BURST: usize = 250;

pub struct Controller {
    ctx: Ctx,
    queue: Queue,
    expectations: Expectations,
    recorder: Recorder,
    /// What each node last looked like to us (labels and taints).
    seen_nodes: Mutex<HashMap<String, String>>,
    /// Per DaemonSet and node, the wait before replacing a failed pod again.
    failed: backoff::Backoff,
}

fn selector(o: &DaemonSet) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
    &o.spec.selector
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("daemonset", ctx.metrics.clone());
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        queue: queue.clone(),
        expectations: Expectations::default(),
        recorder: Recorder::new(ctx.client.clone(), "daemonset-controller"),
        seen_nodes: Mutex::default(),
        failed: backoff::Backoff::default(),
    });
    let q = queue.clone();
    ctx.informers.daemonsets.on(move |d, _| q.add(util::key(d)));
    let (q, sets) = (queue.clone(), ctx.informers.daemonsets.clone());
    ctx.informers.pods.on(move |pod, _| {
        util::queue_owners(&q, &sets, pod, "DaemonSet", selector);
    });
    let (q, sets) = (queue.clone(), ctx.informers.daemonsets.clone());
    ctx.informers.revisions.on(move |r, _| {
        util::queue_owners(&q, &sets, r, "DaemonSet", selector);
    });
    let me = this.clone();
    ctx.informers
        .nodes
        .on(move |node, change| me.node_changed(node, change));
    ctx.spawn_workers("daemonset", &queue, workers, this);
    queue
}

impl Controller {
    fn queue_all(&self) {
        for ds in self.ctx.informers.daemonsets.store().state() {
            self.queue.add(util::key(ds.as_ref()));
        }
    }

    /// A node added, removed, relabelled or (un)tainted may change where daemons belong.
    fn node_changed(&self, node: &Node, change: Change) {
        let name = node.name_any();
        let mut seen = self.seen_nodes.lock().unwrap_or_else(|p| p.into_inner());
        let changed = if change == Change::Deleted {
            seen.remove(&name).is_some()
        } else {
            let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
            let print = json!([node.labels(), taints]).to_string();
            seen.insert(name, print.clone()) != Some(print)
        };
        drop(seen);
        if changed {
            self.queue_all();
        }
    }

    /// The current revision (created, or renumbered after a rollback, as needed) and the
    /// old ones.
    async fn history(
        &self,
        ds: &DaemonSet,
        collisions: &mut i32,
    ) -> Result<(ControllerRevision, Vec<Arc<ControllerRevision>>)> {
        let revisions = history::claim(&self.ctx, ds, &ds.spec.selector).await?;
        let data = history::template_patch(ds);
        let (current, old): (Vec<_>, Vec<_>) =
            revisions.into_iter().partition(|r| r.data.0 == data);
        let next = old.iter().map(|r| history::number(r)).max().unwrap_or(0) + 1;
        let Some((keep, duplicates)) = current.split_last() else {
            let mut rev = history::new_revision(
                ds,
                ds.spec
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.as_ref()),
                data,
                next,
            );
            rev.metadata.annotations = Some(ds.annotations().clone());
            let template = ds.spec.template.clone();
            let hash_of = |c: i32| crate::deployment::template_hash(&template, c);
            let name = ds.name_any();
            let made = history::create(&self.ctx, &name, &rev, collisions, hash_of, REVISION_LABEL);
            return Ok((made.await?, old));
        };
        for dup in duplicates {
            self.dedup(ds, dup, keep).await?;
        }
        let cur = if history::number(keep) < next {
            history::renumber(&self.ctx, keep, next).await?
        } else {
            (**keep).clone()
        };
        Ok((cur, old))
    }

    /// Move pods of a duplicate current revision to the one kept, and delete it.
    async fn dedup(
        &self,
        ds: &DaemonSet,
        dup: &ControllerRevision,
        keep: &ControllerRevision,
    ) -> Result<()> {
        let ns = ds.namespace().unwrap_or_default();
        let (from, to) = (
            dup.labels().get(REVISION_LABEL),
            keep.labels().get(REVISION_LABEL),
        );
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        for pod in self.ctx.informers.pods.store().state() {
            if pod.namespace().as_deref() == Some(&ns)
                && from.is_some()
                && pod.labels().get(REVISION_LABEL) == from
            {
                let patch = json!({"metadata": {"labels": {REVISION_LABEL: to}}});
                pods.patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            }
        }
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &ns);
        match api.delete(&dup.name_any(), &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if util::code(&e) == Some(404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The DaemonSet's pods by node (finished pods being deleted left out).
    async fn pods_by_node(&self, ds: &DaemonSet) -> Result<ByNode> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let candidates = self.ctx.informers.pods.store().state();
        let pods = util::claim(&api, ds, &ds.spec.selector, |_| true, candidates).await?;
        let mut by_node = ByNode::new();
        for pod in pods {
            if util::is_terminal(&pod) && pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(node) = nodes::target_node(&pod) {
                by_node.entry(node).or_default().push(pod);
            }
        }
        Ok(by_node)
    }

    /// Delete and create pods as planned (creations in slow-start batches), expecting to see
    /// each in the cache before the next sync acts.
    async fn execute(&self, ds: &DaemonSet, key: &str, plan: Plan, hash: &str) -> Result<()> {
        let ns = ds.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let store = self.ctx.informers.pods.store();
        for name in plan.delete.iter().take(BURST) {
            let uid = store
                .get(&ObjectRef::new(name).within(&ns))
                .and_then(|p| p.uid());
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    if let Some(uid) = uid {
                        self.expectations.deleted(key, uid);
                    }
                    let msg = format!("Deleted pod: {name}");
                    self.recorder
                        .event(ds, Kind::Normal, "SuccessfulDelete", &msg);
                }
                Err(e) if util::code(&e) == Some(404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let template = nodes::template(ds, hash);
        let mut left: Vec<&String> = plan.create.iter().take(BURST).collect();
        let mut batch = 1;
        while !left.is_empty() {
            let now: Vec<&String> = left.drain(..batch.min(left.len())).collect();
            let creates = now.iter().map(|node| {
                let pod = nodes::pod_for(ds, &template, node);
                let api = api.clone();
                async move { api.create(&PostParams::default(), &pod).await }
            });
            for r in futures::future::join_all(creates).await {
                match r {
                    Ok(pod) => {
                        self.expectations
                            .created(key, pod.uid().unwrap_or_default());
                        let msg = format!("Created pod: {}", pod.name_any());
                        self.recorder
                            .event(ds, Kind::Normal, "SuccessfulCreate", &msg);
                    }
                    Err(e) => {
                        let why = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        let msg = format!("Error creating: {why}");
                        self.recorder.event(ds, Kind::Warning, "FailedCreate", &msg);
                        return Err(e.into());
                    }
                }
            }
            batch *= 2;
        }
        Ok(())
    }

    fn expectations_met(&self, key: &str) -> bool {
        let store = self.ctx.informers.pods.store();
        self.expectations.satisfied(key, |uid| {
            store
                .state()
                .iter()
                .find(|p| p.uid().as_deref() == Some(uid))
                .map(|p| p.metadata.deletion_timestamp.is_none())
        })
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, ds)) = self.ctx.informers.daemonsets.namespaced(&key) else {
            self.expectations.forget(&key);
            return Ok(None);
        };
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let nodes = self.ctx.informers.nodes.store().state();
        let mut collisions = ds
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let (cur, old) = self.history(&ds, &mut collisions).await?;
        let hash = cur
            .labels()
            .get(REVISION_LABEL)
            .cloned()
            .unwrap_or_default();
        let by_node = self.pods_by_node(&ds).await?;
        if !self.expectations_met(&key) {
            self.write_status(&ds, &nodes, &by_node, &hash, collisions, false)
                .await?;
            return Ok(Some(Duration::from_secs(1)));
        }
        let backoff_key = |node: &str| format!("{key}/{node}");
        let backing_off = |node: &str| self.failed.remaining(&backoff_key(node)).is_some();
        let mut plan = plan::manage(&ds, &nodes, &by_node, &hash, &backing_off);
        for (node, pod) in &plan.failed {
            self.failed.next(&backoff_key(node));
            let msg =
                format!("Found failed daemon pod {ns}/{pod} on node {node}, will try to kill it");
            self.recorder
                .event(ds.as_ref(), Kind::Warning, "FailedDaemonPod", &msg);
        }
        let retry_failed = nodes
            .iter()
            .filter_map(|n| self.failed.remaining(&backoff_key(&n.name_any())))
            .min();
        let on_delete = ds
            .spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            == Some("OnDelete");
        if plan.is_empty() && !on_delete {
            plan = plan::rolling_update(&ds, &nodes, &by_node, &hash);
        }
        let result = self.execute(&ds, &key, plan, &hash).await;
        let mut live: HashSet<String> = HashSet::from([cur.name_any()]);
        let hashes: HashSet<&str> = by_node
            .values()
            .flatten()
            .filter_map(|p| p.labels().get(REVISION_LABEL).map(String::as_str))
            .collect();
        live.extend(
            old.iter()
                .filter(|r| {
                    r.labels()
                        .get(REVISION_LABEL)
                        .is_some_and(|h| hashes.contains(h.as_str()))
                })
                .map(|r| r.name_any()),
        );
        let limit = ds.spec.revision_history_limit.unwrap_or(10);
        let next = self
            .write_status(&ds, &nodes, &by_node, &hash, collisions, true)
            .await?;
        result?;
        history::truncate(&self.ctx, &old, &live, limit).await?;
        Ok(next.into_iter().chain(retry_failed).min())
    }
}

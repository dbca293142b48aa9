//! The garbage collector, as kube-controller-manager's: it watches every resource it can
//! delete, list and watch (built-in and custom), keeps a graph of ownerReferences, and
//! - deletes an object once none of its owners exists any more (background),
//! - for an owner deleted in the foreground (`foregroundDeletion` finalizer), deletes its
//!   dependents and drops the finalizer once no dependent with blockOwnerDeletion remains,
//! - for an owner deleted with `orphan`, takes it out of its dependents' ownerReferences and
//!   then drops the finalizer.

pub(crate) mod discovery;
mod graph;
mod monitors;
mod owners;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use crate::{Ctx, Queue, Reconcile, Result};
use discovery::Resource;
use graph::{Graph, Task};

/// How often the served resources are discovered again (custom resources come and go).
const REDISCOVERY: Duration = Duration::from_secs(30);
/// How long to wait for every watch's first list before collecting anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Collector {
    client: kube::Client,
    queue: Queue,
    graph: Mutex<Graph>,
    /// (group, kind) -> resource, for resolving ownerReferences.
    kinds: Mutex<HashMap<(String, String), Arc<Resource>>>,
    /// Owner uids known not to exist (uids are never reused).
    absent: Mutex<HashSet<String>>,
    /// Poked when a CustomResourceDefinition changes: discover again now.
    rediscover: tokio::sync::Notify,
}

/// Start the garbage collector; it runs until the controller manager stops leading.
pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let stop = ctx.stop.clone();
    let queue = Queue::new("garbagecollector", ctx.metrics.clone());
    let gc = Arc::new(Collector {
        client: ctx.client.clone(),
        queue: queue.clone(),
        graph: Mutex::default(),
        kinds: Mutex::default(),
        absent: Mutex::default(),
        rediscover: tokio::sync::Notify::new(),
    });
    let metrics = ctx.metrics.clone();
    tokio::spawn(async move {
        let mut monitors = monitors::Monitors::default();
        gc.clone().sync_monitors(&mut monitors, &stop).await;
        let synced = monitors.synced();
        if tokio::time::timeout(SYNC_TIMEOUT, synced).await.is_err() {
            tracing::warn!("garbage collector: not every resource was listed in time");
        }
        crate::spawn_workers("garbagecollector", &gc.queue, workers, gc.clone(), &metrics);
        tracing::info!("garbage collector synced");
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(REDISCOVERY) => {}
                () = gc.rediscover.notified() => {}
            }
            gc.clone().sync_monitors(&mut monitors, &stop).await;
        }
        monitors.stop_all();
    });
    queue
}

impl Collector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, tasks: Vec<Task>) {
        for t in tasks {
            self.queue.add(match t {
                Task::Delete(uid) => format!("delete/{uid}"),
                Task::Orphan(uid) => format!("orphan/{uid}"),
            });
        }
    }

    fn api(&self, kind: &Resource, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| kind.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &kind.ar),
            None => Api::all_with(self.client.clone(), &kind.ar),
        }
    }

    /// The object's metadata now, if it is still the object with `uid`.
    async fn live(
        &self,
        kind: &Resource,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
    ) -> Result<Option<PartialObjectMeta<DynamicObject>>> {
        let found = self.api(kind, namespace).get_metadata_opt(name).await?;
        Ok(found.filter(|o| o.metadata.uid.as_deref() == Some(uid)))
    }

    /// Change the object's metadata with `f` (which returns the fields to merge, or None
    /// for no change), guarded by its uid and resourceVersion; retried on conflicts.
    async fn patch_meta(
        &self,
        kind: &Resource,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
        f: impl Fn(&kube::api::ObjectMeta) -> Option<Value>,
    ) -> Result<()> {
        for _ in 0..5 {
            let Some(obj) = self.live(kind, namespace, name, uid).await? else {
                return Ok(());
            };
            let Some(mut fields) = f(&obj.metadata) else {
                return Ok(());
            };
            fields["uid"] = json!(uid);
            fields["resourceVersion"] = json!(obj.metadata.resource_version);
            let patch = json!({ "metadata": fields });
            match self
                .api(kind, namespace)
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if crate::util::code(&e) == Some(404) => return Ok(()),
                Err(e) if crate::util::code(&e) == Some(409) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(crate::Error::Other(format!("{name}: conflicting writes")))
    }

    /// Drop `finalizer` from the object (which may then go).
    async fn remove_finalizer(&self, uid: &str, finalizer: &str) -> Result<()> {
        let Some(node) = self.graph().get(uid).cloned() else {
            return Ok(());
        };
        let ns = node.namespace.as_deref();
        self.patch_meta(&node.kind, ns, &node.name, uid, |m| {
            let list = m.finalizers.clone().unwrap_or_default();
            let kept: Vec<String> = list.iter().filter(|f| *f != finalizer).cloned().collect();
            (kept.len() != list.len()).then(|| json!({ "finalizers": none_if_empty(kept) }))
        })
        .await
    }

    /// Take the owners with `uids` out of the object's ownerReferences.
    async fn remove_owners(&self, uid: &str, uids: &HashSet<String>) -> Result<()> {
        let Some(node) = self.graph().get(uid).cloned() else {
            return Ok(());
        };
        let ns = node.namespace.as_deref();
        self.patch_meta(&node.kind, ns, &node.name, uid, |m| {
            let refs = m.owner_references.clone().unwrap_or_default();
            let kept: Vec<_> = refs
                .iter()
                .filter(|r| !uids.contains(&r.uid))
                .cloned()
                .collect();
            (kept.len() != refs.len()).then(|| json!({ "ownerReferences": none_if_empty(kept) }))
        })
        .await
    }

    /// attemptToOrphan: release every dependent, then drop the `orphan` finalizer.
    async fn orphan(&self, uid: &str) -> Result<Option<Duration>> {
        if !self.graph().get(uid).is_some_and(graph::Node::orphaning) {
            return Ok(None);
        }
        let deps: Vec<String> = self
            .graph()
            .dependents(uid)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        let owner: HashSet<String> = [uid.to_string()].into();
        let results =
            futures::future::join_all(deps.iter().map(|d| self.remove_owners(d, &owner))).await;
        results.into_iter().collect::<Result<Vec<()>>>()?;
        self.remove_finalizer(uid, graph::ORPHAN).await?;
        Ok(None)
    }
}

fn none_if_empty<T: serde::Serialize>(list: Vec<T>) -> Value {
    if list.is_empty() {
        Value::Null
    } else {
        json!(list)
    }
}

/// The message of an API error.
pub(crate) fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

impl Reconcile for Collector {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        match key.split_once('/') {
            Some(("delete", uid)) => self.attempt_to_delete(uid).await,
            Some(("orphan", uid)) => self.orphan(uid).await,
            _ => Ok(None),
        }
    }
}

//! Static pods, as kubelet's file source and mirror client run them: the node runs every
//! pod of its manifests directory (`<data-dir>/agent/pod-manifests`, k3s's path, or
//! `--kubelet-arg pod-manifest-path`; read by manifest.rs, rescanned every 5 s) and keeps
//! a mirror pod of each in the API (mirror.rs) for others to see.
//!
//! How the pod workers run them: a static pod is run by its own instance of the same pod
//! workers (`Workers`), whose cache is not the API's pods but a store this module fills
//! with the static pods read from the files — each keyed by its mirror's "namespace/name",
//! its uid (the runtime's pod id) the manifest's hash, and its status the mirror pod's
//! current status. The workers therefore start and restart its containers from the
//! file's spec, and their status write (a patch of `pods/<name>/status` by name) lands
//! on the mirror pod. The node's API workers skip mirror pods (pods.rs), and the node's
//! relist counts the static pods' uids as known (local/mod.rs). This module's reconcile of
//! a key, before handing it to the workers:
//! - a static pod whose manifest was edited (new hash) or removed is stopped (its grace
//!   period) and dropped from the store, and its mirror pod deleted;
//! - a mirror pod that is being deleted, or mirrors an older manifest, is deleted at once
//!   (grace 0, on its uid) and created again, while the containers keep running;
//! - a missing mirror pod is created.
//!
//! A pod in the API with a static pod's name that is not a mirror pod is left alone, and
//! the static pod is not run while it exists (so its status cannot land on that pod).

pub mod manifest;
pub mod mirror;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use minik_controllers::Store;
use minik_controllers::{Informer, Metrics, Queue, Reconcile};
use tokio_util::sync::CancellationToken;

pub use mirror::{MIRROR, is_mirror};

use crate::pods::{NodeHandle, Workers};
use crate::runtime::{ContainerRuntime, PodState};

/// How often the manifests directory is read again.
const RESCAN: Duration = Duration::from_secs(5);
/// How often the runtime is looked at for static pods whose containers changed.
const RELIST: Duration = Duration::from_secs(1);
/// When to try again to write a mirror pod the API refused.
const RETRY: Duration = Duration::from_secs(5);
const WORKERS: usize = 4;

/// The static pods of one node and their workers.
pub struct StaticPods<R> {
    dir: PathBuf,
    node: Arc<NodeHandle>,
    /// The API's pods bound to the node (the mirror pods among them).
    api_pods: Store<Pod>,
    /// The static pods the files describe now, by key.
    desired: Mutex<BTreeMap<String, Pod>>,
    workers: Workers<R>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

/// Run the static pods of `dir` on `node` until `stop`. `informer` is the node's informer
/// of its API pods (its mirror pods' changes queue their static pod; it is given before it
/// runs). Returns the store of the static pods being run, whose uids the node's relist
/// must not take for orphans.
pub fn spawn<R: ContainerRuntime>(
    dir: PathBuf,
    runtime: Arc<R>,
    node: Arc<NodeHandle>,
    informer: &Arc<Informer<Pod>>,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Store<Pod> {
    // The static pods being run, with their mirror's status (`workers.pods`).
    let store = Store::default();
    let queue = Queue::new("kubelet-static-pods", metrics.clone());
    let q = queue.clone();
    informer.on(move |pod: &Pod, _| {
        if is_mirror(pod) {
            q.add(key(pod));
        }
    });
    let pods = Arc::new(StaticPods {
        dir,
        api_pods: informer.store().clone(),
        desired: Mutex::default(),
        workers: Workers {
            runtime,
            nodes: [(node.name.clone(), node.clone())].into_iter().collect(),
            pods: store.clone(),
            backoff: Mutex::default(),
            known: Mutex::default(),
            // Static pods are critical: node pressure does not refuse them.
            admission: Default::default(),
            written: Default::default(),
        },
        node,
    });
    tokio::spawn(run(
        pods,
        informer.clone(),
        queue,
        metrics.clone(),
        stop.clone(),
    ));
    store
}

/// Once the API's pods are listed: read the directory every `RESCAN` and queue every
/// static pod (and those gone), and every `RELIST` queue those whose containers changed.
async fn run<R: ContainerRuntime>(
    pods: Arc<StaticPods<R>>,
    informer: Arc<Informer<Pod>>,
    queue: Queue,
    metrics: Metrics,
    stop: CancellationToken,
) {
    tokio::select! {
        () = informer.synced() => {}
        () = stop.cancelled() => return,
    }
    // As k3s does, the directory is there for whoever drops manifests in.
    if let Err(e) = tokio::fs::create_dir_all(&pods.dir).await {
        tracing::warn!(dir = %pods.dir.display(), error = %e, "creating the manifests directory");
    }
    tracing::info!(dir = %pods.dir.display(), "running the static pods of the manifests directory");
    minik_controllers::spawn_workers(
        "kubelet-static-pods",
        &queue,
        WORKERS,
        pods.clone(),
        &metrics,
    );
    let mut seen = HashMap::new();
    let mut states: HashMap<String, Option<PodState>> = HashMap::new();
    let mut last_scan: Option<tokio::time::Instant> = None;
    loop {
        if last_scan.is_none_or(|t| t.elapsed() >= RESCAN) {
            last_scan = Some(tokio::time::Instant::now());
            let (dir, node) = (pods.dir.clone(), pods.node.name.clone());
            let scanned = tokio::task::spawn_blocking(move || {
                let found = manifest::scan(&dir, &node, &mut seen);
                (found, seen)
            })
            .await;
            let Ok((found, kept)) = scanned else {
                return;
            };
            seen = kept;
            let mut desired = lock(&pods.desired);
            let keys: Vec<String> = desired.keys().chain(found.keys()).cloned().collect();
            *desired = found;
            drop(desired);
            for k in keys {
                queue.add(k);
            }
        }
        let mut next = HashMap::new();
        for pod in pods.workers.pods.state() {
            let uid = pod.uid().unwrap_or_default();
            let state = pods.workers.runtime.pod_state(&uid);
            if states.get(&uid).is_some_and(|before| *before != state) {
                queue.add(key(&pod));
            }
            next.insert(uid, state);
        }
        states = next;
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(RELIST) => {}
        }
    }
    queue.shut_down();
}

impl<R: ContainerRuntime> StaticPods<R> {
    /// Bring the static pod `key` and its mirror pod in line; when to look again.
    async fn sync(&self, key: &str) -> Result<Option<Duration>, kube::Error> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(None);
        };
        let oref = ObjectRef::new(name).within(ns);
        let desired = lock(&self.desired).get(key).cloned();
        // Edited (a new hash) or removed: the pod that ran stops first.
        if let Some(old) = self.workers.pods.get(&oref)
            && desired.as_ref().and_then(|d| d.uid()) != old.uid()
        {
            let uid = old.uid().unwrap_or_default();
            tracing::info!(
                pod = key,
                uid,
                "stopping a static pod whose manifest changed or went"
            );
            if let Err(e) = self
                .workers
                .runtime
                .stop_pod(&uid, crate::runtime::termination_grace(&old))
                .await
            {
                tracing::warn!(pod = key, uid, error = %e, "stopping a static pod");
            }
            lock(&self.workers.known).remove(key);
            self.workers.pods.remove(&old);
        }
        let client = &self.node.client;
        let api_pod = self.api_pods.get(&oref);
        let Some(mut pod) = desired else {
            if let Some(m) = api_pod.filter(|m| is_mirror(m)) {
                mirror::delete(client, &m).await?;
            }
            return Ok(None);
        };
        let mut retry = None;
        let mut status = None;
        match api_pod {
            Some(p) if !is_mirror(&p) => {
                tracing::warn!(
                    pod = key,
                    "a pod that is not a mirror pod has the static pod's name; not running the static pod"
                );
                return Ok(Some(RETRY));
            }
            Some(m) if mirror::mirrors(&m, &pod) => status = m.status.clone(),
            stale => {
                if let Some(m) = stale {
                    mirror::delete(client, &m).await?;
                }
                if let Err(e) = mirror::create(client, &pod).await {
                    tracing::warn!(pod = key, error = %e, "creating the mirror pod");
                    retry = Some(RETRY);
                }
            }
        }
        pod.status = status;
        self.workers.pods.insert(Arc::new(pod));
        let next = self.workers.sync(key).await?;
        Ok(match (next, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }
}

impl<R: ContainerRuntime> Reconcile for StaticPods<R> {
    async fn reconcile(&self, key: String) -> minik_controllers::Result<Option<Duration>> {
        match self.sync(&key).await {
            Ok(next) => Ok(next),
            Err(e) => {
                tracing::warn!(pod = key, error = %e, "syncing a static pod");
                Err(e.into())
            }
        }
    }
}

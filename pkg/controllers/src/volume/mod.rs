//! The PersistentVolume controller (kube-controller-manager's persistentvolume-binder):
//! binds claims to volumes and keeps both phases (Available, Bound, Released, Failed;
//! Pending, Bound, Lost), asks provisioners for volumes of claims whose class has one, and
//! reclaims volumes whose claim is gone (Retain keeps them Released, Delete leaves them to
//! their provisioner). Claims of a WaitForFirstConsumer class wait for the scheduler's
//! `volume.kubernetes.io/selected-node`. The built-in local-path provisioner is in
//! `localpath`; `matching` is shared with the scheduler.
//!
//! One queue holds both kinds of keys: claims are `namespace/name`, volumes (cluster-scoped)
//! are `name`. Every write is a full update with the cached resourceVersion, so a stale
//! cache ends in a conflict and a retry, never in a double binding.

mod claims;
pub mod localpath;
pub mod matching;
mod volumes;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::events::Recorder;
use crate::{Change, Ctx, Queue, Reconcile, Result, util};

/// Set on a claim once the controller has bound it (value "yes").
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on claims and volumes the controller (or scheduler) bound, not the user.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The node the scheduler chose for a claim of delayed binding.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Which provisioner is asked to make a volume for the claim.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The provisioner that made a volume.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// A class whose volumes are never made on demand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// How often claims and volumes waiting for something are looked at again (Kubernetes'
/// --pvclaimbinder-sync-period).
pub const RESYNC: Duration = Duration::from_secs(15);

/// Whether claims of the class wait for a pod to be scheduled.
pub fn delays_binding(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The provisioner a claim was handed to, if any.
pub fn provisioner_of(claim: &PersistentVolumeClaim) -> Option<&str> {
    let a = claim.annotations();
    a.get(STORAGE_PROVISIONER)
        .or_else(|| a.get(BETA_STORAGE_PROVISIONER))
        .map(String::as_str)
}

pub fn has(obj: &impl ResourceExt, annotation: &str) -> bool {
    obj.annotations().contains_key(annotation)
}

/// The PV controller.
pub struct Binder {
    ctx: Ctx,
    recorder: Recorder,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("persistentvolume_binder", ctx.metrics.clone());
    let q = queue.clone();
    let pvs = ctx.informers.pvs.clone();
    ctx.informers.pvcs.on(move |claim, change| {
        q.add(util::key(claim));
        if change == Change::Deleted {
            // Its volume is released.
            let key = util::key(claim);
            for v in pvs.store().state() {
                if volumes::claim_key(&v).as_ref() == Some(&key) {
                    q.add(v.name_any());
                }
            }
        }
    });
    let (q, claims) = (queue.clone(), ctx.informers.pvcs.clone());
    ctx.informers.pvs.on(move |volume, change| {
        q.add(volume.name_any());
        match volumes::claim_key(volume) {
            Some(claim) => q.add(claim),
            // A free volume: claims of its class waiting for one may take it now.
            None if change == Change::Applied => {
                queue_unbound(&q, &claims, matching::volume_class(volume))
            }
            None => {}
        }
    });
    let (q, claims) = (queue.clone(), ctx.informers.pvcs.clone());
    ctx.informers
        .storageclasses
        .on(move |class, _| queue_unbound(&q, &claims, &class.name_any()));
    tokio::spawn(resync(ctx.clone(), queue.clone()));
    let this = Arc::new(Binder {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "persistentvolume-controller"),
    });
    ctx.spawn_workers("persistentvolume_binder", &queue, workers, this);
    queue
}

/// Every RESYNC, look again at claims and volumes not Bound: what they wait for (a volume,
/// a class, a provisioner, a claim gone) may have come without an event about them.
async fn resync(ctx: Ctx, queue: Queue) {
    loop {
        tokio::select! {
            () = ctx.stop.cancelled() => return,
            () = tokio::time::sleep(RESYNC) => {}
        }
        let bound = |p: Option<&str>| p == Some("Bound");
        for c in ctx.informers.pvcs.store().state() {
            if !bound(c.status.as_ref().and_then(|s| s.phase.as_deref())) {
                queue.add(util::key(c.as_ref()));
            }
        }
        for v in ctx.informers.pvs.store().state() {
            if !bound(v.status.as_ref().and_then(|s| s.phase.as_deref())) {
                queue.add(v.name_any());
            }
        }
    }
}

/// Wait until the caches the volume controllers judge by are filled (a claim whose volume
/// is not listed yet must not look Lost).
pub(crate) async fn synced(ctx: &Ctx) {
    let i = &ctx.informers;
    futures::join!(
        i.pvcs.synced(),
        i.pvs.synced(),
        i.storageclasses.synced(),
        i.pods.synced(),
        i.nodes.synced()
    );
}

/// Queue the claims of `class` that have no volume yet.
fn queue_unbound(queue: &Queue, claims: &crate::Informer<PersistentVolumeClaim>, class: &str) {
    for c in claims.store().state() {
        let unbound = c
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty);
        if unbound && matching::claim_class(&c) == class {
            queue.add(util::key(c.as_ref()));
        }
    }
}

impl Binder {
    fn claim(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.ctx
            .informers
            .pvcs
            .store()
            .get(&ObjectRef::new(name).within(ns))
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.ctx.informers.pvs.store().get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        if name.is_empty() {
            return None;
        }
        self.ctx
            .informers
            .storageclasses
            .store()
            .get(&ObjectRef::new(name))
    }
}

impl Reconcile for Binder {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        synced(&self.ctx).await;
        match util::split(&key) {
            (Some(ns), name) => {
                if let Some(claim) = self.claim(ns, name) {
                    self.sync_claim(claim).await?;
                }
            }
            (None, name) => {
                if let Some(volume) = self.volume(name) {
                    self.sync_volume(volume).await?;
                }
            }
        }
        Ok(None)
    }
}

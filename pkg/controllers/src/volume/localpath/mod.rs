//! The built-in local-path provisioner, as k3s ships it (`rancher.io/local-path`): a claim
//! handed to it gets a directory `<data-dir>/storage/pvc-<uid>_<namespace>_<name>` and a
//! hostPath (or `local`) volume of the claim's size with node affinity to the node the
//! scheduler chose (any node for Immediate classes) and the class's reclaim policy. A
//! released volume of policy Delete loses its directory, then the volume goes.

mod make;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::ObjectRef;

use super::{PROVISIONED_BY, SELECTED_NODE, delays_binding, matching, provisioner_of};
use crate::events::{Kind, Recorder};
use crate::{Ctx, Queue, Reconcile, Result, util};

pub use make::{unsupported, volume_dir, volume_for};

/// The provisioner's name, in StorageClasses and on the volumes it makes.
pub const NAME: &str = "rancher.io/local-path";
/// The default class k3s creates for it.
pub const CLASS: &str = "local-path";
const NODE_ANNOTATION: &str = "local.path.provisioner/selected-node";
const HOSTNAME: &str = "kubernetes.io/hostname";

pub struct Provisioner {
    ctx: Ctx,
    recorder: Recorder,
    /// `<data-dir>/storage`.
    dir: PathBuf,
}

pub fn start(ctx: &Ctx, dir: PathBuf, workers: usize) -> Queue {
    let queue = Queue::new("local_path_provisioner", ctx.metrics.clone());
    let q = queue.clone();
    ctx.informers.pvcs.on(move |claim, _| {
        if provisioner_of(claim) == Some(NAME) {
            q.add(util::key(claim));
        }
    });
    let q = queue.clone();
    ctx.informers.pvs.on(move |volume, _| {
        if ours(volume) {
            q.add(volume.name_any());
        }
    });
    let this = Arc::new(Provisioner {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), &format!("{NAME}_minik")),
        dir,
    });
    ctx.spawn_workers("local_path_provisioner", &queue, workers, this);
    queue
}

fn ours(v: &PersistentVolume) -> bool {
    v.annotations().get(PROVISIONED_BY).map(String::as_str) == Some(NAME)
}

impl Provisioner {
    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.ctx
            .informers
            .storageclasses
            .store()
            .get(&ObjectRef::new(name))
    }

    /// The node to put the volume on, and its hostname label.
    fn node(
        &self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
    ) -> Option<(String, String)> {
        let nodes = self.ctx.informers.nodes.store();
        let chosen = match claim.annotations().get(SELECTED_NODE) {
            Some(n) => n.clone(),
            None if delays_binding(Some(class)) => return None,
            // Immediate: any node will do; the first by name.
            None => nodes.state().iter().map(|n| n.name_any()).min()?,
        };
        let host = nodes
            .get(&ObjectRef::new(&chosen))
            .and_then(|n| n.labels().get(HOSTNAME).cloned())
            .unwrap_or_else(|| chosen.clone());
        Some((chosen, host))
    }

    async fn provision(&self, claim: Arc<PersistentVolumeClaim>) -> Result<Option<Duration>> {
        let unbound = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty);
        if !unbound
            || claim.metadata.deletion_timestamp.is_some()
            || provisioner_of(&claim) != Some(NAME)
        {
            return Ok(None);
        }
        let class_name = matching::claim_class(&claim);
        let Some(class) = self.class(class_name).filter(|c| c.provisioner == NAME) else {
            return Ok(None);
        };
        let Some((node, host)) = self.node(&claim, &class) else {
            if delays_binding(Some(&class)) {
                // The scheduler's choice comes as a change of the claim.
                return Ok(None);
            }
            return Err(crate::Error::Other("no node to put the volume on".into()));
        };
        let name = format!("pvc-{}", claim.uid().unwrap_or_default());
        let volumes: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        if self
            .ctx
            .informers
            .pvs
            .store()
            .get(&ObjectRef::new(&name))
            .is_some()
        {
            return Ok(None);
        }
        let key = util::key(claim.as_ref());
        self.recorder.event(
            claim.as_ref(),
            Kind::Normal,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim {key:?}"),
        );
        if let Some(why) = unsupported(&claim) {
            self.failed(&claim, class_name, why).await?;
            return Ok(None);
        }
        let path = volume_dir(&self.dir, &name, &claim);
        if let Err(e) = make_dir(&path).await {
            let why = format!("creating {}: {e}", path.display());
            self.failed(&claim, class_name, &why).await?;
            return Err(crate::Error::Other(why));
        }
        let pv = volume_for(&claim, &class, &name, &path, &node, &host);
        match volumes.create(&PostParams::default(), &pv).await {
            Ok(_) => {}
            Err(e) if util::code(&e) == Some(409) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        tracing::info!(claim = key, volume = name, node, path = %path.display(), "provisioned a local-path volume");
        self.recorder.event(
            claim.as_ref(),
            Kind::Normal,
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {name}"),
        );
        Ok(None)
    }

    /// Report a failure; the scheduler, told by the selected node going, tries again.
    async fn failed(&self, claim: &PersistentVolumeClaim, class: &str, why: &str) -> Result<()> {
        let message = format!("failed to provision volume with StorageClass {class:?}: {why}");
        self.recorder
            .event(claim, Kind::Warning, "ProvisioningFailed", &message);
        if claim.annotations().contains_key(SELECTED_NODE) {
            let mut c = claim.clone();
            c.annotations_mut().remove(SELECTED_NODE);
            let api: Api<PersistentVolumeClaim> =
                Api::namespaced(self.ctx.client.clone(), &c.namespace().unwrap_or_default());
            api.replace(&c.name_any(), &PostParams::default(), &c)
                .await?;
        }
        Ok(())
    }

    /// Remove a released volume of policy Delete: its directory, then the object.
    async fn delete(&self, volume: Arc<PersistentVolume>) -> Result<Option<Duration>> {
        let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        // Once it is being deleted, its directory is gone already.
        let going = volume.metadata.deletion_timestamp.is_some();
        if !ours(&volume)
            || !released
            || going
            || super::volumes::reclaim_policy(&volume) != "Delete"
        {
            return Ok(None);
        }
        let name = volume.name_any();
        let spec = volume.spec.as_ref();
        let path = spec
            .and_then(|s| s.host_path.as_ref().map(|h| h.path.clone()))
            .or_else(|| spec.and_then(|s| s.local.as_ref().map(|l| l.path.clone())));
        match path.map(PathBuf::from) {
            // Only ever a directory the provisioner made.
            Some(p) if p.parent() == Some(self.dir.as_path()) => {
                if let Err(e) = remove_dir(&p).await {
                    let message = format!("removing {}: {e}", p.display());
                    self.recorder.event(
                        volume.as_ref(),
                        Kind::Warning,
                        "VolumeFailedDelete",
                        &message,
                    );
                    return Err(crate::Error::Other(message));
                }
            }
            other => {
                tracing::warn!(volume = name, path = ?other, "not removing a directory outside the storage dir")
            }
        }
        let api: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        match api.delete(&name, &DeleteParams::default()).await {
            Err(e) if util::code(&e) != Some(404) => return Err(e.into()),
            _ => {}
        }
        tracing::info!(volume = name, "deleted a local-path volume");
        Ok(None)
    }
}

async fn make_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::create_dir_all(path).await?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).await
}

async fn remove_dir(path: &Path) -> std::io::Result<()> {
    match tokio::fs::remove_dir_all(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Reconcile for Provisioner {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        super::synced(&self.ctx).await;
        match util::split(&key) {
            (Some(ns), name) => {
                let claim = self
                    .ctx
                    .informers
                    .pvcs
                    .store()
                    .get(&ObjectRef::new(name).within(ns));
                match claim {
                    Some(c) => self.provision(c).await,
                    None => Ok(None),
                }
            }
            (None, name) => match self.ctx.informers.pvs.store().get(&ObjectRef::new(name)) {
                Some(v) => self.delete(v).await,
                None => Ok(None),
            },
        }
    }
}

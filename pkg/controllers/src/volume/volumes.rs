//! Volumes: Available while unclaimed, Bound with their claim, Released when the claim is
//! gone, and then reclaimed by their policy.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::{BOUND_BY_CONTROLLER, Binder, PROVISIONED_BY, has, matching};
use crate::Result;
use crate::events::Kind;

fn phase(v: &PersistentVolume) -> &str {
    v.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

impl Binder {
    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.ctx.client.clone())
    }

    pub(super) async fn sync_volume(&self, volume: Arc<PersistentVolume>) -> Result<()> {
        let Some(r) = volume.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
            self.set_volume_phase(&volume, "Available", None).await?;
            return Ok(());
        };
        let (ns, name) = (
            r.namespace.clone().unwrap_or_default(),
            r.name.clone().unwrap_or_default(),
        );
        let uid = r.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            // Pre-bound by the user to a claim not bound yet: the claim's sync binds it.
            self.set_volume_phase(&volume, "Available", None).await?;
            return Ok(());
        }
        let claim = self.claim_of(&volume, &ns, &name, &uid).await?;
        let Some(claim) = claim else {
            if !matches!(phase(&volume), "Released" | "Failed") {
                tracing::info!(volume = %volume.name_any(), "volume released, reclaiming");
                let v = self.set_volume_phase(&volume, "Released", None).await?;
                return self.reclaim(&v).await;
            }
            return self.reclaim(&volume).await;
        };
        let bound_to = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("");
        if bound_to.is_empty() {
            if matching::mode_mismatch(&claim, &volume) {
                let message = format!(
                    "Cannot bind PersistentVolume to requested PersistentVolumeClaim {:?} due to incompatible volumeMode.",
                    claim.name_any()
                );
                self.recorder
                    .event(volume.as_ref(), Kind::Warning, "VolumeMismatch", &message);
            }
            // The claim's sync finishes the binding.
            return Ok(());
        }
        if bound_to == volume.name_any() {
            self.set_volume_phase(&volume, "Bound", None).await?;
            return Ok(());
        }
        // The claim went to another volume.
        if has(volume.as_ref(), PROVISIONED_BY) && reclaim_policy(&volume) == "Delete" {
            if !matches!(phase(&volume), "Released" | "Failed") {
                let v = self.set_volume_phase(&volume, "Released", None).await?;
                return self.reclaim(&v).await;
            }
            return self.reclaim(&volume).await;
        }
        self.unbind(&volume).await?;
        Ok(())
    }

    /// The claim the volume points at, if it still exists with the same uid (asking the API
    /// when the cache does not have it, so a claim just made is not taken for gone).
    async fn claim_of(
        &self,
        volume: &PersistentVolume,
        ns: &str,
        name: &str,
        uid: &str,
    ) -> Result<Option<Arc<PersistentVolumeClaim>>> {
        let cached = self.claim(ns, name);
        if cached
            .as_ref()
            .is_some_and(|c| c.uid().as_deref() == Some(uid))
        {
            return Ok(cached);
        }
        if cached.is_none() && matches!(phase(volume), "Released" | "Failed") {
            return Ok(None);
        }
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), ns);
        Ok(api
            .get_opt(name)
            .await?
            .filter(|c| c.uid().as_deref() == Some(uid))
            .map(Arc::new))
    }

    /// Point the volume at the claim (marking it bound by the controller when it was not
    /// already pre-bound to it).
    pub(super) async fn bind_volume_to_claim(
        &self,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<PersistentVolume> {
        let uid = claim.uid();
        let current = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if current.is_some_and(|r| r.uid == uid && r.name == claim.metadata.name) {
            return Ok(volume.clone());
        }
        let mut v = volume.clone();
        if !matching::bound_to(volume, claim) {
            v.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        v.spec.get_or_insert_default().claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: claim.namespace(),
            name: claim.metadata.name.clone(),
            uid,
            resource_version: claim.resource_version(),
            ..Default::default()
        });
        Ok(self
            .volumes_api()
            .replace(&v.name_any(), &PostParams::default(), &v)
            .await?)
    }

    /// The volume's phase (and message); the transition time moves with the phase.
    pub(super) async fn set_volume_phase(
        &self,
        volume: &PersistentVolume,
        phase: &str,
        message: Option<&str>,
    ) -> Result<PersistentVolume> {
        let old = volume.status.clone().unwrap_or_default();
        if old.phase.as_deref() == Some(phase) && old.message.as_deref() == message {
            return Ok(volume.clone());
        }
        let moved = old.phase.as_deref() != Some(phase);
        let mut v = volume.clone();
        v.status = Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            message: message.map(str::to_string),
            last_phase_transition_time: if moved {
                Some(Time(k8s_openapi::jiff::Timestamp::now()))
            } else {
                old.last_phase_transition_time.clone()
            },
            ..old
        });
        Ok(self
            .volumes_api()
            .replace_status(&v.name_any(), &PostParams::default(), &v)
            .await?)
    }

    /// Undo the volume's half of a binding whose claim went elsewhere: a volume the
    /// controller bound forgets the claim, one the user pre-bound keeps the name.
    async fn unbind(&self, volume: &PersistentVolume) -> Result<()> {
        let mut v = volume.clone();
        if has(volume, BOUND_BY_CONTROLLER) {
            v.spec.get_or_insert_default().claim_ref = None;
            v.annotations_mut().remove(BOUND_BY_CONTROLLER);
        } else if let Some(r) = v.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
            r.uid = None;
        }
        let v = self
            .volumes_api()
            .replace(&v.name_any(), &PostParams::default(), &v)
            .await?;
        self.set_volume_phase(&v, "Available", None).await?;
        Ok(())
    }

    /// What happens to a released volume: Retain keeps it; Delete is the job of the
    /// provisioner that made it; a volume nobody can delete or recycle fails.
    async fn reclaim(&self, volume: &PersistentVolume) -> Result<()> {
        let name = volume.name_any();
        let failed = |reason: &'static str, message: String| async move {
            if phase(volume) != "Failed" {
                self.recorder.event(volume, Kind::Warning, reason, &message);
            }
            self.set_volume_phase(volume, "Failed", Some(&message))
                .await
                .map(|_| ())
        };
        match reclaim_policy(volume) {
            "Retain" => {
                tracing::debug!(volume = name, "released volume retained");
                Ok(())
            }
            "Delete" if has(volume, PROVISIONED_BY) => Ok(()),
            "Delete" => {
                failed(
                    "VolumeFailedDelete",
                    format!("error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"),
                )
                .await
            }
            "Recycle" => {
                failed("VolumeFailedRecycle", "No recycler plugin found for the volume!".into()).await
            }
            _ => {
                failed(
                    "VolumeUnknownReclaimPolicy",
                    "Volume has unrecognized PersistentVolumeReclaimPolicy".into(),
                )
                .await
            }
        }
    }
}

/// The volume's reclaim policy (Retain unless set).
pub fn reclaim_policy(v: &PersistentVolume) -> &str {
    v.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain")
}

/// Keys of the claim a volume names, for queueing.
pub fn claim_key(v: &PersistentVolume) -> Option<String> {
    let r = v.spec.as_ref()?.claim_ref.as_ref()?;
    Some(format!(
        "{}/{}",
        r.namespace.as_deref()?,
        r.name.as_deref()?
    ))
}

//! Claims: find or wait for a volume, hand the claim to its class's provisioner, bind it,
//! and mark it Lost when its volume goes.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, Pod,
};
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::{
    BETA_STORAGE_PROVISIONER, BIND_COMPLETED, BOUND_BY_CONTROLLER, Binder, NO_PROVISIONER,
    SELECTED_NODE, STORAGE_PROVISIONER, delays_binding, has, matching,
};
use crate::Result;
use crate::events::Kind;

fn volume_name(c: &PersistentVolumeClaim) -> &str {
    c.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

fn claim_ref_uid(v: &PersistentVolume) -> Option<&str> {
    v.spec
        .as_ref()?
        .claim_ref
        .as_ref()?
        .uid
        .as_deref()
        .filter(|u| !u.is_empty())
}

/// Whether any pod of the claim's namespace uses it (by name).
fn uses(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .any(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.claim_name == claim)
        })
}

impl Binder {
    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    pub(super) async fn sync_claim(&self, claim: Arc<PersistentVolumeClaim>) -> Result<()> {
        if has(claim.as_ref(), BIND_COMPLETED) {
            self.sync_bound_claim(&claim).await
        } else {
            self.sync_unbound_claim(&claim).await
        }
    }

    async fn sync_unbound_claim(&self, claim: &PersistentVolumeClaim) -> Result<()> {
        let class = self.class(matching::claim_class(claim));
        let delay = delays_binding(class.as_deref());
        let wanted = volume_name(claim);
        if wanted.is_empty() {
            let volumes = self.ctx.informers.pvs.store().state();
            if let Some(volume) = matching::find_best(claim, &volumes, None, delay, &|_| false) {
                self.bind(&volume, claim).await?;
                return Ok(());
            }
            if delay && !has(claim, SELECTED_NODE) {
                self.wait_for_consumer(claim);
            } else if !matching::claim_class(claim).is_empty() {
                return self.provision(claim).await;
            } else {
                self.recorder.event(
                    claim,
                    Kind::Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                );
            }
            self.set_claim_status(claim, "Pending", None).await?;
            return Ok(());
        }
        // Pre-bound to a volume by name.
        let Some(volume) = self.volume(wanted) else {
            self.set_claim_status(claim, "Pending", None).await?;
            return Ok(());
        };
        let claimed = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claimed.is_none() {
            if let Err(why) = matching::satisfies(claim, &volume) {
                self.recorder.event(
                    claim,
                    Kind::Warning,
                    "VolumeMismatch",
                    &format!("Cannot bind to requested volume {wanted:?}: {why}"),
                );
                self.set_claim_status(claim, "Pending", None).await?;
                return Ok(());
            }
        } else if !matching::bound_to(&volume, claim) {
            if has(claim, BOUND_BY_CONTROLLER) {
                return Err(crate::Error::Other(format!(
                    "claim {} is bound to volume {wanted} claimed by another claim",
                    claim.name_any()
                )));
            }
            self.recorder.event(
                claim,
                Kind::Warning,
                "FailedBinding",
                &format!("volume {wanted:?} already bound to a different claim."),
            );
            self.set_claim_status(claim, "Pending", None).await?;
            return Ok(());
        }
        self.bind(&volume, claim).await?;
        Ok(())
    }

    async fn sync_bound_claim(&self, claim: &PersistentVolumeClaim) -> Result<()> {
        let wanted = volume_name(claim);
        if wanted.is_empty() {
            self.lose(
                claim,
                "ClaimLost",
                "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(());
        }
        let Some(volume) = self.volume(wanted) else {
            self.lose(
                claim,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .await?;
            return Ok(());
        };
        let claimed = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if claimed.is_none() || claim_ref_uid(&volume) == claim.uid().as_deref() {
            // Bound (or the volume lost its half of the binding): make both halves whole.
            self.bind(&volume, claim).await?;
        } else {
            self.lose(
                claim,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await?;
        }
        Ok(())
    }

    async fn lose(&self, claim: &PersistentVolumeClaim, reason: &str, message: &str) -> Result<()> {
        if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Lost") {
            self.recorder.event(claim, Kind::Warning, reason, message);
        }
        self.set_claim_status(claim, "Lost", None).await
    }

    /// WaitForFirstConsumer, or WaitForPodScheduled when pods using it wait for a node.
    fn wait_for_consumer(&self, claim: &PersistentVolumeClaim) {
        let ns = claim.namespace();
        let name = claim.name_any();
        let mut waiting: Vec<String> = self
            .ctx
            .informers
            .pods
            .store()
            .state()
            .iter()
            .filter(|p| p.namespace() == ns && uses(p, &name))
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(str::is_empty)
            })
            .map(|p| p.name_any())
            .collect();
        waiting.sort();
        let (reason, message) = match waiting.len() {
            0 => (
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".to_string(),
            ),
            1 => (
                "WaitForPodScheduled",
                format!("waiting for pod {} to be scheduled", waiting[0]),
            ),
            _ => (
                "WaitForPodScheduled",
                format!("waiting for pods {} to be scheduled", waiting.join(",")),
            ),
        };
        self.recorder.event(claim, Kind::Normal, reason, &message);
    }

    /// Hand the claim to its class's provisioner (all provisioners are external to this
    /// controller): the storage-provisioner annotations, and an ExternalProvisioning event.
    async fn provision(&self, claim: &PersistentVolumeClaim) -> Result<()> {
        let name = matching::claim_class(claim);
        let Some(class) = self.class(name) else {
            let message = format!("storageclass.storage.k8s.io {name:?} not found");
            self.recorder
                .event(claim, Kind::Warning, "ProvisioningFailed", &message);
            self.set_claim_status(claim, "Pending", None).await?;
            return Ok(());
        };
        let provisioner = class.provisioner.as_str();
        if provisioner == NO_PROVISIONER || provisioner.starts_with("kubernetes.io/") {
            let message = format!("no volume plugin matched name: {provisioner}");
            self.recorder
                .event(claim, Kind::Warning, "ProvisioningFailed", &message);
            self.set_claim_status(claim, "Pending", None).await?;
            return Ok(());
        }
        let a = claim.annotations();
        if a.get(STORAGE_PROVISIONER).map(String::as_str) != Some(provisioner)
            || a.get(BETA_STORAGE_PROVISIONER).map(String::as_str) != Some(provisioner)
        {
            let mut c = claim.clone();
            let a = c.annotations_mut();
            a.insert(STORAGE_PROVISIONER.into(), provisioner.into());
            a.insert(BETA_STORAGE_PROVISIONER.into(), provisioner.into());
            self.claims_api(&c.namespace().unwrap_or_default())
                .replace(&c.name_any(), &PostParams::default(), &c)
                .await?;
        }
        self.recorder.event(
            claim,
            Kind::Normal,
            "ExternalProvisioning",
            &format!(
                "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
            ),
        );
        Ok(())
    }

    /// Bind both halves: the volume's claimRef (and phase), then the claim's volumeName,
    /// annotations and status. Writes only what differs.
    pub(super) async fn bind(
        &self,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<()> {
        let volume = self.bind_volume_to_claim(volume, claim).await?;
        let volume = self.set_volume_phase(&volume, "Bound", None).await?;
        let claim = self.bind_claim_to_volume(claim, &volume).await?;
        self.set_claim_status(&claim, "Bound", Some(&volume))
            .await?;
        tracing::debug!(claim = %crate::util::key(&claim), volume = %volume.name_any(), "bound");
        Ok(())
    }

    async fn bind_claim_to_volume(
        &self,
        claim: &PersistentVolumeClaim,
        volume: &PersistentVolume,
    ) -> Result<PersistentVolumeClaim> {
        let name = volume.name_any();
        let mut c = claim.clone();
        let mut dirty = false;
        if volume_name(&c) != name {
            c.spec.get_or_insert_default().volume_name = Some(name);
            c.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            dirty = true;
        }
        if c.annotations().get(BIND_COMPLETED).map(String::as_str) != Some("yes") {
            c.annotations_mut()
                .insert(BIND_COMPLETED.into(), "yes".into());
            dirty = true;
        }
        if !dirty {
            return Ok(c);
        }
        Ok(self
            .claims_api(&c.namespace().unwrap_or_default())
            .replace(&c.name_any(), &PostParams::default(), &c)
            .await?)
    }

    /// The claim's phase, with the volume's access modes and capacity once Bound.
    pub(super) async fn set_claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<()> {
        let old = claim.status.clone().unwrap_or_default();
        let spec = volume.and_then(|v| v.spec.as_ref());
        let status = PersistentVolumeClaimStatus {
            phase: Some(phase.into()),
            access_modes: spec.and_then(|s| s.access_modes.clone()),
            capacity: spec.and_then(|s| s.capacity.clone()),
            ..old.clone()
        };
        if status == old {
            return Ok(());
        }
        let mut c = claim.clone();
        c.status = Some(status);
        self.claims_api(&c.namespace().unwrap_or_default())
            .replace_status(&c.name_any(), &PostParams::default(), &c)
            .await?;
        Ok(())
    }
}

//! What the StatefulSet controller does to pods and claims: create a pod after its claims,
//! delete it, restore its identity labels, and keep its claims' owners as the retention
//! policy wants them. Each write is recorded as an event on the set, as kube's
//! StatefulPodControl records them.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use serde_json::json;

use super::Controller;
use super::identity::{self, claim_owners, claims, ordinal};
use crate::events::Kind;
use crate::util::{self, set_owner_refs};
use crate::{Error, Result};

fn message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

impl Controller {
    fn pods(&self, ns: &str) -> Api<Pod> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.ctx.client.clone(), ns)
    }

    fn cached_claim(&self, ns: &str, name: &str) -> Option<std::sync::Arc<PersistentVolumeClaim>> {
        self.ctx
            .informers
            .pvcs
            .store()
            .get(&ObjectRef::new(name).within(ns))
    }

    /// Record the outcome of `verb`: `ok` said when it worked, `failed` and the error when
    /// not (kube's wording).
    fn record(
        &self,
        set: &StatefulSet,
        verb: &str,
        err: Option<&kube::Error>,
        ok: &str,
        failed: &str,
    ) {
        match err {
            None => self.recorder.event(
                set,
                Kind::Normal,
                &format!("Successful{}", capitalized(verb)),
                ok,
            ),
            Some(e) => self.recorder.event(
                set,
                Kind::Warning,
                &format!("Failed{}", capitalized(verb)),
                &format!("{failed} failed error: {}", message(e)),
            ),
        }
    }

    fn record_pod(&self, set: &StatefulSet, verb: &str, pod: &Pod, err: Option<&kube::Error>) {
        let what = format!(
            "{verb} Pod {} in StatefulSet {}",
            pod.name_any(),
            set.name_any()
        );
        self.record(set, verb, err, &format!("{what} successful"), &what);
    }

    /// Whether a claim of the pod still belongs to an earlier pod of the same name (which
    /// the garbage collector will delete): the pod must wait for it to go.
    pub(super) fn claims_stale(&self, set: &StatefulSet, pod: &Pod) -> bool {
        let ns = set.namespace().unwrap_or_default();
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        claims(set, ordinal(pod).unwrap_or(0)).values().any(|c| {
            self.cached_claim(&ns, &c.name_any()).is_some_and(|found| {
                found
                    .owner_references()
                    .iter()
                    .any(|r| r.kind == "Pod" && r.name == name && r.uid != uid)
            })
        })
    }

    /// Create the pod's missing claims; an existing claim being deleted is an error.
    pub(super) async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        for mut claim in claims(set, ordinal(pod).unwrap_or(0)).into_values() {
            let name = claim.name_any();
            if let Some(found) = self.cached_claim(&ns, &name) {
                if found.metadata.deletion_timestamp.is_some() {
                    return Err(Error::Other(format!("pvc {name} is being deleted")));
                }
                continue;
            }
            if let Some(refs) = claim_owners(&claim, set, pod) {
                claim.metadata.owner_references = Some(refs);
            }
            let (p, s) = (pod.name_any(), set.name_any());
            let ok = format!("create Claim {name} Pod {p} in StatefulSet {s} success");
            let failed = format!("create Claim {name} for Pod {p} in StatefulSet {s}");
            match self
                .claims_api(&ns)
                .create(&PostParams::default(), &claim)
                .await
            {
                Ok(_) => self.record(set, "create", None, &ok, &failed),
                Err(e) if util::code(&e) == Some(409) => {}
                Err(e) => {
                    self.record(set, "create", Some(&e), &ok, &failed);
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Create the pod, its claims first.
    pub(super) async fn create_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        self.create_claims(set, pod).await?;
        let ns = set.namespace().unwrap_or_default();
        match self.pods(&ns).create(&PostParams::default(), pod).await {
            Ok(_) => {
                self.record_pod(set, "create", pod, None);
                Ok(())
            }
            Err(e) => {
                self.record_pod(set, "create", pod, Some(&e));
                Err(e.into())
            }
        }
    }

    pub(super) async fn delete_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        match self
            .pods(&ns)
            .delete(&pod.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {
                self.record_pod(set, "delete", pod, None);
                Ok(())
            }
            Err(e) if util::code(&e) == Some(404) => Ok(()),
            Err(e) => {
                self.record_pod(set, "delete", pod, Some(&e));
                Err(e.into())
            }
        }
    }

    /// Whether every existing claim of the pod has the owners the retention policy wants.
    pub(super) fn claims_match_policy(&self, set: &StatefulSet, pod: &Pod) -> bool {
        let ns = set.namespace().unwrap_or_default();
        claims(set, ordinal(pod).unwrap_or(0)).values().all(|c| {
            self.cached_claim(&ns, &c.name_any())
                .is_none_or(|found| claim_owners(&found, set, pod).is_none())
        })
    }

    /// Give the pod's claims the owners the retention policy wants.
    pub(super) async fn fix_claim_owners(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api = self.claims_api(&ns);
        for c in claims(set, ordinal(pod).unwrap_or(0)).values() {
            let Some(found) = self.cached_claim(&ns, &c.name_any()) else {
                continue;
            };
            if let Some(refs) = claim_owners(&found, set, pod) {
                set_owner_refs(&api, found.as_ref(), &refs).await?;
            }
        }
        Ok(())
    }

    /// Restore the pod's identity labels, create claims it lacks and fix their owners.
    pub(super) async fn update_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<()> {
        if !identity::identity_matches(set, pod) {
            let ns = set.namespace().unwrap_or_default();
            let patch = json!({"metadata": {"labels": identity::identity_labels(set, pod)}});
            if let Err(e) = self
                .pods(&ns)
                .patch(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                self.record_pod(set, "update", pod, Some(&e));
                return Err(e.into());
            }
            self.record_pod(set, "update", pod, None);
        }
        if !identity::storage_matches(set, pod) {
            self.create_claims(set, pod).await?;
        }
        self.fix_claim_owners(set, pod).await
    }
}

fn capitalized(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

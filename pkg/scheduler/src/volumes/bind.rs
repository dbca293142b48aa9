//! Reserve and PreBind of VolumeBinding: promise the chosen node's volumes, write the
//! bindings and selected nodes, and wait for the PV controller and provisioners to finish.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use minik_controllers::util;
use minik_controllers::volume::{BOUND_BY_CONTROLLER, SELECTED_NODE, matching};

use super::{BIND_TIMEOUT, Plan, PodVolumes, Volumes, claim_ref, find, fully_bound, volume_name};
use crate::cache::Cache;

/// Whether `b`'s resourceVersion is older than `a`'s (the cache has not caught up).
fn older(a: &impl ResourceExt, b: &impl ResourceExt) -> bool {
    let rv = |o: Option<String>| o.and_then(|v| v.parse::<u64>().ok());
    matches!((rv(a.resource_version()), rv(b.resource_version())), (Some(x), Some(y)) if y < x)
}

impl Volumes {
    /// Reserve: what PreBind will do on `node`, promised so later pods do not take it.
    pub fn assume(&self, v: &PodVolumes, cache: &Cache, node: &str) -> Plan {
        let Some(state) = cache.nodes.get(node) else {
            return Plan::default();
        };
        let Ok(mut plan) = find(v, &state.node) else {
            return Plan::default();
        };
        plan.node = Some(state.node.clone());
        let mut assumed = self.assumed();
        for (pv, claim) in &plan.statics {
            assumed
                .volumes
                .insert(pv.name_any(), util::key(claim.as_ref()));
        }
        for claim in &plan.provisions {
            assumed
                .claims
                .insert(util::key(claim.as_ref()), node.into());
        }
        plan
    }

    /// PreBind: bind the planned volumes, ask for the others, and wait until every claim is
    /// fully bound. `pod_gone` says when waiting is pointless.
    pub async fn bind(
        &self,
        client: &kube::Client,
        plan: Plan,
        pod_gone: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(), String> {
        let result = self.bind_and_wait(client, &plan, pod_gone).await;
        let mut assumed = self.assumed();
        for (pv, _) in &plan.statics {
            assumed.volumes.remove(&pv.name_any());
        }
        for claim in &plan.provisions {
            assumed.claims.remove(&util::key(claim.as_ref()));
        }
        result
    }

    async fn bind_and_wait(
        &self,
        client: &kube::Client,
        plan: &Plan,
        pod_gone: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<(), String> {
        let Some(node) = &plan.node else {
            return Ok(());
        };
        let pp = PostParams::default();
        let mut statics = Vec::new();
        for (pv, claim) in &plan.statics {
            let mut v = (**pv).clone();
            v.spec.get_or_insert_default().claim_ref = Some(claim_ref(claim));
            v.annotations_mut()
                .insert(BOUND_BY_CONTROLLER.into(), "yes".into());
            let api: Api<PersistentVolume> = Api::all(client.clone());
            let written = api.replace(&v.name_any(), &pp, &v).await;
            statics.push((written.map_err(|e| e.to_string())?, claim.clone()));
        }
        let mut provisions = Vec::new();
        for claim in &plan.provisions {
            let mut c = (**claim).clone();
            if c.annotations().get(SELECTED_NODE) != node.metadata.name.as_ref() {
                c.annotations_mut()
                    .insert(SELECTED_NODE.into(), node.name_any());
                let api: Api<PersistentVolumeClaim> =
                    Api::namespaced(client.clone(), &c.namespace().unwrap_or_default());
                c = api
                    .replace(&c.name_any(), &pp, &c)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            provisions.push(c);
        }
        let deadline = Instant::now() + BIND_TIMEOUT;
        loop {
            if pod_gone() {
                return Err("pod does not exist any more".into());
            }
            if self.check(node, &statics, &provisions)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("context deadline exceeded".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether every claim PreBind touched is fully bound; an error when one never will be.
    fn check(
        &self,
        node: &Node,
        statics: &[(PersistentVolume, Arc<PersistentVolumeClaim>)],
        provisions: &[PersistentVolumeClaim],
    ) -> Result<bool, String> {
        let node_name = node.name_any();
        let current = |c: &PersistentVolumeClaim| {
            self.claim(&c.namespace().unwrap_or_default(), &c.name_any())
                .ok_or_else(|| {
                    format!(
                        "failed to check binding: claim {:?} not found",
                        c.name_any()
                    )
                })
        };
        for (written, claim) in statics {
            let Some(pv) = self.pv(&written.name_any()) else {
                return Err(format!(
                    "failed to check binding: pv {:?} not found",
                    written.name_any()
                ));
            };
            if older(written, pv.as_ref()) {
                return Ok(false);
            }
            let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            if r.is_none_or(|r| r.uid.as_deref().is_none_or(str::is_empty)) {
                return Err(format!("ClaimRef got reset for pv {:?}", pv.name_any()));
            }
            let claim = current(claim)?;
            if !fully_bound(&claim) {
                return Ok(false);
            }
        }
        for written in provisions {
            let claim = current(written)?;
            if older(written, claim.as_ref()) {
                return Ok(false);
            }
            if claim.annotations().get(SELECTED_NODE) != Some(&node_name) {
                return Err(format!(
                    "provisioning failed for PVC {:?}",
                    claim.name_any()
                ));
            }
            let wanted = volume_name(&claim);
            if !wanted.is_empty() {
                let Some(pv) = self.pv(wanted) else {
                    return Ok(false);
                };
                if !matching::node_affinity_ok(&pv, node) {
                    return Err(format!(
                        "pv {wanted:?} node affinity doesn't match node {node_name:?}"
                    ));
                }
            }
            if !fully_bound(&claim) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

//! How many pods a budget's pods' controllers want: the sum of each controller's scale,
//! found as kube-controller-manager finds it — a ReplicaSet (unless a Deployment controls
//! it), the Deployment of a ReplicaSet, a ReplicationController, a StatefulSet, or else any
//! resource that serves a /scale subresource.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};

use crate::util::{self, controller_of};
use crate::{Ctx, Error, Informer, Result};

/// (uid, replicas) of a controller.
type Scale = (String, i32);

fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// The object `r` names in `ns`, if the cache has it with that uid.
fn cached<K>(informer: &Informer<K>, ns: &str, r: &OwnerReference) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    K: Send + Sync + 'static,
{
    informer
        .namespaced(&format!("{ns}/{}", r.name))
        .map(|(_, o)| o)
        .filter(|o| o.uid().as_deref() == Some(r.uid.as_str()))
}

fn is(r: &OwnerReference, kind: &str, groups: &[&str]) -> bool {
    r.kind == kind && groups.contains(&group(&r.api_version))
}

/// A controller the informers know.
fn builtin(ctx: &Ctx, r: &OwnerReference, ns: &str) -> Option<Scale> {
    let i = &ctx.informers;
    if is(r, "ReplicaSet", &["apps", "extensions"])
        && let Some(rs) = cached(&i.replicasets, ns, r)
    {
        return match controller_of(rs.as_ref()) {
            Some(d) if is(d, "Deployment", &["apps", "extensions"]) => {
                let d = cached(&i.deployments, ns, d)?;
                Some((d.uid()?, d.spec.replicas.unwrap_or(1)))
            }
            _ => Some((rs.uid()?, rs.spec.replicas.unwrap_or(1))),
        };
    }
    if is(r, "ReplicationController", &[""]) {
        let rc = cached(&i.replicationcontrollers, ns, r)?;
        let replicas = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        return Some((rc.uid()?, replicas));
    }
    if is(r, "StatefulSet", &["apps"]) {
        let ss = cached(&i.statefulsets, ns, r)?;
        return Some((ss.uid()?, ss.spec.replicas.unwrap_or(1)));
    }
    None
}

/// Any other controller, through its /scale subresource (None when it has none).
async fn by_scale_subresource(ctx: &Ctx, r: &OwnerReference, ns: &str) -> Result<Option<Scale>> {
    let (g, v) = match r.api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", r.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(g, v, &r.kind);
    let (resource, _) = kube::discovery::pinned_kind(&ctx.client, &gvk).await?;
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    match api.get_scale(&r.name).await {
        Ok(scale) if scale.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
            let replicas = scale.spec.and_then(|s| s.replicas).unwrap_or(0);
            Ok(Some((r.uid.clone(), replicas)))
        }
        Ok(_) => Ok(None),
        Err(e) if util::code(&e) == Some(404) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The sum of the scales of the controllers of `pods` (each counted once), and the names
/// of the pods no controller owns.
pub async fn expected(ctx: &Ctx, pods: &[Arc<Pod>]) -> Result<(i32, Vec<String>)> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(r) = controller_of(pod.as_ref()) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if scales.contains_key(&r.uid) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let found = match builtin(ctx, r, &ns) {
            Some(s) => Some(s),
            None => by_scale_subresource(ctx, r, &ns).await?,
        };
        let Some((uid, replicas)) = found else {
            return Err(Error::Other(format!(
                "found no controllers for pod {:?}",
                pod.name_any()
            )));
        };
        scales.insert(uid, replicas);
    }
    let total = scales.values().map(|n| i64::from(*n)).sum::<i64>();
    Ok((i32::try_from(total).unwrap_or(i32::MAX), unmanaged))
}

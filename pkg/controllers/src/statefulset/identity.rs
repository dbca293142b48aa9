//! A StatefulSet pod's identity: its name `<set>-<ordinal>`, the labels naming it, its
//! hostname and subdomain, its claims `<template>-<set>-<ordinal>` from the
//! volumeClaimTemplates, and who owns those claims under the retention policy.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;

use crate::history::REVISION_LABEL;
use crate::util::{self, controller_ref};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The parent name and ordinal in a pod's name (`web-3` is `("web", 3)`).
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

pub fn ordinal(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).map(|(_, o)| o)
}

/// Whether the pod's name says it belongs to `set`.
pub fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or(""))
        .is_some_and(|(p, _)| p == set.name_any())
}

pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .ordinals
        .as_ref()
        .and_then(|o| o.start)
        .unwrap_or(0)
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.replicas.unwrap_or(1).max(0)
}

/// Whether the pod's ordinal is one the set keeps.
pub fn in_range(set: &StatefulSet, pod: &Pod) -> bool {
    let start = start_ordinal(set);
    ordinal(pod).is_some_and(|o| o >= start && o < start.saturating_add(replicas(set)))
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.name_any())
}

pub fn revision_of(pod: &Pod) -> &str {
    pod.labels()
        .get(REVISION_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

/// The claims a pod of `ordinal` has, by template name.
pub fn claims(set: &StatefulSet, ordinal: i32) -> BTreeMap<String, PersistentVolumeClaim> {
    let selector_labels = set.spec.selector.match_labels.clone().unwrap_or_default();
    set.spec
        .volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let template = t.name_any();
            let mut claim = t.clone();
            claim.metadata.name = Some(format!("{template}-{}-{ordinal}", set.name_any()));
            claim.metadata.namespace = set.namespace();
            let mut labels = claim.metadata.labels.take().unwrap_or_default();
            labels.extend(selector_labels.clone());
            claim.metadata.labels = Some(labels);
            claim.status = None;
            (template, claim)
        })
        .collect()
}

/// Set the pod's name, namespace and identity labels.
fn update_identity(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let name = pod_name(set, ordinal);
    pod.metadata.name = Some(name.clone());
    pod.metadata.namespace = set.namespace();
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name);
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// The pod's volumes for the claim templates replace same-named ones of the template.
fn update_storage(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let claims = claims(set, ordinal);
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claims.contains_key(&v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
}

/// The pod of `ordinal` made from `set`'s template, labelled with `revision`.
pub fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Pod {
    let name = pod_name(set, ordinal);
    let mut pod = util::pod_from_template(&set.spec.template, set, &set.name_any(), Some(name));
    update_identity(set, &mut pod, ordinal);
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = pod.metadata.name.clone();
        spec.subdomain = set.spec.service_name.clone().filter(|s| !s.is_empty());
    }
    update_storage(set, &mut pod, ordinal);
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(REVISION_LABEL.into(), revision.into());
    pod
}

/// Whether the pod's name and labels are those of a member of `set`.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ord) = ordinal(pod) else {
        return false;
    };
    let name = pod.name_any();
    is_member(set, pod)
        && name == pod_name(set, ord)
        && pod.namespace() == set.namespace()
        && pod.labels().get(POD_NAME_LABEL) == Some(&name)
        && pod.labels().get(POD_INDEX_LABEL) == Some(&ord.to_string())
}

/// Whether the pod mounts every claim of its ordinal.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ord) = ordinal(pod) else {
        return false;
    };
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    claims(set, ord).iter().all(|(template, claim)| {
        volumes.into_iter().flatten().any(|v| {
            v.name == *template
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim.name_any())
        })
    })
}

/// The identity labels a pod lacks, as a label map to patch in.
pub fn identity_labels(set: &StatefulSet, pod: &Pod) -> BTreeMap<String, String> {
    let ord = ordinal(pod).unwrap_or(0);
    let mut want = Pod::default();
    update_identity(set, &mut want, ord);
    want.metadata.labels.unwrap_or_default()
}

/// whenDeleted and whenScaled: whether each is Delete.
fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set.spec.persistent_volume_claim_retention_policy.as_ref();
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn matches_ref(r: &OwnerReference, api_version: &str, kind: &str, name: &str) -> bool {
    r.api_version == api_version && r.kind == kind && r.name == name
}

/// The owner references a claim of `pod` should have under the set's retention policy, or
/// None when they are right already (or are someone else's business: stale references to
/// an earlier set or pod of the same name, or another controller).
pub fn claim_owners(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> Option<Vec<OwnerReference>> {
    let (set_name, pod_name) = (set.name_any(), pod.name_any());
    let (set_uid, pod_uid) = (set.uid().unwrap_or_default(), pod.uid().unwrap_or_default());
    let refs = claim.owner_references();
    let ours = |r: &OwnerReference| {
        matches_ref(r, "apps/v1", "StatefulSet", &set_name)
            || matches_ref(r, "v1", "Pod", &pod_name)
    };
    let stale = refs.iter().any(|r| {
        (matches_ref(r, "apps/v1", "StatefulSet", &set_name) && r.uid != set_uid)
            || (matches_ref(r, "v1", "Pod", &pod_name) && r.uid != pod_uid)
    });
    let (when_deleted, when_scaled) = policy(set);
    let other_controller = (when_deleted || when_scaled)
        && refs.iter().any(|r| !ours(r) && r.controller == Some(true));
    if stale || (other_controller && !refs.iter().any(ours)) {
        return None;
    }
    let mut want: Vec<OwnerReference> = refs.iter().filter(|r| !ours(r)).cloned().collect();
    if !other_controller {
        let scaled_down = !in_range(set, pod);
        if when_scaled && scaled_down {
            want.push(controller_ref(pod));
        }
        if when_deleted && !(when_scaled && scaled_down) {
            want.push(controller_ref(set));
        }
    }
    (want != refs).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(replicas: i32, policy: (&str, &str)) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "replicas": replicas,
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "persistentVolumeClaimRetentionPolicy":
                    {"whenDeleted": policy.0, "whenScaled": policy.1},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{"name": "c", "image": "nginx"}],
                        "volumes": [{"name": "data", "emptyDir": {}},
                                    {"name": "cache", "emptyDir": {}}]
                    }
                },
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"t": "x"}},
                    "spec": {"accessModes": ["ReadWriteOnce"]}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn names_parse_into_parent_and_ordinal() {
        assert_eq!(parent_and_ordinal("web-12"), Some(("web", 12)));
        assert_eq!(parent_and_ordinal("my-web-0"), Some(("my-web", 0)));
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(parent_and_ordinal("web-x1"), None);
        assert_eq!(parent_and_ordinal("web"), None);
    }

    #[test]
    fn a_new_pod_has_its_identity_and_claims() {
        let s = set(3, ("Retain", "Retain"));
        let pod = new_pod(&s, 2, "web-abc");
        assert_eq!(pod.name_any(), "web-2");
        assert_eq!(pod.labels()[POD_NAME_LABEL], "web-2");
        assert_eq!(pod.labels()[POD_INDEX_LABEL], "2");
        assert_eq!(pod.labels()[REVISION_LABEL], "web-abc");
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volumes = spec.volumes.as_ref().unwrap();
        assert_eq!(volumes.len(), 2);
        let data = volumes.iter().find(|v| v.name == "data").unwrap();
        assert_eq!(
            data.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        assert!(identity_matches(&s, &pod) && storage_matches(&s, &pod));
        let claim = &claims(&s, 2)["data"];
        assert_eq!(claim.name_any(), "data-web-2");
        assert_eq!(claim.labels()["app"], "web");
        assert_eq!(claim.labels()["t"], "x");
    }

    #[test]
    fn claim_owners_follow_the_retention_policy() {
        let mut pod = new_pod(&set(3, ("Retain", "Retain")), 2, "r");
        pod.metadata.uid = Some("pod-uid".into());
        let claim = claims(&set(3, ("Retain", "Retain")), 2)["data"].clone();
        let kinds = |s: &StatefulSet, c: &PersistentVolumeClaim| {
            claim_owners(c, s, &pod).map(|v| v.into_iter().map(|r| r.kind).collect::<Vec<_>>())
        };
        assert_eq!(kinds(&set(3, ("Retain", "Retain")), &claim), None);
        assert_eq!(
            kinds(&set(3, ("Delete", "Retain")), &claim),
            Some(vec!["StatefulSet".to_string()])
        );
        // In range and only whenScaled: nothing; scaled down: the pod owns it.
        assert_eq!(kinds(&set(3, ("Retain", "Delete")), &claim), None);
        assert_eq!(
            kinds(&set(2, ("Delete", "Delete")), &claim),
            Some(vec!["Pod".to_string()])
        );
        // Going back to Retain removes our references.
        let mut owned = claim.clone();
        owned.metadata.owner_references = Some(vec![controller_ref(&set(3, ("Delete", "Retain")))]);
        assert_eq!(kinds(&set(3, ("Retain", "Retain")), &owned), Some(vec![]));
        // A reference to an earlier set of the same name is left alone.
        let mut stale = owned.clone();
        stale.metadata.owner_references.as_mut().unwrap()[0].uid = "old".into();
        assert_eq!(kinds(&set(3, ("Retain", "Retain")), &stale), None);
    }
}

//! The volumes the local-path provisioner makes: where their directory is, what they look
//! like, and which claims it cannot serve.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, LocalVolumeSource, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::{HOSTNAME, NAME, NODE_ANNOTATION};
use crate::volume::PROVISIONED_BY;

/// The directory of a volume for the claim (k3s's naming).
pub fn volume_dir(base: &Path, volume: &str, claim: &PersistentVolumeClaim) -> PathBuf {
    let ns = claim.namespace().unwrap_or_default();
    base.join(format!("{volume}_{ns}_{}", claim.name_any()))
}

/// Why the provisioner cannot make a volume for the claim, if it cannot.
pub fn unsupported(claim: &PersistentVolumeClaim) -> Option<&'static str> {
    let spec = claim.spec.as_ref()?;
    if spec.selector.is_some() {
        return Some("claim Selector is not supported");
    }
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes
        .iter()
        .any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod")
    {
        return Some("NodePath only supports ReadWriteOnce and ReadWriteOncePod access modes");
    }
    None
}

/// The volume the provisioner makes for `claim` of `class` at `path` on `node` (whose
/// `kubernetes.io/hostname` is `host`).
pub fn volume_for(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    name: &str,
    path: &Path,
    node: &str,
    host: &str,
) -> PersistentVolume {
    let spec = claim.spec.clone().unwrap_or_default();
    let path = path.to_string_lossy().into_owned();
    let local = claim.annotations().get("volumeType").map(String::as_str) == Some("local")
        || class
            .annotations()
            .get("defaultVolumeType")
            .map(String::as_str)
            == Some("local");
    let term = NodeSelectorTerm {
        match_expressions: Some(vec![NodeSelectorRequirement {
            key: HOSTNAME.into(),
            operator: "In".into(),
            values: Some(vec![host.into()]),
        }]),
        match_fields: None,
    };
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                [(PROVISIONED_BY, NAME), (NODE_ANNOTATION, node)]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: spec
                .resources
                .and_then(|r| r.requests)
                .map(|r| r.into_iter().filter(|(k, _)| k == "storage").collect()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: claim.metadata.name.clone(),
                uid: claim.uid(),
                resource_version: claim.resource_version(),
                ..Default::default()
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some(spec.volume_mode.unwrap_or_else(|| "Filesystem".into())),
            mount_options: class.mount_options.clone(),
            host_path: (!local).then(|| HostPathVolumeSource {
                path: path.clone(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            local: local.then_some(LocalVolumeSource {
                path,
                fs_type: None,
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![term],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(modes: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns",
            "uid": "1234", "resourceVersion": "7"},
            "spec": {"accessModes": modes, "storageClassName": "local-path",
                "resources": {"requests": {"storage": "2Gi"}}}}))
        .unwrap()
    }

    #[test]
    fn volumes_are_made_as_k3s_makes_them() {
        let c = claim(json!(["ReadWriteOnce"]));
        let class: StorageClass =
            serde_json::from_value(json!({"metadata": {"name": "local-path"},
            "provisioner": NAME, "reclaimPolicy": "Retain"}))
            .unwrap();
        let dir = volume_dir(Path::new("/data/storage"), "pvc-1234", &c);
        assert_eq!(dir, Path::new("/data/storage/pvc-1234_ns_data"));
        let pv = volume_for(&c, &class, "pvc-1234", &dir, "sim-1", "sim-1");
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["annotations"][PROVISIONED_BY], NAME);
        assert_eq!(v["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(v["spec"]["storageClassName"], "local-path");
        assert_eq!(
            v["spec"]["hostPath"]["path"],
            "/data/storage/pvc-1234_ns_data"
        );
        assert_eq!(v["spec"]["claimRef"]["uid"], "1234");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
            json!({"key": HOSTNAME, "operator": "In", "values": ["sim-1"]})
        );
        assert!(unsupported(&c).is_none());
        assert!(unsupported(&claim(json!(["ReadWriteMany"]))).is_some());
    }
}

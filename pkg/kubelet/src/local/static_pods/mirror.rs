//! Mirror pods: the API's copy of a static pod, as kubelet's mirror client keeps it — the
//! static pod plus the annotation `kubernetes.io/config.mirror: <hash>` and an
//! ownerReference to the Node (controller), created when missing, deleted (grace 0, on its
//! uid) when it is being deleted, is of another version of the manifest, or its manifest is
//! gone.

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use super::manifest::HASH;

pub const MIRROR: &str = "kubernetes.io/config.mirror";

/// Whether `pod` is a mirror pod (the kubelet runs it from its manifest, not from the API).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.annotations().contains_key(MIRROR)
}

/// The hash (and runtime uid) of the static pod `pod` is the mirror of.
pub fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.annotations().get(MIRROR).map(String::as_str)
}

/// The uid the runtime knows `pod` by: a mirror pod's static pod's hash, else its own.
pub fn runtime_uid(pod: &Pod) -> String {
    mirror_hash(pod)
        .map(str::to_string)
        .or_else(|| pod.metadata.uid.clone())
        .unwrap_or_default()
}

/// Whether `mirror` is the current mirror of `static_pod`.
pub fn mirrors(mirror: &Pod, static_pod: &Pod) -> bool {
    mirror.metadata.deletion_timestamp.is_none()
        && mirror_hash(mirror).is_some()
        && mirror_hash(mirror) == static_pod.annotations().get(HASH).map(String::as_str)
}

/// The mirror pod of `static_pod` owned by `node`.
pub fn mirror_of(static_pod: &Pod, node: &Node) -> Pod {
    let mut mirror = static_pod.clone();
    let hash = static_pod
        .annotations()
        .get(HASH)
        .cloned()
        .unwrap_or_default();
    mirror.annotations_mut().insert(MIRROR.into(), hash);
    mirror.metadata.uid = None;
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.name_any(),
        uid: node.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    mirror.status = None;
    mirror
}

fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Create the mirror pod of `static_pod`.
pub async fn create(client: &kube::Client, static_pod: &Pod) -> Result<(), kube::Error> {
    let node_name = static_pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default();
    let node = Api::<Node>::all(client.clone()).get(&node_name).await?;
    let mirror = mirror_of(static_pod, &node);
    let api: Api<Pod> =
        Api::namespaced(client.clone(), &static_pod.namespace().unwrap_or_default());
    api.create(&PostParams::default(), &mirror).await?;
    tracing::info!(pod = static_pod.name_any(), "mirror pod created");
    Ok(())
}

/// Delete `mirror` now (grace 0, only that object); gone already is fine.
pub async fn delete(client: &kube::Client, mirror: &Pod) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &mirror.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: mirror.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&mirror.name_any(), &params).await {
        Ok(_) => {
            tracing::info!(pod = mirror.name_any(), "mirror pod deleted");
            Ok(())
        }
        Err(e) if matches!(code(&e), Some(404 | 409)) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_pod_is_the_static_pod_owned_by_its_node() {
        let static_pod = super::super::manifest::static_pod(
            b"{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{name: c, image: i}]}}",
            "/m/a.yaml",
            "n1",
            "t",
        )
        .unwrap();
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        node.metadata.uid = Some("node-uid".into());
        let mirror = mirror_of(&static_pod, &node);
        assert!(is_mirror(&mirror) && !is_mirror(&static_pod));
        assert_eq!(mirror_hash(&mirror), static_pod.uid().as_deref());
        assert_eq!(mirror.uid(), None);
        let owner = &mirror.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", "n1"));
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("node-uid", Some(true))
        );
        assert!(mirrors(&mirror, &static_pod));
        let mut deleting = mirror.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        assert!(!mirrors(&deleting, &static_pod));
    }
}

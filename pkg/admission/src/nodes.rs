//! NodeRestriction (a kubelet may change only its own Node and Lease, create only mirror
//! pods bound to itself, and update or delete only pods bound to itself) and
//! TaintNodesByCondition (a new Node starts tainted not-ready until its kubelet says it is).

use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Registry, Result};
use serde_json::{Value, json};

use crate::Plugin;

/// The node a user is, if it is one.
fn node_of<'a>(attrs: &Attributes<'a>) -> Option<&'a str> {
    let user = attrs.user;
    if !user.groups.iter().any(|g| g == "system:nodes") {
        return None;
    }
    user.name
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
}

const RESTRICTED_LABELS: &str = "node-restriction.kubernetes.io/";

fn restricted_labels(obj: &Value, old: Option<&Value>) -> Vec<String> {
    obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| {
            k.starts_with(RESTRICTED_LABELS)
                && old.is_none_or(|o| o["metadata"]["labels"][k.as_str()] != **v)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

/// The containers of a pod spec (init, app, ephemeral).
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| spec[k].as_array().into_iter().flatten())
}

/// Whether a pod spec names an object of `kind` ("secret" or "configMap") anywhere: in
/// volumes (projected sources too), env, envFrom, or (secrets) imagePullSecrets and the
/// volume plugins' secretRefs.
fn references(spec: &Value, kind: &str) -> bool {
    let key_ref = format!("{kind}KeyRef");
    let ref_ = format!("{kind}Ref");
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    let in_volumes = volumes.clone().any(|v| {
        !v[kind].is_null()
            || v["projected"]["sources"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| !s[kind].is_null())
            || (kind == "secret"
                && v.as_object().into_iter().flatten().any(|(_, src)| {
                    !src["secretRef"].is_null() || !src["nodePublishSecretRef"].is_null()
                }))
    });
    let in_containers = containers(spec).any(|c| {
        c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| !e["valueFrom"][key_ref.as_str()].is_null())
            || c["envFrom"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|e| !e[ref_.as_str()].is_null())
    });
    let pull = kind == "secret"
        && spec["imagePullSecrets"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    in_volumes || in_containers || pull
}

/// Why a node may not create this mirror pod, as NodeRestriction says: a single owner
/// reference (a controller one, to its own Node), and no service account, secret, config
/// map, claim, generic ephemeral volume or resource claim.
fn mirror_refusal(node: &str, pod: &Value) -> Option<String> {
    let owners = pod["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if owners.len() > 1 {
        return Some(format!(
            "node {node:?} can only create pods with a single owner reference set to itself"
        ));
    }
    if let Some(o) = owners.first() {
        if o["apiVersion"] != "v1" || o["kind"] != "Node" || o["name"] != node {
            return Some(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        if o["controller"] != true {
            return Some(format!(
                "node {node:?} can only create pods with a controller owner reference set to itself"
            ));
        }
        if o["blockOwnerDeletion"] == true {
            return Some(format!(
                "node {node:?} must not set blockOwnerDeletion on an owner reference"
            ));
        }
    }
    let spec = &pod["spec"];
    if spec["serviceAccountName"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Some(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    if references(spec, "secret") {
        return Some(format!(
            "node {node:?} can not create pods that reference secrets"
        ));
    }
    if references(spec, "configMap") {
        return Some(format!(
            "node {node:?} can not create pods that reference configmaps"
        ));
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        if !v["persistentVolumeClaim"].is_null() {
            return Some(format!(
                "node {node:?} can not create pods that reference persistentvolumeclaims"
            ));
        }
        if !v["ephemeral"].is_null() {
            return Some(format!(
                "node {node:?} can not create pods that use generic ephemeral volumes"
            ));
        }
    }
    if spec["resourceClaims"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Some(format!(
            "node {node:?} can not create pods that reference resourceclaims"
        ));
    }
    None
}

pub struct NodeRestriction;

impl NodeRestriction {
    fn node(attrs: &Attributes<'_>, node: &str, obj: &Value) -> Result<()> {
        let forbid = |m: String| Err(ApiError::forbidden(attrs.info, attrs.name, m));
        if attrs.name != node {
            return forbid(format!(
                "node {node:?} is not allowed to modify node {:?}",
                attrs.name
            ));
        }
        if attrs.operation == Operation::Delete {
            return Ok(());
        }
        let labels = restricted_labels(obj, attrs.old);
        if !labels.is_empty() {
            return forbid(format!(
                "node {node:?} is not allowed to modify labels: {}",
                labels.join(", ")
            ));
        }
        if let Some(old) = attrs.old
            && attrs.subresource.is_none()
            && old["spec"]["taints"] != obj["spec"]["taints"]
        {
            return forbid(format!("node {node:?} is not allowed to modify taints"));
        }
        Ok(())
    }

    fn pod(attrs: &Attributes<'_>, node: &str, obj: &Value) -> Result<()> {
        let forbid = |m: String| Err(ApiError::forbidden(attrs.info, attrs.name, m));
        let bound = |p: &Value| p["spec"]["nodeName"] == node;
        match (attrs.operation, attrs.subresource) {
            (Operation::Create, None) => {
                if obj["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null() {
                    return forbid(format!(
                        "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
                    ));
                }
                if !bound(obj) {
                    return forbid(format!(
                        "node {node:?} can only create pods with spec.nodeName set to itself"
                    ));
                }
                if let Some(why) = mirror_refusal(node, obj) {
                    return forbid(why);
                }
                Ok(())
            }
            (Operation::Update, Some("status")) if !attrs.old.is_some_and(bound) => {
                forbid(format!(
                    "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                ))
            }
            (Operation::Delete, _) if !bound(obj) => forbid(format!(
                "node {node:?} can only delete pods with spec.nodeName set to itself"
            )),
            (Operation::Update, None) => {
                forbid(format!("node {node:?} can only update pod status"))
            }
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Plugin for NodeRestriction {
    async fn validate(&self, _: &Registry, attrs: &Attributes<'_>, obj: &Value) -> Result<Verdict> {
        let Some(node) = node_of(attrs) else {
            return Ok(Verdict::default());
        };
        match (attrs.info.group, attrs.info.plural) {
            ("", "nodes") => Self::node(attrs, node, obj)?,
            ("", "pods") => Self::pod(attrs, node, obj)?,
            ("coordination.k8s.io", "leases")
                if attrs.namespace == Some("kube-node-lease") && attrs.name != node =>
            {
                return Err(ApiError::forbidden(
                    attrs.info,
                    attrs.name,
                    "can only access node lease with the same name as the requesting node".into(),
                ));
            }
            _ => {}
        }
        Ok(Verdict::default())
    }
}

pub struct TaintNodesByCondition;

#[async_trait::async_trait]
impl Plugin for TaintNodesByCondition {
    async fn mutate(
        &self,
        _: &Registry,
        attrs: &Attributes<'_>,
        node: &mut Value,
    ) -> Result<Vec<String>> {
        if !crate::creates(attrs, "nodes") {
            return Ok(Vec::new());
        }
        let taint = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"});
        crate::ensure_array(&mut node["spec"]["taints"]);
        if let Some(t) = node["spec"]["taints"].as_array_mut()
            && !t
                .iter()
                .any(|x| x["key"] == taint["key"] && x["effect"] == taint["effect"])
        {
            t.push(taint);
        }
        Ok(Vec::new())
    }
}

/// DefaultStorageClass: a claim that names no class gets the default one.
pub struct DefaultStorageClass;

#[async_trait::async_trait]
impl Plugin for DefaultStorageClass {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pvc: &mut Value,
    ) -> Result<Vec<String>> {
        if !crate::creates(attrs, "persistentvolumeclaims")
            || !pvc["spec"]["storageClassName"].is_null()
        {
            return Ok(Vec::new());
        }
        let classes = crate::cached(reg, "storage.k8s.io", "v1", "storageclasses", None).await?;
        let default = classes
            .iter()
            .filter(|c| {
                c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                    == "true"
            })
            .max_by(|a, b| {
                a["metadata"]["creationTimestamp"]
                    .as_str()
                    .cmp(&b["metadata"]["creationTimestamp"].as_str())
                    .then(
                        b["metadata"]["name"]
                            .as_str()
                            .cmp(&a["metadata"]["name"].as_str()),
                    )
            });
        if let Some(c) = default {
            pvc["spec"]["storageClassName"] = c["metadata"]["name"].clone();
        }
        Ok(Vec::new())
    }
}

/// StorageObjectInUseProtection: new claims and volumes get the finalizers that keep them
/// while they are in use (the registry's protection controller takes them off).
pub struct StorageObjectInUseProtection;

#[async_trait::async_trait]
impl Plugin for StorageObjectInUseProtection {
    async fn mutate(
        &self,
        _: &Registry,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<Vec<String>> {
        let finalizer = if crate::creates(attrs, "persistentvolumeclaims") {
            minik_registry::protection::PVC_FINALIZER
        } else if crate::creates(attrs, "persistentvolumes") {
            minik_registry::protection::PV_FINALIZER
        } else {
            return Ok(Vec::new());
        };
        crate::ensure_array(&mut obj["metadata"]["finalizers"]);
        if let Some(f) = obj["metadata"]["finalizers"].as_array_mut()
            && !f.iter().any(|x| x == finalizer)
        {
            f.push(json!(finalizer));
        }
        Ok(Vec::new())
    }
}

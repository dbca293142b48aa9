//! What several controllers need: label selectors, controller references, pod state, pods
//! made from templates, and keys.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

/// Whether `labels` satisfy `selector` (an empty selector matches everything, as in
/// apps/v1 it never is).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let exact = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    exact
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// An empty selector (one that would select everything).
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector
        .match_labels
        .as_ref()
        .is_none_or(BTreeMap::is_empty)
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner`, which blocks the owner's foreground deletion.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// "namespace/name", the queue key of a namespaced object.
pub fn key<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or("")),
        None => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// Split a queue key into (namespace, name).
pub fn split(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Neither finished nor being deleted: a pod that counts toward replicas.
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod became Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (c.status == "True").then(|| {
        c.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(Timestamp::now)
    })
}

/// Whether the node's Ready condition is True.
pub fn node_ready(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready` seconds; otherwise how long until it will be.
pub fn available(pod: &Pod, min_ready: i32) -> Result<(), Option<std::time::Duration>> {
    let since = ready_since(pod).ok_or(None)?;
    if min_ready <= 0 {
        return Ok(());
    }
    let at = since + k8s_openapi::jiff::SignedDuration::from_secs(i64::from(min_ready));
    let now = Timestamp::now();
    if at <= now {
        Ok(())
    } else {
        Err(Some(
            std::time::Duration::try_from(at - now).unwrap_or_default(),
        ))
    }
}

/// A new pod from `template`, controlled by `owner`, named `<prefix>-<random>` by the server
/// (or exactly `name`).
pub fn pod_from_template<K: Resource<DynamicType = ()>>(
    template: &PodTemplateSpec,
    owner: &K,
    prefix: &str,
    name: Option<String>,
) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name: Some(format!("{prefix}-")),
            namespace: owner.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// kube-controller-manager's 5-character random suffixes.
pub fn random_suffix(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Now, as a metav1.Time.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())
}

/// The HTTP status of an API error.
pub fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// An int-or-percent (maxSurge, maxUnavailable) of `total`, rounded up or down.
pub fn scaled_value(
    v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    total: i32,
    default: &str,
    round_up: bool,
) -> i32 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let text = match v {
        Some(IntOrString::Int(i)) => return (*i).max(0),
        Some(IntOrString::String(s)) => s.as_str(),
        None => default,
    };
    match text.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
        Some(p) => {
            let x = i64::from(total) * p;
            let r = if round_up { (x + 99) / 100 } else { x / 100 };
            i32::try_from(r).unwrap_or(i32::MAX).max(0)
        }
        None => text.parse().unwrap_or(0),
    }
}

/// Whether a toleration tolerates a taint (as the scheduler and taint manager match them).
pub fn tolerates(
    t: &k8s_openapi::api::core::v1::Toleration,
    taint: &k8s_openapi::api::core::v1::Taint,
) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => key.is_empty() || key == taint.key,
        _ => {
            key == taint.key
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// The objects among `candidates` (in `owner`'s namespace) that `owner` controls, claimed as
/// client-go's ControllerRefManager does: its own that still match `selector` and `member`
/// are kept and those that stopped matching are released; orphans that match are adopted
/// (unless the owner or the orphan is being deleted). Others' objects are left alone.
pub async fn claim<O, K>(
    api: &kube::api::Api<K>,
    owner: &O,
    selector: &LabelSelector,
    member: impl Fn(&K) -> bool,
    candidates: Vec<std::sync::Arc<K>>,
) -> Result<Vec<std::sync::Arc<K>>, kube::Error>
where
    O: Resource<DynamicType = ()>,
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let uid = owner.uid().unwrap_or_default();
    let mut mine = Vec::new();
    for obj in candidates {
        if obj.namespace() != owner.namespace() {
            continue;
        }
        let matching =
            !is_empty(selector) && matches(selector, obj.labels()) && member(obj.as_ref());
        match controller_of(obj.as_ref()) {
            Some(o) if o.uid == uid && matching => mine.push(obj),
            Some(o) if o.uid == uid => {
                let refs: Vec<OwnerReference> = obj
                    .owner_references()
                    .iter()
                    .filter(|r| r.uid != uid)
                    .cloned()
                    .collect();
                set_owner_refs(api, obj.as_ref(), &refs).await?;
            }
            None if matching
                && obj.meta().deletion_timestamp.is_none()
                && owner.meta().deletion_timestamp.is_none() =>
            {
                let mut refs = obj.owner_references().to_vec();
                refs.push(controller_ref(owner));
                if set_owner_refs(api, obj.as_ref(), &refs).await? {
                    mine.push(obj);
                }
            }
            _ => {}
        }
    }
    Ok(mine)
}

/// Replace an object's owner references (if it is still the same object); false when it is
/// gone, changed identity or the write was refused as invalid.
pub async fn set_owner_refs<K>(
    api: &kube::api::Api<K>,
    obj: &K,
    refs: &[OwnerReference],
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": obj.uid()}});
    let params = kube::api::PatchParams::default();
    match api
        .patch(&obj.name_any(), &params, &kube::api::Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if matches!(code(&e), Some(404 | 409 | 422)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Queue the keys of the `owners` in `ns` whose selector matches `labels`.
pub fn queue_selecting<O>(
    queue: &crate::Queue,
    owners: &crate::Informer<O>,
    ns: &str,
    labels: &BTreeMap<String, String>,
    selector: impl Fn(&O) -> &LabelSelector,
) where
    O: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    for owner in owners.store().state() {
        if owner.namespace().as_deref() == Some(ns) && matches(selector(&owner), labels) {
            queue.add(key(owner.as_ref()));
        }
    }
}

/// Queue the key of `obj`'s controller when it is a `kind`; for an orphan, the keys of the
/// `owners` that may adopt it (their selector matches its labels).
pub fn queue_owners<K, O>(
    queue: &crate::Queue,
    owners: &crate::Informer<O>,
    obj: &K,
    kind: &str,
    selector: impl Fn(&O) -> &LabelSelector,
) where
    K: Resource,
    O: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    O: Send + Sync + 'static,
{
    let ns = obj.meta().namespace.clone().unwrap_or_default();
    match controller_of(obj) {
        Some(o) if o.kind == kind => queue.add(format!("{ns}/{}", o.name)),
        Some(_) => {}
        None => queue_selecting(queue, owners, &ns, obj.labels(), selector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())]
            .into_iter()
            .collect();
        let sel = LabelSelector {
            match_labels: Some(labels.clone()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: None,
            }]),
        };
        assert!(matches(&sel, &labels));
        let mut more = labels.clone();
        more.insert("tier".into(), "db".into());
        assert!(!matches(&sel, &more));
        assert!(is_empty(&LabelSelector::default()));
    }

    #[test]
    fn percentages_round_as_kubernetes_does() {
        let p = IntOrString::String("25%".into());
        assert_eq!(scaled_value(Some(&p), 10, "25%", true), 3);
        assert_eq!(scaled_value(Some(&p), 10, "25%", false), 2);
        assert_eq!(scaled_value(None, 4, "25%", true), 1);
        assert_eq!(scaled_value(Some(&IntOrString::Int(2)), 10, "25%", true), 2);
    }
}

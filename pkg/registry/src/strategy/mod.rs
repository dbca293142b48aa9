//! Per-resource behaviour on top of the generic storage (kube-apiserver's Strategy hooks):
//! defaults on create, validation on create and update, status handling.

mod defaults;
pub(crate) mod ephemeral;
mod validation;

use serde_json::{Value, json};

use minik_api::ResourceInfo;

use crate::error::Cause;

/// Problems with an object about to be stored (None for `old` on create).
pub fn validate(info: &ResourceInfo, old: Option<&Value>, new: &Value) -> Vec<Cause> {
    let mut causes = crate::meta::validate_metadata(new);
    causes.extend(validation::validate(info.group, info.kind, old, new));
    if (info.group, info.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition") {
        causes.extend(crate::crd::validate::definition(old, new));
    }
    causes
}

/// What keeps a namespace until the namespace controller has emptied it.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

pub fn is_namespace(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Namespace"
}

/// A namespace whose `spec.finalizers` are all gone (it may go once it is being deleted).
pub fn namespace_finalized(obj: &Value) -> bool {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
}

/// Whether `info` has a status subresource: main-resource writes keep the stored status and
/// status writes keep everything else.
pub fn has_status(info: &ResourceInfo) -> bool {
    info.subresources.contains(&"status")
}

/// What create sets that the typed view does not give (PrepareForCreate), defaults included.
pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    match (info.group, info.kind) {
        ("", "Namespace") => {
            obj["status"] = json!({"phase": "Active"});
            // The namespace controller's finalizer: it goes once the namespace is empty.
            let mut list = obj
                .pointer("/spec/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !list.iter().any(|x| x == NAMESPACE_FINALIZER) {
                list.push(json!(NAMESPACE_FINALIZER));
            }
            obj["spec"]["finalizers"] = json!(list);
        }
        // What a client sends as a pod's status is not kept (PrepareForCreate).
        ("", "Pod") => obj["status"] = json!({}),
        ("", "PersistentVolumeClaim") => obj["status"] = json!({}),
        ("", "Service") => obj["status"] = json!({"loadBalancer": {}}),
        ("", "PersistentVolume") => {
            let now = crate::meta::now_rfc3339();
            obj["status"] = json!({"phase": "Pending", "lastPhaseTransitionTime": now});
        }
        ("batch", "Job") => job_selector(obj),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            // Its objects go before it does.
            let m = obj.get_mut("metadata").and_then(Value::as_object_mut);
            if let Some(m) = m {
                let list = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(f) = list.as_array_mut()
                    && !f.iter().any(|x| x == crate::crd::CLEANUP)
                {
                    f.push(json!(crate::crd::CLEANUP));
                }
            }
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        _ => {}
    }
    default(info, obj);
}

/// Defaults of fields left out, applied to every write as the apiserver's decoding does.
pub fn default(info: &ResourceInfo, obj: &mut Value) {
    match (info.group, info.kind) {
        ("", "Pod") => defaults::pod(obj),
        ("", "Service") => defaults::service(obj),
        ("", "Secret") => defaults::secret(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => defaults::hpa(info.version, obj),
        ("", k @ ("PersistentVolume" | "PersistentVolumeClaim"))
        | ("storage.k8s.io", k @ "StorageClass") => defaults::storage(k, obj),
        ("apps", k) | ("batch", k) | ("", k @ "ReplicationController") => {
            defaults::workload(k, obj)
        }
        _ => {}
    }
}

/// A Job selects its pods by its uid unless the user chose a selector (manualSelector).
fn job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector") == Some(&json!(true)) {
        return;
    }
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = json!({
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name,
    });
    if let Some(t) = obj.pointer_mut("/spec/template") {
        let meta = t
            .as_object_mut()
            .map(|m| m.entry("metadata").or_insert(json!({})));
        if let Some(meta) = meta {
            let l = meta
                .as_object_mut()
                .map(|m| m.entry("labels").or_insert(json!({})));
            if let (Some(Value::Object(l)), Value::Object(add)) = (l, labels) {
                l.extend(add);
            }
        }
    }
}

/// A service update keeps what was allocated when the new object leaves it out
/// (kube-apiserver's patchAllocatedValues): the ClusterIPs, and each port's nodePort.
fn keep_allocated(old: &Value, new: &mut Value) {
    for field in ["clusterIP", "clusterIPs"] {
        if new.pointer(&format!("/spec/{field}")).is_none()
            && let Some(v) = old.pointer(&format!("/spec/{field}"))
        {
            new["spec"][field] = v.clone();
        }
    }
    let old_ports = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
        for p in ports.iter_mut().filter(|p| p.get("nodePort").is_none()) {
            let same = old_ports.iter().find(|o| {
                o.get("port") == p.get("port")
                    && o.get("protocol").unwrap_or(&json!("TCP"))
                        == p.get("protocol").unwrap_or(&json!("TCP"))
            });
            if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                p["nodePort"] = np.clone();
            }
        }
    }
}

/// On a main-resource update, keep the stored status (PrepareForUpdate).
pub fn prepare_for_update(info: &ResourceInfo, old: &Value, new: &mut Value) {
    if info.group.is_empty() && info.kind == "Service" {
        keep_allocated(old, new);
    }
    if is_namespace(info) {
        // Only namespaces/finalize changes a namespace's finalizers.
        match old.pointer("/spec/finalizers") {
            Some(f) => new["spec"]["finalizers"] = f.clone(),
            None => {
                if let Some(s) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    s.remove("finalizers");
                }
            }
        }
    }
    if has_status(info) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
}

/// On a status update, keep everything but status and the metadata a controller may set.
pub fn prepare_for_status_update(old: &Value, new: &mut Value) {
    let status = new.as_object_mut().and_then(|m| m.remove("status"));
    // Everything but the status from the old object (its status is not copied only to be
    // replaced).
    let mut merged = match old {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "status")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    };
    if let (Some(s), Some(m)) = (status, merged.as_object_mut()) {
        m.insert("status".into(), s);
    }
    *new = merged;
}

/// Seconds a delete waits (CheckGracefulDelete): pods on a node get their
/// terminationGracePeriodSeconds (or what the request asks for); everything else, and pods
/// that never ran or have finished, go at once.
pub fn grace_period(info: &ResourceInfo, obj: &Value, asked: Option<i64>) -> i64 {
    if !(info.group.is_empty() && info.kind == "Pod") {
        return 0;
    }
    let scheduled = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        obj.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    let own = obj
        .pointer("/spec/terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(30);
    asked.unwrap_or(own).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_get_the_kubernetes_finalizer_and_keep_it_on_update() {
        let info = minik_api::builtin("", "v1", "namespaces");
        let mut ns = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["example.com/x"]}});
        prepare_for_create(info, &mut ns);
        assert_eq!(
            ns["spec"]["finalizers"],
            json!(["example.com/x", "kubernetes"])
        );
        assert_eq!(ns["status"]["phase"], "Active");
        assert!(!namespace_finalized(&ns));
        // Only namespaces/finalize changes them.
        let mut update = json!({"metadata": {"name": "a"}, "spec": {"finalizers": []}});
        prepare_for_update(info, &ns, &mut update);
        assert_eq!(update["spec"]["finalizers"], ns["spec"]["finalizers"]);
        let mut bare = json!({"metadata": {"name": "b"}});
        prepare_for_create(info, &mut bare);
        assert_eq!(bare["spec"]["finalizers"], json!(["kubernetes"]));
        assert!(namespace_finalized(&json!({"spec": {"finalizers": []}})));
    }
}

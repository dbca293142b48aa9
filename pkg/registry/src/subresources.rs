//! Subresources that change part of an object: scale, pods/binding,
//! pods/ephemeralcontainers, namespaces/finalize. Each writes the stored object with a
//! compare-and-swap on its revision, retrying when another writer got there first.

use std::sync::Arc;

use minik_api::ResourceInfo;
use serde_json::{Value, json};

use crate::error::{ApiError, Result};
use crate::meta::meta_mut;
use crate::object_key;
use crate::rest::{Registry, decode};
use crate::selector::selector_string;

const RETRIES: usize = 8;

/// Where a resource keeps what its Scale shows (JSON pointers): the built-in workloads'
/// places, or a CRD's specReplicasPath, statusReplicasPath and labelSelectorPath.
pub(crate) struct ScalePaths {
    spec: String,
    status: String,
    /// A custom resource's selector, already a string; None: the built-in spec.selector.
    selector: Option<String>,
}

impl ScalePaths {
    fn builtin() -> Self {
        ScalePaths {
            spec: "/spec/replicas".into(),
            status: "/status/replicas".into(),
            selector: None,
        }
    }

    /// From a CRD's `subresources.scale`.
    pub(crate) fn custom(scale: &Value) -> Self {
        let pointer = |k: &str| {
            scale
                .get(k)
                .and_then(Value::as_str)
                .map(|p| p.replace('.', "/"))
        };
        ScalePaths {
            spec: pointer("specReplicasPath").unwrap_or_else(|| "/spec/replicas".into()),
            status: pointer("statusReplicasPath").unwrap_or_else(|| "/status/replicas".into()),
            selector: Some(pointer("labelSelectorPath").unwrap_or_default()),
        }
    }
}

fn scale_of(obj: &Value, paths: &ScalePaths) -> Value {
    let meta = &obj["metadata"];
    let selector = match &paths.selector {
        None => json!(selector_string(obj.pointer("/spec/selector"))),
        Some(p) if p.is_empty() => json!(""),
        Some(p) => obj.pointer(p).cloned().unwrap_or(json!("")),
    };
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj.pointer(&paths.spec).cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer(&paths.status).cloned().unwrap_or(json!(0)),
            "selector": selector},
    })
}

/// Set the value at a JSON pointer, making the objects on the way.
fn set_at(obj: &mut Value, pointer: &str, v: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = pointer.split('/').filter(|p| !p.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().expect("made an object");
        if i + 1 == parts.len() {
            m.insert(part.to_string(), v);
            return;
        }
        cur = m.entry(part.to_string()).or_insert_with(|| json!({}));
    }
}

/// How `modify` writes: on which version, recorded for whom, or only as a dry run.
#[derive(Default, Clone, Copy)]
pub(crate) struct Change<'a> {
    pub expected_rv: Option<&'a str>,
    /// The manager recorded in managedFields and the subresource it wrote through.
    pub owner: Option<(&'a str, &'a str)>,
    pub dry_run: bool,
    /// Who asks, and through which subresource: the change is admitted (validated).
    pub admitted: Option<(&'a crate::UserInfo, &'a str)>,
}

impl<'a> Change<'a> {
    pub(crate) fn by(
        params: &'a crate::WriteParams,
        sub: &'a str,
        expected_rv: Option<&'a str>,
    ) -> Self {
        Change {
            expected_rv,
            owner: params.field_manager.as_deref().map(|m| (m, sub)),
            dry_run: params.dry_run,
            admitted: params.user.as_ref().map(|u| (u, sub)),
        }
    }
}

impl Registry {
    /// Change a stored object with `f`, compare-and-swap, retrying on conflicts. `f` sees
    /// the current object and may refuse. `owner` (manager, subresource) is recorded in
    /// managedFields. Returns the object as stored.
    pub(crate) async fn modify(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        how: Change<'_>,
        f: impl Fn(&mut Value) -> Result<()>,
    ) -> Result<Value> {
        let expected_rv = how.expected_rv;
        let key = object_key(info, ns, name);
        // One more try than RETRIES: the first starts from the watch cache's copy, and if it
        // fails for any reason (a stale copy too), the next ones read the store.
        for attempt in 0..=RETRIES {
            let cached = match attempt == 0 && !how.dry_run {
                true => self.caches.cached(info, &key),
                false => None,
            };
            let from_cache = cached.is_some();
            let tried = async {
                let (revision, old) = match cached {
                    Some(c) => c,
                    None => {
                        let (_, kv) = self.store.get(&key, None).await?;
                        let kv = kv.ok_or_else(|| ApiError::not_found(info, name))?;
                        (kv.mod_revision, Arc::new(decode(&kv)?))
                    }
                };
                if expected_rv.is_some_and(|rv| !rv.is_empty() && rv != revision.to_string()) {
                    return Err(ApiError::conflict(info, name));
                }
                let mut obj = (*old).clone();
                f(&mut obj)?;
                if let Some((manager, sub)) = how.owner {
                    let schema = self.schema_for(info);
                    crate::managed::record_update(
                        info,
                        schema.as_deref(),
                        sub,
                        &old,
                        &mut obj,
                        None,
                        manager,
                    )?;
                }
                let attrs = how
                    .admitted
                    .map(|(user, sub)| crate::admission::Attributes {
                        operation: crate::admission::Operation::Update,
                        info,
                        subresource: Some(sub),
                        namespace: ns.filter(|_| info.namespaced),
                        name,
                        user,
                        dry_run: how.dry_run,
                        old: Some(&*old),
                    });
                let _hold = self.admit(attrs.as_ref(), &obj, &mut Vec::new()).await?;
                if how.dry_run {
                    return Ok(Some(obj));
                }
                meta_mut(&mut obj)?.remove("resourceVersion");
                let bytes = self.encode(info, &obj)?;
                match self.store.update(&key, bytes, revision).await {
                    Ok(stored) => {
                        obj["metadata"]["resourceVersion"] = json!(stored.mod_revision.to_string());
                        Ok(Some(obj))
                    }
                    Err(minik_store::Error::Conflict { .. }) if expected_rv.is_none() => Ok(None),
                    Err(minik_store::Error::Conflict { .. }) => Err(ApiError::conflict(info, name)),
                    Err(e) => Err(e.into()),
                }
            };
            match tried.await {
                Ok(Some(obj)) => return Ok(obj),
                Ok(None) => continue,
                Err(_) if from_cache => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::conflict(info, name))
    }

    fn scale_paths(&self, info: &ResourceInfo) -> ScalePaths {
        if info.custom
            && let Some((def, i)) = self.crds.version(info)
            && let Some(scale) = &def.versions[i].scale
        {
            return ScalePaths::custom(scale);
        }
        ScalePaths::builtin()
    }

    /// GET .../scale
    pub async fn get_scale(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value> {
        let paths = self.scale_paths(info);
        Ok(scale_of(&self.get(info, ns, name).await?, &paths))
    }

    /// PUT .../scale: set spec.replicas of the parent.
    pub async fn update_scale(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        scale: Value,
        params: &crate::WriteParams,
    ) -> Result<Value> {
        let replicas = scale
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if replicas < 0 {
            let cause = crate::Cause {
                field: "spec.replicas".into(),
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            };
            return Err(ApiError::Invalid {
                group: "autoscaling".into(),
                kind: "Scale".into(),
                name: name.into(),
                causes: vec![cause],
            });
        }
        let paths = self.scale_paths(info);
        let rv = scale
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        let obj = self
            .modify(info, ns, name, Change::by(params, "scale", rv), |o| {
                if o.pointer(&paths.spec) != Some(&json!(replicas)) {
                    set_at(o, &paths.spec, json!(replicas));
                    let generation = o
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    o["metadata"]["generation"] = json!(generation + 1);
                }
                Ok(())
            })
            .await?;
        Ok(scale_of(&obj, &paths))
    }

    /// POST pods/<name>/binding: assign the pod to a node, once.
    pub async fn bind(
        &self,
        ns: &str,
        name: &str,
        binding: &Value,
        params: &crate::WriteParams,
    ) -> Result<()> {
        let pods = minik_api::builtin("", "v1", "pods");
        self.admit_subresource_create(pods, Some(ns), name, "binding", binding, params)
            .await?;
        let node = binding
            .pointer("/target/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if node.is_empty() {
            return Err(ApiError::BadRequest(
                "binding target name is required".into(),
            ));
        }
        self.modify(pods, Some(ns), name, Change::default(), |pod| {
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::Conflict { group: String::new(), resource: "pods".into(), name: name.into(), message: "pod is being deleted, cannot be assigned to a host".into() });
            }
            match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
                Some(n) if !n.is_empty() => Err(ApiError::Conflict { group: String::new(), resource: "pods".into(), name: name.into(), message: format!("pod {name} is already assigned to node \"{n}\"") }),
                _ => {
                    pod["spec"]["nodeName"] = json!(node);
                    let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                        "lastTransitionTime": crate::now_rfc3339()});
                    let conds = pod["status"].as_object_mut().map(|s| s.entry("conditions").or_insert(json!([])));
                    if let Some(Value::Array(c)) = conds {
                        c.retain(|c| c.get("type") != Some(&json!("PodScheduled")));
                        c.push(cond);
                    }
                    Ok(())
                }
            }
        })
        .await
        .map(|_| ())
    }

    /// PUT pods/<name>/ephemeralcontainers: only spec.ephemeralContainers changes, and
    /// containers may be added, never changed or removed; they are defaulted and validated
    /// as kube-apiserver does (strategy/ephemeral.rs).
    pub async fn update_ephemeral_containers(
        &self,
        ns: &str,
        name: &str,
        body: &Value,
        params: &crate::WriteParams,
    ) -> Result<Value> {
        let pods = minik_api::builtin("", "v1", "pods");
        let wanted = body
            .pointer("/spec/ephemeralContainers")
            .cloned()
            .unwrap_or(json!([]));
        let rv = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str);
        self.modify(
            pods,
            Some(ns),
            name,
            Change::by(params, "ephemeralcontainers", rv),
            |pod| {
                let mut old = pod
                    .pointer("/spec/ephemeralContainers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                crate::strategy::ephemeral::default(&mut old);
                let mut new = wanted.as_array().cloned().unwrap_or_default();
                crate::strategy::ephemeral::default(&mut new);
                if new.len() < old.len() || old.iter().zip(&new).any(|(a, b)| a != b) {
                    return Err(ApiError::invalid(
                        pods,
                        name,
                        vec![crate::Cause {
                        field: "spec.ephemeralContainers".into(),
                        reason: "FieldValueForbidden".into(),
                        message:
                            "Forbidden: existing ephemeral containers may not be changed or removed"
                                .into(),
                    }],
                    ));
                }
                pod["spec"]["ephemeralContainers"] = json!(new);
                let causes = crate::strategy::ephemeral::validate(&pod["spec"]);
                if !causes.is_empty() {
                    return Err(ApiError::invalid(pods, name, causes));
                }
                Ok(())
            },
        )
        .await
    }

    /// PUT namespaces/<name>/finalize: only spec.finalizers changes.
    pub async fn finalize_namespace(&self, name: &str, body: &Value) -> Result<Value> {
        let nss = minik_api::builtin("", "v1", "namespaces");
        let finalizers = body
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        let ns = self
            .modify(nss, None, name, Change::default(), |ns| {
                ns["spec"]["finalizers"] = finalizers.clone();
                Ok(())
            })
            .await?;
        // Being deleted and nothing holds it any more: it goes now.
        if ns.pointer("/metadata/deletionTimestamp").is_some()
            && crate::strategy::namespace_finalized(&ns)
            && crate::rest::finalizers_empty(&ns)
        {
            let (gone, _) = self
                .delete(nss, None, name, &crate::DeleteParams::default())
                .await?;
            return Ok(gone);
        }
        Ok(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_as_strings() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "x", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(Some(&sel)), "app=web,tier in (a,b),!x");
        assert_eq!(selector_string(Some(&json!({"app": "rc"}))), "app=rc");
    }
}

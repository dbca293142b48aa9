//! OwnerReferencesPermissionEnforcement: changing an object's ownerReferences takes the right
//! to delete it, and a new `blockOwnerDeletion` takes the right to update the owner's
//! finalizers, as kube-apiserver's plugin of that name enforces.

use minik_registry::admission::{Attributes as Write, Operation};
use minik_registry::{ApiError, Registry, Result};
use serde_json::Value;

use crate::authz::{Attributes, Decision, Mode};

fn refs(obj: &Value) -> Vec<Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Check a create or update.
pub async fn check(mode: &Mode, reg: &Registry, w: &Write<'_>, obj: &Value) -> Result<()> {
    if !matches!(w.operation, Operation::Create | Operation::Update) || w.subresource.is_some() {
        return Ok(());
    }
    let old = w.old.map(refs).unwrap_or_default();
    let new = refs(obj);
    if old == new {
        return Ok(());
    }
    let ns = w.namespace.unwrap_or("").to_string();
    let may = |a: Attributes| async move { mode.decide(reg, w.user, &a).await == Decision::Allow };
    let delete_own = Attributes {
        verb: "delete".into(),
        resource_request: true,
        group: w.info.group.into(),
        resource: w.info.plural.into(),
        namespace: ns.clone(),
        name: w.name.into(),
        ..Default::default()
    };
    if w.operation == Operation::Update && !may(delete_own).await {
        return Err(ApiError::forbidden(
            w.info,
            w.name,
            format!(
                "cannot set an ownerRef on a resource you can't delete: {}, {}",
                w.info.plural, w.name
            ),
        ));
    }
    for r in new
        .iter()
        .filter(|r| r["blockOwnerDeletion"] == true && !old.contains(r))
    {
        let api_version = r["apiVersion"].as_str().unwrap_or("");
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let owner = reg
            .resources()
            .into_iter()
            .find(|i| i.group == group && i.version == version && i.kind == r["kind"]);
        let allowed = match owner {
            Some(info) => {
                may(Attributes {
                    verb: "update".into(),
                    resource_request: true,
                    group: info.group.into(),
                    resource: info.plural.into(),
                    subresource: "finalizers".into(),
                    namespace: if info.namespaced {
                        ns.clone()
                    } else {
                        String::new()
                    },
                    name: r["name"].as_str().unwrap_or("").into(),
                    ..Default::default()
                })
                .await
            }
            None => false,
        };
        if !allowed {
            return Err(ApiError::forbidden(
                w.info,
                w.name,
                format!(
                    "cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: {api_version}, Kind={}, {}",
                    r["kind"].as_str().unwrap_or(""),
                    r["name"].as_str().unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

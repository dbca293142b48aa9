//! RBAC: the rules of the roles bound to a user (by name, by group, as a service account)
//! in the request's namespace and cluster-wide, matched against the request's attributes.

use minik_registry::{ListParams, Registry};
use serde_json::Value;

use super::Attributes;
use crate::authn::UserInfo;

fn rbac(plural: &str) -> &'static minik_api::ResourceInfo {
    minik_api::builtin("rbac.authorization.k8s.io", "v1", plural)
}

/// Everything of a kind, from the watch cache.
async fn all(registry: &Registry, plural: &str, ns: Option<&str>) -> Vec<std::sync::Arc<Value>> {
    let params = ListParams {
        resource_version: Some("0".into()),
        ..Default::default()
    };
    registry
        .list(rbac(plural), ns, &params)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn binds(binding: &Value, user: &UserInfo) -> bool {
    binding["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| match s["kind"].as_str() {
            Some("User") => s["name"] == user.name.as_str(),
            Some("Group") => user.groups.iter().any(|g| s["name"] == g.as_str()),
            Some("ServiceAccount") => {
                let ns = s["namespace"].as_str().unwrap_or("");
                let name = s["name"].as_str().unwrap_or("");
                user.name == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        })
}

fn has(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .any(|v| v == "*" || v == wanted)
}

/// Whether one policy rule covers the request.
pub(super) fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(&rule["verbs"], &a.verb) {
        return false;
    }
    if !a.resource_request {
        return rule["nonResourceURLs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|u| {
                let u = u.as_str().unwrap_or("");
                u == a.path || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
            });
    }
    if !has(&rule["apiGroups"], &a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource_ok = rule["resources"].as_array().into_iter().flatten().any(|r| {
        let r = r.as_str().unwrap_or("");
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r == format!("*/{}", a.subresource))
    });
    if !resource_ok {
        return false;
    }
    match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names.iter().any(|n| n == a.name.as_str()),
        _ => true,
    }
}

/// The rules of the role a binding refers to.
pub(super) async fn role_rules(
    registry: &Registry,
    binding: &Value,
    ns: Option<&str>,
) -> Vec<Value> {
    let kind = binding["roleRef"]["kind"].as_str().unwrap_or("");
    let name = binding["roleRef"]["name"].as_str().unwrap_or("");
    let role = match (kind, ns) {
        ("Role", Some(ns)) => registry.get(rbac("roles"), Some(ns), name).await,
        ("ClusterRole", _) => registry.get(rbac("clusterroles"), None, name).await,
        _ => return Vec::new(),
    };
    let Ok(role) = role else {
        return Vec::new();
    };
    let mut rules = role["rules"].as_array().cloned().unwrap_or_default();
    // An aggregated ClusterRole also has the rules of the ClusterRoles its selectors match
    // (what Kubernetes' aggregation controller writes into it).
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !selectors.is_empty() {
        for other in all(registry, "clusterroles", None).await {
            let labels = other.pointer("/metadata/labels");
            let picked = selectors.iter().any(|sel| {
                sel["matchLabels"].as_object().is_some_and(|want| {
                    !want.is_empty()
                        && want
                            .iter()
                            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                })
            });
            if picked && other["metadata"]["name"] != role["metadata"]["name"] {
                rules.extend(other["rules"].as_array().cloned().unwrap_or_default());
            }
        }
    }
    rules
}

/// Every rule that applies to `user`: cluster-wide ones, and those of `ns` (if any).
pub(super) async fn rules_for(registry: &Registry, user: &UserInfo, ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for binding in all(registry, "clusterrolebindings", None).await {
        if binds(&binding, user) {
            out.extend(role_rules(registry, &binding, None).await);
        }
    }
    if !ns.is_empty() {
        for binding in all(registry, "rolebindings", Some(ns)).await {
            if binds(&binding, user) {
                out.extend(role_rules(registry, &binding, Some(ns)).await);
            }
        }
    }
    out
}

pub(super) async fn allows(registry: &Registry, user: &UserInfo, a: &Attributes) -> bool {
    for binding in all(registry, "clusterrolebindings", None).await {
        if binds(&binding, user)
            && role_rules(registry, &binding, None)
                .await
                .iter()
                .any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    if a.namespace.is_empty() {
        return false;
    }
    for binding in all(registry, "rolebindings", Some(&a.namespace)).await {
        if binds(&binding, user)
            && role_rules(registry, &binding, Some(&a.namespace))
                .await
                .iter()
                .any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    false
}

//! RBAC: the rules of the roles bound to a user (by name, by group, as a service account)
//! in the request's namespace and cluster-wide, matched against the request's attributes.
//! Bindings and roles are read from the watch cache (as kube-apiserver's RBAC authorizer
//! reads informers); `rbac_cache.rs` keeps the resolved rules per user between changes.

use std::sync::Arc;

use minik_registry::Registry;
use serde_json::Value;

use super::Attributes;
use crate::authn::UserInfo;

pub(super) fn rbac(plural: &str) -> &'static minik_api::ResourceInfo {
    minik_api::builtin("rbac.authorization.k8s.io", "v1", plural)
}

/// Everything of a kind, from the watch cache (nothing when the cache cannot start).
async fn all(registry: &Registry, plural: &str, ns: Option<&str>) -> Vec<Arc<Value>> {
    registry
        .cached_objects(rbac(plural), ns)
        .await
        .unwrap_or_default()
}

/// Whether `name` is `system:serviceaccount:<ns>:<account>`.
fn is_service_account(name: &str, ns: &str, account: &str) -> bool {
    name.strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.strip_prefix(ns))
        .and_then(|rest| rest.strip_prefix(':'))
        == Some(account)
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
                is_service_account(&user.name, ns, name)
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

/// Whether a rule's resource entry `r` names the request's resource (and subresource):
/// `resource`, `resource/subresource` or `*/subresource`.
fn names_resource(r: &str, a: &Attributes) -> bool {
    if a.subresource.is_empty() {
        return r == a.resource;
    }
    let sub = Some(a.subresource.as_str());
    r.strip_prefix(a.resource.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        == sub
        || r.strip_prefix("*/") == sub
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
    let resource_ok = rule["resources"].as_array().into_iter().flatten().any(|r| {
        let r = r.as_str().unwrap_or("");
        r == "*" || names_resource(r, a)
    });
    if !resource_ok {
        return false;
    }
    match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names.iter().any(|n| n == a.name.as_str()),
        _ => true,
    }
}

/// The ClusterRole selectors of an aggregated role (empty for any other).
fn selectors(role: &Value) -> &[Value] {
    role.pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A role's rules: its own and, for an aggregated ClusterRole, those of the ClusterRoles its
/// selectors match (what Kubernetes' aggregation controller writes into it).
fn rules_of(role: &Value, clusterroles: &[Arc<Value>]) -> Vec<Value> {
    let mut rules = role["rules"].as_array().cloned().unwrap_or_default();
    let selectors = selectors(role);
    if selectors.is_empty() {
        return rules;
    }
    for other in clusterroles {
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
    rules
}

/// The rules of the role a binding refers to, the role read from the store (for escalation
/// checks of a binding being written).
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
    let clusterroles = match selectors(&role).is_empty() {
        true => Vec::new(),
        false => all(registry, "clusterroles", None).await,
    };
    rules_of(&role, &clusterroles)
}

fn named<'a>(objects: &'a [Arc<Value>], name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .map(|o| &**o)
        .find(|o| o["metadata"]["name"] == name)
}

/// Every rule that applies to `user`, read from the watch cache: those of the
/// ClusterRoleBindings, then those of the RoleBindings of `ns` (if any).
pub(super) async fn rules_for(registry: &Registry, user: &UserInfo, ns: &str) -> Vec<Value> {
    let clusterroles = all(registry, "clusterroles", None).await;
    let mut out = Vec::new();
    for binding in all(registry, "clusterrolebindings", None).await {
        if binds(&binding, user) && binding["roleRef"]["kind"] == "ClusterRole" {
            let name = binding["roleRef"]["name"].as_str().unwrap_or("");
            if let Some(role) = named(&clusterroles, name) {
                out.extend(rules_of(role, &clusterroles));
            }
        }
    }
    if ns.is_empty() {
        return out;
    }
    let mut roles = None;
    for binding in all(registry, "rolebindings", Some(ns)).await {
        if !binds(&binding, user) {
            continue;
        }
        let name = binding["roleRef"]["name"].as_str().unwrap_or("");
        let role = match binding["roleRef"]["kind"].as_str() {
            Some("Role") => {
                if roles.is_none() {
                    roles = Some(all(registry, "roles", Some(ns)).await);
                }
                roles.as_deref().and_then(|r| named(r, name))
            }
            Some("ClusterRole") => named(&clusterroles, name),
            _ => None,
        };
        if let Some(role) = role {
            out.extend(rules_of(role, &clusterroles));
        }
    }
    out
}

/// Whether `user` may do what `a` describes (not cached: for escalation checks).
pub(super) async fn allows(registry: &Registry, user: &UserInfo, a: &Attributes) -> bool {
    rules_for(registry, user, &a.namespace)
        .await
        .iter()
        .any(|r| rule_allows(r, a))
}

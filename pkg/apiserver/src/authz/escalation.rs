//! RBAC escalation prevention: a user may write a Role or ClusterRole only with rules they
//! already hold (or the `escalate` verb on it), and a binding only to a role whose rules
//! they hold (or the `bind` verb on it), as kube-apiserver's RBAC storage enforces.

use minik_registry::admission::{Attributes as Write, Operation};
use minik_registry::{ApiError, Registry, Result};
use serde_json::Value;

use super::{Attributes, rbac};
use crate::authn::UserInfo;

const GROUP: &str = "rbac.authorization.k8s.io";

/// Whether a write is one of a role or binding (checked for escalation).
pub fn rbac_write(attrs: &Write<'_>) -> bool {
    attrs.info.group == GROUP
        && attrs.subresource.is_none()
        && matches!(attrs.operation, Operation::Create | Operation::Update)
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Every request one policy rule allows, spelled out.
fn expand(rule: &Value, ns: &str) -> Vec<Attributes> {
    let mut out = Vec::new();
    let verbs = strings(&rule["verbs"]);
    for url in strings(&rule["nonResourceURLs"]) {
        for v in &verbs {
            out.push(Attributes::non_resource(v, url));
        }
    }
    let names = strings(&rule["resourceNames"]);
    let names = if names.is_empty() { vec![""] } else { names };
    for group in strings(&rule["apiGroups"]) {
        for res in strings(&rule["resources"]) {
            let (resource, sub) = res.split_once('/').unwrap_or((res, ""));
            for v in &verbs {
                for name in &names {
                    out.push(Attributes {
                        verb: v.to_string(),
                        resource_request: true,
                        group: group.into(),
                        resource: resource.into(),
                        subresource: sub.into(),
                        namespace: ns.into(),
                        name: name.to_string(),
                        path: String::new(),
                    });
                }
            }
        }
    }
    out
}

fn list(v: &Value) -> String {
    strings(v)
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rule as kube-apiserver prints it in escalation errors.
fn compact(rule: &Value) -> String {
    let mut parts = Vec::new();
    for (key, name) in [
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("resourceNames", "ResourceNames"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("verbs", "Verbs"),
    ] {
        if rule[key].as_array().is_some_and(|a| !a.is_empty()) || key == "verbs" {
            parts.push(format!("{name}:[{}]", list(&rule[key])));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// The rules of `rules` the user does not hold in `ns`.
async fn not_held(reg: &Registry, user: &UserInfo, ns: &str, rules: &[Value]) -> Vec<Value> {
    let held = rbac::rules_for(reg, user, ns).await;
    rules
        .iter()
        .filter(|r| {
            !expand(r, ns)
                .iter()
                .all(|a| held.iter().any(|h| rbac::rule_allows(h, a)))
        })
        .cloned()
        .collect()
}

async fn may(
    reg: &Registry,
    user: &UserInfo,
    verb: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> bool {
    let a = Attributes {
        verb: verb.into(),
        resource_request: true,
        group: GROUP.into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: ns.into(),
        name: name.into(),
        path: String::new(),
    };
    rbac::allows(reg, user, &a).await
}

/// Refuse a role or binding that grants what its writer does not hold.
pub async fn check(reg: &Registry, w: &Write<'_>, obj: &Value) -> Result<()> {
    let user = w.user;
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let ns = w.namespace.unwrap_or("");
    let plural = w.info.plural;
    let (rules, scope) = match plural {
        "roles" | "clusterroles" => {
            if may(reg, user, "escalate", plural, ns, w.name).await {
                return Ok(());
            }
            (obj["rules"].as_array().cloned().unwrap_or_default(), ns)
        }
        _ => {
            let kind = obj["roleRef"]["kind"].as_str().unwrap_or("");
            let role = obj["roleRef"]["name"].as_str().unwrap_or("");
            let target = if kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if may(reg, user, "bind", target, ns, role).await {
                return Ok(());
            }
            (rbac::role_rules(reg, obj, w.namespace).await, ns)
        }
    };
    let missing = not_held(reg, user, scope, &rules).await;
    if missing.is_empty() {
        return Ok(());
    }
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let lines: Vec<String> = missing.iter().map(compact).collect();
    Err(ApiError::forbidden(
        w.info,
        w.name,
        format!(
            "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            groups.join(" "),
            lines.join("\n")
        ),
    ))
}

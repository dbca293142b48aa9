//! The Node authorizer: a kubelet (user `system:node:<name>` in `system:nodes`) may read
//! what every node needs (nodes, pods, services, endpoints; namespaces and network policies
//! for the node's own policy enforcement), write its own Node, Lease and
//! events, and read only the secrets, config maps, claims, volumes and service accounts of
//! the pods bound to it. Everything else it leaves to the next authorizer.

use std::collections::HashSet;

use minik_registry::{ListParams, Registry};

use super::{Attributes, Decision};
use crate::authn::UserInfo;

/// The node a user is, if it is one.
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.groups.iter().any(|g| g == "system:nodes") {
        return None;
    }
    user.name
        .strip_prefix("system:node:")
        .filter(|n| !n.is_empty())
}

const READ: &[&str] = &["get", "list", "watch"];

fn is(list: &[&str], verb: &str) -> bool {
    list.contains(&verb)
}

/// What the pods bound to `node` use: (kind, namespace, name); only the pods of
/// `namespace` when given (a pod refers to secrets, config maps, claims and service
/// accounts of its own namespace only).
async fn referenced(
    reg: &Registry,
    node: &str,
    namespace: Option<&str>,
) -> HashSet<(String, String, String)> {
    let params = ListParams {
        resource_version: Some("0".into()),
        ..Default::default()
    };
    let pods = reg
        .list(minik_api::builtin("", "v1", "pods"), namespace, &params)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = HashSet::new();
    for pod in pods.iter().filter(|p| p["spec"]["nodeName"] == node) {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let mut add = |kind: &str, name: Option<&str>| {
            if let Some(n) = name.filter(|n| !n.is_empty()) {
                out.insert((kind.to_string(), ns.clone(), n.to_string()));
            }
        };
        let spec = &pod["spec"];
        add("serviceaccounts", spec["serviceAccountName"].as_str());
        for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
            add("secrets", s["name"].as_str());
        }
        for v in spec["volumes"].as_array().into_iter().flatten() {
            add("secrets", v["secret"]["secretName"].as_str());
            add("configmaps", v["configMap"]["name"].as_str());
            add(
                "persistentvolumeclaims",
                v["persistentVolumeClaim"]["claimName"].as_str(),
            );
            for src in v["projected"]["sources"].as_array().into_iter().flatten() {
                add("secrets", src["secret"]["name"].as_str());
                add("configmaps", src["configMap"]["name"].as_str());
            }
        }
        for c in ["initContainers", "containers", "ephemeralContainers"]
            .iter()
            .filter_map(|k| spec[*k].as_array())
            .flatten()
        {
            for e in c["envFrom"].as_array().into_iter().flatten() {
                add("secrets", e["secretRef"]["name"].as_str());
                add("configmaps", e["configMapRef"]["name"].as_str());
            }
            for e in c["env"].as_array().into_iter().flatten() {
                add("secrets", e["valueFrom"]["secretKeyRef"]["name"].as_str());
                add(
                    "configmaps",
                    e["valueFrom"]["configMapKeyRef"]["name"].as_str(),
                );
            }
        }
    }
    out
}

/// Whether a volume is bound to a claim a pod of `node` uses.
async fn volume_used(reg: &Registry, used: &HashSet<(String, String, String)>, pv: &str) -> bool {
    for (kind, ns, name) in used {
        if kind == "persistentvolumeclaims"
            && let Ok(claim) = reg
                .get(
                    minik_api::builtin("", "v1", "persistentvolumeclaims"),
                    Some(ns),
                    name,
                )
                .await
            && claim["spec"]["volumeName"] == pv
        {
            return true;
        }
    }
    false
}

fn allow(yes: bool) -> Decision {
    if yes {
        Decision::Allow
    } else {
        Decision::NoOpinion
    }
}

/// The Node authorizer's decision.
pub async fn decide(reg: &Registry, user: &UserInfo, a: &Attributes) -> Decision {
    let Some(node) = node_name(user) else {
        return Decision::NoOpinion;
    };
    if !a.resource_request {
        return Decision::NoOpinion;
    }
    let own = a.name.is_empty() || a.name == node;
    let verb = a.verb.as_str();
    let sub = a.subresource.as_str();
    match (a.group.as_str(), a.resource.as_str()) {
        ("", "nodes") => allow(is(READ, verb) || (own && matches!(sub, "" | "status"))),
        ("", "pods") => allow(match sub {
            "" => is(READ, verb) || is(&["create", "delete"], verb),
            "status" => is(&["update", "patch"], verb),
            "eviction" => verb == "create",
            _ => false,
        }),
        ("", "services" | "endpoints") | ("discovery.k8s.io", "endpointslices") => {
            allow(is(READ, verb))
        }
        // The node's network policy enforcement (minik-network) runs as the node.
        ("", "namespaces") | ("networking.k8s.io", "networkpolicies") => allow(is(READ, verb)),
        ("node.k8s.io", "runtimeclasses") | ("storage.k8s.io", "csidrivers" | "storageclasses") => {
            allow(is(READ, verb))
        }
        ("", "events") | ("events.k8s.io", "events") => {
            allow(is(&["create", "update", "patch"], verb))
        }
        ("coordination.k8s.io", "leases") => allow(a.namespace == "kube-node-lease" && own),
        ("storage.k8s.io", "csinodes") => allow(own),
        ("certificates.k8s.io", "certificatesigningrequests") => {
            allow(sub.is_empty() && is(&["create", "get", "list", "watch"], verb))
        }
        ("authentication.k8s.io", "tokenreviews")
        | ("authorization.k8s.io", "subjectaccessreviews") => allow(verb == "create"),
        ("", kind @ ("secrets" | "configmaps" | "persistentvolumeclaims" | "serviceaccounts")) => {
            let fits = match sub {
                "" => is(READ, verb),
                "status" => kind == "persistentvolumeclaims" && is(&["update", "patch"], verb),
                "token" => kind == "serviceaccounts" && verb == "create",
                _ => false,
            };
            if !fits || a.name.is_empty() {
                return Decision::NoOpinion;
            }
            let namespace = Some(a.namespace.as_str()).filter(|n| !n.is_empty());
            let used = referenced(reg, node, namespace).await;
            allow(used.contains(&(kind.to_string(), a.namespace.clone(), a.name.clone())))
        }
        ("", "persistentvolumes") if verb == "get" && !a.name.is_empty() => {
            let used = referenced(reg, node, None).await;
            allow(volume_used(reg, &used, &a.name).await)
        }
        _ => Decision::NoOpinion,
    }
}

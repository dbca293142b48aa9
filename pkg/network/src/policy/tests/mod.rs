//! Tests of NetworkPolicy enforcement: rendered scripts (render.rs), each also loaded into a
//! real kernel in a throwaway network namespace (netns.rs), real traffic between namespaces
//! (traffic.rs), and the API-driven loop against a fake API server (run.rs).

mod netns;
mod render;
mod run;
mod traffic;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::{Value, json};

use super::PolicyOptions;

pub const NODE: &str = "node-a";
/// No namespaces (their labels are not needed).
pub const NO_NAMESPACES: &[Namespace] = &[];
/// No policies.
pub const NO_POLICIES: &[NetworkPolicy] = &[];

pub fn options() -> PolicyOptions {
    PolicyOptions {
        node_name: NODE.to_string(),
        table: "minik-policy".into(),
    }
}

/// A running pod on `node` with `ip`, `labels` and container ports `(name, port, protocol)`.
pub fn pod_on(
    node: &str,
    ns: &str,
    name: &str,
    ip: &str,
    labels: Value,
    ports: &[(&str, i32, &str)],
) -> Pod {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(n, p, proto)| json!({"name": n, "containerPort": p, "protocol": proto}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    }))
    .unwrap()
}

/// A running pod on this test's node.
pub fn pod(ns: &str, name: &str, ip: &str, labels: Value) -> Pod {
    pod_on(NODE, ns, name, ip, labels, &[])
}

pub fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

pub fn policy(ns: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}, "spec": spec}))
        .unwrap()
}

/// The lines of the chain `name` in `script`, trimmed, without its braces.
pub fn chain<'s>(script: &'s str, name: &str) -> Vec<&'s str> {
    block(script, &format!("chain {name} {{"))
}

/// The lines of the set or map `name` in `script`.
pub fn set<'s>(script: &'s str, name: &str) -> Vec<&'s str> {
    let lines = block(script, &format!("set {name} {{"));
    if lines.is_empty() {
        block(script, &format!("map {name} {{"))
    } else {
        lines
    }
}

fn block<'s>(script: &'s str, header: &str) -> Vec<&'s str> {
    script
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| *l != "}")
        .collect()
}

//! What objects take of a ResourceQuota: object counts, the compute requests and limits of
//! pods, services' load balancers and node ports, and claims' storage — shared by the
//! ResourceQuota admission plugin and the quota controller.

use serde_json::Value;

use crate::{ResourceInfo, quantity};

/// Compute resources a quota may limit, and where a container says them.
pub const COMPUTE: &[(&str, &str, &str)] = &[
    ("requests.cpu", "requests", "cpu"),
    ("cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("memory", "requests", "memory"),
    (
        "requests.ephemeral-storage",
        "requests",
        "ephemeral-storage",
    ),
    ("ephemeral-storage", "requests", "ephemeral-storage"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
    ("limits.ephemeral-storage", "limits", "ephemeral-storage"),
];

/// The quota names an object of `info` counts against.
pub fn count_names(info: &ResourceInfo) -> Vec<String> {
    let mut names = vec![if info.group.is_empty() {
        format!("count/{}", info.plural)
    } else {
        format!("count/{}.{}", info.plural, info.group)
    }];
    let legacy = [
        "pods",
        "services",
        "configmaps",
        "secrets",
        "replicationcontrollers",
        "resourcequotas",
        "persistentvolumeclaims",
    ];
    if info.group.is_empty() && legacy.contains(&info.plural) {
        names.push(info.plural.to_string());
    }
    names
}

pub fn terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// A pod's total of `kind` (requests/limits) of `resource`: its containers' sum, or its
/// largest init container if larger, plus overhead.
pub fn pod_amount(pod: &Value, kind: &str, resource: &str) -> Option<i128> {
    let of = |c: &Value| {
        c["resources"][kind][resource]
            .as_str()
            .and_then(quantity::parse)
    };
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let mut sum = 0;
    for c in &containers {
        sum += of(c)?;
    }
    let init = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(of)
        .max()
        .unwrap_or(0);
    let overhead = spec["overhead"][resource]
        .as_str()
        .and_then(quantity::parse)
        .unwrap_or(0);
    Some(sum.max(init) + overhead)
}

/// What one object takes of the quota resource `name` (None: it does not count, or it
/// does not say; Err names what it must say).
pub fn usage(
    info: &ResourceInfo,
    obj: &Value,
    name: &str,
) -> std::result::Result<Option<i128>, String> {
    if count_names(info).iter().any(|n| n == name) {
        return Ok((!(info.plural == "pods" && terminal(obj))).then_some(1000));
    }
    if info.group.is_empty() && info.plural == "services" {
        let t = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
        let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len) as i128;
        return Ok(match name {
            "services.loadbalancers" => (t == "LoadBalancer").then_some(1000),
            "services.nodeports" => {
                matches!(t, "NodePort" | "LoadBalancer").then_some(ports * 1000)
            }
            _ => None,
        });
    }
    if info.group.is_empty()
        && info.plural == "persistentvolumeclaims"
        && name == "requests.storage"
    {
        return Ok(obj["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .and_then(quantity::parse));
    }
    if !(info.group.is_empty() && info.plural == "pods") || terminal(obj) {
        return Ok(None);
    }
    let Some((_, kind, resource)) = COMPUTE.iter().find(|(n, _, _)| *n == name) else {
        return Ok(None);
    };
    match pod_amount(obj, kind, resource) {
        Some(v) => Ok(Some(v)),
        None => Err(name.to_string()),
    }
}

/// The containers of a pod that do not say the compute resource `name`.
pub fn lacking(pod: &Value, name: &str) -> Vec<String> {
    let Some((_, kind, resource)) = COMPUTE.iter().find(|(n, _, _)| *n == name) else {
        return Vec::new();
    };
    ["initContainers", "containers"]
        .iter()
        .filter_map(|k| pod["spec"][*k].as_array())
        .flatten()
        .filter(|c| c["resources"][*kind][*resource].is_null())
        .map(|c| c["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Whether a quota's scopes take in `pod`.
pub fn in_scope(quota: &Value, info: &ResourceInfo, obj: &Value) -> bool {
    let scopes = quota["spec"]["scopes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pod = info.group.is_empty() && info.plural == "pods";
    scopes.iter().all(|s| {
        let best_effort = pod
            && ["requests", "limits"].iter().all(|k| {
                obj["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|c| c["resources"][*k].as_object().is_none_or(|m| m.is_empty()))
            });
        let terminating = pod && obj["spec"]["activeDeadlineSeconds"].is_number();
        match s.as_str() {
            Some("BestEffort") => pod && best_effort,
            Some("NotBestEffort") => pod && !best_effort,
            Some("Terminating") => terminating,
            Some("NotTerminating") => pod && !terminating,
            _ => true,
        }
    })
}

//! ResourceQuota: a new object in a namespace with quotas is refused when it would take
//! the namespace past a quota's hard limits (object counts, and the requests and limits of
//! pods' containers). Usage is counted from the objects themselves while the namespace is
//! held, so concurrent creates cannot both take the last unit; the quota's status.used is
//! brought up to date with each admitted object and each deleted one.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use minik_api::ResourceInfo;
use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Registry, Result, WriteParams};
use serde_json::{Value, json};

use crate::Plugin;
use crate::quantity;

#[derive(Default)]
pub struct ResourceQuota {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Compute resources a quota may limit, and where a container says them.
const COMPUTE: &[(&str, &str, &str)] = &[
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
fn count_names(info: &ResourceInfo) -> Vec<String> {
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

fn terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// A pod's total of `kind` (requests/limits) of `resource`: its containers' sum, or its
/// largest init container if larger, plus overhead.
fn pod_amount(pod: &Value, kind: &str, resource: &str) -> Option<i128> {
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
fn usage(
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
fn lacking(pod: &Value, name: &str) -> Vec<String> {
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
fn in_scope(quota: &Value, info: &ResourceInfo, obj: &Value) -> bool {
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

impl ResourceQuota {
    /// What a deleted object gives back: each quota's status.used without it.
    async fn released(
        &self,
        reg: &Registry,
        ns: &str,
        info: &ResourceInfo,
        obj: &Value,
    ) -> Result<()> {
        if crate::cached(reg, "", "v1", "resourcequotas", Some(ns))
            .await?
            .is_empty()
        {
            return Ok(());
        }
        let _guard = self.lock(ns).lock_owned().await;
        let quotas_info = minik_api::builtin("", "v1", "resourcequotas");
        let quotas = reg.list(quotas_info, Some(ns), &Default::default()).await?;
        for quota in quotas.items.iter().filter(|q| in_scope(q, info, obj)) {
            let mut now = BTreeMap::new();
            for name in quota["spec"]["hard"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k)
            {
                if let Ok(Some(d)) = usage(info, obj, name) {
                    let in_use = used(reg, info, ns, name, quota).await?;
                    now.insert(
                        name.clone(),
                        quantity::format((in_use - d).max(0), name.contains("cpu")),
                    );
                }
            }
            if !now.is_empty() {
                record(reg, quota, &now).await;
            }
        }
        Ok(())
    }

    fn lock(&self, ns: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(ns.to_string()).or_default().clone()
    }
}

/// What the objects of `info` in `ns` use of `name`.
async fn used(
    reg: &Registry,
    info: &ResourceInfo,
    ns: &str,
    name: &str,
    quota: &Value,
) -> Result<i128> {
    let list = reg.list(info, Some(ns), &Default::default()).await?;
    Ok(list
        .items
        .iter()
        .filter(|o| in_scope(quota, info, o))
        .filter_map(|o| usage(info, o, name).ok().flatten())
        .sum())
}

#[async_trait::async_trait]
impl Plugin for ResourceQuota {
    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        let mut verdict = Verdict::default();
        if let (Some(ns), Operation::Delete, None, false) = (
            attrs.namespace,
            attrs.operation,
            attrs.subresource,
            attrs.dry_run,
        ) {
            self.released(reg, ns, attrs.info, obj).await?;
            return Ok(verdict);
        }
        let (Some(ns), Operation::Create, None) =
            (attrs.namespace, attrs.operation, attrs.subresource)
        else {
            return Ok(verdict);
        };
        let quotas_info = minik_api::builtin("", "v1", "resourcequotas");
        if crate::cached(reg, "", "v1", "resourcequotas", Some(ns))
            .await?
            .is_empty()
        {
            return Ok(verdict);
        }
        let guard = self.lock(ns).lock_owned().await;
        let quotas = reg.list(quotas_info, Some(ns), &Default::default()).await?;
        let info = attrs.info;
        for quota in &quotas.items {
            if !in_scope(quota, info, obj) {
                continue;
            }
            let qname = quota["metadata"]["name"].as_str().unwrap_or("");
            let hard = quota["spec"]["hard"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut missing = Vec::new();
            let mut over = Vec::new();
            let mut now = BTreeMap::new();
            for (name, limit) in &hard {
                let cpu = name.contains("cpu");
                let delta = match usage(info, obj, name) {
                    Ok(Some(d)) => d,
                    Ok(None) => continue,
                    Err(what) => {
                        missing.push(format!("{what} for: {}", lacking(obj, name).join(",")));
                        continue;
                    }
                };
                let limit = limit.as_str().and_then(quantity::parse).unwrap_or(0);
                let in_use = used(reg, info, ns, name, quota).await?;
                if in_use + delta > limit {
                    over.push((
                        name.clone(),
                        quantity::format(delta, cpu),
                        quantity::format(in_use, cpu),
                        quantity::format(limit, cpu),
                    ));
                }
                now.insert(name.clone(), quantity::format(in_use + delta, cpu));
            }
            if !missing.is_empty() {
                return Err(ApiError::forbidden(
                    info,
                    attrs.name,
                    format!("failed quota: {qname}: must specify {}", missing.join("; ")),
                ));
            }
            if !over.is_empty() {
                let join = |f: &dyn Fn(&(String, String, String, String)) -> String| {
                    over.iter().map(f).collect::<Vec<_>>().join(",")
                };
                return Err(ApiError::forbidden(
                    info,
                    attrs.name,
                    format!(
                        "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                        join(&|o| format!("{}={}", o.0, o.1)),
                        join(&|o| format!("{}={}", o.0, o.2)),
                        join(&|o| format!("{}={}", o.0, o.3)),
                    ),
                ));
            }
            if !attrs.dry_run && !now.is_empty() {
                record(reg, quota, &now).await;
            }
        }
        verdict.hold.push(Box::new(guard));
        Ok(verdict)
    }
}

/// Bring a quota's status.used up to date (best effort: the next admission recounts).
async fn record(reg: &Registry, quota: &Value, now: &BTreeMap<String, String>) {
    let mut q = quota.clone();
    q["status"]["hard"] = quota["spec"]["hard"].clone();
    if !q["status"]["used"].is_object() {
        q["status"]["used"] = json!({});
    }
    for (k, v) in now {
        q["status"]["used"][k] = json!(v);
    }
    let info = minik_api::builtin("", "v1", "resourcequotas");
    let ns = quota["metadata"]["namespace"].as_str();
    let name = quota["metadata"]["name"].as_str().unwrap_or("");
    if let Err(e) = reg
        .update(info, ns, name, q, true, &WriteParams::default())
        .await
    {
        tracing::debug!(quota = name, error = %e, "quota status not updated");
    }
}

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
use minik_api::quota::{in_scope, lacking, usage};

#[derive(Default)]
pub struct ResourceQuota {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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

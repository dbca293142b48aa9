//! Plugins driven by the namespace a pod or object goes into: NamespaceAutoProvision (make a
//! missing namespace), NamespaceExists (refuse writes into one that does not exist),
//! PodNodeSelector (the namespace's `scheduler.alpha.kubernetes.io/node-selector` joins the
//! pod's nodeSelector) and PodTolerationRestriction (the namespace's default tolerations are
//! added and its whitelist enforced).

use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Registry, Result, WriteParams};
use serde_json::{Value, json};

use crate::Plugin;

async fn namespace(reg: &Registry, ns: &str) -> Result<Option<Value>> {
    let info = minik_api::builtin("", "v1", "namespaces");
    match reg.get(info, None, ns).await {
        Ok(n) => Ok(Some(n)),
        Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn creates_namespaced<'a>(attrs: &Attributes<'a>) -> Option<&'a str> {
    (attrs.operation == Operation::Create && attrs.subresource.is_none())
        .then_some(attrs.namespace)
        .flatten()
}

pub struct NamespaceAutoProvision;

#[async_trait::async_trait]
impl Plugin for NamespaceAutoProvision {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        _: &mut Value,
    ) -> Result<Vec<String>> {
        let Some(ns) = creates_namespaced(attrs) else {
            return Ok(Vec::new());
        };
        if attrs.dry_run || namespace(reg, ns).await?.is_some() {
            return Ok(Vec::new());
        }
        let info = minik_api::builtin("", "v1", "namespaces");
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match reg.create(info, None, obj, &WriteParams::default()).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

pub struct NamespaceExists;

#[async_trait::async_trait]
impl Plugin for NamespaceExists {
    async fn validate(&self, reg: &Registry, attrs: &Attributes<'_>, _: &Value) -> Result<Verdict> {
        if let Some(ns) = creates_namespaced(attrs)
            && namespace(reg, ns).await?.is_none()
        {
            return Err(ApiError::not_found(
                minik_api::builtin("", "v1", "namespaces"),
                ns,
            ));
        }
        Ok(Verdict::default())
    }
}

/// `k=v,k2=v2` as a map.
fn labels(s: &str) -> serde_json::Map<String, Value> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), json!(v.trim())))
        .collect()
}

pub struct PodNodeSelector;

#[async_trait::async_trait]
impl Plugin for PodNodeSelector {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        let (true, Some(ns)) = (crate::creates(attrs, "pods"), attrs.namespace) else {
            return Ok(Vec::new());
        };
        let Some(n) = namespace(reg, ns).await? else {
            return Ok(Vec::new());
        };
        let Some(sel) =
            n["metadata"]["annotations"]["scheduler.alpha.kubernetes.io/node-selector"].as_str()
        else {
            return Ok(Vec::new());
        };
        if !pod["spec"]["nodeSelector"].is_object() {
            pod["spec"]["nodeSelector"] = json!({});
        }
        for (k, v) in labels(sel) {
            match pod["spec"]["nodeSelector"].get(&k) {
                Some(have) if *have != v => {
                    return Err(ApiError::forbidden(
                        attrs.info,
                        attrs.name,
                        "pod node label selector conflicts with its namespace node label selector"
                            .into(),
                    ));
                }
                _ => pod["spec"]["nodeSelector"][k] = v,
            }
        }
        Ok(Vec::new())
    }
}

fn tolerations(annotation: Option<&str>) -> std::result::Result<Option<Vec<Value>>, String> {
    annotation
        .map(|a| serde_json::from_str::<Vec<Value>>(a).map_err(|e| e.to_string()))
        .transpose()
}

/// Whether toleration `t` is allowed by one in `list` (same key, operator, value, effect).
fn covered(t: &Value, list: &[Value]) -> bool {
    let field = |v: &Value, k: &str, d: &str| v[k].as_str().unwrap_or(d).to_string();
    list.iter().any(|w| {
        field(w, "key", "") == field(t, "key", "")
            && field(w, "operator", "Equal") == field(t, "operator", "Equal")
            && field(w, "value", "") == field(t, "value", "")
            && (field(w, "effect", "").is_empty()
                || field(w, "effect", "") == field(t, "effect", ""))
    })
}

pub struct PodTolerationRestriction;

#[async_trait::async_trait]
impl Plugin for PodTolerationRestriction {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        let (true, Some(ns)) = (crate::creates(attrs, "pods"), attrs.namespace) else {
            return Ok(Vec::new());
        };
        let Some(n) = namespace(reg, ns).await? else {
            return Ok(Vec::new());
        };
        let a = &n["metadata"]["annotations"];
        let bad = |e: String| {
            ApiError::BadRequest(format!(
                "the namespace's toleration annotations are not valid JSON: {e}"
            ))
        };
        let defaults = tolerations(a["scheduler.alpha.kubernetes.io/defaultTolerations"].as_str())
            .map_err(bad)?;
        let whitelist =
            tolerations(a["scheduler.alpha.kubernetes.io/tolerationsWhitelist"].as_str())
                .map_err(bad)?;
        crate::ensure_array(&mut pod["spec"]["tolerations"]);
        if let (Some(d), Some(list)) = (defaults, pod["spec"]["tolerations"].as_array_mut()) {
            for t in d {
                if !list
                    .iter()
                    .any(|x| x["key"] == t["key"] && x["effect"] == t["effect"])
                {
                    list.push(t);
                }
            }
        }
        if let Some(w) = whitelist {
            let list = pod["spec"]["tolerations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            // What DefaultTolerationSeconds adds is not the pod's choice.
            let added = |t: &Value| {
                t["tolerationSeconds"] == 300
                    && matches!(
                        t["key"].as_str(),
                        Some("node.kubernetes.io/not-ready" | "node.kubernetes.io/unreachable")
                    )
            };
            if !list.iter().all(|t| added(t) || covered(t, &w)) {
                return Err(ApiError::forbidden(
                    attrs.info,
                    attrs.name,
                    "pod tolerations (possibly merged with namespace default tolerations) conflict with its namespace whitelist".into(),
                ));
            }
        }
        Ok(Vec::new())
    }
}

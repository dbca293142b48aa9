//! Smaller plugins: DenyServiceExternalIPs, ExtendedResourceToleration,
//! LimitPodHardAntiAffinityTopology, DefaultIngressClass, RuntimeClass and
//! PersistentVolumeClaimResize.

use minik_registry::admission::{Attributes, Operation, Verdict};
use minik_registry::{ApiError, Registry, Result};
use serde_json::{Value, json};

use crate::Plugin;
use crate::quantity;

pub struct DenyServiceExternalIPs;

#[async_trait::async_trait]
impl Plugin for DenyServiceExternalIPs {
    async fn validate(&self, _: &Registry, attrs: &Attributes<'_>, svc: &Value) -> Result<Verdict> {
        let before = attrs
            .old
            .map(|o| o["spec"]["externalIPs"].clone())
            .unwrap_or(Value::Null);
        let added = svc["spec"]["externalIPs"].as_array().is_some_and(|ips| {
            ips.iter()
                .any(|ip| !before.as_array().is_some_and(|b| b.contains(ip)))
        });
        if crate::is_core(attrs, "services") && added {
            return Err(ApiError::forbidden(
                attrs.info,
                attrs.name,
                "spec.externalIPs: Forbidden: use of external IPs is denied by admission control"
                    .into(),
            ));
        }
        Ok(Verdict::default())
    }
}

/// Extended resources: names with a domain outside kubernetes.io (`example.com/gpu`).
fn extended(name: &str) -> bool {
    name.split_once('/')
        .is_some_and(|(domain, _)| !domain.ends_with("kubernetes.io"))
}

pub struct ExtendedResourceToleration;

#[async_trait::async_trait]
impl Plugin for ExtendedResourceToleration {
    async fn mutate(
        &self,
        _: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        if !crate::creates(attrs, "pods") {
            return Ok(Vec::new());
        }
        let mut wanted: Vec<String> = Vec::new();
        for c in ["initContainers", "containers"]
            .iter()
            .filter_map(|k| pod["spec"][*k].as_array())
            .flatten()
        {
            for kind in ["requests", "limits"] {
                for r in c["resources"][kind]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                {
                    if extended(r) && !wanted.contains(r) {
                        wanted.push(r.clone());
                    }
                }
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        crate::ensure_array(&mut pod["spec"]["tolerations"]);
        if let Some(list) = pod["spec"]["tolerations"].as_array_mut() {
            for r in wanted {
                if !list.iter().any(|t| t["key"] == r.as_str()) {
                    list.push(json!({"key": r, "operator": "Exists", "effect": "NoSchedule"}));
                }
            }
        }
        Ok(Vec::new())
    }
}

pub struct LimitPodHardAntiAffinityTopology;

#[async_trait::async_trait]
impl Plugin for LimitPodHardAntiAffinityTopology {
    async fn validate(&self, _: &Registry, attrs: &Attributes<'_>, pod: &Value) -> Result<Verdict> {
        let terms = &pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
        let bad = terms
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["topologyKey"] != "kubernetes.io/hostname");
        if crate::creates(attrs, "pods") && bad {
            return Err(ApiError::forbidden(
                attrs.info,
                attrs.name,
                "affinity.PodAntiAffinity.RequiredDuringScheduling has TopologyKey other than kubernetes.io/hostname".into(),
            ));
        }
        Ok(Verdict::default())
    }
}

pub struct DefaultIngressClass;

#[async_trait::async_trait]
impl Plugin for DefaultIngressClass {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        ing: &mut Value,
    ) -> Result<Vec<String>> {
        let ingress = attrs.info.group == "networking.k8s.io"
            && attrs.info.plural == "ingresses"
            && attrs.operation == Operation::Create;
        let annotated = !ing["metadata"]["annotations"]["kubernetes.io/ingress.class"].is_null();
        if !ingress || annotated || !ing["spec"]["ingressClassName"].is_null() {
            return Ok(Vec::new());
        }
        let classes = crate::cached(reg, "networking.k8s.io", "v1", "ingressclasses", None).await?;
        let default = classes
            .iter()
            .filter(|c| {
                c["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"]
                    == "true"
            })
            .max_by(|a, b| {
                a["metadata"]["creationTimestamp"]
                    .as_str()
                    .cmp(&b["metadata"]["creationTimestamp"].as_str())
            });
        if let Some(c) = default {
            ing["spec"]["ingressClassName"] = c["metadata"]["name"].clone();
        }
        Ok(Vec::new())
    }
}

pub struct RuntimeClass;

#[async_trait::async_trait]
impl Plugin for RuntimeClass {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        let Some(name) = pod["spec"]["runtimeClassName"]
            .as_str()
            .filter(|_| crate::creates(attrs, "pods"))
        else {
            return Ok(Vec::new());
        };
        let info = minik_api::builtin("node.k8s.io", "v1", "runtimeclasses");
        let class = reg.get(info, None, name).await.map_err(|_| {
            ApiError::forbidden(
                attrs.info,
                attrs.name,
                format!("pod rejected: RuntimeClass {name:?} not found"),
            )
        })?;
        if let Some(overhead) = class["overhead"]["podFixed"].as_object() {
            if !pod["spec"]["overhead"].is_null() && pod["spec"]["overhead"] != json!(overhead) {
                return Err(ApiError::forbidden(
                    attrs.info,
                    attrs.name,
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                        .into(),
                ));
            }
            pod["spec"]["overhead"] = json!(overhead);
        }
        let scheduling = &class["scheduling"];
        for (k, v) in scheduling["nodeSelector"].as_object().into_iter().flatten() {
            if !pod["spec"]["nodeSelector"].is_object() {
                pod["spec"]["nodeSelector"] = json!({});
            }
            match pod["spec"]["nodeSelector"].get(k) {
                Some(have) if have != v => {
                    return Err(ApiError::forbidden(
                        attrs.info,
                        attrs.name,
                        "pod rejected: conflict between pod and RuntimeClass node selector".into(),
                    ));
                }
                _ => pod["spec"]["nodeSelector"][k] = v.clone(),
            }
        }
        for t in scheduling["tolerations"].as_array().into_iter().flatten() {
            crate::ensure_array(&mut pod["spec"]["tolerations"]);
            if let Some(list) = pod["spec"]["tolerations"].as_array_mut()
                && !list.contains(t)
            {
                list.push(t.clone());
            }
        }
        Ok(Vec::new())
    }
}

pub struct PersistentVolumeClaimResize;

#[async_trait::async_trait]
impl Plugin for PersistentVolumeClaimResize {
    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pvc: &Value,
    ) -> Result<Verdict> {
        let (true, Some(old)) = (crate::is_core(attrs, "persistentvolumeclaims"), attrs.old) else {
            return Ok(Verdict::default());
        };
        let size = |v: &Value| {
            v["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .and_then(quantity::parse)
        };
        if size(pvc) <= size(old) {
            return Ok(Verdict::default());
        }
        let class = pvc["spec"]["storageClassName"].as_str().unwrap_or("");
        let info = minik_api::builtin("storage.k8s.io", "v1", "storageclasses");
        let expandable = reg
            .get(info, None, class)
            .await
            .is_ok_and(|c| c["allowVolumeExpansion"] == true);
        if !expandable {
            return Err(ApiError::forbidden(
                attrs.info,
                attrs.name,
                "spec: Forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize".into(),
            ));
        }
        Ok(Verdict::default())
    }
}

//! Small pod plugins: AlwaysPullImages, Priority and DefaultTolerationSeconds.

use minik_registry::admission::{Attributes, Operation};
use minik_registry::{ApiError, Registry, Result};
use serde_json::{Value, json};

use crate::Plugin;

/// Every container list of a pod spec.
pub(crate) fn containers_mut(spec: &mut Value) -> impl Iterator<Item = &mut Value> {
    let lists: Vec<&mut Value> = match spec.as_object_mut() {
        Some(m) => m
            .iter_mut()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "containers" | "initContainers" | "ephemeralContainers"
                )
            })
            .map(|(_, v)| v)
            .collect(),
        None => Vec::new(),
    };
    lists.into_iter().filter_map(Value::as_array_mut).flatten()
}

fn pod_write(attrs: &Attributes<'_>) -> bool {
    crate::is_core(attrs, "pods")
        && matches!(attrs.operation, Operation::Create | Operation::Update)
}

/// Forces `imagePullPolicy: Always`, so a pod cannot use another tenant's pulled image.
pub struct AlwaysPullImages;

#[async_trait::async_trait]
impl Plugin for AlwaysPullImages {
    async fn mutate(
        &self,
        _: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        if pod_write(attrs) {
            for c in containers_mut(&mut pod["spec"]) {
                c["imagePullPolicy"] = json!("Always");
            }
        }
        Ok(Vec::new())
    }
}

/// The priority classes Kubernetes always has.
const SYSTEM_CLASSES: &[(&str, i64)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

/// Sets a new pod's priority from its priorityClassName (or the global default class).
pub struct Priority;

#[async_trait::async_trait]
impl Plugin for Priority {
    async fn mutate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        if !crate::creates(attrs, "pods") {
            return Ok(Vec::new());
        }
        let classes =
            crate::cached(reg, "scheduling.k8s.io", "v1", "priorityclasses", None).await?;
        let wanted = pod
            .pointer("/spec/priorityClassName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let class = match &wanted {
            Some(name) => classes
                .iter()
                .find(|c| c["metadata"]["name"] == name.as_str())
                .map(|c| {
                    (
                        c["value"].as_i64().unwrap_or(0),
                        c["preemptionPolicy"].clone(),
                    )
                })
                .or_else(|| {
                    SYSTEM_CLASSES
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| (*v, Value::Null))
                })
                .ok_or_else(|| {
                    ApiError::forbidden(
                        attrs.info,
                        attrs.name,
                        format!("no PriorityClass with name {name} was found"),
                    )
                })?,
            None => classes
                .iter()
                .find(|c| c["globalDefault"] == true)
                .map(|c| {
                    (
                        c["value"].as_i64().unwrap_or(0),
                        c["preemptionPolicy"].clone(),
                    )
                })
                .unwrap_or((0, Value::Null)),
        };
        let (value, preemption) = class;
        if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64)
            && given != value
        {
            return Err(ApiError::forbidden(
                attrs.info,
                attrs.name,
                format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
                ),
            ));
        }
        pod["spec"]["priority"] = json!(value);
        let policy = match preemption {
            Value::String(p) => p,
            _ => "PreemptLowerPriority".into(),
        };
        pod["spec"]["preemptionPolicy"] = json!(policy);
        Ok(Vec::new())
    }
}

/// Adds 300-second tolerations of the not-ready and unreachable taints to new pods.
pub struct DefaultTolerationSeconds;

#[async_trait::async_trait]
impl Plugin for DefaultTolerationSeconds {
    async fn mutate(
        &self,
        _: &Registry,
        attrs: &Attributes<'_>,
        pod: &mut Value,
    ) -> Result<Vec<String>> {
        if !crate::creates(attrs, "pods") {
            return Ok(Vec::new());
        }
        let spec = &mut pod["spec"];
        crate::ensure_array(&mut spec["tolerations"]);
        let Some(tolerations) = spec["tolerations"].as_array_mut() else {
            return Ok(Vec::new());
        };
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            let tolerated = tolerations.iter().any(|t| {
                let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
                let k = t.get("key").and_then(Value::as_str).unwrap_or("");
                (k == key || (k.is_empty() && t["operator"] == "Exists"))
                    && (effect.is_empty() || effect == "NoExecute")
            });
            if !tolerated {
                tolerations.push(json!({"key": key, "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300}));
            }
        }
        Ok(Vec::new())
    }
}

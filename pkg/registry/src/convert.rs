//! Resources served in two API versions from one storage, as kube-apiserver does:
//! - events.k8s.io/v1 Events are stored as core/v1 Events (fields renamed);
//! - autoscaling/v1 HorizontalPodAutoscalers are stored as autoscaling/v2 (the CPU target
//!   becomes a Resource metric).

use minik_api::ResourceInfo;
use serde_json::{Map, Value, json};

/// (events.k8s.io/v1 field, core/v1 field)
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Alias {
    EventsV1,
    HpaV1,
}

fn alias(info: &ResourceInfo) -> Option<Alias> {
    match (info.group, info.version, info.kind) {
        ("events.k8s.io", "v1", "Event") => Some(Alias::EventsV1),
        ("autoscaling", "v1", "HorizontalPodAutoscaler") => Some(Alias::HpaV1),
        _ => None,
    }
}

/// Whether `info` is served from another version's storage (objects need converting).
pub(crate) fn converts(info: &ResourceInfo) -> bool {
    alias(info).is_some() || info.custom && info.version != info.storage_version
}

/// The resource whose storage `info` uses.
pub(crate) fn storage_info(info: &ResourceInfo) -> &ResourceInfo {
    let (g, v, plural) = match alias(info) {
        Some(Alias::EventsV1) => ("", "v1", "events"),
        Some(Alias::HpaV1) => ("autoscaling", "v2", "horizontalpodautoscalers"),
        None => return info,
    };
    minik_api::builtin(g, v, plural)
}

fn rename(obj: &mut Map<String, Value>, to_core: bool) {
    for (new, old) in EVENT_FIELDS {
        let (from, to) = if to_core { (new, old) } else { (old, new) };
        if let Some(v) = obj.remove(*from) {
            obj.insert((*to).to_string(), v);
        }
    }
}

fn cpu_metric(percent: &Value) -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": percent}}})
}

/// The CPU utilization of a v2 metric list (spec metrics' target or status' current).
fn cpu_of(metrics: Option<&Value>, part: &str) -> Option<Value> {
    metrics?.as_array()?.iter().find_map(|m| {
        (m.pointer("/type") == Some(&json!("Resource"))
            && m.pointer("/resource/name") == Some(&json!("cpu")))
        .then(|| {
            m.pointer(&format!("/resource/{part}/averageUtilization"))
                .cloned()
        })
        .flatten()
    })
}

fn hpa_to_v2(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(spec)) = obj.get_mut("spec")
        && let Some(p) = spec.remove("targetCPUUtilizationPercentage")
    {
        spec.insert("metrics".into(), json!([cpu_metric(&p)]));
    }
    if let Some(Value::Object(status)) = obj.get_mut("status")
        && let Some(p) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": p}}}]),
        );
    }
}

fn hpa_to_v1(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(spec)) = obj.get_mut("spec") {
        let cpu = cpu_of(spec.get("metrics"), "target");
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(p) = cpu {
            spec.insert("targetCPUUtilizationPercentage".into(), p);
        }
    }
    if let Some(Value::Object(status)) = obj.get_mut("status") {
        let cpu = cpu_of(status.get("currentMetrics"), "current");
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(p) = cpu {
            status.insert("currentCPUUtilizationPercentage".into(), p);
        }
    }
}

fn convert(info: &ResourceInfo, mut obj: Value, to_storage: bool) -> Value {
    if info.custom {
        // Versions of a custom resource differ only in apiVersion (`None` conversion).
        let version = if to_storage {
            info.storage_version
        } else {
            info.version
        };
        if let Some(m) = obj.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                json!(format!("{}/{version}", info.group)),
            );
        }
        return obj;
    }
    let Some(a) = alias(info) else { return obj };
    let api_version = if to_storage {
        storage_info(info).api_version()
    } else {
        info.api_version()
    };
    if let Some(m) = obj.as_object_mut() {
        match (a, to_storage) {
            (Alias::EventsV1, core) => rename(m, core),
            (Alias::HpaV1, true) => hpa_to_v2(m),
            (Alias::HpaV1, false) => hpa_to_v1(m),
        }
        m.insert("apiVersion".into(), json!(api_version));
    }
    obj
}

/// A stored object as `info` shows it.
pub(crate) fn from_storage(info: &ResourceInfo, obj: Value) -> Value {
    convert(info, obj, false)
}

/// An object of `info` as it is stored.
pub(crate) fn to_storage(info: &ResourceInfo, obj: &Value) -> Value {
    convert(info, obj.clone(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let info = minik_api::find("events.k8s.io", "v1", "events").unwrap();
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hi", "reason": "R",
            "deprecatedCount": 2, "eventTime": "2026-01-01T00:00:00.000000Z"});
        let core = to_storage(info, &v1);
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(core["involvedObject"]["name"], "p");
        assert_eq!(core["message"], "hi");
        assert_eq!(core["count"], 2);
        assert!(core.get("note").is_none());
        assert_eq!(from_storage(info, core), v1);
    }

    #[test]
    fn hpa_round_trip() {
        let info = minik_api::find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "h"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70},
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 40}});
        let v2 = to_storage(info, &v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            40
        );
        assert_eq!(from_storage(info, v2), v1);
    }
}

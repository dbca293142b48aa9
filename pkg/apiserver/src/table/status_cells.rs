//! Cells that sum up a status as kube-apiserver's printers do: the metric targets of a
//! HorizontalPodAutoscaler (`cpu: 200%/50%`) and an APIService's service and availability.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

fn text<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// One metric: `current/target` (average values marked `(avg)` where the printer does).
fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    let current = |p: &str| {
        status
            .and_then(|s| text(s, p))
            .map_or_else(unknown, str::to_string)
    };
    let percent = |v: Option<&Value>| v.and_then(Value::as_i64).map(|p| format!("{p}%"));
    let ty = text(spec, "/type").unwrap_or("");
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &spec[key];
            let name = text(src, "/name").unwrap_or("");
            match text(src, "/target/averageValue") {
                Some(target) => {
                    let now = current(&format!("/{key}/current/averageValue"));
                    format!("{name}: {now}/{target}")
                }
                None => {
                    let now =
                        percent(status.and_then(|s| {
                            s.pointer(&format!("/{key}/current/averageUtilization"))
                        }))
                        .unwrap_or_else(unknown);
                    let target = percent(src.pointer("/target/averageUtilization"))
                        .unwrap_or("<auto>".into());
                    format!("{name}: {now}/{target}")
                }
            }
        }
        "Pods" => format!(
            "{}/{}",
            current("/pods/current/averageValue"),
            text(spec, "/pods/target/averageValue").unwrap_or("")
        ),
        "Object" | "External" => {
            let key = if ty == "Object" { "object" } else { "external" };
            match text(spec, &format!("/{key}/target/averageValue")) {
                Some(target) => {
                    let now = current(&format!("/{key}/current/averageValue"));
                    format!("{now}/{target} (avg)")
                }
                None => format!(
                    "{}/{}",
                    current(&format!("/{key}/current/value")),
                    text(spec, &format!("/{key}/target/value")).unwrap_or("")
                ),
            }
        }
        _ => "<unknown type>".into(),
    }
}

/// The Targets column: each metric's current value against its target, at most two.
pub(super) fn hpa_targets(o: &Value, _: DateTime<Utc>) -> Value {
    let specs = o.pointer("/spec/metrics").and_then(Value::as_array);
    let Some(specs) = specs.filter(|s| !s.is_empty()) else {
        return json!("<none>");
    };
    let statuses = o
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array);
    let all: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, m)| hpa_metric(m, statuses.and_then(|s| s.get(i))))
        .collect();
    let shown = all[..all.len().min(2)].join(", ");
    json!(if all.len() > 2 {
        format!("{shown} + {} more...", all.len() - 2)
    } else {
        shown
    })
}

/// `Local`, or the service's namespace/name.
pub(super) fn apiservice_service(o: &Value, _: DateTime<Utc>) -> Value {
    match o.pointer("/spec/service").filter(|s| !s.is_null()) {
        Some(s) => json!(format!(
            "{}/{}",
            text(s, "/namespace").unwrap_or(""),
            text(s, "/name").unwrap_or("")
        )),
        None => json!("Local"),
    }
}

/// The Available condition: `True`, `False (reason)`, or `Unknown`.
pub(super) fn apiservice_available(o: &Value, _: DateTime<Utc>) -> Value {
    let available = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Available"));
    let Some(c) = available else {
        return json!("Unknown");
    };
    let status = text(c, "/status").unwrap_or("Unknown");
    match text(c, "/reason").filter(|r| !r.is_empty() && status != "True") {
        Some(reason) => json!(format!("{status} ({reason})")),
        None => json!(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_targets_as_kubectl_shows_them() {
        let now = Utc::now();
        let hpa = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}]},
            "status": {"currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": 200, "averageValue": "200m"}}}]}});
        assert_eq!(
            hpa_targets(&hpa, now),
            "cpu: 200%/50%, memory: <unknown>/100Mi + 1 more..."
        );
        assert_eq!(hpa_targets(&json!({"spec": {}}), now), "<none>");
    }

    #[test]
    fn apiservice_columns() {
        let now = Utc::now();
        let local = json!({"spec": {"group": "metrics.k8s.io"}, "status": {"conditions": [
            {"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(apiservice_service(&local, now), "Local");
        assert_eq!(apiservice_available(&local, now), "True");
        let remote = json!({"spec": {"service": {"namespace": "kube-system", "name": "m"}},
            "status": {"conditions": [{"type": "Available", "status": "False",
                "reason": "FailedDiscoveryCheck"}]}});
        assert_eq!(apiservice_service(&remote, now), "kube-system/m");
        assert_eq!(
            apiservice_available(&remote, now),
            "False (FailedDiscoveryCheck)"
        );
        assert_eq!(apiservice_available(&json!({}), now), "Unknown");
    }
}

//! NodeMetrics and PodMetrics as metrics-server writes them: the object's name, namespace
//! and labels, the time of the measurement and its window, usage as quantities (cpu in
//! nanocores, memory in bytes, canonical form), and the Table of `kubectl get`.

use minik_api::quantity::{decimal_si, format, go_duration};
use minik_api::usage::{NodeUsage, PodUsage, Usage, Window};
use serde_json::{Value, json};

use super::{GROUP, VERSION};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Node,
    Pod,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Node => "NodeMetrics",
            Kind::Pod => "PodMetrics",
        }
    }
}

fn quantities(u: &Usage) -> Value {
    json!({
        "cpu": decimal_si(i128::from(u.cpu_nanocores), -9),
        "memory": format(i128::from(u.memory_bytes) * 1000, false),
    })
}

/// When the window ended, as metav1.Time (RFC 3339, seconds).
fn rfc3339(w: &Window) -> String {
    w.timestamp.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The metadata of a metrics object for `obj` (a Node or Pod): made now, with its labels.
fn metadata(obj: &Value) -> Value {
    let mut meta = json!({"name": obj.pointer("/metadata/name"),
        "creationTimestamp": minik_registry::now_rfc3339()});
    if let Some(ns) = obj.pointer("/metadata/namespace") {
        meta["namespace"] = ns.clone();
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        meta["labels"] = labels.clone();
    }
    meta
}

fn object(kind: Kind, obj: &Value, w: &Window) -> Value {
    json!({"kind": kind.name(), "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": metadata(obj), "timestamp": rfc3339(w),
        "window": go_duration(w.window)})
}

/// The NodeMetrics of `node`.
pub fn node(node: &Value, u: &NodeUsage) -> Value {
    let mut m = object(Kind::Node, node, &u.window);
    m["usage"] = quantities(&u.usage);
    m
}

/// The PodMetrics of `pod`.
pub fn pod(pod: &Value, u: &PodUsage) -> Value {
    let mut m = object(Kind::Pod, pod, &u.window);
    m["containers"] = u
        .containers
        .iter()
        .map(|(name, usage)| json!({"name": name, "usage": quantities(usage)}))
        .collect();
    m
}

pub fn list(kind: Kind, items: Vec<Value>) -> Value {
    json!({"kind": format!("{}List", kind.name()), "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {}, "items": items})
}

/// Usage of a NodeMetrics, or the sum of a PodMetrics' containers.
fn total(m: &Value) -> Usage {
    let parse = |q: Option<&Value>| {
        q.and_then(Value::as_str)
            .and_then(minik_api::quantity::parse)
            .unwrap_or(0)
    };
    let one = |u: &Value| Usage {
        cpu_nanocores: u64::try_from(parse(u.get("cpu")) * 1_000_000).unwrap_or(0),
        memory_bytes: u64::try_from(parse(u.get("memory")) / 1000).unwrap_or(0),
    };
    match m.get("containers").and_then(Value::as_array) {
        Some(cs) => cs
            .iter()
            .fold(Usage::default(), |t, c| t + one(&c["usage"])),
        None => one(&m["usage"]),
    }
}

/// metrics-server's Table: Name, cpu, memory, Window.
pub fn table(items: &[Value]) -> Value {
    let column = |name: &str, format: &str| {
        json!({"name": name, "type": "string", "format": format, "description": name,
            "priority": 0})
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|m| {
            let usage = quantities(&total(m));
            json!({"cells": [m["metadata"]["name"], usage["cpu"], usage["memory"], m["window"]],
                "object": crate::view::partial(m)})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
        "columnDefinitions": [column("Name", "name"), column("cpu", "quantity"),
            column("memory", "quantity"), column("Window", "duration")],
        "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pod_metrics_look_like_metrics_servers() {
        let pod_obj = json!({"metadata": {"name": "p", "namespace": "ns",
            "labels": {"app": "web"}}});
        let w = Window {
            timestamp: "2026-01-02T03:04:05Z".parse().unwrap(),
            window: Duration::from_millis(10_500),
        };
        let u = Usage {
            cpu_nanocores: 200_000_000,
            memory_bytes: 64 << 20,
        };
        let usage = PodUsage {
            namespace: "ns".into(),
            name: "p".into(),
            window: w,
            containers: vec![("a".into(), u), ("b".into(), u)],
        };
        let m = pod(&pod_obj, &usage);
        assert_eq!(m["kind"], "PodMetrics");
        assert_eq!(m["apiVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(m["metadata"]["namespace"], "ns");
        assert_eq!(m["metadata"]["labels"]["app"], "web");
        assert_eq!(m["timestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(m["window"], "10.5s");
        assert_eq!(
            m["containers"][1],
            json!({"name": "b", "usage": {"cpu": "200m", "memory": "64Mi"}})
        );
        let t = table(&[m]);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["p", "400m", "128Mi", "10.5s"])
        );
        let n = node(
            &json!({"metadata": {"name": "n"}}),
            &NodeUsage {
                window: w,
                usage: u,
            },
        );
        assert_eq!(n["usage"], json!({"cpu": "200m", "memory": "64Mi"}));
        assert!(n["metadata"].get("namespace").is_none());
        assert_eq!(list(Kind::Node, vec![n])["kind"], "NodeMetricsList");
    }
}

//! Cell functions shared by the column sets.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub(super) fn s(o: &Value, p: &str) -> Value {
    json!(o.pointer(p).and_then(Value::as_str).unwrap_or(""))
}

pub(super) fn n(o: &Value, p: &str) -> i64 {
    o.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

pub(super) fn len(o: &Value, p: &str) -> usize {
    match o.pointer(p) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

pub(super) fn or_none(v: String) -> Value {
    json!(if v.is_empty() {
        "<none>".to_string()
    } else {
        v
    })
}

/// kubectl's short duration: 45s, 5m3s, 3h4m, 2d3h, 400d.
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60).replace("m0s", "m"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60).replace("h0m", "h"),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600).replace("d0h", "d"),
        s => format!("{}d", s / 86400),
    }
}

pub(super) fn age(o: &Value, now: DateTime<Utc>) -> Value {
    let Some(t) = o
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return json!("<unknown>");
    };
    json!(human_duration((now - t.with_timezone(&Utc)).num_seconds()))
}

pub(super) fn labels_selector(o: &Value, p: &str) -> Value {
    let sel = o
        .pointer(p)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    or_none(sel)
}

pub(super) fn container_field(o: &Value, p: &str, field: &str) -> Value {
    let v = o
        .pointer(p)
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get(field).and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    or_none(v)
}

pub(super) fn pod_ready(o: &Value, _: DateTime<Utc>) -> Value {
    let total = len(o, "/spec/containers");
    let ready = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |cs| {
            cs.iter()
                .filter(|c| c.get("ready") == Some(&json!(true)))
                .count()
        });
    json!(format!("{ready}/{total}"))
}

pub(super) fn pod_status(o: &Value, _: DateTime<Utc>) -> Value {
    if o.pointer("/metadata/deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let waiting = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter().find_map(|c| {
                c.pointer("/state/waiting/reason")
                    .or_else(|| c.pointer("/state/terminated/reason"))
                    .and_then(Value::as_str)
            })
        });
    let reason = o.pointer("/status/reason").and_then(Value::as_str);
    let phase = o
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    json!(reason.or(waiting).unwrap_or(phase))
}

pub(super) fn pod_restarts(o: &Value, _: DateTime<Utc>) -> Value {
    let r: i64 = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |cs| {
            cs.iter()
                .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
                .sum()
        });
    json!(r)
}

pub(super) fn ports(o: &Value, _: DateTime<Utc>) -> Value {
    let v = o
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match p
                        .get("nodePort")
                        .and_then(Value::as_i64)
                        .filter(|n| *n != 0)
                    {
                        Some(np) => format!("{port}:{np}/{proto}"),
                        None => format!("{port}/{proto}"),
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    or_none(v)
}

pub(super) fn external_ip(o: &Value, _: DateTime<Utc>) -> Value {
    let ingress: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|is| {
            is.iter()
                .filter_map(|i| {
                    i.get("ip")
                        .or(i.get("hostname"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let external: Vec<String> = o
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let all = [ingress, external].concat();
    if all.is_empty() {
        let pending = o.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer");
        return json!(if pending { "<pending>" } else { "<none>" });
    }
    json!(all.join(","))
}

pub(super) fn node_status(o: &Value, _: DateTime<Utc>) -> Value {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("type") == Some(&json!("Ready"))))
        .and_then(|c| c.get("status").and_then(Value::as_str));
    let mut s = match ready {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable") == Some(&json!(true)) {
        s.push_str(",SchedulingDisabled");
    }
    json!(s)
}

pub(super) fn node_roles(o: &Value, _: DateTime<Utc>) -> Value {
    let roles: Vec<String> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    or_none(roles.join(","))
}

pub(super) fn ready_of_replicas(o: &Value, _: DateTime<Utc>) -> Value {
    json!(format!(
        "{}/{}",
        n(o, "/status/readyReplicas"),
        n(o, "/spec/replicas")
    ))
}

pub(super) fn completions(o: &Value, _: DateTime<Utc>) -> Value {
    let want = o
        .pointer("/spec/completions")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    json!(format!("{}/{want}", n(o, "/status/succeeded")))
}

pub(super) fn endpoints_cell(o: &Value, _: DateTime<Utc>) -> Value {
    let mut out = Vec::new();
    for subset in o
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ports: Vec<i64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| p.get("port").and_then(Value::as_i64))
                    .collect()
            })
            .unwrap_or_default();
        for a in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
            if ports.is_empty() {
                out.push(ip.to_string());
            }
            out.extend(ports.iter().map(|p| format!("{ip}:{p}")));
        }
    }
    or_none(out.join(","))
}

/// The string at `p`, or "".
pub(super) fn text<'a>(o: &'a Value, p: &str) -> &'a str {
    o.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// The string at `p`, or `default`.
pub(super) fn str_or(o: &Value, p: &str, default: &str) -> Value {
    json!(o.pointer(p).and_then(Value::as_str).unwrap_or(default))
}

/// `Kind/name` of the reference at `base` (scaleTargetRef, roleRef, involvedObject).
pub(super) fn kind_name(o: &Value, base: &str) -> String {
    format!(
        "{}/{}",
        text(o, &format!("{base}/kind")),
        text(o, &format!("{base}/name"))
    )
}

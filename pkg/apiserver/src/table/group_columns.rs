//! Column sets of kinds in the named API groups.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::cells::*;
use super::columns::{AGE, Column, col, int, wide};

/// The kind's own columns (between Name and Age), or None for the default set.
pub(super) fn for_group_kind(group: &str, kind: &str) -> Option<Vec<Column>> {
    Some(match (group, kind) {
        ("apps", "Deployment") => vec![
            col("Ready", ready_of_replicas),
            int("Up-to-date", |o, _| json!(n(o, "/status/updatedReplicas"))),
            int("Available", |o, _| json!(n(o, "/status/availableReplicas"))),
            AGE,
            wide("Containers", |o, _| {
                container_field(o, "/spec/template/spec/containers", "name")
            }),
            wide("Images", |o, _| {
                container_field(o, "/spec/template/spec/containers", "image")
            }),
            wide("Selector", |o, _| {
                labels_selector(o, "/spec/selector/matchLabels")
            }),
        ],
        ("apps", "ReplicaSet") => vec![
            int("Desired", |o, _| json!(n(o, "/spec/replicas"))),
            int("Current", |o, _| json!(n(o, "/status/replicas"))),
            int("Ready", |o, _| json!(n(o, "/status/readyReplicas"))),
        ],
        ("apps", "StatefulSet") => vec![col("Ready", ready_of_replicas)],
        ("apps", "DaemonSet") => vec![
            int("Desired", |o, _| {
                json!(n(o, "/status/desiredNumberScheduled"))
            }),
            int("Current", |o, _| {
                json!(n(o, "/status/currentNumberScheduled"))
            }),
            int("Ready", |o, _| json!(n(o, "/status/numberReady"))),
            int("Up-to-date", |o, _| {
                json!(n(o, "/status/updatedNumberScheduled"))
            }),
            int("Available", |o, _| json!(n(o, "/status/numberAvailable"))),
            col("Node Selector", |o, _| {
                labels_selector(o, "/spec/template/spec/nodeSelector")
            }),
        ],
        ("batch", "Job") => vec![
            col("Status", |o, _| {
                let done = o
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter()
                            .find(|c| c.get("status") == Some(&json!("True")))
                            .and_then(|c| c.get("type").and_then(Value::as_str))
                    });
                json!(match done {
                    Some("Complete") => "Complete",
                    Some("Failed") => "Failed",
                    Some("Suspended") => "Suspended",
                    _ => "Running",
                })
            }),
            col("Completions", completions),
        ],
        ("batch", "CronJob") => vec![
            col("Schedule", |o, _| s(o, "/spec/schedule")),
            col("Timezone", |o, _| {
                or_none(s(o, "/spec/timeZone").as_str().unwrap_or("").into())
            }),
            col("Suspend", |o, _| {
                json!(if o.pointer("/spec/suspend") == Some(&json!(true)) {
                    "True"
                } else {
                    "False"
                })
            }),
            int("Active", |o, _| json!(len(o, "/status/active"))),
            col("Last Schedule", |o, now| {
                let t = o
                    .pointer("/status/lastScheduleTime")
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                json!(t.map_or("<none>".to_string(), |t| human_duration(
                    (now - t.with_timezone(&Utc)).num_seconds()
                )))
            }),
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            col("AddressType", |o, _| s(o, "/addressType")),
            col("Ports", |o, _| {
                let ports: Vec<String> = o
                    .pointer("/ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .filter_map(|p| p.get("port").and_then(Value::as_i64))
                            .map(|p| p.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                })
            }),
            col("Endpoints", |o, _| {
                let addrs: Vec<String> = o
                    .pointer("/endpoints")
                    .and_then(Value::as_array)
                    .map(|es| {
                        es.iter()
                            .flat_map(|e| {
                                e.get("addresses")
                                    .and_then(Value::as_array)
                                    .cloned()
                                    .unwrap_or_default()
                            })
                            .filter_map(|a| a.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                or_none(addrs.join(","))
            }),
        ],
        ("coordination.k8s.io", "Lease") => {
            vec![col("Holder", |o, _| s(o, "/spec/holderIdentity"))]
        }
        ("storage.k8s.io", "StorageClass") => vec![
            col("Provisioner", |o, _| s(o, "/provisioner")),
            col("ReclaimPolicy", |o, _| {
                str_or(o, "/reclaimPolicy", "Delete")
            }),
            col("VolumeBindingMode", |o, _| {
                str_or(o, "/volumeBindingMode", "Immediate")
            }),
            col("AllowVolumeExpansion", |o, _| {
                json!(
                    o.get("allowVolumeExpansion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                )
            }),
        ],
        ("networking.k8s.io", "Ingress") => vec![
            col("Class", |o, _| {
                or_none(s(o, "/spec/ingressClassName").as_str().unwrap_or("").into())
            }),
            col("Hosts", |o, _| {
                let hosts: Vec<&str> = o
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.get("host").and_then(Value::as_str))
                    .collect();
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                })
            }),
            col("Address", |o, _| {
                let ips: Vec<&str> = o
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str))
                    .collect();
                json!(ips.join(","))
            }),
            col("Ports", |o, _| {
                json!(if len(o, "/spec/tls") > 0 {
                    "80, 443"
                } else {
                    "80"
                })
            }),
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            col("Reference", |o, _| {
                json!(kind_name(o, "/spec/scaleTargetRef"))
            }),
            col("Targets", super::status_cells::hpa_targets),
            col("MinPods", |o, _| {
                json!(
                    o.pointer("/spec/minReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                        .to_string()
                )
            }),
            int("MaxPods", |o, _| json!(n(o, "/spec/maxReplicas"))),
            int("Replicas", |o, _| json!(n(o, "/status/currentReplicas"))),
        ],
        ("apiregistration.k8s.io", "APIService") => vec![
            col("Service", super::status_cells::apiservice_service),
            col("Available", super::status_cells::apiservice_available),
        ],
        ("policy", "PodDisruptionBudget") => vec![
            col("Min Available", |o, _| {
                json!(
                    o.pointer("/spec/minAvailable")
                        .map_or("N/A".to_string(), |v| v
                            .as_str()
                            .map_or(v.to_string(), str::to_string))
                )
            }),
            col("Max Unavailable", |o, _| {
                json!(
                    o.pointer("/spec/maxUnavailable")
                        .map_or("N/A".to_string(), |v| v
                            .as_str()
                            .map_or(v.to_string(), str::to_string))
                )
            }),
            int("Allowed Disruptions", |o, _| {
                json!(n(o, "/status/disruptionsAllowed"))
            }),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            vec![col("Role", |o, _| json!(kind_name(o, "/roleRef")))]
        }
        ("networking.k8s.io", "NetworkPolicy") => vec![col("Pod-Selector", |o, _| {
            labels_selector(o, "/spec/podSelector/matchLabels")
        })],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            int("Value", |o, _| json!(n(o, "/value"))),
            col("Global-Default", |o, _| {
                json!(
                    o.get("globalDefault")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                )
            }),
        ],
        ("certificates.k8s.io", "CertificateSigningRequest") => vec![
            AGE,
            col("SignerName", |o, _| str_or(o, "/spec/signerName", "<none>")),
            col("Requestor", |o, _| s(o, "/spec/username")),
            col("RequestedDuration", |o, _| {
                let secs = o.pointer("/spec/expirationSeconds").and_then(Value::as_i64);
                json!(secs.map_or("<none>".into(), human_duration))
            }),
            col("Condition", csr_condition),
        ],
        _ => return None,
    })
}

/// Pending, Approved or Denied; then Failed and Issued when they are.
fn csr_condition(o: &Value, _: DateTime<Utc>) -> Value {
    let conds = o.pointer("/status/conditions").and_then(Value::as_array);
    let has = |t: &str| conds.into_iter().flatten().any(|c| c["type"] == t);
    let mut out = String::from(match (has("Denied"), has("Approved")) {
        (true, _) => "Denied",
        (_, true) => "Approved",
        _ => "Pending",
    });
    if has("Failed") {
        out.push_str(",Failed");
    }
    if !text(o, "/status/certificate").is_empty() {
        out.push_str(",Issued");
    }
    json!(out)
}

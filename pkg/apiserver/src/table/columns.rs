//! Column sets per kind, as kube-apiserver's printers define them.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::cells::*;

type Cell = fn(&Value, DateTime<Utc>) -> Value;

/// One column: its name, OpenAPI type and format, priority (1: only with `-o wide`), and
/// how to compute a cell.
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub format: &'static str,
    pub priority: u8,
    pub cell: Cell,
}

const fn col(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 0,
        cell,
    }
}

const fn int(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        kind: "integer",
        format: "",
        priority: 0,
        cell,
    }
}

const fn wide(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 1,
        cell,
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    format: "name",
    priority: 0,
    cell: |o, _| s(o, "/metadata/name"),
};
const AGE: Column = col("Age", age);

/// The columns of a kind (Name and Age around the kind's own).
pub fn for_kind(group: &str, kind: &str) -> Vec<Column> {
    let mut cols = vec![NAME];
    let own: Vec<Column> = match (group, kind) {
        ("", "Namespace") => vec![col("Status", |o, _| s(o, "/status/phase"))],
        ("", "Pod") => vec![
            col("Ready", pod_ready),
            col("Status", pod_status),
            int("Restarts", pod_restarts),
            AGE,
            wide("IP", |o, _| {
                or_none(s(o, "/status/podIP").as_str().unwrap_or("").into())
            }),
            wide("Node", |o, _| {
                or_none(s(o, "/spec/nodeName").as_str().unwrap_or("").into())
            }),
            wide("Nominated Node", |o, _| {
                or_none(
                    s(o, "/status/nominatedNodeName")
                        .as_str()
                        .unwrap_or("")
                        .into(),
                )
            }),
            wide("Readiness Gates", |o, _| {
                json!(if len(o, "/spec/readinessGates") == 0 {
                    "<none>".to_string()
                } else {
                    format!("0/{}", len(o, "/spec/readinessGates"))
                })
            }),
        ],
        ("", "Service") => vec![
            col("Type", |o, _| s(o, "/spec/type")),
            col("Cluster-IP", |o, _| {
                or_none(s(o, "/spec/clusterIP").as_str().unwrap_or("").into())
            }),
            col("External-IP", external_ip),
            col("Port(s)", ports),
            AGE,
            wide("Selector", |o, _| labels_selector(o, "/spec/selector")),
        ],
        ("", "ConfigMap") => vec![int("Data", |o, _| {
            json!(len(o, "/data") + len(o, "/binaryData"))
        })],
        ("", "Secret") => vec![
            col("Type", |o, _| s(o, "/type")),
            int("Data", |o, _| json!(len(o, "/data"))),
        ],
        ("", "ServiceAccount") => vec![int("Secrets", |o, _| json!(len(o, "/secrets")))],
        ("", "Node") => vec![
            col("Status", node_status),
            col("Roles", node_roles),
            AGE,
            col("Version", |o, _| s(o, "/status/nodeInfo/kubeletVersion")),
            wide("Internal-IP", |o, _| {
                let ip = o
                    .pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter()
                            .find(|x| x.get("type") == Some(&json!("InternalIP")))
                            .and_then(|x| x.get("address").and_then(Value::as_str))
                    });
                or_none(ip.unwrap_or("").into())
            }),
            wide("OS-Image", |o, _| s(o, "/status/nodeInfo/osImage")),
            wide("Kernel-Version", |o, _| {
                s(o, "/status/nodeInfo/kernelVersion")
            }),
            wide("Container-Runtime", |o, _| {
                s(o, "/status/nodeInfo/containerRuntimeVersion")
            }),
        ],
        ("", "PersistentVolumeClaim") => vec![
            col("Status", |o, _| s(o, "/status/phase")),
            col("Volume", |o, _| s(o, "/spec/volumeName")),
            col("Capacity", |o, _| s(o, "/status/capacity/storage")),
            col("Access Modes", |o, _| {
                json!(
                    o.pointer("/status/accessModes")
                        .and_then(Value::as_array)
                        .map(|a| a
                            .iter()
                            .filter_map(|m| m.as_str())
                            .map(|m| match m {
                                "ReadWriteOnce" => "RWO",
                                "ReadOnlyMany" => "ROX",
                                "ReadWriteMany" => "RWX",
                                "ReadWriteOncePod" => "RWOP",
                                x => x,
                            })
                            .collect::<Vec<_>>()
                            .join(","))
                        .unwrap_or_default()
                )
            }),
            col("StorageClass", |o, _| s(o, "/spec/storageClassName")),
        ],
        ("", "Event") => {
            // kubectl's event columns: no Name or Age (Name only with -o wide).
            return vec![
                col("Last Seen", |o, now| {
                    let t = [
                        "/lastTimestamp",
                        "/eventTime",
                        "/metadata/creationTimestamp",
                    ]
                    .iter()
                    .find_map(|p| o.pointer(p).and_then(Value::as_str))
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
                    json!(t.map_or("<unknown>".to_string(), |t| human_duration(
                        (now - t.with_timezone(&Utc)).num_seconds()
                    )))
                }),
                col("Type", |o, _| s(o, "/type")),
                col("Reason", |o, _| s(o, "/reason")),
                col("Object", |o, _| {
                    json!(format!(
                        "{}/{}",
                        o.pointer("/involvedObject/kind")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_lowercase(),
                        o.pointer("/involvedObject/name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                    ))
                }),
                col("Message", |o, _| s(o, "/message")),
                wide("Source", |o, _| s(o, "/source/component")),
                wide("Count", |o, _| json!(n(o, "/count"))),
                Column {
                    priority: 1,
                    ..NAME
                },
            ];
        }
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
        ("", "ComponentStatus") => {
            return vec![
                NAME,
                col("Status", |o, _| {
                    let ok = o.pointer("/conditions/0/status") == Some(&json!("True"));
                    json!(if ok { "Healthy" } else { "Unhealthy" })
                }),
                col("Message", |o, _| s(o, "/conditions/0/message")),
                col("Error", |o, _| s(o, "/conditions/0/error")),
            ];
        }
        ("", "Endpoints") => vec![col("Endpoints", endpoints_cell)],
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
        _ => vec![],
    };
    let has_age = own.iter().any(|c| c.name == "Age");
    cols.extend(own);
    if !has_age {
        cols.push(AGE);
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(130), "2m10s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400), "3d");
        assert_eq!(human_duration(400 * 86400), "400d");
    }

    #[test]
    fn pod_columns() {
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 2}, {"ready": false, "restartCount": 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let cols = for_kind("", "Pod");
        let now = Utc::now();
        let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(&pod, now)).collect();
        assert_eq!(cells[0], "p");
        assert_eq!(cells[1], "1/2");
        assert_eq!(cells[2], "CrashLoopBackOff");
        assert_eq!(cells[3], 3);
    }
}

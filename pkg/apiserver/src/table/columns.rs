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

pub(super) const fn col(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        kind: "string",
        format: "",
        priority: 0,
        cell,
    }
}

pub(super) const fn int(name: &'static str, cell: Cell) -> Column {
    Column {
        name,
        kind: "integer",
        format: "",
        priority: 0,
        cell,
    }
}

pub(super) const fn wide(name: &'static str, cell: Cell) -> Column {
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
pub(super) const AGE: Column = col("Age", age);

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
        ("", "ReplicationController") => vec![
            int("Desired", |o, _| json!(n(o, "/spec/replicas"))),
            int("Current", |o, _| json!(n(o, "/status/replicas"))),
            int("Ready", |o, _| json!(n(o, "/status/readyReplicas"))),
            AGE,
            wide("Containers", |o, _| {
                container_field(o, "/spec/template/spec/containers", "name")
            }),
            wide("Images", |o, _| {
                container_field(o, "/spec/template/spec/containers", "image")
            }),
            wide("Selector", |o, _| labels_selector(o, "/spec/selector")),
        ],
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
                        text(o, "/involvedObject/kind").to_lowercase(),
                        text(o, "/involvedObject/name")
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
        ("", "PersistentVolume") => vec![
            col("Capacity", |o, _| s(o, "/spec/capacity/storage")),
            col("Reclaim Policy", |o, _| {
                s(o, "/spec/persistentVolumeReclaimPolicy")
            }),
            col("Status", |o, _| s(o, "/status/phase")),
            col("Claim", |o, _| {
                let ns = o
                    .pointer("/spec/claimRef/namespace")
                    .and_then(Value::as_str);
                let name = o.pointer("/spec/claimRef/name").and_then(Value::as_str);
                json!(match (ns, name) {
                    (Some(ns), Some(n)) => format!("{ns}/{n}"),
                    _ => String::new(),
                })
            }),
            col("StorageClass", |o, _| s(o, "/spec/storageClassName")),
        ],
        _ => match super::group_columns::for_group_kind(group, kind) {
            Some(own) => own,
            // Resources without a printer of their own: Name and Created At, as kube-apiserver.
            None => {
                return vec![
                    NAME,
                    Column {
                        name: "Created At",
                        kind: "date",
                        format: "",
                        priority: 0,
                        cell: |o, _| s(o, "/metadata/creationTimestamp"),
                    },
                ];
            }
        },
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

//! Reading a kubelet's Summary API (`/stats/summary`, stats/v1alpha1) into the usage the
//! resource metrics API serves, as metrics-server does: the node's `cpu.usageNanoCores` and
//! `memory.workingSetBytes` at the node's `cpu.time`, and each pod's containers' own (in
//! the summary's container order). Containers without usage yet are left out, and so are
//! pods left with none; a node without usage yet has nothing to report.

use std::time::Duration;

use chrono::{DateTime, Utc};
use minik_api::usage::{NodeUsage, PodUsage, Usage, Window};
use serde::Deserialize;

/// The window the kubelet averages `usageNanoCores` over: its collection period.
pub const KUBELET_WINDOW: Duration = Duration::from_secs(10);

/// Why a summary gives no usage.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SummaryError {
    #[error("decoding the summary: {0}")]
    Decode(String),
    #[error("the node has no cpu and memory usage yet")]
    NoNodeUsage,
}

#[derive(Deserialize)]
struct Summary {
    node: Stats,
    #[serde(default)]
    pods: Vec<Pod>,
}

#[derive(Deserialize)]
struct Stats {
    cpu: Option<Cpu>,
    memory: Option<Memory>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cpu {
    time: Option<String>,
    usage_nano_cores: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Memory {
    time: Option<String>,
    working_set_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Pod {
    pod_ref: PodRef,
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Deserialize)]
struct PodRef {
    name: String,
    namespace: String,
}

#[derive(Deserialize)]
struct Container {
    name: String,
    #[serde(flatten)]
    stats: Stats,
}

/// Usage and when it was measured: cpu's time, else memory's.
fn usage(s: &Stats) -> Option<(Usage, Option<DateTime<Utc>>)> {
    let (cpu, memory) = (s.cpu.as_ref()?, s.memory.as_ref()?);
    let u = Usage {
        cpu_nanocores: cpu.usage_nano_cores?,
        memory_bytes: memory.working_set_bytes?,
    };
    let time = |t: &Option<String>| {
        DateTime::parse_from_rfc3339(t.as_deref()?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    Some((u, time(&cpu.time).or_else(|| time(&memory.time))))
}

fn window(timestamp: DateTime<Utc>) -> Window {
    Window {
        timestamp,
        window: KUBELET_WINDOW,
    }
}

/// A pod's usage: its containers that have some, measured at the latest of their times
/// (`fallback` when none says).
fn pod(p: &Pod, fallback: DateTime<Utc>) -> Option<PodUsage> {
    let measured: Vec<_> = p
        .containers
        .iter()
        .filter_map(|c| usage(&c.stats).map(|(u, t)| ((c.name.clone(), u), t)))
        .collect();
    if measured.is_empty() {
        return None;
    }
    let at = measured.iter().filter_map(|(_, t)| *t).max();
    Some(PodUsage {
        namespace: p.pod_ref.namespace.clone(),
        name: p.pod_ref.name.clone(),
        window: window(at.unwrap_or(fallback)),
        containers: measured.into_iter().map(|(c, _)| c).collect(),
    })
}

/// The node's and its pods' usage in a `/stats/summary` response body.
pub fn parse(body: &[u8]) -> Result<(NodeUsage, Vec<PodUsage>), SummaryError> {
    let s: Summary =
        serde_json::from_slice(body).map_err(|e| SummaryError::Decode(e.to_string()))?;
    let (node_usage, at) = usage(&s.node).ok_or(SummaryError::NoNodeUsage)?;
    let at = at.unwrap_or_else(Utc::now);
    let pods = s.pods.iter().filter_map(|p| pod(p, at)).collect();
    let node = NodeUsage {
        window: window(at),
        usage: node_usage,
    };
    Ok((node, pods))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cpu(time: &str, nanocores: Option<u64>) -> serde_json::Value {
        json!({"time": time, "usageNanoCores": nanocores, "usageCoreNanoSeconds": 123})
    }

    fn memory(time: &str, bytes: u64) -> serde_json::Value {
        json!({"time": time, "usageBytes": bytes, "workingSetBytes": bytes})
    }

    /// A summary as the kubelet writes it (fields the scraper does not read included).
    fn summary() -> serde_json::Value {
        let t = "2026-03-04T05:06:07Z";
        let fs = json!({"time": t, "availableBytes": 1, "capacityBytes": 2, "usedBytes": 1});
        let container = |name: &str, cpu_n: Option<u64>, mem: u64, time: &str| {
            json!({"name": name, "startTime": "2026-03-04T05:00:00Z", "cpu": cpu(time, cpu_n),
                "memory": memory(time, mem), "rootfs": fs, "logs": fs})
        };
        json!({
            "node": {"nodeName": "agent-1", "startTime": "2026-03-04T04:00:00Z",
                "cpu": cpu(t, Some(250_000_000)), "memory": memory(t, 512 << 20),
                "fs": fs, "runtime": {"imageFs": fs, "containerFs": fs},
                "rlimit": {"time": t, "maxpid": 100, "curproc": 10}},
            "pods": [
                {"podRef": {"name": "web", "namespace": "default", "uid": "u1"},
                 "startTime": "2026-03-04T05:00:00Z",
                 "containers": [
                    container("app", Some(100_000_000), 64 << 20, "2026-03-04T05:06:05Z"),
                    container("sidecar", Some(5_000_000), 8 << 20, "2026-03-04T05:06:06Z"),
                    container("new", None, 1 << 20, "2026-03-04T05:06:06Z")],
                 "cpu": cpu(t, Some(105_000_000)), "memory": memory(t, 73 << 20),
                 "ephemeral-storage": fs},
                {"podRef": {"name": "starting", "namespace": "kube-system", "uid": "u2"},
                 "startTime": "2026-03-04T05:06:00Z",
                 "containers": [container("c", None, 1 << 20, t)],
                 "cpu": cpu(t, None), "memory": memory(t, 1 << 20),
                 "ephemeral-storage": fs},
                {"podRef": {"name": "empty", "namespace": "default", "uid": "u3"},
                 "startTime": t, "containers": [],
                 "cpu": cpu(t, None), "memory": memory(t, 0), "ephemeral-storage": fs}]
        })
    }

    #[test]
    fn a_summary_gives_the_node_and_its_measured_pods() {
        let body = serde_json::to_vec(&summary()).unwrap();
        let (node, pods) = parse(&body).unwrap();
        let at: DateTime<Utc> = "2026-03-04T05:06:07Z".parse().unwrap();
        assert_eq!(
            node,
            NodeUsage {
                window: Window {
                    timestamp: at,
                    window: KUBELET_WINDOW
                },
                usage: Usage {
                    cpu_nanocores: 250_000_000,
                    memory_bytes: 512 << 20
                },
            }
        );
        // Only the pod with measured containers, those in order; at their latest time.
        assert_eq!(pods.len(), 1, "{pods:?}");
        let web = &pods[0];
        assert_eq!(
            (web.namespace.as_str(), web.name.as_str()),
            ("default", "web")
        );
        assert_eq!(
            web.window.timestamp,
            "2026-03-04T05:06:06Z".parse::<DateTime<Utc>>().unwrap()
        );
        let usage = |cpu, mem| Usage {
            cpu_nanocores: cpu,
            memory_bytes: mem,
        };
        assert_eq!(
            web.containers,
            [
                ("app".to_string(), usage(100_000_000, 64 << 20)),
                ("sidecar".to_string(), usage(5_000_000, 8 << 20)),
            ]
        );
    }

    #[test]
    fn a_node_without_usage_or_a_bad_body_gives_nothing() {
        let mut s = summary();
        s["node"]["cpu"]["usageNanoCores"] = serde_json::Value::Null;
        let body = serde_json::to_vec(&s).unwrap();
        assert_eq!(parse(&body), Err(SummaryError::NoNodeUsage));
        assert!(matches!(
            parse(b"{\"pods\": []}"),
            Err(SummaryError::Decode(_))
        ));
        assert!(matches!(parse(b"not json"), Err(SummaryError::Decode(_))));
    }
}

//! Resource usage for the resource metrics API: every `PERIOD` the kubelet reads the
//! counters of its pods' running containers from the runtime (the CRI's ContainerStats; a
//! cgroup's cpu time and memory working set), turns cumulative cpu time into a rate over
//! the time since the previous reading (or since the container started, for its first one,
//! as metrics-server does), and reports each node's pods, and their sum as the node's
//! usage, into the `UsageStore` the API server serves `metrics.k8s.io` from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use minik_api::usage::{NodeUsage, PodUsage, Usage, UsageStore, Window};
use minik_controllers::Store;
use tokio_util::sync::CancellationToken;

use crate::runtime::{ContainerRuntime, ContainerStats};

/// How often usage is measured (metrics-server's default resolution is 15 s).
pub const PERIOD: Duration = Duration::from_secs(10);

/// The previous reading of one container: (started, read at, cpu time).
type Reading = (Timestamp, Timestamp, u64);

/// Turns readings into rates, remembering each container's previous reading.
#[derive(Default)]
pub struct Collector {
    /// (pod uid, container) -> its last reading.
    last: HashMap<(String, String), Reading>,
}

fn utc(t: Timestamp) -> chrono::DateTime<chrono::Utc> {
    let nanos = u32::try_from(t.subsec_nanosecond()).unwrap_or(0);
    chrono::DateTime::from_timestamp(t.as_second(), nanos).unwrap_or_default()
}

/// Cpu rate (nanocores) and window between two readings of one run of a container.
fn rate(prev: Option<Reading>, now: &ContainerStats) -> Option<(u64, Duration)> {
    let (since, base) = match prev {
        Some((started, at, cpu))
            if started == now.started
                && at < now.timestamp
                && cpu <= now.cpu_usage_core_nanoseconds =>
        {
            (at, cpu)
        }
        // First reading of this run: its cpu time accrued since it started.
        _ => (now.started, 0),
    };
    let window = Duration::try_from(now.timestamp.duration_since(since)).ok()?;
    if window.is_zero() {
        return None;
    }
    let used = u128::from(now.cpu_usage_core_nanoseconds - base);
    let nanos = window.as_nanos();
    let nanocores = (used * 1_000_000_000 + nanos / 2) / nanos;
    Some((u64::try_from(nanocores).unwrap_or(u64::MAX), window))
}

impl Collector {
    /// The usage of `pods` (uid, namespace, name) as `runtime` reports them now, and the
    /// node's (their sum). Pods without a reading yet are left out.
    pub fn collect<R: ContainerRuntime>(
        &mut self,
        runtime: &R,
        pods: &[(String, String, String)],
    ) -> (NodeUsage, Vec<PodUsage>) {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        let mut node = NodeUsage {
            window: Window {
                timestamp: chrono::Utc::now(),
                window: Duration::ZERO,
            },
            usage: Usage::default(),
        };
        for (uid, namespace, name) in pods {
            let Some(stats) = runtime.container_stats(uid) else {
                continue;
            };
            let mut pod = PodUsage {
                namespace: namespace.clone(),
                name: name.clone(),
                window: node.window,
                containers: Vec::new(),
            };
            for s in stats {
                let key = (uid.clone(), s.name.clone());
                let measured = rate(self.last.get(&key).copied(), &s);
                seen.insert(key, (s.started, s.timestamp, s.cpu_usage_core_nanoseconds));
                let Some((nanocores, window)) = measured else {
                    continue;
                };
                let usage = Usage {
                    cpu_nanocores: nanocores,
                    memory_bytes: s.memory_working_set_bytes,
                };
                pod.window.timestamp = pod.window.timestamp.max(utc(s.timestamp));
                pod.window.window = pod.window.window.max(window);
                pod.containers.push((s.name, usage));
            }
            if pod.containers.is_empty() {
                continue;
            }
            for (_, u) in &pod.containers {
                node.usage = node.usage + *u;
            }
            node.window.window = node.window.window.max(pod.window.window);
            out.push(pod);
        }
        if node.window.window.is_zero() {
            node.window.window = PERIOD;
        }
        self.last = seen;
        (node, out)
    }
}

/// The pods bound to each node: (uid, namespace, name). A mirror pod stands for its static
/// pod, whose runtime uid is the hash the mirror carries.
fn pods_by_node(pods: &Store<Pod>) -> HashMap<String, Vec<(String, String, String)>> {
    let mut out: HashMap<String, Vec<_>> = HashMap::new();
    for p in pods.state() {
        let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let pod = (
            crate::local::static_pods::mirror::runtime_uid(&p),
            p.namespace().unwrap_or_default(),
            p.name_any(),
        );
        out.entry(node).or_default().push(pod);
    }
    out
}

/// Report the usage of `nodes` (all running their pods in `runtime`) every `PERIOD`
/// until `stop`; their reports are dropped then.
pub async fn run<R: ContainerRuntime>(
    runtime: Arc<R>,
    nodes: Vec<String>,
    pods: Store<Pod>,
    store: UsageStore,
    stop: CancellationToken,
) {
    let mut collectors: HashMap<String, Collector> = HashMap::new();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let by_node = pods_by_node(&pods);
        for node in &nodes {
            let on_node = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
            let (usage, pod_usage) = collectors
                .entry(node.clone())
                .or_default()
                .collect(runtime.as_ref(), on_node);
            store.report(node, usage, pod_usage);
        }
    }
    for node in &nodes {
        store.forget(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn reading(started: Timestamp, at_secs: i64, cpu: u64) -> ContainerStats {
        ContainerStats {
            name: "c".into(),
            started,
            timestamp: started + SignedDuration::from_secs(at_secs),
            cpu_usage_core_nanoseconds: cpu,
            memory_working_set_bytes: 1,
        }
    }

    #[test]
    fn cpu_time_becomes_a_rate_over_the_window() {
        let t0 = Timestamp::now();
        // First reading: since the container started (2 s, 0.4 s of cpu: 200m).
        let first = reading(t0, 2, 400_000_000);
        assert_eq!(
            rate(None, &first),
            Some((200_000_000, Duration::from_secs(2)))
        );
        // Then since the previous reading: 10 s, 1 s more of cpu (100m).
        let second = reading(t0, 12, 1_400_000_000);
        let prev = (t0, first.timestamp, first.cpu_usage_core_nanoseconds);
        assert_eq!(
            rate(Some(prev), &second),
            Some((100_000_000, Duration::from_secs(10)))
        );
        // A restarted container starts over.
        let restarted = reading(t0 + SignedDuration::from_secs(20), 5, 500_000_000);
        assert_eq!(
            rate(Some(prev), &restarted),
            Some((100_000_000, Duration::from_secs(5)))
        );
        // No time passed: no rate.
        assert_eq!(rate(None, &reading(t0, 0, 0)), None);
    }

    #[tokio::test]
    async fn pods_and_their_node_report_what_the_runtime_measures() {
        use crate::fake::{CPU_USAGE, FakeRuntime};
        let rt = FakeRuntime::default();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1",
                "annotations": {CPU_USAGE: "200m"}},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}]}}))
        .unwrap();
        rt.start_pod(&pod, None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut c = Collector::default();
        let pods = [("u1".to_string(), "ns".to_string(), "p".to_string())];
        let (node, usage) = c.collect(&rt, &pods);
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].containers.len(), 2);
        for (_, u) in &usage[0].containers {
            // 200m, give or take rounding of nanoseconds.
            assert!(
                (199_000_000..=200_000_000).contains(&u.cpu_nanocores),
                "{u:?}"
            );
            assert_eq!(u.memory_bytes, 4 << 20);
        }
        let sum: u64 = usage[0]
            .containers
            .iter()
            .map(|(_, u)| u.cpu_nanocores)
            .sum();
        assert_eq!(node.usage.cpu_nanocores, sum);
        assert_eq!(node.usage.memory_bytes, 8 << 20);
        // A pod the runtime does not run is left out.
        let (_, none) = c.collect(&rt, &[("u2".into(), "ns".into(), "q".into())]);
        assert!(none.is_empty());
    }
}

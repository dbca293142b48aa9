//! Resource usage as the resource metrics API (`metrics.k8s.io`) serves it: kubelets report
//! each node's and each pod's usage (cpu in nanocores, memory working set in bytes, over a
//! window ending at a timestamp) into a `UsageStore` about every 10 seconds, and the API
//! server reads the latest report, as metrics-server keeps the latest scrape.
//!
//! In-process kubelets (the server's own node, simulated nodes) write the store directly
//! (`report`); the kubelets of agents in other processes are scraped into it by the API
//! server (`report_scraped`). A node's fresh local report always wins over a scraped one,
//! and the scraper forgets only what it wrote.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// Reports older than this (seconds) are no longer served: the node's kubelet stopped.
pub const STALE_AFTER_SECS: i64 = 120;

fn is_fresh(r: &Report, now: DateTime<Utc>) -> bool {
    now - r.node.window.timestamp <= TimeDelta::seconds(STALE_AFTER_SECS)
}

/// Usage of one container, a pod or a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

impl std::ops::Add for Usage {
    type Output = Usage;
    fn add(self, o: Usage) -> Usage {
        Usage {
            cpu_nanocores: self.cpu_nanocores.saturating_add(o.cpu_nanocores),
            memory_bytes: self.memory_bytes.saturating_add(o.memory_bytes),
        }
    }
}

/// When a measurement was taken and over how long cpu usage was averaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUsage {
    pub window: Window,
    pub usage: Usage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    pub namespace: String,
    pub name: String,
    pub window: Window,
    /// (container name, usage), in the pod's container order.
    pub containers: Vec<(String, Usage)>,
}

/// Who wrote a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A kubelet of this process.
    Local,
    /// The API server, from the node's kubelet's `/stats/summary`.
    Scraped,
}

#[derive(Debug, Clone)]
struct Report {
    node: NodeUsage,
    pods: Vec<PodUsage>,
    source: Source,
}

/// The latest report of every node, shared by the kubelets that write it and the API
/// server that reads it.
#[derive(Clone, Default)]
pub struct UsageStore {
    nodes: Arc<RwLock<HashMap<String, Report>>>,
}

impl UsageStore {
    /// Replace what is known of `node` and its pods, as the node's in-process kubelet.
    pub fn report(&self, node: &str, usage: NodeUsage, pods: Vec<PodUsage>) {
        self.put(node, usage, pods, Source::Local);
    }

    /// Replace what is known of `node` and its pods with what was scraped from its kubelet,
    /// unless an in-process kubelet reports the node (a fresh local report is kept).
    /// Whether the report was taken.
    pub fn report_scraped(&self, node: &str, usage: NodeUsage, pods: Vec<PodUsage>) -> bool {
        if self.reported_locally(node) {
            return false;
        }
        self.put(node, usage, pods, Source::Scraped);
        true
    }

    fn put(&self, node: &str, usage: NodeUsage, pods: Vec<PodUsage>, source: Source) {
        let report = Report {
            node: usage,
            pods,
            source,
        };
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.insert(node.to_string(), report);
    }

    /// Whether an in-process kubelet reports `node` (its latest report is fresh).
    pub fn reported_locally(&self, node: &str) -> bool {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .get(node)
            .is_some_and(|r| r.source == Source::Local && is_fresh(r, Utc::now()))
    }

    /// The nodes whose latest report was scraped.
    pub fn scraped_nodes(&self) -> Vec<String> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .iter()
            .filter(|(_, r)| r.source == Source::Scraped)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Drop what was scraped of `node` (the node is gone); a local report is kept.
    pub fn forget_scraped(&self, node: &str) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        if nodes.get(node).is_some_and(|r| r.source == Source::Scraped) {
            nodes.remove(node);
        }
    }

    /// Drop what is known of `node` (its kubelet stopped).
    pub fn forget(&self, node: &str) {
        let mut nodes = self.nodes.write().unwrap_or_else(|e| e.into_inner());
        nodes.remove(node);
    }

    /// The latest usage of `node`, unless stale.
    pub fn node(&self, node: &str) -> Option<NodeUsage> {
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        let r = nodes.get(node)?;
        is_fresh(r, Utc::now()).then(|| r.node.clone())
    }

    /// The latest usage of every pod (of `namespace`, when given) on nodes that report,
    /// by (namespace, name).
    pub fn pods(&self, namespace: Option<&str>) -> HashMap<(String, String), PodUsage> {
        let now = Utc::now();
        let nodes = self.nodes.read().unwrap_or_else(|e| e.into_inner());
        nodes
            .values()
            .filter(|r| is_fresh(r, now))
            .flat_map(|r| &r.pods)
            .filter(|p| namespace.is_none_or(|ns| p.namespace == ns))
            .map(|p| ((p.namespace.clone(), p.name.clone()), p.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(secs: u64) -> Window {
        Window {
            timestamp: Utc::now(),
            window: Duration::from_secs(secs),
        }
    }

    fn pod(ns: &str, name: &str, cpu: u64) -> PodUsage {
        PodUsage {
            namespace: ns.into(),
            name: name.into(),
            window: window(10),
            containers: vec![(
                "c".into(),
                Usage {
                    cpu_nanocores: cpu,
                    memory_bytes: 1 << 20,
                },
            )],
        }
    }

    /// A local report of `node` ten minutes old.
    fn report_stale(store: &UsageStore, node: &str, pods: Vec<PodUsage>) {
        let old = Window {
            timestamp: Utc::now() - TimeDelta::seconds(600),
            window: Duration::from_secs(10),
        };
        let usage = NodeUsage {
            window: old,
            usage: Usage::default(),
        };
        store.report(node, usage, pods);
    }

    #[test]
    fn the_latest_report_of_each_node_is_served() {
        let store = UsageStore::default();
        let total = Usage {
            cpu_nanocores: 3,
            memory_bytes: 2 << 20,
        };
        let node = NodeUsage {
            window: window(10),
            usage: total,
        };
        store.report(
            "n1",
            node.clone(),
            vec![pod("a", "p1", 1), pod("b", "p2", 2)],
        );
        assert_eq!(store.node("n1"), Some(node.clone()));
        assert_eq!(store.pods(None).len(), 2);
        assert_eq!(store.pods(Some("a")).len(), 1);
        // A new report replaces the node's pods.
        store.report("n1", node, vec![pod("a", "p3", 1)]);
        let pods = store.pods(None);
        assert!(pods.contains_key(&("a".to_string(), "p3".to_string())));
        assert_eq!(pods.len(), 1);
        store.forget("n1");
        assert!(store.node("n1").is_none());
        assert!(store.pods(None).is_empty());
    }

    #[test]
    fn a_fresh_local_report_wins_over_a_scraped_one() {
        let store = UsageStore::default();
        let node = |cpu| NodeUsage {
            window: window(10),
            usage: Usage {
                cpu_nanocores: cpu,
                memory_bytes: 1,
            },
        };
        // Scraped first, then the local kubelet reports: the local report replaces it.
        assert!(store.report_scraped("n1", node(1), vec![pod("a", "p1", 1)]));
        assert_eq!(store.scraped_nodes(), ["n1"]);
        assert!(!store.reported_locally("n1"));
        store.report("n1", node(2), vec![]);
        assert!(store.reported_locally("n1"));
        assert!(store.scraped_nodes().is_empty());
        // A scrape does not replace a fresh local report, nor forgets it.
        assert!(!store.report_scraped("n1", node(3), vec![pod("a", "p1", 1)]));
        store.forget_scraped("n1");
        assert_eq!(store.node("n1").map(|n| n.usage.cpu_nanocores), Some(2));
        assert!(store.pods(None).is_empty());
        // A stale local report (its kubelet stopped) gives way to the scraper.
        report_stale(&store, "n2", vec![]);
        assert!(!store.reported_locally("n2"));
        assert!(store.report_scraped("n2", node(4), vec![]));
        assert_eq!(store.node("n2").map(|n| n.usage.cpu_nanocores), Some(4));
        store.forget_scraped("n2");
        assert!(store.node("n2").is_none());
    }

    #[test]
    fn stale_reports_are_not_served() {
        let store = UsageStore::default();
        report_stale(&store, "n1", vec![pod("a", "p1", 1)]);
        assert!(store.node("n1").is_none());
        assert!(store.pods(None).is_empty());
    }
}

//! The kubelet server's metrics: `/metrics/resource` (the resource metrics metrics-server
//! scrapes, written from the Summary as kubelet's ResourceMetricsCollector writes them:
//! families sorted by name, labels sorted, millisecond timestamps) and `/metrics` (the
//! kubelet's own: node name, running pods and containers, HTTP requests served).

use std::fmt::Write;
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::summary::Summary;

fn millis(time: &str) -> i64 {
    time.parse::<Timestamp>()
        .map(|t| t.as_millisecond())
        .unwrap_or_else(|_| Timestamp::now().as_millisecond())
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One sample: labels, value, timestamp in ms.
type Sample = (Vec<(&'static str, String)>, f64, Option<i64>);

/// One family: its name, HELP, TYPE and samples.
struct Series {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<Sample>,
}

fn family(name: &'static str, help: &'static str, kind: &'static str) -> Series {
    Series {
        name,
        help,
        kind,
        samples: Vec::new(),
    }
}

/// `/metrics/resource` from a Summary (None: reading it failed).
pub fn resource_text(s: Option<&Summary>) -> String {
    const NS: f64 = 1e9;
    let mut c_cpu = family(
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        "counter",
    );
    let mut c_mem = family(
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        "gauge",
    );
    let mut c_start = family(
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        "gauge",
    );
    let mut n_cpu = family(
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        "counter",
    );
    let mut n_mem = family(
        "node_memory_working_set_bytes",
        "[STABLE] Current working set of the node in bytes",
        "gauge",
    );
    let mut p_cpu = family(
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        "counter",
    );
    let mut p_mem = family(
        "pod_memory_working_set_bytes",
        "[STABLE] Current working set of the pod in bytes",
        "gauge",
    );
    let error = if s.is_some() { 0.0 } else { 1.0 };
    let mut r_err = family(
        "resource_scrape_error",
        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );
    r_err.samples.push((vec![], error, None));
    let mut s_err = family(
        "scrape_error",
        "[ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
        "gauge",
    );
    s_err.samples.push((vec![], error, None));
    if let Some(s) = s {
        let n = &s.node;
        if let Some(cpu) = n.cpu.usage_core_nano_seconds {
            n_cpu
                .samples
                .push((vec![], cpu as f64 / NS, Some(millis(&n.cpu.time))));
        }
        if let Some(ws) = n.memory.working_set_bytes {
            n_mem
                .samples
                .push((vec![], ws as f64, Some(millis(&n.memory.time))));
        }
        for p in &s.pods {
            let (pod, ns) = (p.pod_ref.name.clone(), p.pod_ref.namespace.clone());
            for c in &p.containers {
                let labels = vec![
                    ("container", c.name.clone()),
                    ("namespace", ns.clone()),
                    ("pod", pod.clone()),
                ];
                let start = millis(&c.start_time);
                c_start
                    .samples
                    .push((labels.clone(), start as f64 / 1000.0, None));
                if let Some(cpu) = c.cpu.usage_core_nano_seconds {
                    let t = Some(millis(&c.cpu.time));
                    c_cpu.samples.push((labels.clone(), cpu as f64 / NS, t));
                }
                if let Some(ws) = c.memory.working_set_bytes {
                    let t = Some(millis(&c.memory.time));
                    c_mem.samples.push((labels, ws as f64, t));
                }
            }
            let labels = vec![("namespace", ns), ("pod", pod)];
            if let Some(cpu) = p.cpu.usage_core_nano_seconds {
                let t = Some(millis(&p.cpu.time));
                p_cpu.samples.push((labels.clone(), cpu as f64 / NS, t));
            }
            if let Some(ws) = p.memory.working_set_bytes {
                let t = Some(millis(&p.memory.time));
                p_mem.samples.push((labels, ws as f64, t));
            }
        }
    }
    let mut out = String::new();
    for f in [
        c_cpu, c_mem, c_start, n_cpu, n_mem, p_cpu, p_mem, r_err, s_err,
    ] {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (labels, value, t) in f.samples {
            out.push_str(f.name);
            if !labels.is_empty() {
                let inner: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", inner.join(","));
            }
            let _ = write!(out, " {value}");
            if let Some(t) = t {
                let _ = write!(out, " {t}");
            }
            out.push('\n');
        }
    }
    out
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabel {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    container_state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    path: String,
    server_type: String,
    long_running: String,
}

/// The kubelet's own metrics.
#[derive(Clone)]
pub struct KubeletMetrics {
    registry: Arc<Mutex<Registry>>,
    running_pods: Gauge,
    running_containers: Family<StateLabel, Gauge>,
    requests: Family<RequestLabels, Counter>,
}

impl KubeletMetrics {
    pub fn new(node: &str) -> KubeletMetrics {
        let mut registry = Registry::default();
        let node_name = Family::<NodeLabel, Gauge>::default();
        node_name
            .get_or_create(&NodeLabel { node: node.into() })
            .set(1);
        registry.register(
            "kubelet_node_name",
            "[ALPHA] The node's name. The count is always 1.",
            node_name,
        );
        let running_pods = Gauge::default();
        registry.register(
            "kubelet_running_pods",
            "[ALPHA] Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        let running_containers = Family::<StateLabel, Gauge>::default();
        registry.register(
            "kubelet_running_containers",
            "[ALPHA] Number of containers currently running",
            running_containers.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kubelet_http_requests",
            "[ALPHA] Number of the http requests received since the server started",
            requests.clone(),
        );
        KubeletMetrics {
            registry: Arc::new(Mutex::new(registry)),
            running_pods,
            running_containers,
            requests,
        }
    }

    /// Count a request for `path` (its first segment, as kubelet buckets them).
    pub fn request(&self, method: &str, path: &str) {
        let root = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let bucket = match root {
            "healthz" | "pods" | "stats" | "metrics" | "logs" | "spec" => root,
            _ => "other",
        };
        self.requests
            .get_or_create(&RequestLabels {
                method: method.into(),
                path: bucket.into(),
                server_type: "readwrite".into(),
                long_running: "false".into(),
            })
            .inc();
    }

    /// Set the running pods and containers.
    pub fn running(&self, pods: usize, containers: usize) {
        self.running_pods
            .set(i64::try_from(pods).unwrap_or(i64::MAX));
        self.running_containers
            .get_or_create(&StateLabel {
                container_state: "running".into(),
            })
            .set(i64::try_from(containers).unwrap_or(i64::MAX));
    }

    /// The Prometheus text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::super::summary::{ContainerSummary, CpuStats, MemoryStats, PodRef, PodSummary};
    use super::*;

    #[test]
    fn resource_metrics_are_written_as_kubelet_writes_them() {
        let t = "2026-01-01T00:00:00Z".to_string();
        let mut s = Summary::default();
        s.node.cpu = CpuStats {
            time: t.clone(),
            usage_core_nano_seconds: Some(2_500_000_000),
            usage_nano_cores: None,
        };
        s.node.memory = MemoryStats {
            time: t.clone(),
            working_set_bytes: Some(1024),
            ..Default::default()
        };
        s.pods.push(PodSummary {
            pod_ref: PodRef {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u".into(),
            },
            containers: vec![ContainerSummary {
                name: "main".into(),
                start_time: t.clone(),
                cpu: CpuStats {
                    time: t.clone(),
                    usage_core_nano_seconds: Some(500_000_000),
                    usage_nano_cores: None,
                },
                memory: MemoryStats {
                    time: t.clone(),
                    working_set_bytes: Some(4096),
                    ..Default::default()
                },
                ..Default::default()
            }],
            cpu: CpuStats {
                time: t.clone(),
                usage_core_nano_seconds: Some(500_000_000),
                usage_nano_cores: None,
            },
            memory: MemoryStats {
                time: t,
                working_set_bytes: Some(4096),
                ..Default::default()
            },
            ..Default::default()
        });
        let text = resource_text(Some(&s));
        let ms = 1_767_225_600_000i64;
        for line in [
            "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by \
             the container in core-seconds",
            "# TYPE container_cpu_usage_seconds_total counter",
            &format!(
                "container_cpu_usage_seconds_total{{container=\"main\",namespace=\"default\",\
                 pod=\"web\"}} 0.5 {ms}"
            ),
            "# TYPE container_memory_working_set_bytes gauge",
            &format!(
                "container_memory_working_set_bytes{{container=\"main\",namespace=\"default\",\
                 pod=\"web\"}} 4096 {ms}"
            ),
            "container_start_time_seconds{container=\"main\",namespace=\"default\",pod=\"web\"} \
             1767225600",
            &format!("node_cpu_usage_seconds_total 2.5 {ms}"),
            &format!("node_memory_working_set_bytes 1024 {ms}"),
            &format!("pod_cpu_usage_seconds_total{{namespace=\"default\",pod=\"web\"}} 0.5 {ms}"),
            &format!("pod_memory_working_set_bytes{{namespace=\"default\",pod=\"web\"}} 4096 {ms}"),
            "# TYPE resource_scrape_error gauge",
            "resource_scrape_error 0",
            "scrape_error 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\nnot in\n{text}");
        }
        // Families in name order.
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        // A failed read says so.
        assert!(
            resource_text(None)
                .lines()
                .any(|l| l == "resource_scrape_error 1")
        );

        let m = KubeletMetrics::new("n1");
        m.request("GET", "/stats/summary");
        m.running(2, 3);
        let text = m.encode();
        assert!(text.contains("kubelet_node_name{node=\"n1\"} 1"), "{text}");
        assert!(text.contains("kubelet_running_pods 2"), "{text}");
        assert!(text.contains("kubelet_running_containers{container_state=\"running\"} 3"));
        assert!(text.contains("path=\"stats\""), "{text}");
    }
}

//! Metrics of the control loops, under client-go's and controller-runtime's names: per work
//! queue its depth, adds and retries; per controller its reconciles, their latency and errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Name {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    controller: String,
    result: String,
}

struct Inner {
    registry: Mutex<Registry>,
    depth: Family<Name, Gauge>,
    adds: Family<Name, Counter>,
    retries: Family<Name, Counter>,
    reconciles: Family<Outcome, Counter>,
    latency: Family<Name, Histogram>,
}

/// Shared by every queue and worker of one process.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let depth = Family::<Name, Gauge>::default();
        let adds = Family::<Name, Counter>::default();
        let retries = Family::<Name, Counter>::default();
        let reconciles = Family::<Outcome, Counter>::default();
        let latency = Family::<Name, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "workqueue_depth",
            "Current depth of the work queue",
            depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Keys added to the work queue",
            adds.clone(),
        );
        registry.register(
            "workqueue_retries",
            "Keys queued again after a failure",
            retries.clone(),
        );
        registry.register(
            "controller_runtime_reconcile",
            "Reconciles per controller, by result (success, error, requeue)",
            reconciles.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Time each reconcile took, per controller",
            latency.clone(),
        );
        Metrics(Arc::new(Inner {
            registry: Mutex::new(registry),
            depth,
            adds,
            retries,
            reconciles,
            latency,
        }))
    }
}

fn name(n: &str) -> Name {
    Name { name: n.into() }
}

impl Metrics {
    pub fn depth(&self, queue: &str, len: usize) {
        self.0
            .depth
            .get_or_create(&name(queue))
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }

    pub fn added(&self, queue: &str) {
        self.0.adds.get_or_create(&name(queue)).inc();
    }

    pub fn retried(&self, queue: &str) {
        self.0.retries.get_or_create(&name(queue)).inc();
    }

    pub fn reconciled(&self, controller: &str, result: &str, took: Duration) {
        self.0
            .reconciles
            .get_or_create(&Outcome {
                controller: controller.into(),
                result: result.into(),
            })
            .inc();
        self.0
            .latency
            .get_or_create(&name(controller))
            .observe(took.as_secs_f64());
    }

    /// The Prometheus text of every metric (ending in `# EOF`).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.0.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

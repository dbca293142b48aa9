//! The scheduler's metrics under kube-scheduler's names.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: String,
}

pub struct Inner {
    registry: Registry,
    pub attempts: Family<ResultLabel, Counter>,
    pub pending: Family<QueueLabel, Gauge>,
    pub duration: Histogram,
    pub preemptions: Counter,
}

#[derive(Clone)]
pub struct Metrics(pub Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let attempts = Family::<ResultLabel, Counter>::default();
        let pending = Family::<QueueLabel, Gauge>::default();
        let duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let preemptions = Counter::default();
        registry.register(
            "scheduler_schedule_attempts",
            "Attempts to schedule pods, by result (scheduled, unschedulable, error)",
            attempts.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Pending pods, by queue (active, backoff, unschedulable)",
            pending.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency (filter and score), in seconds",
            duration.clone(),
        );
        registry.register(
            "scheduler_preemption_attempts",
            "Preemptions the scheduler carried out",
            preemptions.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            attempts,
            pending,
            duration,
            preemptions,
        }))
    }
}

impl Metrics {
    pub fn attempt(&self, result: &str) {
        self.0
            .attempts
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn pending(&self, sizes: (usize, usize, usize)) {
        for (q, n) in [
            ("active", sizes.0),
            ("backoff", sizes.1),
            ("unschedulable", sizes.2),
        ] {
            self.0
                .pending
                .get_or_create(&QueueLabel { queue: q.into() })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The Prometheus text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.0.registry);
        text
    }
}

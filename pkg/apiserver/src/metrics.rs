//! /metrics in the Prometheus text format: requests by verb, resource and code, their
//! latency, requests in flight, and open watches — under kube-apiserver's metric names.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Instant;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub request_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabels {
    pub group: String,
    pub version: String,
    pub kind: String,
}

/// The API server's metrics.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<LatencyLabels, Histogram>,
    pub inflight: Family<KindLabels, Gauge>,
    pub watchers: Family<WatchLabels, Gauge<i64, AtomicI64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let inflight = Family::<KindLabels, Gauge>::default();
        let watchers = Family::<WatchLabels, Gauge<i64, AtomicI64>>::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out by verb, group, version, resource, subresource, scope and HTTP response code",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version and resource",
            latency.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Requests currently being served, by read-only or mutating",
            inflight.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Number of currently open watches for a given resource",
            watchers.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            inflight,
            watchers,
        }
    }
}

/// Counts one request from start to `finish`; the in-flight gauge drops when it is dropped.
pub struct RequestTimer {
    metrics: Arc<Metrics>,
    labels: RequestLabels,
    kind: KindLabels,
    start: Instant,
}

impl RequestTimer {
    pub fn start(metrics: &Arc<Metrics>, labels: RequestLabels) -> Self {
        let kind = KindLabels {
            request_kind: if matches!(labels.verb.as_str(), "GET" | "LIST" | "WATCH") {
                "readOnly".into()
            } else {
                "mutating".into()
            },
        };
        metrics.inflight.get_or_create(&kind).inc();
        RequestTimer {
            metrics: metrics.clone(),
            labels,
            kind,
            start: Instant::now(),
        }
    }

    pub fn finish(mut self, code: u16) {
        self.labels.code = code.to_string();
        self.metrics.requests.get_or_create(&self.labels).inc();
        let l = &self.labels;
        self.metrics
            .latency
            .get_or_create(&LatencyLabels {
                verb: l.verb.clone(),
                group: l.group.clone(),
                version: l.version.clone(),
                resource: l.resource.clone(),
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        self.metrics.inflight.get_or_create(&self.kind).dec();
    }
}

/// Counts one open watch while it lives.
pub struct WatchGuard {
    metrics: Arc<Metrics>,
    labels: WatchLabels,
}

impl WatchGuard {
    pub fn new(metrics: &Arc<Metrics>, labels: WatchLabels) -> Self {
        metrics.watchers.get_or_create(&labels).inc();
        WatchGuard {
            metrics: metrics.clone(),
            labels,
        }
    }
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.metrics.watchers.get_or_create(&self.labels).dec();
    }
}

pub async fn serve(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    for more in &state.more_metrics {
        // One exposition: a single "# EOF" at the very end.
        if let Some(body) = text.strip_suffix("# EOF\n") {
            text.truncate(body.len());
        }
        text.push_str(&more());
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

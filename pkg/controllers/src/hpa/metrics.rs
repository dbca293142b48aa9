//! One metric of an HPA: the replicas it proposes, its current value for the status, and
//! the words upstream uses when it cannot. Resource and ContainerResource metrics come
//! from the resource metrics API (`metrics.k8s.io` PodMetrics, read once per sync); Pods,
//! Object and External metrics need the custom and external metrics APIs, which are not
//! supported: they fail with reasons FailedGetPodsMetric, FailedGetObjectMetric and
//! FailedGetExternalMetric.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde_json::Value;

use super::replicas::{self, PodMetric, PodMetrics, Pods};

/// A metric's proposal: replicas, its name for messages, its status.
pub struct Proposal {
    pub replicas: i32,
    pub name: String,
    pub status: MetricStatus,
}

/// Why a metric gave no proposal: the ScalingActive reason, the error for the condition
/// and event, and the error as the controller reports it.
#[derive(Debug)]
pub struct Failure {
    pub reason: &'static str,
    pub cause: String,
    pub error: String,
}

/// One pod's PodMetrics: when, over what window, each container's usage (thousandths).
struct Sample {
    name: String,
    namespace: String,
    timestamp: Timestamp,
    window: Duration,
    containers: Vec<(String, HashMap<String, i64>)>,
}

fn sample(obj: DynamicObject) -> Sample {
    let d = &obj.data;
    let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
    let containers = d
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let usage = c["usage"].as_object().into_iter().flatten();
            let usage = usage.filter_map(|(k, v)| Some((k.clone(), replicas::milli(v.as_str()?))));
            (
                c["name"].as_str().unwrap_or("").to_string(),
                usage.collect(),
            )
        })
        .collect();
    Sample {
        name: obj.metadata.name.clone().unwrap_or_default(),
        namespace: obj.metadata.namespace.clone().unwrap_or_default(),
        timestamp: text("timestamp").parse().unwrap_or(Timestamp::UNIX_EPOCH),
        window: minik_api::quantity::parse_go_duration(text("window")).unwrap_or_default(),
        containers,
    }
}

/// The PodMetrics of the pods `selector` selects in `namespace`.
async fn fetch(
    client: &kube::Client,
    namespace: &str,
    selector: &str,
) -> Result<Vec<Sample>, String> {
    let resource = ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            let why = super::target::message(&e);
            format!("unable to fetch metrics from resource metrics API: {why}")
        })?;
    if list.items.is_empty() {
        return Err("no metrics returned from resource metrics API".into());
    }
    Ok(list.items.into_iter().map(sample).collect())
}

/// Each pod's usage of `resource`: the sum over its containers (pods missing it in any
/// container are left out), or `container`'s.
fn usage(
    samples: &[Sample],
    resource: &str,
    container: Option<&str>,
) -> Result<PodMetrics, String> {
    let mut out = PodMetrics::new();
    for s in samples {
        let value = match container {
            Some(want) => {
                let Some((_, u)) = s.containers.iter().find(|(n, _)| n == want) else {
                    return Err(format!(
                        "failed to get container metrics: container {want} not present in metrics for pod {}/{}",
                        s.namespace, s.name
                    ));
                };
                u.get(resource).copied()
            }
            None if s.containers.is_empty() => None,
            None => s
                .containers
                .iter()
                .map(|(_, u)| u.get(resource))
                .sum::<Option<i64>>(),
        };
        if let Some(value) = value {
            let m = PodMetric {
                value,
                timestamp: s.timestamp,
                window: s.window,
            };
            out.insert(s.name.clone(), m);
        }
    }
    Ok(out)
}

/// Computes the proposals of one sync, reading PodMetrics at most once.
pub struct Source<'a> {
    client: &'a kube::Client,
    namespace: &'a str,
    selector: &'a str,
    pods: Pods<'a>,
    fetched: Option<Result<Vec<Sample>, String>>,
}

fn not_supported(api: &str, group: &str) -> String {
    format!(
        "unable to fetch metrics from {api} API: minik's HPA controller reads the resource metrics API (metrics.k8s.io) only; {group} is not supported"
    )
}

impl<'a> Source<'a> {
    /// For the `pods` of `namespace` that `selector` selects.
    pub fn new(
        client: &'a kube::Client,
        namespace: &'a str,
        selector: &'a str,
        pods: Pods<'a>,
    ) -> Self {
        Source {
            client,
            namespace,
            selector,
            pods,
            fetched: None,
        }
    }

    async fn samples(&mut self) -> Result<&[Sample], String> {
        if self.fetched.is_none() {
            self.fetched = Some(fetch(self.client, self.namespace, self.selector).await);
        }
        match self.fetched.as_ref() {
            Some(Ok(s)) => Ok(s),
            Some(Err(e)) => Err(e.clone()),
            None => Ok(&[]),
        }
    }

    /// Replicas for a resource target (of `container`, for ContainerResource).
    async fn resource(
        &mut self,
        current: i32,
        resource: &str,
        container: Option<&str>,
        target: &MetricTarget,
    ) -> Result<(i32, String, MetricValueStatus), String> {
        let kind = if container.is_some() {
            "container resource"
        } else {
            "resource"
        };
        let fetched = self
            .samples()
            .await
            .and_then(|s| usage(s, resource, container))
            .map_err(|e| format!("unable to get metrics for resource {resource}: {e}"));
        if let Some(avg) = &target.average_value {
            let (replicas, raw) = fetched
                .and_then(|m| {
                    replicas::for_average_value(
                        current,
                        replicas::milli(&avg.0),
                        resource,
                        &self.pods,
                        m,
                    )
                })
                .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
            let status = MetricValueStatus {
                average_value: Some(Quantity(minik_api::quantity::decimal_si(raw.into(), -3))),
                ..Default::default()
            };
            return Ok((replicas, format!("{resource} {kind}"), status));
        }
        let Some(percent) = target.average_utilization else {
            return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
        };
        let (replicas, utilization, raw) = fetched
            .and_then(|m| {
                replicas::for_utilization(current, percent, (resource, container), &self.pods, m)
            })
            .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
        let status = MetricValueStatus {
            average_utilization: Some(utilization),
            average_value: Some(Quantity(minik_api::quantity::decimal_si(raw.into(), -3))),
            value: None,
        };
        let name = format!("{resource} {kind} utilization (percentage of request)");
        Ok((replicas, name, status))
    }

    /// The proposal of one metric, with the replicas the target has now.
    pub async fn propose(&mut self, spec: &MetricSpec, current: i32) -> Result<Proposal, Failure> {
        let fail = |reason, cause: String, error: String| Failure {
            reason,
            cause,
            error,
        };
        match spec.type_.as_str() {
            kind @ ("Resource" | "ContainerResource") => {
                let (resource, container, target) = if kind == "Resource" {
                    let src = spec.resource.clone().unwrap_or_default();
                    (src.name, None, src.target)
                } else {
                    let src = spec.container_resource.clone().unwrap_or_default();
                    (src.name, Some(src.container), src.target)
                };
                let (replicas, name, current) = self
                    .resource(current, &resource, container.as_deref(), &target)
                    .await
                    .map_err(|e| match &container {
                        None => {
                            let error =
                                format!("failed to get {resource} resource metric value: {e}");
                            fail("FailedGetResourceMetric", e, error)
                        }
                        Some(c) => {
                            let error = format!("failed to get {c} container metric value: {e}");
                            fail("FailedGetContainerResourceMetric", e, error)
                        }
                    })?;
                let status = match container {
                    None => MetricStatus {
                        type_: kind.into(),
                        resource: Some(ResourceMetricStatus {
                            name: resource,
                            current,
                        }),
                        ..Default::default()
                    },
                    Some(container) => MetricStatus {
                        type_: kind.into(),
                        container_resource: Some(ContainerResourceMetricStatus {
                            container,
                            name: resource,
                            current,
                        }),
                        ..Default::default()
                    },
                };
                Ok(Proposal {
                    replicas,
                    name,
                    status,
                })
            }
            kind @ ("Pods" | "Object") => {
                let (metric, reason, what) = if kind == "Pods" {
                    let m = spec.pods.as_ref().map(|p| p.metric.name.as_str());
                    (m, "FailedGetPodsMetric", "pods")
                } else {
                    let m = spec.object.as_ref().map(|o| o.metric.name.as_str());
                    (m, "FailedGetObjectMetric", "object")
                };
                let api = not_supported("custom metrics", "custom.metrics.k8s.io");
                let e = format!("unable to get metric {}: {api}", metric.unwrap_or(""));
                let error = format!("failed to get {what} metric value: {e}");
                Err(fail(reason, e, error))
            }
            "External" => {
                let metric = spec
                    .external
                    .as_ref()
                    .map(|x| x.metric.name.as_str())
                    .unwrap_or("");
                let api = not_supported("external metrics", "external.metrics.k8s.io");
                let e = format!(
                    "unable to get external metric {}/{metric}: {api}",
                    self.namespace
                );
                let error = format!("failed to get {metric} external metric value: {e}");
                Err(fail("FailedGetExternalMetric", e, error))
            }
            other => {
                let e = format!("unknown metric source type {other:?}");
                Err(fail("InvalidMetricSourceType", e.clone(), e))
            }
        }
    }
}

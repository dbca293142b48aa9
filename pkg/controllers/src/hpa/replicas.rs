//! kube-controller-manager's replica calculator for resource metrics: the ratio of usage
//! to target over the pods that count, a tolerance (10% by default) within which nothing
//! changes, and its care with pods that do not count yet: pods being deleted, failed or
//! pending are ignored; cpu samples of pods not yet ready (or taken before they became
//! ready, within 5 minutes of their start) are left out; when that or missing metrics
//! could change the decision, missing pods count as at the target (100% of their request)
//! on a scale-down and as idle on a scale-up, and unready pods as idle on a scale-up.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// A pod's cpu samples are doubted this long after it starts.
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod that turned unready this soon after starting is taken as never ready yet.
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// One pod's usage (thousandths of the unit), and when and over what it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodMetric {
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: Duration,
}

/// Usage by pod name.
pub type PodMetrics = HashMap<String, PodMetric>;

/// How far the usage ratio may be from 1 (below, above) before replicas change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub down: f64,
    pub up: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { down: 0.1, up: 0.1 }
    }
}

impl Tolerance {
    fn within(&self, ratio: f64) -> bool {
        1.0 - self.down <= ratio && ratio <= 1.0 + self.up
    }
}

/// The pods a calculation looks at, and when.
pub struct Pods<'a> {
    pub pods: &'a [Arc<Pod>],
    pub tolerance: Tolerance,
    pub now: Timestamp,
}

#[derive(Default)]
struct Groups {
    ready: usize,
    unready: HashSet<String>,
    missing: HashSet<String>,
    ignored: HashSet<String>,
}

fn later(t: Timestamp, d: Duration) -> Timestamp {
    t + SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// Whether a pod with a cpu sample is not to be believed yet (upstream's rules).
fn unready_for_cpu(pod: &Pod, metric: &PodMetric, now: Timestamp) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    let (Some(ready), Some(start)) = (ready, start) else {
        return true;
    };
    let transition = ready
        .last_transition_time
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    if later(start, CPU_INITIALIZATION_PERIOD) > now {
        // Within initialization: unready, or sampled partly before it became ready.
        ready.status == "False" || metric.timestamp < later(transition, metric.window)
    } else {
        // Later: only a pod that has never been ready.
        ready.status == "False" && later(start, INITIAL_READINESS_DELAY) > transition
    }
}

/// Sort the pods; readiness only matters for cpu.
fn group(input: &Pods, resource: &str, metrics: &PodMetrics) -> Groups {
    let mut g = Groups::default();
    for pod in input.pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if pod.metadata.deletion_timestamp.is_some() || matches!(phase, Some("Failed" | "Pending"))
        {
            g.ignored.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if resource == "cpu" && unready_for_cpu(pod, metric, input.now) {
            g.unready.insert(name);
            continue;
        }
        g.ready += 1;
    }
    g
}

/// Each pod's request of `resource` (thousandths), summed over its containers (and
/// restartable init containers), or of `container` only; the pod-level request when the
/// pod has one. An error names the first container without a request.
pub fn requests(
    pods: &[Arc<Pod>],
    resource: &str,
    container: Option<&str>,
) -> Result<HashMap<String, i64>, String> {
    let mut out = HashMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(spec) = pod.spec.as_ref() else {
            continue;
        };
        let pod_level = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref()?.get(resource));
        if let (None, Some(q)) = (container, pod_level) {
            out.insert(name, milli(&q.0));
            continue;
        }
        let sidecars = spec.init_containers.iter().flatten();
        let sidecars = sidecars.filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let mut sum = 0;
        for c in spec.containers.iter().chain(sidecars) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref()?.get(resource));
            match request {
                Some(q) => sum += milli(&q.0),
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    ));
                }
            }
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// A quantity in thousandths of its unit.
pub fn milli(q: &str) -> i64 {
    minik_api::quantity::parse(q)
        .and_then(|m| i64::try_from(m).ok())
        .unwrap_or(0)
}

/// (usage ratio, utilization %, average usage) of the pods that have both a sample and a
/// request.
fn utilization(
    metrics: &PodMetrics,
    requests: &HashMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), String> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (name, m) in metrics {
        if let Some(r) = requests.get(name) {
            used += m.value;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err("no metrics returned matched known pods".into());
    }
    let percent = i32::try_from(used * 100 / requested).unwrap_or(i32::MAX);
    Ok((f64::from(percent) / f64::from(target), percent, used / n))
}

fn ceil(x: f64) -> i32 {
    // Replica counts are small; the cast saturates.
    x.ceil() as i32
}

/// The replicas for `ratio`, settling what pods that did not count would change as
/// upstream does. `fill_down(pod)` is what a pod without a sample counts as on a scale-down.
fn settle(
    current: i32,
    ratio: f64,
    tolerance: Tolerance,
    g: &Groups,
    mut metrics: PodMetrics,
    fill_down: impl Fn(&str) -> i64,
    recompute: impl Fn(&PodMetrics) -> Result<f64, String>,
) -> Result<i32, String> {
    let up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if tolerance.within(ratio) {
            return Ok(current);
        }
        return Ok(ceil(ratio * g.ready as f64));
    }
    let assumed = |value| PodMetric {
        value,
        timestamp: Timestamp::UNIX_EPOCH,
        window: Duration::ZERO,
    };
    for name in &g.missing {
        if ratio < 1.0 {
            metrics.insert(name.clone(), assumed(fill_down(name)));
        } else if ratio > 1.0 {
            metrics.insert(name.clone(), assumed(0));
        }
    }
    if up_with_unready {
        for name in &g.unready {
            metrics.insert(name.clone(), assumed(0));
        }
    }
    let new_ratio = recompute(&metrics)?;
    if tolerance.within(new_ratio)
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(current);
    }
    let proposed = ceil(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && proposed > current) || (new_ratio > 1.0 && proposed < current) {
        return Ok(current);
    }
    Ok(proposed)
}

/// Drop the samples of pods that do not count; an error when none is left.
fn counted(
    input: &Pods,
    resource: &str,
    mut metrics: PodMetrics,
) -> Result<(Groups, PodMetrics), String> {
    if input.pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group(input, resource, &metrics);
    metrics.retain(|name, _| !g.ignored.contains(name) && !g.unready.contains(name));
    if metrics.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    Ok((g, metrics))
}

/// Replicas for a target utilization (percent of request): (replicas, utilization %,
/// average usage).
pub fn for_utilization(
    current: i32,
    target: i32,
    (resource, container): (&str, Option<&str>),
    input: &Pods,
    metrics: PodMetrics,
) -> Result<(i32, i32, i64), String> {
    let (g, metrics) = counted(input, resource, metrics)?;
    let requests = requests(input.pods, resource, container)?;
    let (ratio, percent, raw) = utilization(&metrics, &requests, target)?;
    // Missing pods on a scale-down use their request (the target, when above 100%).
    let fill = i64::from(target.max(100));
    let fill_down = |name: &str| requests.get(name).copied().unwrap_or(0) * fill / 100;
    let recompute = |m: &PodMetrics| utilization(m, &requests, target).map(|u| u.0);
    let replicas = settle(
        current,
        ratio,
        input.tolerance,
        &g,
        metrics,
        fill_down,
        recompute,
    )?;
    Ok((replicas, percent, raw))
}

/// Replicas for a target average usage per pod (thousandths): (replicas, average usage).
pub fn for_average_value(
    current: i32,
    target: i64,
    resource: &str,
    input: &Pods,
    metrics: PodMetrics,
) -> Result<(i32, i64), String> {
    let (g, metrics) = counted(input, resource, metrics)?;
    let ratio_of = |m: &PodMetrics| {
        let total: i64 = m.values().map(|p| p.value).sum();
        let avg = total / i64::try_from(m.len()).unwrap_or(1).max(1);
        (avg as f64 / target as f64, avg)
    };
    let (ratio, usage) = ratio_of(&metrics);
    let recompute = |m: &PodMetrics| Ok(ratio_of(m).0);
    let replicas = settle(
        current,
        ratio,
        input.tolerance,
        &g,
        metrics,
        |_| target,
        recompute,
    )?;
    Ok((replicas, usage))
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;

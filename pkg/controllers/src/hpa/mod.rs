//! The HorizontalPodAutoscaler controller (autoscaling/v2), as kube-controller-manager's:
//! every 15 s (and when an HPA's spec changes) it reads the target's /scale, computes the
//! replicas each metric asks for (the highest wins), normalizes them (min/max, behavior or
//! the default stabilization), writes the new size through /scale with a SuccessfulRescale
//! event, and keeps the status (currentReplicas, desiredReplicas, currentMetrics,
//! lastScaleTime and the AbleToScale, ScalingActive and ScalingLimited conditions) in
//! upstream's words.

mod behavior;
mod metrics;
mod replicas;
mod status;
mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerStatus as Status, MetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use crate::events::{Kind, Recorder};
use crate::{Change, Ctx, Queue, Reconcile, Result, util};
use behavior::{Behavior, History};
use metrics::{Failure, Source};
use status::{metric_specs, set_condition, set_status};

/// How often every HPA is looked at (`--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

type Hpa = HorizontalPodAutoscaler;

pub struct Controller {
    ctx: Ctx,
    recorder: Recorder,
    /// Recommendations and rescales of each HPA, by key.
    history: Mutex<HashMap<String, History>>,
    /// The pod selector of each HPA's target, as last read.
    selectors: Mutex<HashMap<String, LabelSelector>>,
}

pub fn start(ctx: &Ctx, workers: usize) -> Queue {
    let queue = Queue::new("horizontalpodautoscaler", ctx.metrics.clone());
    // New HPAs and spec changes are looked at at once (not status writes, ours included).
    let seen: Mutex<HashMap<String, Option<i64>>> = Mutex::default();
    let q = queue.clone();
    ctx.informers.hpas.on(move |hpa: &Hpa, change| {
        let key = util::key(hpa);
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match change {
            Change::Deleted => {
                seen.remove(&key);
                true
            }
            Change::Applied => {
                let generation = hpa.metadata.generation;
                seen.insert(key.clone(), generation) != Some(generation)
            }
        };
        if changed {
            q.add(key);
        }
    });
    let (q, hpas, stop) = (queue.clone(), ctx.informers.hpas.clone(), ctx.stop.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SYNC_PERIOD);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for hpa in hpas.store().state() {
                q.add(util::key(hpa.as_ref()));
            }
        }
    });
    let this = Arc::new(Controller {
        ctx: ctx.clone(),
        recorder: Recorder::new(ctx.client.clone(), "horizontal-pod-autoscaler"),
        history: Mutex::default(),
        selectors: Mutex::default(),
    });
    ctx.spawn_workers("horizontalpodautoscaler", &queue, workers, this);
    queue
}

/// What the metrics ask for: (replicas, metric name, statuses, an error of some metrics).
type Computed = (i32, String, Vec<MetricStatus>, Option<String>);

impl Controller {
    fn history<T>(&self, key: &str, f: impl FnOnce(&mut History) -> T) -> T {
        let mut all = self.history.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(key.to_string()).or_default())
    }

    /// Remember `key`'s selector; the other HPAs whose selectors select any of `pods`.
    fn others_selecting(
        &self,
        key: &str,
        selector: LabelSelector,
        pods: &[Arc<Pod>],
    ) -> Vec<String> {
        let mut all = self.selectors.lock().unwrap_or_else(|p| p.into_inner());
        all.insert(key.to_string(), selector);
        let ns = util::split(key).0.unwrap_or_default();
        let mut others: Vec<String> = all
            .iter()
            .filter(|(k, _)| k.as_str() != key && util::split(k).0 == Some(ns))
            .filter(|(_, s)| pods.iter().any(|p| util::matches(s, p.labels())))
            .map(|(k, _)| k.clone())
            .collect();
        others.sort();
        others
    }

    fn warn(&self, hpa: &Hpa, reason: &str, message: &str) {
        self.recorder.event(hpa, Kind::Warning, reason, message);
    }

    /// The replicas the metrics ask for, or (statuses, error) when they give nothing to go by.
    async fn compute(
        &self,
        hpa: &Hpa,
        st: &mut Status,
        scale: &Scale,
        tolerance: replicas::Tolerance,
    ) -> Result<Computed, (Vec<MetricStatus>, String)> {
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if selector.is_empty() {
            self.warn(hpa, "SelectorRequired", "selector is required");
            let why = "the HPA target's scale is missing a selector".to_string();
            set_condition(st, "ScalingActive", false, "InvalidSelector", why);
            return Err((Vec::new(), "selector is required".into()));
        }
        let parsed = target::parse_selector(&selector).map_err(|e| {
            let msg = format!(
                "couldn't convert selector into a corresponding internal selector object: {e}"
            );
            self.warn(hpa, "InvalidSelector", &msg);
            set_condition(st, "ScalingActive", false, "InvalidSelector", msg.clone());
            (Vec::new(), msg)
        })?;
        let ns = hpa.namespace().unwrap_or_default();
        let pods: Vec<_> = (self.ctx.informers.pods.store().state().into_iter())
            .filter(|p| p.namespace().as_deref() == Some(&ns) && util::matches(&parsed, p.labels()))
            .collect();
        let others = self.others_selecting(&util::key(hpa), parsed, &pods);
        if !others.is_empty() {
            let mut all = vec![util::key(hpa)];
            all.extend(others);
            all.sort();
            let msg = format!(
                "pods by selector {selector} are controlled by multiple HPAs: [{}]",
                all.join(" ")
            );
            self.warn(hpa, "AmbiguousSelector", &msg);
            set_condition(st, "ScalingActive", false, "AmbiguousSelector", msg.clone());
            return Err((Vec::new(), msg));
        }
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let now = Timestamp::now();
        let pods_now = replicas::Pods {
            pods: &pods,
            tolerance,
            now,
        };
        let mut source = Source::new(&self.ctx.client, &ns, &selector, pods_now);
        let specs = metric_specs(hpa);
        let (mut statuses, mut first, mut invalid) = (Vec::new(), None::<Failure>, 0);
        let (mut proposed, mut metric) = (0, String::new());
        for spec in &specs {
            match source.propose(spec, current).await {
                Ok(p) => {
                    if proposed == 0 || p.replicas > proposed {
                        (proposed, metric) = (p.replicas, p.name);
                    }
                    statuses.push(p.status);
                }
                Err(f) => {
                    self.warn(hpa, f.reason, &f.cause);
                    statuses.push(MetricStatus::default());
                    invalid += 1;
                    first = first.or(Some(f));
                }
            }
        }
        let error = first.as_ref().map(|f| {
            let n = specs.len();
            format!(
                "invalid metrics ({invalid} invalid out of {n}), first error is: {}",
                f.error
            )
        });
        if let Some(f) = first.filter(|_| invalid >= specs.len() || proposed < current) {
            let msg = format!(
                "the HPA was unable to compute the replica count: {}",
                f.cause
            );
            set_condition(st, "ScalingActive", false, f.reason, msg);
            return Err((statuses, error.unwrap_or_default()));
        }
        let msg =
            format!("the HPA was able to successfully calculate a replica count from {metric}");
        set_condition(st, "ScalingActive", true, "ValidMetricFound", msg);
        Ok((proposed, metric, statuses, error))
    }

    /// One sync of one HPA: its new status in `st`; an error to log.
    async fn autoscale(&self, key: &str, hpa: &Hpa, st: &mut Status) -> Result<(), String> {
        let spec = &hpa.spec;
        let ns = hpa.namespace().unwrap_or_default();
        let r = &spec.scale_target_ref;
        let reference = format!("{}/{ns}/{}", r.kind, r.name);
        let resolved = target::resolve(&self.ctx.client, &ns, r).await;
        let got = match resolved {
            Ok(t) => t
                .get()
                .await
                .map(|s| (t, s))
                .map_err(|e| target::message(&e)),
            Err(e) => Err(e),
        };
        let (target, scale) = got.map_err(|e| {
            self.warn(hpa, "FailedGetScale", &e);
            let msg =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            set_condition(st, "AbleToScale", false, "FailedGetScale", msg);
            format!("failed to query scale subresource for {reference}: {e}")
        })?;
        let msg = "the HPA controller was able to get the target's current scale";
        set_condition(st, "AbleToScale", true, "SucceededGetScale", msg.into());
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let now = Instant::now();
        self.history(key, |h| h.start(current, now));
        let (min, max) = (spec.min_replicas.unwrap_or(1), spec.max_replicas);
        let behavior: Option<Behavior> = spec.behavior.as_ref().map(behavior::with_defaults);
        let mut statuses = Vec::new();
        let mut failed = None;
        let (desired, reason) = if current == 0 && min != 0 {
            let msg = "scaling is disabled since the replica count of the target is zero";
            set_condition(st, "ScalingActive", false, "ScalingDisabled", msg.into());
            (current, String::new())
        } else if current > max {
            (
                max,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            let tolerance = behavior::tolerance(behavior.as_ref());
            let (proposed, metric, computed, error) = match self
                .compute(hpa, st, &scale, tolerance)
                .await
            {
                Ok(c) => c,
                Err((computed, e)) => {
                    set_status(st, current, None, computed, false);
                    self.warn(hpa, "FailedComputeMetricsReplicas", &e);
                    return Err(format!(
                        "failed to compute desired number of replicas based on listed metrics for {reference}: {e}"
                    ));
                }
            };
            statuses = computed;
            failed = error;
            let reason = match proposed.cmp(&current) {
                std::cmp::Ordering::Greater => format!("{metric} above target"),
                std::cmp::Ordering::Less => "All metrics below target".to_string(),
                std::cmp::Ordering::Equal => String::new(),
            };
            let n = self.history(key, |h| {
                behavior::normalize(h, behavior.as_ref(), current, proposed, (min, max), now)
            });
            set_condition(st, "AbleToScale", true, n.able.0, n.able.1.into());
            set_condition(st, "ScalingLimited", n.limited, n.limit.0, n.limit.1.into());
            (n.replicas, reason)
        };
        if desired != current {
            if let Err(e) = target.set(scale, desired).await {
                let e = target::message(&e);
                let msg = format!("New size: {desired}; reason: {reason}; error: {e}");
                self.warn(hpa, "FailedRescale", &msg);
                let msg = format!("the HPA controller was unable to update the target scale: {e}");
                set_condition(st, "AbleToScale", false, "FailedUpdateScale", msg);
                set_status(st, current, None, statuses, false);
                return Err(format!("failed to rescale {reference}: {e}"));
            }
            let msg =
                format!("the HPA controller was able to update the target scale to {desired}");
            set_condition(st, "AbleToScale", true, "SucceededRescale", msg);
            let msg = format!("New size: {desired}; reason: {reason}");
            self.recorder
                .event(hpa, Kind::Normal, "SuccessfulRescale", &msg);
            self.history(key, |h| {
                h.rescaled(behavior.as_ref(), current, desired, now)
            });
            tracing::info!(hpa = key, current, desired, reason = %reason, "rescaled");
            set_status(st, current, Some(desired), statuses, true);
        } else {
            set_status(st, current, Some(current), statuses, false);
        }
        failed.map_or(Ok(()), Err)
    }
}

impl Reconcile for Controller {
    async fn reconcile(&self, key: String) -> Result<Option<Duration>> {
        let Some((ns, hpa)) = self.ctx.informers.hpas.namespaced(&key) else {
            self.history
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            return Ok(None);
        };
        let original = hpa.status.clone().unwrap_or_default();
        let mut st = original.clone();
        if let Err(e) = self.autoscale(&key, &hpa, &mut st).await {
            tracing::debug!(hpa = key, error = %e, "autoscaling");
        }
        if st == original {
            return Ok(None);
        }
        let mut updated = (*hpa).clone();
        updated.status = Some(st);
        let api: Api<Hpa> = Api::namespaced(self.ctx.client.clone(), ns);
        match api
            .replace_status(&hpa.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if matches!(util::code(&e), Some(404 | 409)) => Ok(None),
            Err(e) => {
                let msg = e.to_string();
                self.warn(&hpa, "FailedUpdateStatus", &msg);
                Err(e.into())
            }
        }
    }
}

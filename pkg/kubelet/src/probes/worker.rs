//! One probe of one container, as kubelet's probe worker runs it: wait out the initial
//! delay, probe every period (liveness and readiness only once the startup probe passed;
//! startup only until it passed), count outcomes against the thresholds, record
//! "Unhealthy" events, and kill the container when liveness or startup fails.

use std::time::SystemTime;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use minik_controllers::events::{Kind as EventKind, Recorder};
use minik_runtime::ContainerState;

use super::action::{Action, Ran, Target};
use super::net::Endpoint;
use super::spec::{Kind, Outcome, Threshold, Timing};
use super::{Results, lock};

pub(super) struct Worker {
    pub kind: Kind,
    pub probe: Probe,
    pub has_startup: bool,
    pub runtime: std::sync::Arc<dyn crate::backend::Backend>,
    pub recorder: Recorder,
    pub pod: Pod,
    pub spec: Container,
    pub id: String,
    pub endpoint: Endpoint,
    pub results: Results,
}

impl Worker {
    /// When the container started; None once it is not running.
    fn started_at(&self) -> Option<SystemTime> {
        match self.runtime.container(&self.id)?.state {
            ContainerState::Running { started, .. } => Some(started),
            _ => None,
        }
    }

    fn started(&self) -> bool {
        !self.has_startup
            || lock(&self.results)
                .get(&self.id)
                .is_some_and(|p| p.started == Some(true))
    }

    fn record(&self, passed: bool) {
        let mut results = lock(&self.results);
        let Some(entry) = results.get_mut(&self.id) else {
            return;
        };
        match self.kind {
            Kind::Readiness => entry.ready = Some(passed),
            Kind::Startup => entry.started = Some(passed),
            Kind::Liveness => {}
        }
    }

    pub(super) async fn run(self) {
        let Some(action) = Action::of_probe(&self.probe) else {
            return;
        };
        let timing = Timing::of(&self.probe);
        let mut threshold = Threshold::new(self.kind);
        loop {
            let Some(started_at) = self.started_at() else {
                return;
            };
            let running_for = started_at.elapsed().unwrap_or_default();
            let due = match self.kind {
                Kind::Startup => !self.started(),
                _ => self.started(),
            };
            if self.kind == Kind::Startup && !due {
                return;
            }
            if due && running_for >= timing.initial_delay {
                let target = Target {
                    runtime: self.runtime.as_ref(),
                    container_id: &self.id,
                    spec: &self.spec,
                    endpoint: &self.endpoint,
                };
                let ran = target.run(&action, timing.timeout).await;
                // A container stopped meanwhile is not judged by this run.
                if self.started_at() != Some(started_at) {
                    return;
                }
                let outcome = match &ran {
                    Ran::Success => Outcome::Success,
                    Ran::Warning(w) => {
                        let message = format!("{} probe warning: {w}", self.kind.name());
                        self.event(EventKind::Warning, "ProbeWarning", &message);
                        Outcome::Success
                    }
                    Ran::Failure(f) => {
                        let message = format!("{} probe failed: {f}", self.kind.name());
                        tracing::info!(pod = ?self.pod.metadata.name, container = self.spec.name, message, "probe failed");
                        self.event(EventKind::Warning, "Unhealthy", &message);
                        Outcome::Failure
                    }
                };
                if threshold.observe(outcome, &timing) {
                    self.record(threshold.result);
                }
                if !threshold.result && matches!(self.kind, Kind::Liveness | Kind::Startup) {
                    self.kill(&timing).await;
                    return;
                }
            }
            tokio::time::sleep(timing.period).await;
        }
    }

    fn event(&self, kind: EventKind, reason: &str, message: &str) {
        self.recorder.event(&self.pod, kind, reason, message);
    }

    /// Kill the container for its failed probe (preStop first, within the grace period).
    async fn kill(&self, timing: &Timing) {
        let probe = self.kind.name().to_lowercase();
        self.event(
            EventKind::Normal,
            "Killing",
            &format!(
                "Container {} failed {probe} probe, will be restarted",
                self.spec.name
            ),
        );
        let grace = timing
            .grace
            .unwrap_or_else(|| crate::runtime::termination_grace(&self.pod));
        let target = Target {
            runtime: self.runtime.as_ref(),
            container_id: &self.id,
            spec: &self.spec,
            endpoint: &self.endpoint,
        };
        let left =
            crate::embedded::hooks::pre_stop(&target, &self.pod, &self.recorder, grace).await;
        if let Err(e) = self.runtime.stop_container(&self.id, left).await {
            tracing::warn!(container = self.id, error = %e, "killing a container that failed its probe");
        }
    }
}

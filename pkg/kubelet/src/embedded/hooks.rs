//! Lifecycle hooks as kubelet runs them: postStart right after the container started (it
//! is not reported Running until the hook returns; a failed hook kills it, reason
//! FailedPostStartHook) and preStop before the container is sent SIGTERM, within its grace
//! period (a failed preStop is an event; the kill goes on). Handlers: exec, httpGet,
//! tcpSocket, sleep (probes/action.rs).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use minik_controllers::events::{Kind, Recorder};

use super::EmbeddedRuntime;
use crate::probes::action::{Action, Ran, Target};
use crate::probes::net::Endpoint;

/// Where the pod's ports are reached from.
pub(crate) fn endpoint(rt: &EmbeddedRuntime, uid: &str) -> Endpoint {
    let sandbox = rt.runtime.sandbox(uid);
    let host_network = sandbox.as_ref().is_some_and(|s| s.config.host_network);
    let pod_ip = rt.entry(uid).and_then(|e| e.shared().ip.clone());
    Endpoint {
        netns: if host_network {
            None
        } else {
            sandbox.and_then(|s| s.netns)
        },
        pod_ip: if host_network { None } else { pod_ip },
    }
}

/// Kubelet's message for a failed hook.
fn failure(kind: &str, action: &Action, spec: &Container, pod: &Pod, why: &str) -> String {
    let pod_name = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    match action {
        Action::Exec(argv) => format!(
            "Exec lifecycle hook ({argv:?}) for Container {:?} in Pod {pod_name:?} failed - error: command '{}' exited with error, message: {why:?}",
            spec.name,
            argv.join(" ")
        ),
        Action::Http(h) => format!(
            "HTTP lifecycle hook ({}) for Container {:?} in Pod {pod_name:?} failed - error: {why}",
            h.path.as_deref().unwrap_or_default(),
            spec.name
        ),
        _ => format!(
            "{kind} hook for Container {:?} in Pod {pod_name:?} failed: {why}",
            spec.name
        ),
    }
}

/// Run the postStart hook, if any; Err(message) when it failed (the caller kills the
/// container).
pub(crate) async fn post_start(
    target: &Target<'_>,
    pod: &Pod,
    recorder: &Recorder,
) -> Result<(), String> {
    let Some(action) = target
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        .and_then(Action::of_hook)
    else {
        return Ok(());
    };
    // Hooks have no timeout of their own; the pod's grace period bounds a stuck one.
    let limit = crate::runtime::termination_grace(pod).max(Duration::from_secs(30));
    match target.run(&action, limit).await {
        Ran::Success | Ran::Warning(_) => Ok(()),
        Ran::Failure(why) => {
            let message = failure("PostStart", &action, target.spec, pod, &why);
            recorder.event(pod, Kind::Warning, "FailedPostStartHook", &message);
            Err(message)
        }
    }
}

/// Run the preStop hook, if any, within `grace`; the grace left for the stop.
pub(crate) async fn pre_stop(
    target: &Target<'_>,
    pod: &Pod,
    recorder: &Recorder,
    grace: Duration,
) -> Duration {
    let Some(action) = target
        .spec
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(Action::of_hook)
    else {
        return grace;
    };
    let began = Instant::now();
    let ran = tokio::time::timeout(grace, target.run(&action, grace)).await;
    match ran {
        Ok(Ran::Success | Ran::Warning(_)) => {}
        Ok(Ran::Failure(why)) => {
            let message = failure("PreStop", &action, target.spec, pod, &why);
            recorder.event(pod, Kind::Warning, "FailedPreStopHook", &message);
        }
        Err(_) => tracing::info!(
            container = target.spec.name,
            ?grace,
            "the preStop hook did not finish within the grace period"
        ),
    }
    grace.saturating_sub(began.elapsed())
}

/// Run the preStop hook of a container of pod `uid` (the stop path of the pod).
pub(crate) async fn pre_stop_of(
    rt: &EmbeddedRuntime,
    pod: &Pod,
    c: &minik_runtime::Container,
    grace: Duration,
) -> Duration {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|s| s.name == c.config.name)
    });
    let Some(spec) = spec else {
        return grace;
    };
    let endpoint = endpoint(rt, &uid);
    let target = Target {
        runtime: rt.runtime.as_ref(),
        container_id: &c.config.id,
        spec,
        endpoint: &endpoint,
    };
    pre_stop(&target, pod, &rt.recorder, grace).await
}

//! The pod sync over an in-memory backend (fake_backend.rs) and an API that has nothing
//! (fake_api.rs): ephemeral containers started once each, in their target's PID namespace,
//! waiting for the target, never restarted, and not started for finished or terminating
//! pods; their statuses.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::super::fake_backend::{FakeBackend, IMAGE};
use super::super::{EmbeddedOptions, EmbeddedRuntime, labels};
use crate::ContainerRuntime;
use crate::backend::Backend;
use crate::runtime::State;

struct Harness {
    rt: EmbeddedRuntime,
    backend: Arc<FakeBackend>,
    dir: tempfile::TempDir,
}

fn options(dir: &tempfile::TempDir) -> EmbeddedOptions {
    EmbeddedOptions {
        data_dir: dir.path().join("data"),
        log_dir: dir.path().join("logs"),
        run_dir: dir.path().join("run"),
        shim: Vec::new(),
        registries: dir.path().join("registries.yaml"),
        client: super::super::fake_api::client(Vec::new()),
        node_name: "node".into(),
        cluster_dns: None,
        cluster_domain: "cluster.local".into(),
        network: None,
    }
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(FakeBackend::default());
        let rt = EmbeddedRuntime::with_backend(options(&dir), backend.clone()).unwrap();
        Harness { rt, backend, dir }
    }

    /// The id of the only run of container `name`.
    fn id(&self, name: &str) -> String {
        let runs = self.backend.named(name);
        assert_eq!(runs.len(), 1, "runs of {name}");
        runs[0].config.id.clone()
    }

    /// Make the last failed start of `name` due again now.
    fn retry_now(&self, uid: &str, name: &str) {
        let entry = self.rt.entry(uid).unwrap();
        entry.shared().waiting.get_mut(name).unwrap().retry = Instant::now();
    }
}

fn container(name: &str) -> Value {
    json!({"name": name, "image": IMAGE, "imagePullPolicy": "IfNotPresent"})
}

/// A running pod with an app container and `init` init containers.
fn pod(init: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "uid-1"},
        "spec": {
            "containers": [container("app")],
            "initContainers": init.iter().map(|n| container(n)).collect::<Vec<_>>(),
            "enableServiceLinks": false,
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
        "status": {"phase": "Running"},
    }))
    .unwrap()
}

/// `pod` with ephemeral containers added (as the ephemeralcontainers subresource does).
fn debugged(pod: &Pod, ephemeral: Value) -> Pod {
    let mut v = serde_json::to_value(pod).unwrap();
    v["spec"]["ephemeralContainers"] = ephemeral;
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn an_ephemeral_container_starts_once_in_its_targets_pid_namespace() {
    let h = Harness::new();
    let pod = pod(&[]);
    h.rt.start_pod(&pod, Some("10.42.0.5".into()))
        .await
        .unwrap();
    h.rt.sync_pod(&pod).await.unwrap();
    let app = h.id("app");
    let dbg = json!({"name": "dbg", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
        "command": ["sh"], "stdin": true, "tty": true, "targetContainerName": "app",
        "volumeMounts": [{"name": "data", "mountPath": "/data"}]});
    let pod = debugged(&pod, json!([dbg]));
    h.rt.sync_pod(&pod).await.unwrap();
    let run = &h.backend.named("dbg")[0].config;
    assert_eq!(run.target_pid_ns.as_deref(), Some(app.as_str()));
    assert!(run.stdin && run.tty);
    assert_eq!(run.args, ["sh"]);
    assert_eq!(run.labels[labels::EPHEMERAL], "true");
    assert_eq!(run.labels[labels::INIT], "false");
    assert!(run.mounts.iter().any(|m| m.destination == "/data"));
    assert!(run.log_path.ends_with("default_p_uid-1/dbg/0.log"));
    // The app container joins no one's namespace.
    assert_eq!(h.backend.named("app")[0].config.target_pid_ns, None);

    let state = h.rt.pod_state("uid-1").unwrap();
    assert_eq!(state.ephemeral_containers.len(), 1);
    assert!(matches!(
        state.ephemeral_containers[0].state,
        State::Running { .. }
    ));
    let status = crate::status::pod_status(&pod, &state, "10.0.0.1");
    let statuses = status.ephemeral_container_statuses.unwrap();
    assert_eq!(statuses[0].name, "dbg");
    assert!(!statuses[0].ready);
    assert_eq!(statuses[0].started, None);
    assert_eq!(statuses[0].restart_count, 0);
    assert!(
        statuses[0]
            .container_id
            .as_deref()
            .unwrap()
            .ends_with(&h.id("dbg"))
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));

    // Once exited it stays so: never restarted, whatever the pod's restartPolicy.
    h.backend.exit(&h.id("dbg"), 0);
    h.rt.sync_pod(&pod).await.unwrap();
    h.rt.sync_pod(&pod).await.unwrap();
    assert_eq!(h.backend.named("dbg").len(), 1);
    let state = h.rt.pod_state("uid-1").unwrap();
    let status = crate::status::pod_status(&pod, &state, "10.0.0.1");
    let terminated = status.ephemeral_container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(terminated.exit_code, 0);
    assert_eq!(terminated.reason.as_deref(), Some("Completed"));
    // The app containers' statuses and phase are their own.
    assert_eq!(status.container_statuses.unwrap().len(), 1);
    assert_eq!(status.phase.as_deref(), Some("Running"));

    // Found again after a restart of the kubelet, before the pod's first sync.
    let again = EmbeddedRuntime::with_backend(options(&h.dir), h.backend.clone()).unwrap();
    let state = again.pod_state("uid-1").unwrap();
    let names = |l: &[crate::runtime::Container]| -> Vec<String> {
        l.iter().map(|c| c.name.clone()).collect()
    };
    assert_eq!(names(&state.containers), ["app"]);
    assert_eq!(names(&state.ephemeral_containers), ["dbg"]);
}

#[tokio::test]
async fn an_ephemeral_container_waits_for_its_target_not_for_initialization() {
    let h = Harness::new();
    let pod = pod(&["init"]);
    h.rt.start_pod(&pod, None).await.unwrap();
    h.rt.sync_pod(&pod).await.unwrap();
    assert!(h.backend.named("app").is_empty());
    let pod = debugged(
        &pod,
        json!([
            {"name": "dbg", "image": IMAGE, "targetContainerName": "app"},
            {"name": "free", "image": IMAGE, "imagePullPolicy": "IfNotPresent"},
        ]),
    );
    // dbg's image is :1.36 with no policy: IfNotPresent, so it is not pulled.
    h.rt.sync_pod(&pod).await.unwrap();
    assert_eq!(
        h.backend.named("free").len(),
        1,
        "started while initializing"
    );
    assert!(h.backend.named("dbg").is_empty());
    let state = h.rt.pod_state("uid-1").unwrap();
    let dbg = &state.ephemeral_containers[0];
    assert_eq!(dbg.name, "dbg");
    let State::Waiting { reason, message } = &dbg.state else {
        panic!("{dbg:?}");
    };
    assert_eq!(reason, "CreateContainerConfigError");
    assert_eq!(
        message.as_deref(),
        Some("unable to find target container app")
    );

    h.backend.exit(&h.id("init"), 0);
    h.rt.sync_pod(&pod).await.unwrap();
    let app = h.id("app");
    h.retry_now("uid-1", "dbg");
    h.rt.sync_pod(&pod).await.unwrap();
    let run = &h.backend.named("dbg")[0].config;
    assert_eq!(run.target_pid_ns.as_deref(), Some(app.as_str()));
    let state = h.rt.pod_state("uid-1").unwrap();
    assert!(matches!(
        state.ephemeral_containers[0].state,
        State::Running { .. }
    ));
}

#[tokio::test]
async fn a_target_that_is_not_running_keeps_it_waiting() {
    let h = Harness::new();
    let pod = pod(&[]);
    h.rt.start_pod(&pod, None).await.unwrap();
    h.rt.sync_pod(&pod).await.unwrap();
    h.backend.exit(&h.id("app"), 1);
    let pod = debugged(
        &pod,
        json!([{"name": "dbg", "image": IMAGE, "targetContainerName": "app"}]),
    );
    h.rt.sync_pod(&pod).await.unwrap();
    assert!(h.backend.named("dbg").is_empty());
    let state = h.rt.pod_state("uid-1").unwrap();
    let State::Waiting { reason, .. } = &state.ephemeral_containers[0].state else {
        panic!("{state:?}");
    };
    assert_eq!(reason, "CreateContainerError");
}

#[tokio::test]
async fn finished_or_terminating_pods_start_none_and_killing_stops_them() {
    let h = Harness::new();
    let running = pod(&[]);
    h.rt.start_pod(&running, None).await.unwrap();
    h.rt.sync_pod(&running).await.unwrap();
    let ephemeral = json!([{"name": "dbg", "image": IMAGE}]);
    let mut finished = debugged(&running, ephemeral.clone());
    finished.status.as_mut().unwrap().phase = Some("Succeeded".into());
    h.rt.sync_pod(&finished).await.unwrap();
    let mut terminating = debugged(&running, ephemeral.clone());
    terminating.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    h.rt.sync_pod(&terminating).await.unwrap();
    assert!(h.backend.named("dbg").is_empty());

    let running = debugged(&running, ephemeral);
    h.rt.sync_pod(&running).await.unwrap();
    assert_eq!(h.backend.named("dbg").len(), 1);
    h.rt.kill_pod("uid-1", std::time::Duration::ZERO)
        .await
        .unwrap();
    for name in ["app", "dbg"] {
        let state = &h.backend.named(name)[0].state;
        assert!(
            matches!(state, minik_runtime::ContainerState::Exited { .. }),
            "{name}: {state:?}"
        );
    }
    h.rt.stop_pod("uid-1", std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(h.backend.containers().is_empty());
}

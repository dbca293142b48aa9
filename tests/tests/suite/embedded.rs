//! The kubelet's side of the embedded runtime for real (root): pods created in a real
//! minik server (without a node of its own) run through `EmbeddedRuntime` with the busybox
//! image of scripts/images.sh: volumes, environment, init containers, DNS files, the
//! service account token, termination messages, waiting reasons, restarts, and removal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use minik_kubelet::ContainerRuntime;
use minik_kubelet::embedded::{EmbeddedOptions, EmbeddedRuntime};
use minik_kubelet::runtime::{PodState, State};
use minik_kubelet::status;
use minik_tests::minik_bin;
use minik_tests::node::build_images;
use minik_tests::server::Server;
use serde_json::json;

/// A server, an EmbeddedRuntime over temporary directories with the test images, and
/// cleanup of whatever the runtime still has when dropped.
struct Harness {
    _server: Server,
    client: kube::Client,
    rt: EmbeddedRuntime,
    dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let server = Server::start();
        let client = server.kube_client().await;
        let dir = tempfile::tempdir().unwrap();
        let rt = EmbeddedRuntime::new(EmbeddedOptions {
            data_dir: dir.path().join("data"),
            log_dir: dir.path().join("logs"),
            run_dir: dir.path().join("run"),
            shim: vec![minik_bin().to_string_lossy().into_owned(), "shim".into()],
            registries: dir.path().join("registries.yaml"),
            client: client.clone(),
            node_name: "embedded-test".into(),
            cluster_dns: Some("10.43.0.10".into()),
            cluster_domain: "cluster.local".into(),
            network: None,
        })
        .unwrap();
        for tarball in build_images(&dir.path().join("images")) {
            if tarball.to_string_lossy().ends_with(".oci.tar") {
                rt.backend()
                    .image_store()
                    .unwrap()
                    .import(&tarball)
                    .unwrap();
            }
        }
        // Pods run as the namespace's default service account.
        let accounts: Api<ServiceAccount> = Api::default_namespaced(client.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        while accounts.get_opt("default").await.unwrap().is_none() {
            assert!(Instant::now() < deadline, "no default service account");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Harness {
            _server: server,
            client,
            rt,
            dir,
        }
    }

    async fn create<K>(&self, obj: serde_json::Value) -> K
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::default_namespaced(self.client.clone());
        let obj: K = serde_json::from_value(obj).unwrap();
        api.create(&PostParams::default(), &obj).await.unwrap()
    }

    /// Sync the pod until its state satisfies `done`.
    async fn until(&self, pod: &Pod, what: &str, done: impl Fn(&PodState) -> bool) -> PodState {
        let uid = pod.metadata.uid.clone().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.rt.sync_pod(pod).await.unwrap();
            if let Some(state) = self.rt.pod_state(&uid)
                && done(&state)
            {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {:#?}",
                self.rt.pod_state(&uid)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self, pod: &Pod) -> PathBuf {
        let m = &pod.metadata;
        self.dir.path().join("logs").join(format!(
            "default_{}_{}",
            m.name.as_deref().unwrap(),
            m.uid.as_deref().unwrap()
        ))
    }

    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        self.dir
            .path()
            .join("data/agent/pods")
            .join(pod.metadata.uid.as_deref().unwrap())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Whatever a failed test left: containers, sandboxes, tmpfs mounts.
        let dir = self.dir.path().to_path_buf();
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let shim = vec![minik_bin().to_string_lossy().into_owned(), "shim".into()];
            let Ok(runtime) = minik_runtime::Runtime::open(
                &dir.join("data/agent/containers"),
                &dir.join("run"),
                shim,
            ) else {
                return;
            };
            rt.block_on(async {
                for c in runtime.containers() {
                    let _ = runtime.stop_container(&c.config.id, Duration::ZERO).await;
                    let _ = runtime.remove_container(&c.config.id);
                }
            });
            for s in runtime.sandboxes() {
                let _ = runtime.remove_sandbox(&s.config.id);
            }
            let pods = dir.join("data/agent/pods");
            let _ = minik_kubelet::embedded::volumes::fs::unmount_all(&pods);
        });
        let _ = cleanup.join();
    }
}

fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    minik_tests::node::cri_log_lines(&text)
}

fn exited(s: &State) -> Option<(i32, &str, Option<&str>)> {
    match s {
        State::Terminated {
            exit_code,
            reason,
            message,
            ..
        } => Some((*exit_code, reason.as_str(), message.as_deref())),
        _ => None,
    }
}

#[tokio::test]
async fn a_pod_runs_with_its_volumes_environment_and_init_container() {
    let h = Harness::new().await;
    let _: ConfigMap = h
        .create(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "greeting"}, "data": {"greeting": "hello from a configmap"}}))
        .await;
    let _: Secret = h
        .create(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}))
        .await;
    let script = "cat /config/greeting; echo; echo password=$PASSWORD; echo pod=$POD; \
        cat /work/init.txt; cat /etc/resolv.conf; echo host=$(hostname); \
        echo svc=$KUBERNETES_SERVICE_HOST; \
        echo token=$(wc -c < /var/run/secrets/kubernetes.io/serviceaccount/token); \
        echo ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace); \
        echo -n done > /dev/termination-log";
    let pod: Pod = h
        .create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hello"},
            "spec": {"nodeName": "embedded-test", "restartPolicy": "Never",
                "initContainers": [{"name": "init", "image": "busybox", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "echo from-init > /work/init.txt"],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}]}],
                "containers": [{"name": "app", "image": "busybox", "imagePullPolicy": "Never",
                    "command": ["sh", "-c", script],
                    "env": [
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "config", "mountPath": "/config"},
                        {"name": "work", "mountPath": "/work"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "greeting"}},
                    {"name": "work", "emptyDir": {}}]}}))
        .await;
    let uid = pod.metadata.uid.clone().unwrap();
    h.rt.start_pod(&pod, None).await.unwrap();
    let first = h.rt.pod_state(&uid).unwrap();
    assert!(first.sandbox_ready);
    assert_eq!(
        first.init_containers[0].state,
        State::waiting("PodInitializing")
    );
    assert_eq!(first.containers[0].state, State::waiting("PodInitializing"));
    assert_eq!(h.rt.pods(), vec![uid.clone()]);

    let state = h
        .until(&pod, "the app container exits", |s| {
            exited(&s.containers[0].state).is_some()
        })
        .await;
    assert_eq!(
        exited(&state.init_containers[0].state),
        Some((0, "Completed", None))
    );
    assert_eq!(
        exited(&state.containers[0].state),
        Some((0, "Completed", Some("done")))
    );
    let app = &state.containers[0];
    assert!(app.id.starts_with("minik://"), "{app:?}");
    assert_eq!(app.image, "docker.io/library/busybox:latest");
    assert!(!app.image_id.is_empty());
    assert_eq!(app.restart_count, 0);

    let log = lines(&h.logs(&pod).join("app/0.log"));
    for want in [
        "hello from a configmap",
        "password=s3cret",
        "pod=hello",
        "from-init",
        "search default.svc.cluster.local svc.cluster.local cluster.local",
        "nameserver 10.43.0.10",
        "options ndots:5",
        "host=hello",
        "ns=default",
    ] {
        assert!(log.iter().any(|l| l == want), "{want:?} not in {log:?}");
    }
    assert!(
        log.iter().any(|l| l.starts_with("svc=") && l.len() > 4),
        "{log:?}"
    );
    let token = log.iter().find_map(|l| l.strip_prefix("token=")).unwrap();
    assert!(token.trim().parse::<usize>().unwrap() > 100, "{log:?}");

    let status = status::pod_status(&pod, &state, "127.0.0.1");
    assert_eq!(status.phase.as_deref(), Some("Succeeded"));
    let init = status.init_container_statuses.unwrap();
    assert!(init[0].ready);

    h.rt.stop_pod(&uid, Duration::from_secs(5)).await.unwrap();
    assert!(h.rt.pod_state(&uid).is_none());
    assert!(h.rt.pods().is_empty());
    assert!(!h.pod_dir(&pod).exists());
    assert!(!h.logs(&pod).exists());
}

#[tokio::test]
async fn containers_that_cannot_be_made_say_why_they_wait() {
    let h = Harness::new().await;
    let _: Secret = h
        .create(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "other"}, "stringData": {"user": "u"}}))
        .await;
    let pod: Pod = h
        .create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck"},
            "spec": {"nodeName": "embedded-test",
                "containers": [
                    {"name": "config", "image": "busybox", "imagePullPolicy": "Never",
                        "command": ["sleep", "1000"],
                        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "other", "key": "nope"}}}]},
                    {"name": "image", "image": "example.invalid/none:1", "imagePullPolicy": "Never"},
                    {"name": "runs", "image": "busybox", "imagePullPolicy": "Never",
                        "command": ["sleep", "1000"]},
                    {"name": "pull", "image": "127.0.0.1:1/none:1", "imagePullPolicy": "Always"}]}}))
        .await;
    let uid = pod.metadata.uid.clone().unwrap();
    h.rt.start_pod(&pod, None).await.unwrap();
    let state = h
        .until(&pod, "the third container runs, the fourth backs off", |s| {
            matches!(s.containers[2].state, State::Running { .. })
                && matches!(&s.containers[3].state, State::Waiting { reason, .. } if reason == "ImagePullBackOff")
        })
        .await;
    let State::Waiting { message, .. } = &state.containers[3].state else {
        unreachable!()
    };
    let message = message.clone().unwrap_or_default();
    assert!(
        message.starts_with("Back-off pulling image \"127.0.0.1:1/none:1\": ErrImagePull: "),
        "{message}"
    );
    assert_eq!(
        state.containers[0].state,
        State::Waiting {
            reason: "CreateContainerConfigError".into(),
            message: Some("couldn't find key nope in Secret default/other".into()),
        }
    );
    assert_eq!(
        state.containers[1].state,
        State::Waiting {
            reason: "ErrImageNeverPull".into(),
            message: Some(
                "Container image \"example.invalid/none:1\" is not present with pull policy of Never"
                    .into()
            ),
        }
    );
    let status = status::pod_status(&pod, &state, "127.0.0.1");
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    // A second start is never made for a pod the runtime has.
    h.rt.start_pod(&pod, None).await.unwrap();
    assert_eq!(h.rt.pods(), vec![uid.clone()]);
    h.rt.stop_pod(&uid, Duration::from_secs(1)).await.unwrap();
    assert!(h.rt.pods().is_empty());
}

#[tokio::test]
async fn a_restart_is_a_new_run_with_the_last_one_kept() {
    let h = Harness::new().await;
    let pod: Pod = h
        .create(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash"},
            "spec": {"nodeName": "embedded-test",
                "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "Never",
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "command": ["sh", "-c", "echo about to fail; exit 3"],
                    "volumeMounts": [{"name": "mem", "mountPath": "/mem"}]}],
                "volumes": [{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}]}}))
        .await;
    let uid = pod.metadata.uid.clone().unwrap();
    h.rt.start_pod(&pod, None).await.unwrap();
    let state = h
        .until(&pod, "the first run exits", |s| {
            exited(&s.containers[0].state).is_some()
        })
        .await;
    assert_eq!(
        exited(&state.containers[0].state),
        Some((3, "Error", Some("about to fail\n")))
    );
    let mem = h.pod_dir(&pod).join("volumes/kubernetes.io~empty-dir/mem");
    assert!(minik_kubelet::embedded::volumes::fs::is_mount_point(&mem));

    h.rt.restart_container(&uid, "c").await.unwrap();
    let state = h
        .until(&pod, "the second run exits", |s| {
            s.containers[0].restart_count == 1 && exited(&s.containers[0].state).is_some()
        })
        .await;
    let c = &state.containers[0];
    assert!(
        matches!(c.last, Some(State::Terminated { exit_code: 3, .. })),
        "{c:?}"
    );
    let logs = h.logs(&pod).join("c");
    assert_eq!(lines(&logs.join("0.log")), vec!["about to fail"]);
    assert_eq!(lines(&logs.join("1.log")), vec!["about to fail"]);
    let status = status::pod_status(&pod, &state, "127.0.0.1");
    assert_eq!(status.phase.as_deref(), Some("Running"));

    h.rt.stop_pod(&uid, Duration::ZERO).await.unwrap();
    assert!(!minik_kubelet::embedded::volumes::fs::is_mount_point(&mem));
    assert!(!h.pod_dir(&pod).exists());
}

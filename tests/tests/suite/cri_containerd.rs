//! The CRI client (minik-cri) against a real containerd (Debian's containerd 1.6 with runc;
//! tests/src/containerd.rs starts a private one per test, as root): the version handshake,
//! images imported offline, host-network pod sandboxes, containers that run to an exit code
//! and write CRI logs, exec, stop with a grace period, removal and filtered listing, and no
//! shim left behind.

use std::path::Path;
use std::time::{Duration, Instant};

use minik_cri::proto::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatsFilter,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxMetadata, PodSandboxState,
};
use minik_cri::{CriClient, Error, image_spec};
use minik_tests::containerd::{BUSYBOX_IMAGE, Containerd, PAUSE_IMAGE, shim_pids};
use minik_tests::node::cri_log_lines;
use minik_tests::registry::Registry;

/// Host network (no CNI config in the test containerd), a pod IPC namespace, a PID
/// namespace per container: what kubelet asks for a hostNetwork pod.
fn host_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn sandbox_config(c: &Containerd, name: &str) -> PodSandboxConfig {
    let log_dir = c.log_dir().join(name);
    std::fs::create_dir_all(&log_dir).expect("pod log dir");
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: "default".to_string(),
            attempt: 0,
        }),
        log_directory: log_dir.to_string_lossy().into_owned(),
        labels: [("app".to_string(), name.to_string())].into(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: c.cgroup_parent().to_string(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(host_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_config(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(image_spec(BUSYBOX_IMAGE)),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(host_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A containerd with busybox imported and a client connected to it.
async fn setup() -> (Containerd, CriClient) {
    let c = Containerd::start();
    c.import(&c.image("busybox.oci.tar"));
    let client = CriClient::connect(&c.endpoint())
        .await
        .unwrap_or_else(|e| panic!("connect: {e}; containerd log:\n{}", c.log()));
    (c, client)
}

/// Run sandbox `name` and create and start container `name` in it; (sandbox, container).
async fn run(c: &Containerd, client: &CriClient, name: &str, command: &[&str]) -> (String, String) {
    let config = sandbox_config(c, name);
    let sandbox = client
        .run_pod_sandbox(config.clone(), "")
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}; containerd log:\n{}", c.log()));
    let container = client
        .create_container(&sandbox, container_config(name, command), config)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}; containerd log:\n{}", c.log()));
    client
        .start_container(&container)
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}; containerd log:\n{}", c.log()));
    (sandbox, container)
}

/// Wait (at most 30 s) until container `id` is in `state`.
async fn wait_state(client: &CriClient, id: &str, state: ContainerState) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.container_status(id, false).await.expect("status");
        let s = status.status.expect("a status");
        if s.state == state as i32 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} is still {:?}, not {state:?}",
            s.state()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn teardown(client: &CriClient, sandbox: &str) {
    client
        .stop_pod_sandbox(sandbox)
        .await
        .expect("StopPodSandbox");
    client
        .remove_pod_sandbox(sandbox)
        .await
        .expect("RemovePodSandbox");
}

#[tokio::test]
async fn version_is_containerd_v1_and_runtime_is_ready() {
    let (_c, client) = setup().await;
    let v = client.version().await.expect("Version");
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());
    assert_eq!(client.runtime_version().runtime_name, "containerd");
    let status = client.status(false).await.expect("Status");
    let conditions = status.status.expect("runtime status").conditions;
    let ready = conditions.iter().find(|c| c.r#type == "RuntimeReady");
    assert!(ready.is_some_and(|c| c.status), "{conditions:?}");
}

#[tokio::test]
async fn a_missing_or_foreign_endpoint_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock = dir.path().join("nothing.sock");
    let err = CriClient::connect(&format!("unix://{}", sock.display()))
        .await
        .expect_err("no socket");
    assert!(matches!(err, Error::EndpointMissing { .. }), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = CriClient::connect("tcp://127.0.0.1:1")
        .await
        .expect_err("tcp");
    assert!(matches!(err, Error::UnsupportedEndpoint(_)), "{err}");
}

#[tokio::test]
async fn imported_images_have_a_status() {
    let c = Containerd::start();
    let client = CriClient::connect(&c.endpoint()).await.expect("connect");
    assert!(
        client
            .image_status(BUSYBOX_IMAGE)
            .await
            .expect("ImageStatus")
            .is_none()
    );
    c.import(&c.image("busybox.oci.tar"));
    let image = client
        .image_status(BUSYBOX_IMAGE)
        .await
        .expect("ImageStatus")
        .expect("busybox is there after the import");
    assert!(
        image.repo_tags.iter().any(|t| t == BUSYBOX_IMAGE),
        "{image:?}"
    );
    assert!(image.id.starts_with("sha256:"), "{image:?}");
    assert!(image.size > 0);
    let by_id = client
        .image_status(&image.id)
        .await
        .expect("ImageStatus by id");
    assert_eq!(by_id.map(|i| i.id), Some(image.id.clone()));
    let all = client.list_images(None).await.expect("ListImages");
    for name in [BUSYBOX_IMAGE, PAUSE_IMAGE] {
        assert!(
            all.iter().any(|i| i.repo_tags.iter().any(|t| t == name)),
            "{name}: {all:?}"
        );
    }
    let fs = client.image_fs_info().await.expect("ImageFsInfo");
    assert!(!fs.image_filesystems.is_empty());
    client
        .remove_image(BUSYBOX_IMAGE)
        .await
        .expect("RemoveImage");
    assert!(
        client
            .image_status(BUSYBOX_IMAGE)
            .await
            .expect("ImageStatus")
            .is_none()
    );
    client
        .remove_image(BUSYBOX_IMAGE)
        .await
        .expect("RemoveImage is idempotent");
}

#[tokio::test]
async fn images_are_pulled_from_a_local_registry() {
    let c = Containerd::start();
    let client = CriClient::connect(&c.endpoint()).await.expect("connect");
    let registry = Registry::start();
    registry.push(
        &c.image("busybox.oci.tar").to_string_lossy(),
        "minik/busybox:pulled",
    );
    let reference = format!("{}/minik/busybox:pulled", registry.host());
    assert!(
        client
            .image_status(&reference)
            .await
            .expect("ImageStatus")
            .is_none()
    );
    let image_ref = client
        .pull_image(&reference, None, None)
        .await
        .unwrap_or_else(|e| panic!("PullImage: {e}; containerd log:\n{}", c.log()));
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let image = client
        .image_status(&reference)
        .await
        .expect("ImageStatus")
        .expect("the pulled image");
    assert_eq!(image.id, image_ref);
    assert!(image.repo_tags.contains(&reference), "{image:?}");
    assert!(
        image
            .repo_digests
            .iter()
            .any(|d| d.starts_with(&format!("{}/minik/busybox@sha256:", registry.host()))),
        "{image:?}"
    );
    let err = client
        .pull_image(
            &format!("{}/minik/missing:latest", registry.host()),
            None,
            None,
        )
        .await
        .expect_err("no such image");
    assert!(
        matches!(
            err,
            Error::Status {
                op: "PullImage",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_container_runs_to_its_exit_code_and_logs_in_cri_format() {
    let (c, client) = setup().await;
    let (sandbox, container) = run(&c, &client, "exits", &["sh", "-c", "echo hello; exit 3"]).await;
    let s = client
        .pod_sandbox_status(&sandbox, false)
        .await
        .expect("PodSandboxStatus");
    let s = s.status.expect("sandbox status");
    assert_eq!(s.state(), PodSandboxState::SandboxReady);
    assert_eq!(s.metadata.map(|m| m.name).as_deref(), Some("exits"));

    wait_state(&client, &container, ContainerState::ContainerExited).await;
    let status = client
        .container_status(&container, false)
        .await
        .expect("status");
    let status = status.status.expect("a status");
    assert_eq!(status.exit_code, 3);
    assert_eq!(status.reason, "Error");
    // Both times are set; containerd stamps the start after the task started and the finish
    // from the exit event, so a container exiting at once may finish "before" it started.
    assert!(
        status.started_at > 0 && status.finished_at > 0,
        "{status:?}"
    );
    let log = Path::new(&status.log_path);
    assert_eq!(log, c.log_dir().join("exits").join("exits/0.log"));
    let text = std::fs::read_to_string(log).expect("the CRI log file");
    assert_eq!(cri_log_lines(&text), ["hello"], "{text}");
    assert!(text.contains(" stdout F hello"), "{text}");

    client
        .remove_container(&container)
        .await
        .expect("RemoveContainer");
    let err = client
        .container_status(&container, false)
        .await
        .expect_err("removed");
    assert!(err.is_not_found(), "{err}");
    client
        .remove_container(&container)
        .await
        .expect("RemoveContainer is idempotent");
    teardown(&client, &sandbox).await;
    assert!(
        client
            .list_pod_sandbox(None)
            .await
            .expect("ListPodSandbox")
            .is_empty()
    );

    let socket = c.socket.clone();
    drop(c);
    assert!(
        shim_pids(&socket).is_empty(),
        "shims left: {:?}",
        shim_pids(&socket)
    );
}

#[tokio::test]
async fn exec_sync_returns_output_and_exit_code_and_stop_ends_a_sleep() {
    let (c, client) = setup().await;
    let (sandbox, container) = run(&c, &client, "sleeper", &["sleep", "3600"]).await;
    wait_state(&client, &container, ContainerState::ContainerRunning).await;

    let cmd = ["sh", "-c", "echo out; echo err >&2; exit 7"];
    let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    let r = client
        .exec_sync(&container, cmd, Duration::from_secs(30))
        .await
        .expect("ExecSync");
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(r.exit_code, 7);

    let stats = client
        .container_stats(&container)
        .await
        .expect("ContainerStats");
    assert_eq!(stats.attributes.map(|a| a.id), Some(container.clone()));
    let filter = ContainerStatsFilter {
        pod_sandbox_id: sandbox.clone(),
        ..Default::default()
    };
    let all = client
        .list_container_stats(Some(filter))
        .await
        .expect("ListContainerStats");
    assert_eq!(all.len(), 1);

    // busybox sleep as PID 1 ignores SIGTERM: the runtime kills it after the grace period.
    client
        .stop_container(&container, Duration::from_secs(1))
        .await
        .expect("StopContainer");
    let status = client
        .container_status(&container, false)
        .await
        .expect("status");
    let status = status.status.expect("a status");
    assert_eq!(status.state(), ContainerState::ContainerExited);
    assert_eq!(status.exit_code, 137);
    client
        .stop_container(&container, Duration::from_secs(1))
        .await
        .expect("StopContainer is idempotent");
    client
        .remove_container(&container)
        .await
        .expect("RemoveContainer");
    teardown(&client, &sandbox).await;
}

#[tokio::test]
async fn list_containers_filters_by_sandbox() {
    let (c, client) = setup().await;
    let (s1, c1) = run(&c, &client, "one", &["sleep", "3600"]).await;
    let (s2, c2) = run(&c, &client, "two", &["sleep", "3600"]).await;
    let ids = |f: Option<ContainerFilter>| {
        let client = client.clone();
        async move {
            let mut ids: Vec<String> = client
                .list_containers(f)
                .await
                .expect("ListContainers")
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let by_sandbox = |s: &str| ContainerFilter {
        pod_sandbox_id: s.to_string(),
        ..Default::default()
    };
    assert_eq!(ids(Some(by_sandbox(&s1))).await, [c1.as_str()]);
    assert_eq!(ids(Some(by_sandbox(&s2))).await, [c2.as_str()]);
    let mut both = vec![c1.clone(), c2.clone()];
    both.sort();
    assert_eq!(ids(None).await, both);
    let listed = client
        .list_containers(Some(by_sandbox(&s1)))
        .await
        .expect("list");
    assert_eq!(listed[0].pod_sandbox_id, s1);
    assert_eq!(
        listed[0].metadata.as_ref().map(|m| m.name.as_str()),
        Some("one")
    );

    // Removing a sandbox stops and removes its containers.
    teardown(&client, &s1).await;
    assert_eq!(ids(None).await, [c2.as_str()]);
    let sandboxes = client.list_pod_sandbox(None).await.expect("ListPodSandbox");
    assert_eq!(
        sandboxes.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [s2.as_str()]
    );
    teardown(&client, &s2).await;
    assert!(ids(None).await.is_empty());
}

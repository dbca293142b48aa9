//! What the runtime reports in the kubelet's terms: container states, containers and
//! sandboxes rebuilt after a restart, image matching, verbose info, exec helpers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use minik_cri::proto::{
    ContainerMetadata, ContainerState as CriState, ContainerStatus, ImageSpec,
    LinuxPodSandboxStatus, Namespace, NamespaceMode, NamespaceOption, PodSandboxStatus,
};
use minik_runtime::{ContainerState, Image};

use crate::backend::cri::containers::{ceil_secs, exec_argv, exec_output};
use crate::backend::cri::{convert, images, info, status};

fn cri_status(state: CriState, exit_code: i32, reason: &str) -> ContainerStatus {
    ContainerStatus {
        id: "runtime-id".into(),
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 4,
        }),
        state: state as i32,
        created_at: 1_000_000_000,
        started_at: 2_000_000_000,
        finished_at: if state == CriState::ContainerExited {
            3_000_000_000
        } else {
            0
        },
        exit_code,
        image: Some(ImageSpec {
            image: "docker.io/library/nginx:latest".into(),
            ..Default::default()
        }),
        image_ref: "docker.io/library/nginx@sha256:d1".into(),
        reason: reason.into(),
        labels: HashMap::from([
            (convert::CONTAINER_ID.into(), "k1".into()),
            (convert::MINIK_POD_UID.into(), "u1".into()),
        ]),
        log_path: "/var/log/pods/ns_p_u1/app/4.log".into(),
        ..Default::default()
    }
}

#[test]
fn states_map_as_kubelet_reports_them() {
    let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
    let s = status::state(&cri_status(CriState::ContainerCreated, 0, ""));
    assert_eq!(s, ContainerState::Created);
    let s = status::state(&cri_status(CriState::ContainerRunning, 0, ""));
    assert_eq!(
        s,
        ContainerState::Running {
            pid: 0,
            started: at(2)
        }
    );
    let exited =
        |code, reason: &str| status::state(&cri_status(CriState::ContainerExited, code, reason));
    let reason = |s: ContainerState| match s {
        ContainerState::Exited {
            exit_code, reason, ..
        } => (exit_code, reason),
        other => panic!("{other:?}"),
    };
    assert_eq!(reason(exited(0, "")), (0, "Completed".into()));
    assert_eq!(reason(exited(3, "")), (3, "Error".into()));
    assert_eq!(reason(exited(137, "OOMKilled")), (137, "OOMKilled".into()));
    assert_eq!(
        exited(1, "Error"),
        ContainerState::Exited {
            exit_code: 1,
            reason: "Error".into(),
            message: None,
            started: Some(at(2)),
            finished: at(3),
        }
    );
    let unknown = status::state(&cri_status(CriState::ContainerUnknown, 0, ""));
    assert_eq!(reason(unknown), (255, "Unknown".into()));
}

#[test]
fn a_listed_container_is_rebuilt_with_the_kubelet_ids() {
    let image = Image {
        id: "sha256:img".into(),
        repo_tags: vec!["docker.io/library/nginx:latest".into()],
        repo_digests: vec!["docker.io/library/nginx@sha256:d1".into()],
        size: 1,
    };
    let s = cri_status(CriState::ContainerRunning, 0, "");
    let c = status::container(&s, std::slice::from_ref(&image)).expect("ours");
    assert_eq!(c.config.id, "k1");
    assert_eq!(c.config.sandbox_id, "u1");
    assert_eq!((c.config.name.as_str(), c.config.attempt), ("app", 4));
    assert_eq!(c.config.image_id, "sha256:img", "the digest's image");
    assert_eq!(c.config.image_ref, "docker.io/library/nginx:latest");
    assert_eq!(
        c.config.log_path,
        PathBuf::from("/var/log/pods/ns_p_u1/app/4.log")
    );
    assert_eq!(c.created, UNIX_EPOCH + Duration::from_secs(1));
    let mut labelled = s.clone();
    labelled
        .labels
        .insert(convert::IMAGE_REF.into(), "nginx".into());
    labelled.image_ref = "sha256:direct".into();
    let c = status::container(&labelled, &[]).expect("ours");
    assert_eq!(
        (c.config.image_ref.as_str(), c.config.image_id.as_str()),
        ("nginx", "sha256:direct")
    );
    let mut foreign = s;
    foreign.labels.remove(convert::CONTAINER_ID);
    assert!(status::container(&foreign, &[]).is_none());
}

#[test]
fn a_listed_sandbox_is_rebuilt_from_its_namespaces() {
    let s = PodSandboxStatus {
        id: "runtime-sandbox".into(),
        labels: HashMap::from([
            ("io.kubernetes.pod.uid".into(), "u9".into()),
            (convert::MINIK_POD_UID.into(), "u9".into()),
        ]),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Node as i32,
                    target_id: String::new(),
                }),
            }),
        }),
        ..Default::default()
    };
    let c = status::sandbox_config(&s, Some("h".into()));
    assert_eq!(c.id, "u9");
    assert_eq!(c.hostname, "h");
    let node = nix::unistd::gethostname().expect("hostname");
    let c = status::sandbox_config(&s, None);
    assert_eq!(c.hostname, node.to_string_lossy(), "the node's");
    assert!(c.host_network && c.host_ipc && !c.host_pid);
    assert_eq!(c.labels["io.kubernetes.pod.uid"], "u9");
    assert!(
        !c.labels.contains_key(convert::MINIK_POD_UID),
        "minik's own"
    );
}

#[test]
fn images_match_by_id_tag_digest_or_normalized_reference() {
    let list = [
        Image {
            id: "sha256:aaa".into(),
            repo_tags: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec!["docker.io/library/busybox@sha256:d1".into()],
            size: 1,
        },
        Image {
            id: "sha256:bbb".into(),
            repo_tags: vec!["registry.local:5000/app:v1".into()],
            repo_digests: Vec::new(),
            size: 2,
        },
    ];
    let id = |r: &str| images::find(&list, r).map(|i| i.id.as_str());
    assert_eq!(id("sha256:aaa"), Some("sha256:aaa"));
    assert_eq!(id("aaa"), Some("sha256:aaa"));
    assert_eq!(id("busybox"), Some("sha256:aaa"));
    assert_eq!(id("busybox:latest"), Some("sha256:aaa"));
    assert_eq!(id("docker.io/library/busybox:latest"), Some("sha256:aaa"));
    assert_eq!(
        id("docker.io/library/busybox@sha256:d1"),
        Some("sha256:aaa")
    );
    assert_eq!(id("registry.local:5000/app:v1"), Some("sha256:bbb"));
    assert_eq!(id("busybox:1.36"), None);
    assert_eq!(id("app:v1"), None);
    assert_eq!(id(""), None);
}

#[test]
fn verbose_info_gives_the_netns_hostname_pid_and_image_config() {
    let sandbox = r#"{"pid":42,"config":{"metadata":{"name":"p"},"hostname":"web-0"},
        "runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},
        {"type":"network","path":"/var/run/netns/cni-1234"}]}}}"#;
    let s = info::sandbox(&HashMap::from([("info".into(), sandbox.into())]));
    assert_eq!(s.netns, Some(PathBuf::from("/var/run/netns/cni-1234")));
    assert_eq!(s.hostname.as_deref(), Some("web-0"));
    let host = r#"{"runtimeSpec":{"linux":{"namespaces":[{"type":"mount"}]}}}"#;
    let s = info::sandbox(&HashMap::from([("info".into(), host.into())]));
    assert_eq!(s, info::SandboxInfo::default());
    assert_eq!(info::sandbox(&HashMap::new()), info::SandboxInfo::default());
    let garbage = HashMap::from([("info".into(), "not json".into())]);
    assert_eq!(info::sandbox(&garbage), info::SandboxInfo::default());

    let container = HashMap::from([("info".into(), r#"{"pid":4242,"sandboxID":"s"}"#.into())]);
    assert_eq!(info::container_pid(&container), Some(4242));
    assert_eq!(info::container_pid(&HashMap::new()), None);

    let image = r#"{"chainID":"sha256:c","imageSpec":{"architecture":"amd64","config":{
        "User":"1000:1000","Env":["PATH=/bin"],"Entrypoint":["/init"],"Cmd":["serve"],
        "WorkingDir":"/app"}}}"#;
    let c = info::image_config(&HashMap::from([("info".into(), image.into())]));
    assert_eq!(c.entrypoint, ["/init"]);
    assert_eq!(c.cmd, ["serve"]);
    assert_eq!(c.env, ["PATH=/bin"]);
    assert_eq!(c.working_dir.as_deref(), Some("/app"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    let empty = r#"{"imageSpec":{"config":{"Cmd":["sh"],"WorkingDir":""}}}"#;
    let c = info::image_config(&HashMap::from([("info".into(), empty.into())]));
    assert_eq!((c.cmd.len(), c.working_dir, c.user), (1, None, None));
    assert_eq!(info::image_config(&HashMap::new()), Default::default());
}

#[test]
fn exec_helpers_round_up_prefix_env_and_cap_output() {
    assert_eq!(
        ceil_secs(Duration::from_millis(1500)),
        Duration::from_secs(2)
    );
    assert_eq!(ceil_secs(Duration::from_secs(3)), Duration::from_secs(3));
    assert_eq!(ceil_secs(Duration::ZERO), Duration::ZERO);
    let argv = ["cat".to_string(), "/f".to_string()];
    assert_eq!(exec_argv(&argv, &[]), argv);
    assert_eq!(
        exec_argv(&argv, &["A=1".to_string()]),
        ["env", "A=1", "cat", "/f"]
    );
    assert_eq!(exec_output(b"out\n".to_vec(), b"err\n"), b"out\nerr\n");
    let big = exec_output(vec![b'x'; 20_000], b"tail");
    assert_eq!(big.len(), minik_runtime::container::MAX_OUTPUT);
}

#[test]
fn the_runtime_config_names_the_sandbox_image() {
    let config =
        r#"{"containerd":{"snapshotter":"overlayfs"},"sandboxImage":"registry.k8s.io/pause:3.6"}"#;
    let info = HashMap::from([("config".to_string(), config.to_string())]);
    assert_eq!(
        info::sandbox_image(&info).as_deref(),
        Some("registry.k8s.io/pause:3.6")
    );
    assert_eq!(info::sandbox_image(&HashMap::new()), None);
    let none = HashMap::from([("config".to_string(), "{}".to_string())]);
    assert_eq!(info::sandbox_image(&none), None);
}

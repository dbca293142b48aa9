//! The CRI backend's side of kubectl port-forward, debug and exec against a real
//! containerd with a pod network (tests/src/containerd.rs, tests/src/cni.rs; as root):
//! port-forward connects inside the sandbox's own network namespace (its path from the
//! sandbox's verbose status), a container with `target_pid_ns` joins its target's pid
//! namespace (CRI NamespaceMode TARGET), and exec and attach are given containerd's own
//! streaming server's URL.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minik_kubelet::backend::Backend;
use minik_kubelet::backend::cri::{Cri, CriOptions};
use minik_runtime::{ContainerConfig, ContainerState, SandboxConfig};
use minik_tests::containerd::{BUSYBOX_IMAGE, Containerd};
use minik_tests::node::cri_log_lines;
use tokio::io::AsyncReadExt;

fn sandbox_config() -> SandboxConfig {
    let labels = [
        ("io.kubernetes.pod.name", "debug"),
        ("io.kubernetes.pod.namespace", "default"),
        ("io.kubernetes.pod.uid", "uid-debug"),
    ];
    SandboxConfig {
        id: "uid-debug".into(),
        hostname: "debug".into(),
        host_network: false,
        host_ipc: false,
        host_pid: false,
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        port_mappings: Vec::new(),
    }
}

fn container(c: &Containerd, cri: &Cri, (seed, name): (u8, &str), script: &str) -> ContainerConfig {
    let image = cri.image(BUSYBOX_IMAGE).expect("busybox is in the cache");
    let labels: BTreeMap<String, String> = [
        ("io.kubernetes.pod.uid", "uid-debug"),
        ("io.kubernetes.container.name", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    ContainerConfig {
        id: format!("{seed:02x}").repeat(32),
        sandbox_id: "uid-debug".into(),
        name: name.into(),
        image_id: image.id,
        image_ref: "busybox".into(),
        layers: Vec::new(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into()],
        working_dir: "/".into(),
        mounts: Vec::new(),
        resources: Default::default(),
        security: Default::default(),
        tty: false,
        stdin: false,
        log_path: c
            .log_dir()
            .join("default_debug_uid-debug")
            .join(name)
            .join("0.log"),
        attempt: 0,
        labels,
        target_pid_ns: None,
    }
}

async fn run(c: &Containerd, cri: &Cri, config: ContainerConfig) {
    let started = cri
        .start_container(config)
        .await
        .unwrap_or_else(|e| panic!("start_container: {e}; containerd log:\n{}", c.log()));
    assert!(
        matches!(started.state, ContainerState::Running { .. }),
        "{:?}",
        started.state
    );
}

async fn wait_log(config: &ContainerConfig, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&config.log_path).unwrap_or_default();
        if cri_log_lines(&text).iter().any(|l| l == line) {
            return;
        }
        assert!(Instant::now() < deadline, "no line {line:?}: {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn port_forward_and_target_pid_namespaces_through_containerd() {
    let c = Containerd::start().with_network();
    c.import(&c.image("busybox.oci.tar"));
    let options = CriOptions {
        log_root: c.log_dir(),
        cgroup_root: c.cgroup_parent().to_string(),
    };
    let cri: Arc<Cri> = Cri::connect_with(&c.endpoint(), options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}; containerd log:\n{}", c.log()));
    let sandbox = cri
        .create_sandbox(&sandbox_config())
        .await
        .unwrap_or_else(|e| panic!("create_sandbox: {e}; containerd log:\n{}", c.log()));
    assert!(sandbox.netns.is_some(), "{sandbox:?}");

    let target = container(&c, &cri, (1, "app"), "exec sleep 3600");
    let target_id = target.id.clone();
    run(&c, &cri, target).await;
    let debug = ContainerConfig {
        target_pid_ns: Some(target_id.clone()),
        ..container(&c, &cri, (2, "debugger"), "ps -o args")
    };
    run(&c, &cri, debug.clone()).await;
    wait_log(&debug, "sleep 3600").await;

    let listener = container(&c, &cri, (3, "listener"), "echo pong | nc -l -p 8080");
    run(&c, &cri, listener).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut conn = loop {
        match cri.port_forward(&sandbox.config.id, 8080).await {
            Ok(conn) => break conn,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut got = [0u8; 5];
    conn.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong\n");
    let refused = cri.port_forward(&sandbox.config.id, 8081).await.err();
    let message = refused.map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("connection refused"), "{message}");

    // Exec and attach (in the running app container) are served by containerd's own
    // streaming server: its URL.
    let opts = minik_streaming::CommandOptions {
        stdout: true,
        command: vec!["true".to_string()],
        ..Default::default()
    };
    for attach in [false, true] {
        let url = cri
            .stream_url(&target_id, &opts, attach)
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    }
}

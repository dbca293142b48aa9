//! The kubelet's CRI backend (`minik_kubelet::backend::cri::Cri`) against a real containerd
//! (Debian's containerd 1.6 with runc; tests/src/containerd.rs starts a private one per
//! test, as root): host-network sandboxes named by pod uid, containers named by the
//! kubelet's ids that run, log in CRI format, exec, stop, exit with a code, fail to start,
//! and are removed; images found by reference and id, their config, pulls from a local
//! registry; and a second `Cri` (a minik restart) that finds what the first one started.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minik_kubelet::backend::Backend;
use minik_kubelet::backend::cri::{Cri, CriOptions};
use minik_runtime::{Container, ContainerConfig, ContainerState, SandboxConfig};
use minik_tests::containerd::{BUSYBOX_IMAGE, Containerd, PAUSE_IMAGE};
use minik_tests::node::cri_log_lines;
use minik_tests::registry::Registry;

const NAMESPACE: &str = "default";

async fn connect(c: &Containerd) -> Arc<Cri> {
    let options = CriOptions {
        log_root: c.log_dir(),
        cgroup_root: c.cgroup_parent().to_string(),
    };
    Cri::connect_with(&c.endpoint(), options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}; containerd log:\n{}", c.log()))
}

/// A containerd with busybox imported and a `Cri` connected to it.
async fn setup() -> (Containerd, Arc<Cri>) {
    let c = Containerd::start();
    c.import(&c.image("busybox.oci.tar"));
    let cri = connect(&c).await;
    (c, cri)
}

fn sandbox_config(pod: &str) -> SandboxConfig {
    let uid = format!("uid-{pod}");
    let labels = [
        ("io.kubernetes.pod.name", pod.to_string()),
        ("io.kubernetes.pod.namespace", NAMESPACE.to_string()),
        ("io.kubernetes.pod.uid", uid.clone()),
    ];
    SandboxConfig {
        id: uid,
        hostname: node_hostname(),
        host_network: true,
        host_ipc: false,
        host_pid: false,
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        port_mappings: Vec::new(),
    }
}

/// The node's hostname: a host-network pod's, as the kubelet gives it.
fn node_hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    name.trim().to_string()
}

/// A 64-hex container id made of `seed`.
fn container_id(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

fn log_path(c: &Containerd, sandbox: &SandboxConfig, name: &str) -> PathBuf {
    let pod = &sandbox.labels["io.kubernetes.pod.name"];
    c.log_dir()
        .join(format!("{NAMESPACE}_{pod}_{}", sandbox.id))
        .join(name)
        .join("0.log")
}

fn container_config(
    c: &Containerd,
    cri: &Cri,
    sandbox: &SandboxConfig,
    (seed, name): (u8, &str),
    argv: &[&str],
) -> ContainerConfig {
    let image = cri.image(BUSYBOX_IMAGE).expect("busybox is in the cache");
    let labels: BTreeMap<String, String> = [
        ("io.kubernetes.pod.uid", sandbox.id.clone()),
        ("io.kubernetes.container.name", name.to_string()),
        ("minik.io/image-ref", "busybox".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ContainerConfig {
        id: container_id(seed),
        sandbox_id: sandbox.id.clone(),
        name: name.to_string(),
        image_id: image.id,
        image_ref: "busybox".to_string(),
        layers: Vec::new(),
        args: argv.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin".to_string(), "GREETING=hello".to_string()],
        working_dir: "/".to_string(),
        mounts: Vec::new(),
        resources: Default::default(),
        security: Default::default(),
        tty: false,
        stdin: false,
        log_path: log_path(c, sandbox, name),
        attempt: 0,
        labels,
        target_pid_ns: None,
    }
}

/// Wait (at most 30 s) until `check` holds for container `id` in the cache.
async fn wait_for(
    cri: &Cri,
    id: &str,
    what: &str,
    check: impl Fn(&Container) -> bool,
) -> Container {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(c) = cri.container(id).filter(|c| check(c)) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} is not {what}: {:?}",
            cri.container(id)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn exited(c: &Container) -> Option<(i32, &str)> {
    match &c.state {
        ContainerState::Exited {
            exit_code, reason, ..
        } => Some((*exit_code, reason.as_str())),
        _ => None,
    }
}

async fn wait_log(path: &PathBuf, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if cri_log_lines(&text).iter().any(|l| l == line) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has no line {line:?}: {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn containers_run_exec_stop_exit_and_survive_a_restart() {
    let (c, cri) = setup().await;
    let sandbox = sandbox_config("web");
    let created = cri
        .create_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("create_sandbox: {e}; containerd log:\n{}", c.log()));
    assert_eq!(created.config, sandbox);
    assert_eq!(created.netns, None, "host network");
    assert_eq!(cri.sandbox(&sandbox.id), Some(created.clone()));
    assert_eq!(cri.sandboxes(), std::slice::from_ref(&created));
    assert_eq!(
        cri.create_sandbox(&sandbox).await.expect("again"),
        created,
        "creating it again returns it"
    );

    let argv = ["sh", "-c", "echo hi; echo $GREETING; sleep 3600"];
    let config = container_config(&c, &cri, &sandbox, (1, "main"), &argv);
    let id = config.id.clone();
    let started = cri
        .start_container(config.clone())
        .await
        .unwrap_or_else(|e| panic!("start_container: {e}; containerd log:\n{}", c.log()));
    assert!(
        matches!(started.state, ContainerState::Running { pid, .. } if pid > 0),
        "{:?}",
        started.state
    );
    assert_eq!(started.config, config);
    let listed = cri.containers();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].config.id, id);
    assert!(matches!(listed[0].state, ContainerState::Running { .. }));
    let text = wait_log(&config.log_path, "hi").await;
    assert!(text.contains(" stdout F hi\n"), "{text}");
    wait_log(&config.log_path, "hello").await;

    let echo = |s: &str| vec!["echo".to_string(), s.to_string()];
    let r = cri
        .exec(&id, &echo("x"), &[], Duration::from_secs(10))
        .await
        .expect("exec");
    assert_eq!((r.exit_code, r.output.as_slice()), (0, b"x\n".as_slice()));
    let argv = ["sh", "-c", "echo $FOO; echo err >&2; exit 4"].map(String::from);
    let r = cri
        .exec(
            &id,
            &argv,
            &["FOO=bar".to_string()],
            Duration::from_secs(10),
        )
        .await
        .expect("exec with env");
    assert_eq!(
        (r.exit_code, r.output.as_slice()),
        (4, b"bar\nerr\n".as_slice())
    );

    cri.refresh_now().await.expect("relist");
    let stats = cri.stats(&id).expect("a running container's stats");
    assert!(stats.memory_working_set_bytes > 0, "{stats:?}");

    let sleep = ["sleep", "30"].map(String::from);
    let err = cri
        .exec(&id, &sleep, &[], Duration::from_secs(1))
        .await
        .expect_err("past its timeout");
    assert!(matches!(err, minik_runtime::Error::Timeout(_)), "{err}");
    assert_eq!(cri.sandbox_ready(&sandbox.id), Some(true));

    // A restart of minik: a new Cri finds the running container by the kubelet's ids.
    let again = connect(&c).await;
    let found = again.container(&id).expect("found after a restart");
    assert_eq!(found.config.sandbox_id, sandbox.id);
    assert_eq!(found.config.name, "main");
    assert_eq!(found.config.image_id, config.image_id);
    assert_eq!(found.config.image_ref, "busybox");
    assert_eq!(found.config.log_path, config.log_path);
    assert!(
        matches!(found.state, ContainerState::Running { .. }),
        "{found:?}"
    );
    let s = again.sandbox(&sandbox.id).expect("sandbox after a restart");
    assert_eq!(
        (s.config.id.as_str(), s.config.host_network),
        (sandbox.id.as_str(), true)
    );
    assert_eq!(s.config.hostname, node_hostname());
    assert_eq!(s.config.labels, sandbox.labels);
    let r = again
        .exec(&id, &echo("y"), &[], Duration::from_secs(10))
        .await
        .expect("exec after a restart");
    assert_eq!(r.output, b"y\n");
    drop(again);

    // busybox sh as PID 1 ignores SIGTERM: killed after the grace period.
    cri.stop_container(&id, Duration::from_secs(1))
        .await
        .expect("stop");
    let stopped = cri.container(&id).expect("still there");
    assert_eq!(exited(&stopped), Some((137, "Error")), "{stopped:?}");
    cri.stop_container(&id, Duration::from_secs(1))
        .await
        .expect("stopping again");

    let exits = container_config(&c, &cri, &sandbox, (2, "exits"), &["sh", "-c", "exit 3"]);
    let exits_id = exits.id.clone();
    cri.start_container(exits).await.expect("start exits");
    let done = wait_for(&cri, &exits_id, "exited", |c| exited(c).is_some()).await;
    assert_eq!(exited(&done), Some((3, "Error")), "{done:?}");
    assert!(
        matches!(
            done.state,
            ContainerState::Exited {
                started: Some(_),
                ..
            }
        ),
        "{done:?}"
    );

    let mut privileged = container_config(
        &c,
        &cri,
        &sandbox,
        (4, "privileged"),
        &["sh", "-c", "test -w /sys/fs/cgroup || test -w /proc/sys"],
    );
    privileged.security.privileged = true;
    let privileged_id = privileged.id.clone();
    cri.start_container(privileged)
        .await
        .unwrap_or_else(|e| panic!("a privileged container: {e}"));
    let done = wait_for(&cri, &privileged_id, "exited", |c| exited(c).is_some()).await;
    assert_eq!(exited(&done), Some((0, "Completed")), "{done:?}");

    let broken = container_config(&c, &cri, &sandbox, (3, "broken"), &["/no/such/binary"]);
    let broken_id = broken.id.clone();
    let failed = cri.start_container(broken).await.expect("created");
    let ContainerState::Exited {
        reason, message, ..
    } = &failed.state
    else {
        panic!("a container that cannot start is Exited: {failed:?}");
    };
    assert_eq!(reason, "StartError");
    assert!(
        message.as_deref().is_some_and(|m| !m.is_empty()),
        "{failed:?}"
    );

    let ids: Vec<String> = cri.containers().into_iter().map(|c| c.config.id).collect();
    let all = [id.clone(), exits_id, privileged_id, broken_id];
    assert_eq!(ids, all, "oldest first");
    for i in &all {
        cri.remove_container(i).await.expect("remove");
        assert!(cri.container(i).is_none());
    }
    assert!(cri.containers().is_empty());
    assert!(config.log_path.exists(), "the log stays");
    assert!(
        cri.remove_container(&id).await.is_err(),
        "an unknown container is an error"
    );

    cri.remove_sandbox(&sandbox.id)
        .await
        .expect("remove sandbox");
    assert!(cri.sandbox(&sandbox.id).is_none());
    assert!(cri.sandboxes().is_empty());
    cri.remove_sandbox(&sandbox.id)
        .await
        .expect("removing again");
    let left = cri.client().list_pod_sandbox(None).await.expect("list");
    assert!(left.is_empty(), "{left:?}");
    // Nothing comes back with the next relists.
    cri.refresh_now().await.expect("relist");
    assert!(cri.containers().is_empty() && cri.sandboxes().is_empty());
}

#[tokio::test]
async fn images_are_found_configured_pulled_and_removed() {
    let (c, cri) = setup().await;
    let busybox = cri.image(BUSYBOX_IMAGE).expect("busybox by its reference");
    assert!(busybox.id.starts_with("sha256:"), "{busybox:?}");
    assert_eq!(cri.image("busybox"), Some(busybox.clone()), "normalized");
    assert_eq!(cri.image(&busybox.id), Some(busybox.clone()), "by id");
    assert!(cri.images().expect("images").contains(&busybox));
    assert!(cri.image("docker.io/library/nothing:latest").is_none());
    let config = cri.image_config(&busybox.id).await.expect("image config");
    assert_eq!(config.cmd, ["sh"]);
    assert!(
        config.env.iter().any(|e| e.starts_with("PATH=")),
        "{config:?}"
    );
    assert!(cri.layers(&busybox.id).expect("layers").is_empty());
    let pause = cri.image(PAUSE_IMAGE).expect("the sandbox image");
    assert!(cri.pinned_images().contains(&pause.id), "image GC keeps it");
    assert!(!cri.pinned_images().contains(&busybox.id));
    assert!(cri.image_root().is_absolute());

    let registry = Registry::start();
    registry.push(
        &c.image("busybox.oci.tar").to_string_lossy(),
        "minik/busybox:pulled",
    );
    let reference = format!("{}/minik/busybox:pulled", registry.host());
    let pulled = cri
        .pull(&reference, None)
        .await
        .unwrap_or_else(|e| panic!("pull: {e}; containerd log:\n{}", c.log()));
    assert!(pulled.repo_tags.contains(&reference), "{pulled:?}");
    assert_eq!(
        cri.image(&reference),
        Some(pulled.clone()),
        "cached at once"
    );
    let missing = format!("{}/minik/missing:latest", registry.host());
    let err = cri.pull(&missing, None).await.expect_err("no such image");
    assert!(matches!(err, minik_runtime::Error::Pull { .. }), "{err}");

    cri.remove_image(&busybox.id).await.expect("remove");
    assert!(
        cri.image(BUSYBOX_IMAGE).is_none(),
        "gone from the cache at once"
    );
    cri.remove_image(&busybox.id).await.expect("removing again");
    cri.refresh_now().await.expect("relist");
    assert!(cri.image(BUSYBOX_IMAGE).is_none());
}

#[tokio::test]
async fn a_stopped_sandbox_is_replaced_by_a_new_attempt() {
    let (c, cri) = setup().await;
    let sandbox = sandbox_config("again");
    cri.create_sandbox(&sandbox)
        .await
        .unwrap_or_else(|e| panic!("create_sandbox: {e}; containerd log:\n{}", c.log()));
    let listed = cri.client().list_pod_sandbox(None).await.expect("list");
    assert_eq!(listed.len(), 1);
    let first = listed[0].id.clone();
    // The runtime stops it behind the kubelet's back (as when its pause process dies).
    cri.client().stop_pod_sandbox(&first).await.expect("stop");
    cri.refresh_now().await.expect("relist");
    assert_eq!(cri.sandbox_ready(&sandbox.id), Some(false));
    assert!(
        cri.sandbox(&sandbox.id).is_some(),
        "still reported until removed"
    );

    let replaced = cri.create_sandbox(&sandbox).await.expect("replace");
    assert_eq!(replaced.config, sandbox);
    assert_eq!(cri.sandbox_ready(&sandbox.id), Some(true));
    let listed = cri.client().list_pod_sandbox(None).await.expect("list");
    assert_eq!(listed.len(), 1, "the stopped one is removed: {listed:?}");
    assert_ne!(listed[0].id, first);
    assert_eq!(listed[0].metadata.as_ref().map(|m| m.attempt), Some(1));
    cri.remove_sandbox(&sandbox.id).await.expect("remove");
    assert_eq!(cri.sandbox_ready(&sandbox.id), None);
}

//! The embedded container runtime for real (root): sandboxes with their own namespaces,
//! containers run by `minik shim` processes through libcontainer, CRI logs, exit codes,
//! OOM kills, stop with grace, and finding running containers again after a restart.

mod env;
mod exec;
mod io;
mod streaming;

use std::time::Duration;

use minik_runtime::{ContainerConfig, ContainerState};

use env::{Env, open};

#[tokio::test]
async fn output_goes_to_the_cri_log_and_exit_zero_is_completed() {
    let env = Env::new();
    let pod = env.sandbox("logs", false);
    let config = env.config(&pod, "echo to-stdout; echo to-stderr >&2");
    let id = config.id.clone();
    env.run(config).await;
    assert_eq!(env.exited(&id).await, (0, "Completed".into(), None));
    let log = env.log(&id);
    assert!(
        log.contains(&("stdout".into(), "F".into(), "to-stdout".into())),
        "{log:?}"
    );
    assert!(
        log.contains(&("stderr".into(), "F".into(), "to-stderr".into())),
        "{log:?}"
    );
    assert!(
        env.runtime.stats(&id).is_none(),
        "an exited container has no cgroup left"
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_an_error() {
    let env = Env::new();
    let pod = env.sandbox("exit", false);
    let config = env.config(&pod, "exit 3");
    let id = config.id.clone();
    env.run(config).await;
    assert_eq!(env.exited(&id).await, (3, "Error".into(), None));
}

#[tokio::test]
async fn exceeding_the_memory_limit_is_oom_killed() {
    let env = Env::new();
    let pod = env.sandbox("oom", false);
    let mut config = env.config(&pod, "");
    config.args = ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]
        .map(String::from)
        .to_vec();
    config.resources.memory_limit = Some(16 << 20);
    let id = config.id.clone();
    env.run(config).await;
    assert_eq!(env.exited(&id).await, (137, "OOMKilled".into(), None));
}

#[tokio::test]
async fn stop_sends_sigterm_then_sigkill_after_the_grace_period() {
    let env = Env::new();
    let pod = env.sandbox("stop", false);
    let stubborn = env.config(&pod, "trap '' TERM; echo ready; sleep 1000");
    let stubborn_id = stubborn.id.clone();
    env.run(stubborn).await;
    env.wait_for_output(&stubborn_id, "ready").await;
    env.runtime
        .stop_container(&stubborn_id, Duration::from_secs(1))
        .await
        .unwrap();
    let (code, reason, _) = env.exited(&stubborn_id).await;
    assert_eq!((code, reason.as_str()), (137, "Error"));

    // A process that is not its pid namespace's init dies of the SIGTERM itself (an init
    // with no handler, like a plain `sleep` in its own pid namespace, ignores it).
    let shared = env.sandbox("stop-host-pid", true);
    let plain = env.config(&shared, "");
    let plain_id = plain.id.clone();
    let plain = ContainerConfig {
        args: vec!["sleep".into(), "1000".into()],
        ..plain
    };
    env.run(plain).await;
    env.runtime
        .stop_container(&plain_id, Duration::from_secs(30))
        .await
        .unwrap();
    let (code, reason, _) = env.exited(&plain_id).await;
    assert_eq!((code, reason.as_str()), (143, "Error"));

    // Stopping again is a no-op; removing clears the container.
    env.runtime
        .stop_container(&plain_id, Duration::from_secs(1))
        .await
        .unwrap();
    env.runtime.remove_container(&plain_id).unwrap();
    assert!(env.runtime.container(&plain_id).is_none());
}

#[tokio::test]
async fn containers_of_a_sandbox_share_its_hostname_and_network_but_not_pids() {
    let env = Env::new();
    let pod = env.sandbox("pod-hostname", false);
    // Both stay up until compared: a freed namespace's inode number may be reused.
    let script = "hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/pid; \
        cat /sys/class/net/lo/flags; cat /etc/hostname; echo done; exec sleep 1000";
    let mut ids = Vec::new();
    for _ in 0..2 {
        let config = env.config(&pod, script);
        ids.push(config.id.clone());
        env.run(config).await;
    }
    let mut outputs = Vec::new();
    for id in &ids {
        env.wait_for_output(id, "done").await;
        outputs.push(env.stdout(id));
    }
    let (a, b) = (&outputs[0], &outputs[1]);
    assert_eq!(a.len(), 6, "{a:?}");
    assert_eq!(a[0], "pod-hostname");
    assert_eq!(b[0], "pod-hostname");
    assert_eq!(a[1], b[1], "same network namespace");
    let host_net = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(
        a[1],
        host_net.to_string_lossy(),
        "not the host's network namespace"
    );
    assert_ne!(a[2], b[2], "pid namespaces differ");
    assert_eq!(a[3], "0x9", "lo is up (IFF_UP | IFF_LOOPBACK)");
    assert_eq!(a[4], "pod-hostname");
    for id in &ids {
        env.runtime
            .stop_container(id, Duration::ZERO)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_new_runtime_finds_running_containers_and_stops_them() {
    let env = Env::new();
    let pod = env.sandbox("restart", false);
    let config = env.config(
        &pod,
        "trap 'exit 0' TERM; echo ready; while true; do sleep 1; done",
    );
    let id = config.id.clone();
    let started = env.run(config).await;
    let ContainerState::Running { pid, .. } = started.state else {
        panic!("{:?}", started.state)
    };
    // The trap must be set before the SIGTERM comes (an init without a handler ignores it).
    env.wait_for_output(&id, "ready").await;
    // The container's parent is its shim, which is not a child of ours (nor in our session):
    // it does not depend on this process.
    let shim = parent_of(pid);
    assert_ne!(parent_of(shim), std::process::id() as i32);

    // Another runtime over the same directories, as after a minik restart.
    let again = open(env.dir.path());
    let found = again.containers();
    assert_eq!(found.len(), 1);
    assert!(matches!(found[0].state, ContainerState::Running { pid: p, .. } if p == pid));
    assert!(again.sandbox(&pod).is_some());
    again
        .stop_container(&id, Duration::from_secs(30))
        .await
        .unwrap();
    match again.container(&id).unwrap().state {
        ContainerState::Exited {
            exit_code, reason, ..
        } => assert_eq!((exit_code, reason.as_str()), (0, "Completed")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_missing_executable_is_a_start_error() {
    let env = Env::new();
    let pod = env.sandbox("bad", false);
    let mut config = env.config(&pod, "");
    config.args = vec!["/bin/no-such-program".into()];
    let container = env.runtime.start_container(config).await.unwrap();
    match container.state {
        ContainerState::Exited {
            exit_code,
            reason,
            message,
            ..
        } => {
            assert_eq!((exit_code, reason.as_str()), (128, "StartError"));
            let message = message.unwrap_or_default();
            assert!(message.contains("no-such-program"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        env.runtime.remove_sandbox(&pod).is_err(),
        "its container is still there"
    );
}

#[tokio::test]
async fn stats_of_a_running_container_show_memory_in_use() {
    let env = Env::new();
    let pod = env.sandbox("stats", false);
    let config = env.config(&pod, "cat /bin/busybox > /tmp/x; sleep 1000");
    let id = config.id.clone();
    env.run(config).await;
    let stats = env
        .runtime
        .stats(&id)
        .expect("a running container has stats");
    assert!(stats.memory_working_set_bytes > 0, "{stats:?}");
    env.runtime
        .stop_container(&id, Duration::ZERO)
        .await
        .unwrap();
    env.assert_exit_code(&id, 137).await;
}

#[tokio::test]
async fn a_host_network_sandbox_shares_the_hosts_network() {
    let env = Env::new();
    let config = minik_runtime::SandboxConfig {
        id: env::unique("hostnet"),
        hostname: "ignored".into(),
        host_network: true,
        host_ipc: true,
        host_pid: false,
        labels: Default::default(),
        port_mappings: Vec::new(),
    };
    let sandbox = env.runtime.create_sandbox(&config).unwrap();
    assert_eq!(sandbox.netns, None);
    assert_eq!(
        env.runtime.create_sandbox(&config).unwrap(),
        sandbox,
        "idempotent"
    );
    let container = env.config(
        &config.id,
        "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc",
    );
    let id = container.id.clone();
    env.run(container).await;
    env.assert_exit_code(&id, 0).await;
    let host = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
    let want = [host("net"), host("ipc")].map(|p| p.to_string_lossy().into_owned());
    assert_eq!(env.stdout(&id), want);
    env.runtime.remove_container(&id).unwrap();
    env.runtime.remove_sandbox(&config.id).unwrap();
    assert!(env.runtime.sandbox(&config.id).is_none());
}

#[tokio::test]
async fn sandboxes_whose_namespaces_vanished_are_set_up_again() {
    let env = Env::new();
    let pod = env.sandbox("rebooted", false);
    // What a host reboot leaves: the records, no mounts.
    let held = env.dir.path().join("run/sandboxes").join(&pod);
    for name in ["net", "uts", "ipc", "shm"] {
        let umount = std::process::Command::new("umount")
            .arg(held.join(name))
            .status();
        assert!(umount.unwrap().success());
    }
    let again = open(env.dir.path());
    let config = env.config(&pod, "hostname; cat /sys/class/net/lo/flags");
    let id = config.id.clone();
    again.start_container(config).await.unwrap();
    env.assert_exit_code(&id, 0).await;
    assert_eq!(env.stdout(&id), ["rebooted", "0x9"]);
}

fn parent_of(pid: i32) -> i32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("PPid:")).unwrap();
    line["PPid:".len()..].trim().parse().unwrap()
}

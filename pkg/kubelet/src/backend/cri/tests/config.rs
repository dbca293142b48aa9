//! The kubelet's configs as CRI's: sandbox and container configs, log paths.

use std::path::Path;

use minik_cri::proto::{self, NamespaceMode};
use minik_runtime::{ContainerConfig, SandboxConfig};

use super::{container, layout, sandbox};
use crate::backend::cri::convert;

#[test]
fn a_sandbox_config_names_the_pod_and_its_namespaces() {
    let c = convert::sandbox_config(&sandbox(false), &layout(), 1);
    let m = c.metadata.expect("metadata");
    assert_eq!((m.name.as_str(), m.namespace.as_str()), ("web", "shop"));
    assert_eq!((m.uid.as_str(), m.attempt), ("u1", 1));
    assert_eq!(c.hostname, "web");
    assert_eq!(c.log_directory, "/var/log/pods/shop_web_u1");
    assert_eq!(c.labels["io.kubernetes.pod.uid"], "u1");
    assert_eq!(c.labels[convert::MINIK_POD_UID], "u1");
    let port = &c.port_mappings[0];
    assert_eq!(port.protocol, minik_cri::proto::Protocol::Udp as i32);
    assert_eq!((port.container_port, port.host_port), (53, 5353));
    let linux = c.linux.expect("linux");
    assert_eq!(linux.cgroup_parent, "/kubepods/podu1");
    let ns = linux.security_context.and_then(|s| s.namespace_options);
    let ns = ns.expect("namespace options");
    assert_eq!(ns.network, NamespaceMode::Pod as i32);
    assert_eq!(ns.pid, NamespaceMode::Node as i32, "host pid");
    assert_eq!(ns.ipc, NamespaceMode::Pod as i32);
    let c = convert::sandbox_config(&sandbox(true), &layout(), 0);
    assert_eq!(c.hostname, "", "the node's hostname");
    let host = convert::namespace_options(&SandboxConfig {
        host_pid: false,
        host_ipc: true,
        ..sandbox(true)
    });
    assert_eq!(host.network, NamespaceMode::Node as i32);
    assert_eq!(host.pid, NamespaceMode::Container as i32);
    assert_eq!(host.ipc, NamespaceMode::Node as i32);
}

#[test]
fn a_container_config_carries_everything_the_kubelet_resolved() {
    let c = convert::container_config(&container(), &sandbox(true), &layout());
    let m = c.metadata.clone().expect("metadata");
    assert_eq!((m.name.as_str(), m.attempt), ("app", 2));
    assert_eq!(c.image.map(|i| i.image).as_deref(), Some("sha256:abc"));
    assert_eq!(c.command, ["nginx", "-g"]);
    assert!(c.args.is_empty());
    assert_eq!(c.working_dir, "/srv");
    let envs: Vec<(&str, &str)> = c
        .envs
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(envs, [("A", "1"), ("B", "x=y"), ("C", "")]);
    assert_eq!(c.mounts.len(), 1);
    assert_eq!(c.mounts[0].host_path, "/var/lib/minik/pods/u1/volumes/v");
    assert_eq!(
        (c.mounts[0].container_path.as_str(), c.mounts[0].readonly),
        ("/data", true)
    );
    assert_eq!(c.labels[convert::CONTAINER_ID], "c".repeat(64));
    assert_eq!(c.labels[convert::MINIK_POD_UID], "u1");
    assert_eq!(c.labels["io.kubernetes.pod.uid"], "u1");
    assert_eq!(c.log_path, "app/2.log");
    assert!(c.tty && !c.stdin);
    let linux = c.linux.expect("linux");
    let r = linux.resources.expect("resources");
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.cpu_period),
        (512, 50_000, 100_000)
    );
    assert_eq!(r.memory_limit_in_bytes, 1 << 27);
    let s = linux.security_context.expect("security context");
    let caps = s.capabilities.expect("capabilities");
    assert_eq!(caps.add_capabilities, ["NET_ADMIN"]);
    assert_eq!(caps.drop_capabilities, ["ALL"]);
    assert_eq!(s.run_as_user.map(|v| v.value), Some(1000));
    assert_eq!(s.run_as_group.map(|v| v.value), Some(2000));
    assert_eq!(s.supplemental_groups, [3000]);
    assert!(s.readonly_rootfs && s.no_new_privs && !s.privileged);
    let seccomp = s.seccomp.expect("seccomp");
    assert_eq!(
        seccomp.profile_type,
        proto::security_profile::ProfileType::RuntimeDefault as i32
    );
    let ns = s.namespace_options.expect("namespace options");
    assert_eq!(ns.network, NamespaceMode::Node as i32);
    assert_eq!(ns.pid, NamespaceMode::Node as i32);

    let by_ref = ContainerConfig {
        image_id: String::new(),
        ..container()
    };
    let c = convert::container_config(&by_ref, &sandbox(true), &layout());
    assert_eq!(c.image.map(|i| i.image).as_deref(), Some("nginx"));
}

#[test]
fn log_paths_are_relative_to_the_pod_log_directory() {
    let dir = Path::new("/var/log/pods/ns_p_u");
    let rel = |p: &str| convert::relative_log_path(dir, Path::new(p), "c", 3);
    assert_eq!(rel("/var/log/pods/ns_p_u/c/3.log"), "c/3.log");
    assert_eq!(rel("/elsewhere/c/3.log"), "c/3.log");
    assert_eq!(rel("/var/log/pods/ns_p_u"), "c/3.log");
    assert_eq!(rel("/var/log/pods/ns_p_u/other/0.log"), "other/0.log");
}

#[test]
fn a_privileged_container_is_created_with_a_privileged_sandbox_config() {
    let base = convert::sandbox_config(&sandbox(false), &layout(), 0);
    let privileged = |c: &proto::PodSandboxConfig| {
        c.linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .is_some_and(|s| s.privileged)
    };
    let plain = convert::for_container(base.clone(), &container());
    assert_eq!(plain, base);
    let mut config = container();
    config.security.privileged = true;
    let marked = convert::for_container(base.clone(), &config);
    assert!(privileged(&marked) && !privileged(&base));
    assert_eq!(marked.log_directory, base.log_directory);
}

#[test]
fn a_target_container_lends_its_pid_namespace_unless_the_node_does() {
    let pid = |c: &proto::ContainerConfig| {
        let ns = c
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .expect("namespace options");
        (ns.pid, ns.target_id)
    };
    let pod = SandboxConfig {
        host_pid: false,
        ..sandbox(false)
    };
    let mut own = convert::container_config(&container(), &pod, &layout());
    convert::target_pid_namespace(&mut own, "cri-target");
    assert_eq!(
        pid(&own),
        (NamespaceMode::Target as i32, "cri-target".into())
    );
    // sandbox() shares the node's pid namespace.
    let mut node = convert::container_config(&container(), &sandbox(false), &layout());
    convert::target_pid_namespace(&mut node, "cri-target");
    assert_eq!(pid(&node), (NamespaceMode::Node as i32, String::new()));
}

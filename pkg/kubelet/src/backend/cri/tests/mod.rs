//! Unit tests of the pure parts: configs in CRI terms (config.rs), states, containers,
//! sandboxes and images from what the runtime reports, verbose info and exec helpers
//! (reports.rs), and here the cache's merge with changes made while a relist listed.

mod config;
mod reports;

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use minik_runtime::{
    Container, ContainerConfig, ContainerState, Mount, Resources, Sandbox, SandboxConfig, Security,
};

use super::cache::{Cache, ContainerEntry, Listing, SandboxEntry};
use super::convert::{self, Layout};

pub(super) fn layout() -> Layout {
    Layout {
        log_root: "/var/log/pods".into(),
        cgroup_root: "/kubepods".into(),
    }
}

pub(super) fn sandbox(host_network: bool) -> SandboxConfig {
    let labels = [
        ("io.kubernetes.pod.name", "web"),
        ("io.kubernetes.pod.namespace", "shop"),
        ("io.kubernetes.pod.uid", "u1"),
    ];
    SandboxConfig {
        id: "u1".into(),
        hostname: "web".into(),
        host_network,
        host_ipc: false,
        host_pid: true,
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        port_mappings: vec![minik_runtime::PortMapping {
            protocol: "UDP".into(),
            container_port: 53,
            host_port: 5353,
            host_ip: String::new(),
        }],
    }
}

pub(super) fn container() -> ContainerConfig {
    ContainerConfig {
        id: "c".repeat(64),
        sandbox_id: "u1".into(),
        name: "app".into(),
        image_id: "sha256:abc".into(),
        image_ref: "nginx".into(),
        layers: Vec::new(),
        args: vec!["nginx".into(), "-g".into()],
        env: vec!["A=1".into(), "B=x=y".into(), "C".into()],
        working_dir: "/srv".into(),
        mounts: vec![Mount {
            source: "/var/lib/minik/pods/u1/volumes/v".into(),
            destination: "/data".into(),
            readonly: true,
        }],
        resources: Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(1 << 27),
            pids_limit: None,
        },
        security: Security {
            uid: 1000,
            gid: 2000,
            supplemental_groups: vec![3000],
            privileged: false,
            readonly_rootfs: true,
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["ALL".into()],
            no_new_privileges: true,
            seccomp_default: true,
        },
        tty: true,
        stdin: false,
        log_path: "/var/log/pods/shop_web_u1/app/2.log".into(),
        attempt: 2,
        labels: BTreeMap::from([("io.kubernetes.pod.uid".into(), "u1".into())]),
        target_pid_ns: None,
    }
}

fn entry(id: &str, uid: &str, touched: u64) -> ContainerEntry {
    let mut config = container();
    config.id = id.into();
    config.sandbox_id = uid.into();
    ContainerEntry {
        container: Container {
            config,
            state: ContainerState::Created,
            created: UNIX_EPOCH,
        },
        cri_state: 0,
        touched,
    }
}

#[test]
fn a_relist_keeps_changes_made_while_it_listed() {
    let mut cache = Cache::default();
    cache.put_container("r-old", entry("old", "u1", 0));
    let since = cache.generation();
    // While the relist lists: a container starts and another is removed.
    cache.put_container("r-new", entry("new", "u1", 0));
    cache.remove_container("r-old");
    // The relist saw the old one and not the new one.
    let mut listing = Listing::default();
    listing
        .containers
        .insert("r-old".into(), entry("old", "u1", 0));
    cache.apply(listing, since);
    assert!(cache.container("new").is_some(), "a start is not undone");
    assert!(cache.container("old").is_none(), "a removal is not undone");
    // The next relist is authoritative.
    let since = cache.generation();
    cache.apply(Listing::default(), since);
    assert!(cache.containers.is_empty());

    let sandbox = SandboxEntry {
        sandbox: Sandbox {
            config: sandbox(true),
            netns: None,
            created: UNIX_EPOCH,
            ip: None,
        },
        config: convert::sandbox_config(&sandbox(true), &layout(), 0),
        ready: true,
        touched: 0,
    };
    cache.put_sandbox("s1", sandbox);
    cache.put_container("r1", entry("k1", "u1", 0));
    cache.put_container("r2", entry("k2", "other", 0));
    cache.remove_sandbox("s1", "u1");
    assert!(cache.sandbox("u1").is_none());
    assert!(cache.container("k1").is_none(), "removed with its sandbox");
    assert!(cache.container("k2").is_some());
}

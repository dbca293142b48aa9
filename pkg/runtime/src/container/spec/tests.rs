//! The spec as containerd's CRI plugin would write it.

use std::path::{Path, PathBuf};

use super::*;
use crate::types::{Mount, Resources, Security};

fn config() -> ContainerConfig {
    ContainerConfig {
        id: "c1".into(),
        sandbox_id: "p1".into(),
        name: "app".into(),
        image_id: "sha256:0".into(),
        image_ref: "busybox".into(),
        layers: vec![PathBuf::from("/layers/0")],
        args: vec!["sh".into()],
        env: vec!["A=1".into()],
        working_dir: String::new(),
        mounts: vec![],
        resources: Resources::default(),
        security: Security::default(),
        tty: false,
        stdin: false,
        log_path: "/logs/0.log".into(),
        attempt: 0,
        labels: Default::default(),
        target_pid_ns: None,
    }
}

fn sandbox(host_network: bool) -> SandboxConfig {
    SandboxConfig {
        id: "p1".into(),
        hostname: "pod-a".into(),
        host_network,
        host_ipc: false,
        host_pid: false,
        labels: Default::default(),
        port_mappings: Vec::new(),
    }
}

fn spec_of(config: &ContainerConfig, sandbox: &SandboxConfig) -> Value {
    let dir = SandboxDir {
        dir: PathBuf::from("/run/minik/sandboxes/p1"),
    };
    build(&SpecInput {
        config,
        sandbox,
        sandbox_dir: &dir,
        rootfs: Path::new("/state/c1/rootfs"),
        cgroup: "/kubepods/podp1/c1",
        cgroup_v2: false,
        target_pid: None,
    })
    .unwrap()
}

#[test]
fn a_target_container_lends_its_pid_namespace() {
    let dir = SandboxDir {
        dir: PathBuf::from("/run/minik/sandboxes/p1"),
    };
    let (config, sandbox) = (config(), sandbox(false));
    let spec = build(&SpecInput {
        config: &config,
        sandbox: &sandbox,
        sandbox_dir: &dir,
        rootfs: Path::new("/state/c1/rootfs"),
        cgroup: "/kubepods/podp1/c1",
        cgroup_v2: false,
        target_pid: Some(4321),
    })
    .unwrap();
    let pid: Vec<&Value> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "pid")
        .collect();
    assert_eq!(pid.len(), 1);
    assert_eq!(pid[0]["path"], "/proc/4321/ns/pid");
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn default_container_gets_containerds_defaults() {
    let spec = spec_of(&config(), &sandbox(false));
    let caps = strings(&spec["process"]["capabilities"]["bounding"]);
    assert_eq!(caps.len(), 14);
    assert!(caps.contains(&"CAP_NET_BIND_SERVICE".to_string()));
    assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
    let env = strings(&spec["process"]["env"]);
    assert!(env[0].starts_with("PATH="));
    assert!(env.contains(&"HOSTNAME=pod-a".to_string()));
    assert_eq!(spec["process"]["cwd"], "/");
    assert_eq!(spec["linux"]["maskedPaths"].as_array().unwrap().len(), 12);
    assert_eq!(spec["linux"]["cgroupsPath"], "/kubepods/podp1/c1");
    let namespaces: Vec<(String, Option<String>)> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["type"].as_str().unwrap().to_string(),
                n["path"].as_str().map(str::to_string),
            )
        })
        .collect();
    assert!(namespaces.contains(&("pid".into(), None)));
    assert!(namespaces.contains(&("network".into(), Some("/run/minik/sandboxes/p1/net".into()))));
    assert!(namespaces.contains(&("uts".into(), Some("/run/minik/sandboxes/p1/uts".into()))));
    assert!(namespaces.contains(&("ipc".into(), Some("/run/minik/sandboxes/p1/ipc".into()))));
    let shm = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert_eq!(shm["source"], "/run/minik/sandboxes/p1/shm");
}

#[test]
fn host_network_joins_no_network_or_uts_namespace() {
    let spec = spec_of(&config(), &sandbox(true));
    let types: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(!types.contains(&"network") && !types.contains(&"uts"));
}

#[test]
fn capabilities_add_and_drop_like_containerd() {
    let mut c = config();
    c.security.add_capabilities = vec!["NET_ADMIN".into(), "cap_sys_time".into()];
    c.security.drop_capabilities = vec!["CHOWN".into()];
    let caps = strings(&spec_of(&c, &sandbox(false))["process"]["capabilities"]["effective"]);
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(caps.contains(&"CAP_SYS_TIME".to_string()));
    assert!(!caps.contains(&"CAP_CHOWN".to_string()));

    c.security.add_capabilities = vec!["KILL".into()];
    c.security.drop_capabilities = vec!["ALL".into()];
    let caps = strings(&spec_of(&c, &sandbox(false))["process"]["capabilities"]["effective"]);
    assert_eq!(caps, ["CAP_KILL"]);

    c.security.add_capabilities = vec!["BOGUS".into()];
    c.security.drop_capabilities = vec![];
    let dir = SandboxDir { dir: "/x".into() };
    let err = build(&SpecInput {
        config: &c,
        sandbox: &sandbox(false),
        sandbox_dir: &dir,
        rootfs: Path::new("/r"),
        cgroup: "/k",
        cgroup_v2: true,
        target_pid: None,
    });
    assert!(matches!(err, Err(Error::Invalid(_))));
}

#[test]
fn privileged_gets_everything_unmasked() {
    let mut c = config();
    c.security.privileged = true;
    let spec = spec_of(&c, &sandbox(false));
    assert_eq!(
        spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len(),
        41
    );
    assert!(spec["linux"].get("maskedPaths").is_none());
    assert_eq!(spec["linux"]["resources"]["devices"][0]["allow"], true);
}

#[test]
fn resources_and_user_mounts_are_passed_through() {
    let mut c = config();
    c.resources = Resources {
        cpu_shares: Some(512),
        cpu_quota: Some(50_000),
        cpu_period: Some(100_000),
        memory_limit: Some(16 << 20),
        pids_limit: Some(100),
    };
    c.mounts = vec![Mount {
        source: "/var/lib/x".into(),
        destination: "/etc/hostname".into(),
        readonly: true,
    }];
    let spec = spec_of(&c, &sandbox(false));
    let r = &spec["linux"]["resources"];
    assert_eq!(r["cpu"]["shares"], 512);
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["memory"]["limit"], 16 << 20);
    assert_eq!(r["pids"]["limit"], 100);
    let hostname: Vec<&Value> = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/etc/hostname")
        .collect();
    assert_eq!(hostname.len(), 1, "the user's mount replaces the default");
    assert_eq!(hostname[0]["source"], "/var/lib/x");
    assert!(strings(&hostname[0]["options"]).contains(&"ro".to_string()));
}

#[test]
fn seccomp_and_no_new_privileges_only_when_asked() {
    let mut c = config();
    let spec = spec_of(&c, &sandbox(false));
    assert!(spec["linux"].get("seccomp").is_none());
    assert!(spec["process"].get("noNewPrivileges").is_none());
    c.security.seccomp_default = true;
    c.security.no_new_privileges = true;
    let spec = spec_of(&c, &sandbox(false));
    assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(spec["process"]["noNewPrivileges"], true);
    c.security.privileged = true;
    assert!(
        spec_of(&c, &sandbox(false))["linux"]
            .get("seccomp")
            .is_none()
    );
}

#[test]
fn a_terminal_gets_term_xterm_unless_the_env_sets_term() {
    let mut c = config();
    c.tty = true;
    let env = strings(&spec_of(&c, &sandbox(false))["process"]["env"]);
    assert!(env.contains(&"TERM=xterm".to_string()), "{env:?}");
    c.env.push("TERM=vt100".into());
    let env = strings(&spec_of(&c, &sandbox(false))["process"]["env"]);
    assert!(!env.contains(&"TERM=xterm".to_string()), "{env:?}");
}

//! End-to-end tests of the operations commands: `minik kubectl` (the server's kubeconfig,
//! kubectl's exit code), `minik check-config` (this machine has what minik needs) and
//! `minik stop --all` (refuses while the server runs; after a crashed node, stops its
//! containers, unmounts and removes its network, then finds nothing left to do).

use std::path::Path;
use std::process::{Command, Output};

use minik_tests::minik_bin;
use minik_tests::node::{create, pids_with_cmdline, pod, pod_of, ready_node};
use minik_tests::server::{Server, network_flags, text};
use serde_json::json;

/// `minik ARGS` with the environment changed by `env` (KUBECONFIG and RUST_LOG unset).
fn minik_with(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(minik_bin());
    command
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .env_remove("MINIK_KUBECONFIG_OUTPUT");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run minik")
}

#[test]
fn kubectl_uses_the_servers_kubeconfig_and_passes_the_exit_code_through() {
    let s = Server::start();
    let env = [("MINIK_KUBECONFIG_OUTPUT", s.kubeconfig.as_path())];
    let out = minik_with(&["kubectl", "get", "ns"], &env);
    let listed = text(&out);
    assert!(out.status.success(), "minik kubectl get ns: {listed}");
    assert!(
        listed.contains("default") && listed.contains("kube-system"),
        "{listed}"
    );

    let out = minik_with(&["kubectl", "get", "pod", "nope"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not found"), "{}", text(&out));
}

#[test]
fn kubectl_without_a_kubeconfig_or_kubectl_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.yaml");
    let out = minik_with(
        &["kubectl", "get", "ns"],
        &[("MINIK_KUBECONFIG_OUTPUT", &missing), ("HOME", dir.path())],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no kubeconfig: start `minik server` first or set KUBECONFIG"),
        "{}",
        text(&out)
    );

    let out = minik_with(&["kubectl", "version"], &[("PATH", dir.path())]);
    assert!(!out.status.success());
    assert!(text(&out).contains("install kubectl"), "{}", text(&out));
}

#[test]
fn check_config_passes_on_this_machine_and_names_the_cgroup_version() {
    let out = minik_with(&["check-config"], &[]);
    let report = text(&out);
    assert!(out.status.success(), "minik check-config: {report}");
    assert!(
        report.contains("cgroup v1") || report.contains("cgroup v2"),
        "{report}"
    );
    assert!(report.contains("verdict: ok"), "{report}");
    for feature in [
        "network namespace",
        "overlay filesystem",
        "nftables",
        "bridge",
        "veth",
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(feature))
            .unwrap_or_else(|| panic!("no {feature} line: {report}"));
        assert!(line.contains(" ok "), "{line}");
    }
}

#[test]
fn stop_needs_all_and_refuses_while_the_server_runs() {
    let s = Server::start();
    let data = s.dir.path().join("data");
    let data = data.to_str().unwrap();

    let out = minik_with(&["stop", "--data-dir", data], &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("minik stop --all"), "{}", text(&out));

    let out = minik_with(&["stop", "--all", "--data-dir", data], &[]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("is running on"), "{said}");
    assert!(said.contains(&s.pid().to_string()), "{said}");
}

/// The mount points under `dir` in this mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&dir))
        .map(String::from)
        .collect()
}

fn nft_table_exists(family: &str, table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", family, table])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The value after `flag` in the test network flags of the server on `port`.
fn network_flag(port: u16, flag: &str) -> String {
    let flags = network_flags(port);
    let at = flags.iter().position(|f| f == flag).expect("flag");
    flags[at + 1].clone()
}

#[test]
fn stop_all_cleans_up_after_a_crashed_node() {
    let mut s = Server::start_node(&[]);
    ready_node(&s);
    let marker = format!("sleep 36{}", s.port);
    let spec = json!({"volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]});
    let container = json!({"command": ["sh", "-c", format!("exec {marker}")],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]});
    create(&s, &pod_of("sleeper", "busybox", container, spec));
    s.eventually("the pod to run", || {
        let p = pod(&s, "sleeper")?;
        (p["status"]["phase"] == "Running").then_some(())
    });
    let uid = pod(&s, "sleeper").expect("pod")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let data = s.dir.path().join("data");
    let prefix = network_flag(s.port, "--network-prefix");
    let bridge = Path::new("/sys/class/net").join(format!("{prefix}0"));
    assert_eq!(pids_with_cmdline(&marker).len(), 1);
    assert!(!mounts_under(&data).is_empty(), "the pod mounted nothing");
    assert!(bridge.exists());
    assert!(nft_table_exists("ip", &format!("{prefix}-proxy")));

    // The server crashes: its containers and network stay behind.
    Command::new("kill")
        .args(["-KILL", &s.pid().to_string()])
        .status()
        .expect("kill");
    minik_tests::server::eventually("the server to exit", 30, || (!s.running()).then_some(()));
    assert_eq!(
        pids_with_cmdline(&marker).len(),
        1,
        "the container outlives minik"
    );

    let data_arg = data.to_str().unwrap();
    let cidr = network_flag(s.port, "--cluster-cidr");
    let dns = network_flag(s.port, "--cluster-dns");
    let args = [
        "stop",
        "--all",
        "--data-dir",
        data_arg,
        "--network-prefix",
        &prefix,
        "--cluster-cidr",
        &cidr,
        "--cluster-dns",
        &dns,
    ];
    let out = minik_with(&args, &[]);
    let said = text(&out);
    assert!(out.status.success(), "minik stop --all: {said}");
    assert!(said.contains("stopping container main"), "{said}");
    assert!(
        said.contains(&format!("removed pod sandbox {uid}")),
        "{said}"
    );
    assert!(said.contains(&format!("interface {prefix}0")), "{said}");

    assert!(
        pids_with_cmdline(&marker).is_empty(),
        "the container still runs"
    );
    assert!(
        pids_with_cmdline(&format!("{}/agent/containers", data.display())).is_empty(),
        "a shim still runs"
    );
    assert_eq!(mounts_under(&data), Vec::<String>::new());
    assert_eq!(
        mounts_under(&Path::new("/run/minik/sandboxes").join(&uid)),
        Vec::<String>::new()
    );
    let cgroups = minik_tests::host::cgroup_dirs(&format!("kubepods/pod{uid}"));
    assert!(cgroups.is_empty(), "pod cgroups left: {cgroups:?}");
    assert!(!bridge.exists(), "the bridge is still there");
    for (family, table) in [("ip", "proxy"), ("inet", "policy"), ("ip", "hostports")] {
        let table = format!("{prefix}-{table}");
        assert!(
            !nft_table_exists(family, &table),
            "{family} {table} is still there"
        );
    }
    let lo = Command::new("ip")
        .args(["-o", "addr", "show", "dev", "lo"])
        .output()
        .expect("ip addr");
    let lo = String::from_utf8_lossy(&lo.stdout).into_owned();
    assert!(!lo.contains(&format!("inet {dns}/32")), "{lo}");

    let again = minik_with(&args, &[]);
    let said = text(&again);
    assert!(again.status.success(), "second minik stop --all: {said}");
    assert!(said.contains("nothing to stop"), "{said}");
    assert!(
        !said.contains("removed") && !said.contains("stopping"),
        "{said}"
    );
}

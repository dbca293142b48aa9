//! The real node of `minik server` (run as root): it registers Ready with this machine's
//! capacity and identity; pods run in real containers from the air-gap test images
//! (scripts/images.sh) with config map and secret volumes and environment; their output
//! lands in CRI log files under /var/log/pods; a container over its memory limit is
//! OOMKilled; deletion sends TERM and kills after the grace period; containers outlive a
//! restart of minik (even a kill -9) and are not started twice; exited containers of
//! restartPolicy Always pods restart with CrashLoopBackOff between.

use minik_tests::node::{condition, container, create, pod, pod_of, ready_node};
use std::io::Read;
use std::time::{Duration, Instant};

use minik_tests::node::{cri_log_lines, log_path, pids_with_cmdline};
use minik_tests::server::{Server, eventually, ok, text};
use serde_json::{Value, json};

/// Bytes of a quantity as nodes report them ("24684092Ki", "16Gi", "98673268507").
fn bytes(q: &Value) -> u64 {
    let s = q.as_str().unwrap_or("");
    let (num, mult) = [
        ("Ki", 1u64 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
    ]
    .iter()
    .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    num.parse::<u64>()
        .unwrap_or_else(|_| panic!("quantity {s:?}"))
        * mult
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn ready(node: &Value) -> bool {
    condition(node, "Ready") == "True"
}

/// A busybox pod running `script` with `sh -c`, with more of its spec merged in.
fn busybox(name: &str, script: &str, spec: Value) -> Value {
    pod_of(
        name,
        "busybox",
        json!({"command": ["sh", "-c", script]}),
        spec,
    )
}

/// Wait until pod `name` satisfies `check`; the pod then.
fn pod_until(s: &Server, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    s.until(&["get", "pod", name], what, |p| {
        p.as_ref().is_some_and(&check)
    })
    .expect("pod")
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("")
}

/// The lines of the pod's first container's log so far.
fn log_lines(pod: &Value) -> Vec<String> {
    cri_log_lines(&std::fs::read_to_string(log_path(pod, "main")).unwrap_or_default())
}

#[test]
fn the_node_registers_ready_with_the_machines_capacity() {
    let s = Server::start_node(&[
        "--node-label",
        "tier=e2e",
        "--node-taint",
        "dedicated=e2e:PreferNoSchedule",
        "--node-ip",
        "127.0.0.1",
    ]);
    let node = ready_node(&s);
    let name = node["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(name, read("/proc/sys/kernel/hostname").to_lowercase());

    let cap = &node["status"]["capacity"];
    let alloc = &node["status"]["allocatable"];
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(cap["cpu"], cpus.to_string());
    let meminfo = read("/proc/meminfo");
    let mem_total: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert_eq!(bytes(&cap["memory"]), mem_total * 1024);
    assert_eq!(bytes(&alloc["memory"]), mem_total * 1024 - (100 << 20));
    assert_eq!(cap["pods"], "110");
    assert_eq!(cap["hugepages-1Gi"], "0");
    assert_eq!(cap["hugepages-2Mi"], "0");
    let statfs = std::process::Command::new("stat")
        .args(["-f", "--format=%S %b"])
        .arg(s.dir.path().join("data"))
        .output()
        .unwrap();
    let fs: Vec<u64> = String::from_utf8_lossy(&statfs.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(bytes(&cap["ephemeral-storage"]), fs[0] * fs[1]);
    assert!(bytes(&alloc["ephemeral-storage"]) < fs[0] * fs[1]);

    let info = &node["status"]["nodeInfo"];
    assert_eq!(info["kernelVersion"], read("/proc/sys/kernel/osrelease"));
    let pretty = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap();
    assert_eq!(info["osImage"], pretty);
    assert_eq!(info["machineID"], read("/etc/machine-id"));
    assert_eq!(info["bootID"], read("/proc/sys/kernel/random/boot_id"));
    assert_eq!(info["operatingSystem"], "linux");
    assert_eq!(info["architecture"], "amd64");
    let runtime = info["containerRuntimeVersion"].as_str().unwrap();
    assert!(runtime.starts_with("minik://v"), "{runtime}");
    let kubelet = info["kubeletVersion"].as_str().unwrap();
    assert!(kubelet.starts_with("v1.37."), "{kubelet}");

    let addresses = node["status"]["addresses"].as_array().unwrap();
    assert!(addresses.contains(&json!({"type": "InternalIP", "address": "127.0.0.1"})));
    assert!(addresses.contains(&json!({"type": "Hostname", "address": name})));

    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["tier"], "e2e");
    assert_eq!(labels["kubernetes.io/hostname"], name.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["node.kubernetes.io/instance-type"], "minik");
    let taints = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        taints.contains(&json!({"key": "dedicated", "value": "e2e", "effect": "PreferNoSchedule"})),
        "{taints:?}"
    );

    // The server labels its node a control plane (k3s no longer adds "master").
    let node = s
        .until(&["get", "node", &name], "the control-plane label", |n| {
            n.as_ref().is_some_and(|n| {
                n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == "true"
            })
        })
        .unwrap();
    assert!(node["metadata"]["labels"]["node-role.kubernetes.io/master"].is_null());
    let table = ok(s.kubectl(&["get", "nodes"]));
    assert!(
        table.contains("control-plane") && table.contains("Ready"),
        "{table}"
    );

    // The air-gap images are in the store, and in the node's status.
    let node = s
        .until(
            &["get", "node", &name],
            "the images in the node status",
            |n| {
                n.as_ref()
                    .and_then(|n| n["status"]["images"].as_array())
                    .is_some_and(|i| i.len() >= 2)
            },
        )
        .unwrap();
    let images = node["status"]["images"].as_array().unwrap();
    for wanted in [
        "docker.io/library/busybox:latest",
        "docker.io/minik/httpd:latest",
    ] {
        let image = images
            .iter()
            .find(|i| i["names"].as_array().unwrap().iter().any(|n| n == wanted))
            .unwrap_or_else(|| panic!("{wanted} in {images:?}"));
        assert!(image["sizeBytes"].as_i64().unwrap() > 0);
    }

    // Its Lease is renewed by the node itself.
    let lease = s.get_json(&["lease", "-n", "kube-node-lease", &name]);
    assert_eq!(lease["spec"]["holderIdentity"], name.as_str());

    // Deleted, the node registers again (a new object) and is Ready.
    let uid = node["metadata"]["uid"].clone();
    ok(s.kubectl(&["delete", "node", &name]));
    s.until(&["get", "node", &name], "the node to register again", |n| {
        n.as_ref()
            .is_some_and(|n| n["metadata"]["uid"] != uid && ready(n))
    });
}

#[test]
fn bad_node_flags_are_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let minik = |args: &[&str]| {
        std::process::Command::new(minik_tests::minik_bin())
            .args(["server", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--https-listen-port", "0", "--write-kubeconfig"])
            .arg(dir.path().join("kc.yaml"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = minik(&["--node-taint", "dedicated=e2e"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("key=value:Effect"), "{}", text(&out));
    let out = minik(&["--node-label", "node-role.kubernetes.io/worker=true"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("node-role.kubernetes.io/worker"),
        "{}",
        text(&out)
    );
    assert!(!dir.path().join("data").exists());
}

#[test]
fn pods_get_config_maps_and_secrets_and_log_what_they_print() {
    let s = Server::start_node(&[]);
    let node = ready_node(&s);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config"},
            "data": {"greeting": "hello", "file.txt": "from a config map"}}),
    );
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-env"},
            "data": {"FROM_ENVFROM": "yes"}}),
    );
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app-secret"},
            "stringData": {"password": "s3cret", "TOKEN": "t0k3n"}}),
    );
    let script = "echo \"greeting=$GREETING password=$PASSWORD\"; \
        echo \"envfrom=$FROM_ENVFROM token=$S_TOKEN\"; \
        cat /config/file.txt; echo; cat /secret/password; echo";
    let mut pod = busybox(
        "env-and-volumes",
        script,
        json!({"restartPolicy": "Never",
            "volumes": [{"name": "config", "configMap": {"name": "app-config"}},
                {"name": "secret", "secret": {"secretName": "app-secret"}}]}),
    );
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "greeting"}}},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "password"}}}]);
    pod["spec"]["containers"][0]["envFrom"] = json!([
        {"configMapRef": {"name": "app-env"}},
        {"secretRef": {"name": "app-secret"}, "prefix": "S_"}]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "config", "mountPath": "/config"},
        {"name": "secret", "mountPath": "/secret", "readOnly": true}]);
    create(&s, &pod);
    let done = pod_until(&s, "env-and-volumes", "the pod to succeed", |p| {
        phase(p) == "Succeeded" || phase(p) == "Failed"
    });
    let terminated = &container(&done)["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 0, "{done}");
    assert_eq!(terminated["reason"], "Completed");
    assert_eq!(phase(&done), "Succeeded");
    let lines = log_lines(&done);
    for want in [
        "greeting=hello password=s3cret",
        "envfrom=yes token=t0k3n",
        "from a config map",
        "s3cret",
    ] {
        assert!(lines.iter().any(|l| l == want), "{want:?} in {lines:?}");
    }
    // Not on the host network: an address of the pod network, kept after the pod
    // finished; on it, the node's.
    let pod_ip = done["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_string();
    assert_eq!(done["status"]["podIPs"][0]["ip"], pod_ip.as_str(), "{done}");
    let internal = node["status"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .unwrap()["address"]
        .clone();
    let route = ok(std::process::Command::new("ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .unwrap());
    if let Some(dev) = route.split_whitespace().skip_while(|w| *w != "dev").nth(1) {
        let addr = ok(std::process::Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", dev])
            .output()
            .unwrap());
        let ip = addr
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap();
        assert_eq!(internal, ip);
    }
    assert_ne!(internal, pod_ip.as_str());
    create(
        &s,
        &busybox("on-host", "sleep 3600", json!({"hostNetwork": true})),
    );
    let running = pod_until(&s, "on-host", "the host-network pod to run", |p| {
        phase(p) == "Running"
    });
    assert_eq!(running["status"]["podIP"], internal);
}

#[test]
fn a_container_over_its_memory_limit_is_oom_killed() {
    let s = Server::start_node(&[]);
    ready_node(&s);
    let mut pod = busybox(
        "hog",
        "echo start; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
        json!({"restartPolicy": "Never"}),
    );
    pod["spec"]["containers"][0]["resources"] =
        json!({"limits": {"memory": "16Mi"}, "requests": {"memory": "16Mi"}});
    create(&s, &pod);
    let done = pod_until(&s, "hog", "the pod to fail", |p| {
        phase(p) == "Failed" || phase(p) == "Succeeded"
    });
    let terminated = &container(&done)["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{done}");
    assert_eq!(terminated["exitCode"], 137);
    assert_eq!(phase(&done), "Failed");
}

/// Start `kubectl get pod <name> -w -o json` in the background; every object it printed,
/// once `f` returned.
fn watching(s: &Server, name: &str, f: impl FnOnce()) -> Vec<Value> {
    let mut watch = s
        .kubectl_cmd(&["get", "pod", name, "-w", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    f();
    std::thread::sleep(Duration::from_secs(1));
    let _ = watch.kill();
    let mut out = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let _ = watch.wait();
    serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .filter_map(Result::ok)
        .collect()
}

#[test]
fn deleting_a_pod_sends_term_then_kills_after_the_grace_period() {
    let s = Server::start_node(&[]);
    ready_node(&s);
    create(
        &s,
        &busybox(
            "polite",
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 1; done",
            json!({}),
        ),
    );
    let running = pod_until(&s, "polite", "the pod to run and trap TERM", |p| {
        phase(p) == "Running" && log_lines(p).iter().any(|l| l == "ready")
    });
    // Read the log through an open file: it may be removed with the pod.
    let mut log = std::fs::File::open(log_path(&running, "main")).unwrap();
    ok(s.kubectl(&["delete", "pod", "polite", "--timeout=60s"]));
    assert!(pod(&s, "polite").is_none());
    let mut written = String::new();
    log.read_to_string(&mut written).unwrap();
    let lines = cri_log_lines(&written);
    assert!(lines.iter().any(|l| l == "got TERM"), "{lines:?}");

    create(
        &s,
        &busybox(
            "stubborn",
            "trap '' TERM; echo ready; while true; do sleep 1; done",
            json!({"terminationGracePeriodSeconds": 3}),
        ),
    );
    pod_until(&s, "stubborn", "the pod to run and ignore TERM", |p| {
        phase(p) == "Running" && log_lines(p).iter().any(|l| l == "ready")
    });
    let seen = watching(&s, "stubborn", || {
        ok(s.kubectl(&["delete", "pod", "stubborn", "--timeout=60s"]));
    });
    assert!(pod(&s, "stubborn").is_none());
    // Its last status, written before it went: killed (128 + SIGKILL).
    let killed = seen
        .iter()
        .filter_map(|p| p["status"]["containerStatuses"][0]["state"]["terminated"].as_object())
        .any(|t| t["exitCode"] == 137);
    assert!(killed, "no terminated state with exit code 137 in {seen:?}");
}

/// The pid of the only process whose command line has `marker`.
fn only_process(marker: &str) -> u32 {
    let pids = pids_with_cmdline(marker);
    assert_eq!(pids.len(), 1, "processes running {marker:?}: {pids:?}");
    pids[0]
}

/// Wait until the node renewed its Lease after `since` and give the kubelet a few relists
/// to act on its pods.
fn settled(s: &Server, since: Instant) {
    let name = ready_node(s)["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let first = s.get_json(&["lease", "-n", "kube-node-lease", &name])["spec"]["renewTime"].clone();
    eventually("the node to renew its lease", 60, || {
        let now = s.json_opt(&["get", "lease", "-n", "kube-node-lease", &name])?;
        (now["spec"]["renewTime"] != first || since.elapsed() > Duration::from_secs(30))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
}

#[test]
fn containers_outlive_a_restart_of_minik_and_run_once() {
    let mut s = Server::start_node(&[]);
    ready_node(&s);
    create(&s, &busybox("sleeper", "exec sleep 36017", json!({})));
    pod_until(&s, "sleeper", "the pod to run", |p| phase(p) == "Running");
    let pid = only_process("sleep 36017");
    // Its usage, measured in its cgroup, is served by the resource metrics API.
    let usage = s.eventually("the pod's usage", || {
        let out = s.kubectl(&[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/sleeper",
        ]);
        let m: Value = serde_json::from_slice(&out.stdout).ok()?;
        m["containers"][0]["usage"]["memory"]
            .as_str()
            .map(str::to_string)
    });
    assert!(bytes(&json!(usage)) > 0, "{usage}");

    // SIGTERM and a new start on the same data dir.
    s.restart(false);
    let since = Instant::now();
    settled(&s, since);
    assert_eq!(only_process("sleep 36017"), pid);
    let p = pod(&s, "sleeper").unwrap();
    assert_eq!(phase(&p), "Running");
    assert_eq!(container(&p)["restartCount"], 0);
    assert!(container(&p)["state"]["running"].is_object(), "{p}");

    // kill -9, and a new start: still that one container, started once.
    s.restart(true);
    let since = Instant::now();
    settled(&s, since);
    assert_eq!(only_process("sleep 36017"), pid);
    let p = pod(&s, "sleeper").unwrap();
    assert_eq!(phase(&p), "Running");
    assert_eq!(container(&p)["restartCount"], 0);
    assert_eq!(
        minik_tests::node::sandbox_ids(&s.dir.path().join("data")).len(),
        1
    );
}

#[test]
fn exited_containers_of_always_pods_restart_with_back_off() {
    let s = Server::start_node(&[]);
    ready_node(&s);
    create(&s, &busybox("crasher", "echo run; exit 1", json!({})));
    let mut backed_off = false;
    let p = s.eventually("two restarts with CrashLoopBackOff between", || {
        let p = pod(&s, "crasher")?;
        backed_off |= container(&p)["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        (backed_off && container(&p)["restartCount"].as_i64()? >= 2).then_some(p)
    });
    assert_eq!(phase(&p), "Running");
    assert_eq!(
        container(&p)["lastState"]["terminated"]["exitCode"],
        1,
        "{p}"
    );
}

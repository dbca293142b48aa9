//! `minik server --container-runtime-endpoint`: the node runs its pods through an external
//! CRI runtime, a private Debian containerd (tests/src/containerd.rs), instead of minik's
//! own. Host-network pods only: containerd has no CNI configuration here.

use minik_tests::containerd::Containerd;
use minik_tests::node::{create, cri_log_lines, log_path, pod, pod_of, ready_node};
use minik_tests::server::{Server, ok};
use serde_json::{Value, json};

fn start() -> (Containerd, Server) {
    let containerd = Containerd::start();
    containerd.import(&containerd.image("busybox.oci.tar"));
    let endpoint = containerd.endpoint();
    let server = Server::start_node(&["--container-runtime-endpoint", &endpoint]);
    (containerd, server)
}

/// The containers containerd has (ids).
fn containerd_containers(c: &Containerd) -> Vec<String> {
    let out = c.ctr(&["containers", "ls", "-q"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn host_pod(name: &str, container: Value) -> Value {
    pod_of(name, "busybox", container, json!({"hostNetwork": true}))
}

fn status(p: &Value) -> &Value {
    &p["status"]["containerStatuses"][0]
}

#[test]
fn pods_run_through_containerd_and_survive_a_restart() {
    let (containerd, mut s) = start();
    let node = ready_node(&s);
    let version = node["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(version.starts_with("containerd://"), "{version}");

    ok(s.kubectl(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=greeting=hello-cri",
    ]));
    let web = host_pod(
        "web",
        json!({
            "command": ["sh", "-c", "echo \"$GREETING from $(cat /cfg/greeting)\"; sleep 3600"],
            "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}}],
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}],
            "readinessProbe": {"exec": {"command": ["cat", "/cfg/greeting"]}, "periodSeconds": 1},
        }),
    );
    let mut web = web;
    web["spec"]["volumes"] = json!([{"name": "cfg", "configMap": {"name": "cfg"}}]);
    create(&s, &web);
    let running = s.eventually("web Running and Ready", || {
        let p = pod(&s, "web")?;
        (status(&p)["ready"] == true && p["status"]["phase"] == "Running").then_some(p)
    });
    let id = status(&running)["containerID"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cri_id = id
        .strip_prefix("containerd://")
        .unwrap_or_else(|| panic!("containerID {id}"))
        .to_string();
    assert!(
        containerd_containers(&containerd).contains(&cri_id),
        "containerd lacks {cri_id}"
    );
    let log = log_path(&running, "main");
    let lines = s.eventually("web's log line", || {
        let lines = cri_log_lines(&std::fs::read_to_string(&log).ok()?);
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(lines[0], "hello-cri from hello-cri");

    // A container's exit code and reason come from containerd.
    let failing = host_pod("fails", json!({"command": ["sh", "-c", "exit 3"]}));
    let mut failing = failing;
    failing["spec"]["restartPolicy"] = json!("Never");
    create(&s, &failing);
    let failed = s.eventually("fails Failed", || {
        let p = pod(&s, "fails")?;
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    let terminated = &status(&failed)["state"]["terminated"];
    assert_eq!(terminated["exitCode"], 3, "{failed}");
    assert_eq!(terminated["reason"], "Error", "{failed}");

    // A restart of minik adopts the running container: same id, no second one.
    s.restart(false);
    let again = s.eventually("web Running after the restart", || {
        let p = pod(&s, "web")?;
        (status(&p)["ready"] == true).then_some(p)
    });
    assert_eq!(status(&again)["containerID"], id.as_str());
    assert_eq!(status(&again)["restartCount"], 0);

    // Deleting the pod removes its container from containerd.
    ok(s.kubectl(&["delete", "pod", "web", "--grace-period=1"]));
    s.eventually("web's container gone from containerd", || {
        (!containerd_containers(&containerd).contains(&cri_id)).then_some(())
    });
}

#[test]
fn a_wrong_endpoint_stops_the_server_with_a_clear_error() {
    let message = minik_tests::server::node_start_fails(&[
        "--container-runtime-endpoint",
        "unix:///nonexistent/containerd.sock",
    ]);
    assert!(
        message.contains("/nonexistent/containerd.sock"),
        "{message}"
    );
}

#[test]
fn pods_get_their_address_from_the_runtimes_cni_network() {
    let containerd = Containerd::start().with_network();
    containerd.import(&containerd.image("busybox.oci.tar"));
    let prefix = containerd
        .network
        .as_ref()
        .map(|n| format!("{}.", n.prefix))
        .unwrap_or_default();
    let endpoint = containerd.endpoint();
    let s = Server::start_node(&["--container-runtime-endpoint", &endpoint]);
    ready_node(&s);
    let serve =
        "echo \"ip $POD_IP\"; echo hello-from-cni > /tmp/index.html; httpd -f -p 8080 -h /tmp";
    let web = pod_of(
        "net",
        "busybox",
        json!({
            "command": ["sh", "-c", serve],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "readinessProbe": {"httpGet": {"port": 8080, "path": "/index.html"}, "periodSeconds": 1},
        }),
        json!({}),
    );
    create(&s, &web);
    let ready = s.eventually("net Ready through its pod IP", || {
        let p = pod(&s, "net")?;
        (status(&p)["ready"] == true).then_some(p)
    });
    let ip = ready["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ip.starts_with(&prefix), "pod IP {ip} not in {prefix}0/24");
    assert_eq!(ready["status"]["podIPs"][0]["ip"], ip.as_str());
    let log = log_path(&ready, "main");
    let lines = s.eventually("net's log", || {
        let lines = cri_log_lines(&std::fs::read_to_string(&log).ok()?);
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(lines[0], format!("ip {ip}"));
    // The host reaches the pod on the test's bridge.
    let mut conn = std::net::TcpStream::connect_timeout(
        &format!("{ip}:8080").parse().expect("address"),
        std::time::Duration::from_secs(5),
    )
    .expect("connect to the pod");
    std::io::Write::write_all(&mut conn, b"GET /index.html HTTP/1.0\r\n\r\n").expect("send");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut conn, &mut answer).expect("read");
    assert!(answer.contains("hello-from-cni"), "{answer}");
    ok(s.kubectl(&["delete", "pod", "net", "--grace-period=1"]));
    s.eventually("net gone from containerd", || {
        containerd_containers(&containerd).is_empty().then_some(())
    });
}

//! `minik server --container-runtime-endpoint`: the node runs its pods through an external
//! CRI runtime, a private Debian containerd (tests/src/containerd.rs), instead of minik's
//! own. Host-network pods only: containerd has no CNI configuration here. kubectl exec
//! and attach reach containerd's own streaming server.

use minik_tests::containerd::Containerd;
use minik_tests::node::{attach_answers, create, cri_log_lines, log_path, pod, pod_of, ready_node};
use minik_tests::server::{Kubectl, Server, ok, text};
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

    // kubectl exec goes through containerd's own streaming server (the URL its Exec
    // gives), over WebSocket as kubectl tries first (or SPDY after it) and over SPDY.
    for k in Kubectl::each(&s) {
        for websockets in ["true", "false"] {
            let out = k
                .cmd(&["exec", "web", "--", "sh", "-c", "cat /cfg/greeting; exit 4"])
                .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
                .output()
                .expect("kubectl exec");
            let how = format!("{} websockets={websockets}: {}", k.bin, text(&out));
            assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-cri", "{how}");
            assert_eq!(out.status.code(), Some(4), "{how}");
            let mut cat = k
                .cmd(&["exec", "-i", "web", "--", "cat"])
                .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", websockets)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kubectl exec -i");
            std::io::Write::write_all(&mut cat.stdin.take().expect("stdin"), b"typed\n")
                .expect("write");
            let echoed = cat.wait_with_output().expect("kubectl exec -i");
            assert_eq!(ok(echoed), "typed\n", "{}", k.bin);
        }
    }

    // kubectl attach: a line to the container's stdin comes back on its output.
    create(
        &s,
        &host_pod(
            "talker",
            json!({"stdin": true, "command": ["sh", "-c", "while read l; do echo got:$l; done"]}),
        ),
    );
    s.eventually("talker running", || {
        let p = pod(&s, "talker")?;
        status(&p)["state"]["running"].is_object().then_some(())
    });
    for k in Kubectl::each(&s) {
        let want = format!("got:hi-{}", k.bin.len());
        let attach = k.cmd(&["attach", "-i", "talker"]);
        assert!(
            attach_answers(attach, &format!("hi-{}", k.bin.len()), &want),
            "{}: no {want}",
            k.bin
        );
    }

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

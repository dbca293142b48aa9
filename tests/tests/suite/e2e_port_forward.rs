//! `kubectl port-forward` against a real node, with the machine's kubectl and PyPI's newest,
//! each over the WebSocket tunnel kubectl 1.31+ tries first and over SPDY: an HTTP request
//! through the forwarded port reaches the pod's server, two ports at once, a port nothing
//! listens on shows the kubelet's error; kube-rs's portforward
//! (WebSocket channels); and the API server's proxies: nodes/proxy to the kubelet,
//! pods/proxy to a pod, services/proxy to a service's endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use minik_tests::node::{container, create, pod, pod_of, ready_node};
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set to "false", makes kubectl use SPDY for port-forward.
const NO_WEBSOCKETS: &str = "KUBECTL_PORT_FORWARD_WEBSOCKETS";
const HELLO: &str = "hello from minik httpd";

fn running(s: &Server, name: &str) {
    s.eventually(&format!("{name} running"), || {
        let p = pod(s, name)?;
        container(&p)["state"]["running"].is_object().then_some(())
    });
}

/// GET / on 127.0.0.1:`port`: the response.
fn get(port: u16) -> std::io::Result<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(30)))?;
    c.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    c.read_to_string(&mut out)?;
    Ok(out)
}

/// Start `kubectl port-forward` and read the local ports it forwards from.
fn forward(k: &Kubectl, websockets: bool, args: &[&str], ports: usize) -> (Child, Vec<u16>) {
    let mut cmd = k.cmd(&[&["port-forward"], args].concat());
    cmd.env(NO_WEBSOCKETS, if websockets { "true" } else { "false" });
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut found = vec![];
    while found.len() < ports {
        let line = lines.next().expect("a line").expect("utf-8");
        // "Forwarding from 127.0.0.1:36789 -> 8080"
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            found.push(
                rest.split(' ')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("a port"),
            );
        }
    }
    // kubectl goes on saying "Handling connection for ...": keep reading.
    std::thread::spawn(move || lines.for_each(drop));
    (child, found)
}

fn port_forward_works(k: &Kubectl, websockets: bool) {
    let how = format!("{} websockets={websockets}", k.bin);
    let (mut child, ports) = forward(k, websockets, &["pod/web", ":8080", ":8080"], 2);
    // The server in the pod may still be starting.
    k.server.eventually("an answer through the forward", || {
        get(ports[0]).ok().filter(|a| a.contains(HELLO))
    });
    let second = get(ports[1]).expect("the second port");
    assert!(second.contains(HELLO), "{how}: {second}");
    let _ = child.kill();
    let _ = child.wait();

    // Nothing listens on 9999: kubectl shows the kubelet's error and ends, as with any
    // kubelet (client-go closes the connection on a port's error).
    let (child, ports) = forward(k, websockets, &["pod/web", ":9999"], 1);
    let mut refused = TcpStream::connect(("127.0.0.1", ports[0])).expect("connect");
    let _ = refused.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let out = child.wait_with_output().expect("kubectl port-forward");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("failed to connect to localhost:9999 inside namespace"),
        "{how}: {said}"
    );
}

#[test]
fn port_forward_and_proxies_reach_pods() {
    let s = Server::start_node(&["--node-ip", "127.0.0.1"]);
    let node = ready_node(&s);
    let node_name = node["metadata"]["name"].as_str().expect("name").to_string();
    create(&s, &pod_of("web", "minik/httpd", json!({}), json!({})));
    let host_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut hweb = pod_of(
        "hweb",
        "minik/httpd",
        json!({"command": ["httpd", "-f", "-p", format!("127.0.0.1:{host_port}"), "-h", "/www"],
            "ports": [{"containerPort": host_port, "name": "http"}]}),
        json!({"hostNetwork": true}),
    );
    hweb["metadata"]["labels"] = json!({"app": "hweb"});
    create(&s, &hweb);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hweb"},
            "spec": {"selector": {"app": "hweb"},
                "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}),
    );
    running(&s, "web");
    running(&s, "hweb");
    for k in Kubectl::each(&s) {
        for websockets in [true, false] {
            port_forward_works(&k, websockets);
        }
    }

    // nodes/proxy reaches the kubelet; pods/proxy and services/proxy the pod's server.
    let healthz = format!("/api/v1/nodes/{node_name}/proxy/healthz");
    assert_eq!(ok(s.kubectl(&["get", "--raw", &healthz])), "ok");
    let via_pod = format!("/api/v1/namespaces/default/pods/hweb:{host_port}/proxy/");
    assert!(ok(s.kubectl(&["get", "--raw", &via_pod])).contains(HELLO));
    let via_service = "/api/v1/namespaces/default/services/hweb:web/proxy/";
    let answer = s.eventually("the service has an endpoint", || {
        let out = s.kubectl(&["get", "--raw", via_service]);
        out.status.success().then(|| text(&out))
    });
    assert!(answer.contains(HELLO), "{answer}");
    let nothing = s.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/web/proxy/"]);
    assert!(!nothing.status.success());

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let pods: Api<Pod> = Api::default_namespaced(s.kube_client().await);
        let mut pf = pods
            .portforward("web", &[8080])
            .await
            .expect("kube-rs portforward");
        let mut stream = pf.take_stream(8080).expect("the port's stream");
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(String::from_utf8_lossy(&out).contains(HELLO));
        drop(stream);
        pf.abort();
    });
}

//! `minik agent` joining a real server from a network namespace made by the test (a veth
//! pair to the host, where the server listens): the node token pins the server's CA; the
//! agent gets its kubelet certificates through CSRs, registers a Ready node and runs pods;
//! a pod on the agent reaches a pod on the server's node by IP (host-gw routes each way)
//! and by service name (the agent's own proxy and DNS); `kubectl exec` and logs reach the
//! agent's kubelet; a restarted agent rejoins with the certificates it kept. Wrong tokens
//! and an unreachable server get clear messages.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minik_tests::minik_bin;
use minik_tests::node::{build_images, condition, create, pod, pod_of, reap, sandbox_ids};
use minik_tests::server::{Server, ok, test_kubelet_args, text};
use serde_json::{Value, json};

/// A network namespace joined to the host by a veth pair (removed when dropped).
struct Net {
    netns: String,
    host_link: String,
    host_ip: String,
    ns_ip: String,
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
    }
}

/// The agent running in a `Net`. Dropped before the server it joined: its pods are
/// deleted while it runs to stop them, then it is stopped and what it left is reaped.
struct Agent {
    netns: String,
    host_ip: String,
    ns_ip: String,
    dir: tempfile::TempDir,
    /// The web pod's address once known, for a failed test's diagnosis.
    probe: Option<String>,
    child: Option<Child>,
    kubeconfig: PathBuf,
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", text(&out));
}

impl Net {
    /// The namespace and addresses for a server on `port`: 10.(232+a).b.0/30.
    fn new(port: u16) -> Net {
        let (a, b) = ((port / 256) % 16, port % 256);
        let netns = format!("mkag{port}");
        let host_link = format!("mkah{port}");
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &host_link])
            .output();
        ip(&["netns", "add", &netns]);
        let agent = Net {
            host_ip: format!("10.{}.{b}.1", 232 + a),
            ns_ip: format!("10.{}.{b}.2", 232 + a),
            netns: netns.clone(),
            host_link: host_link.clone(),
        };
        ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", agent.host_ip),
            "dev",
            &host_link,
        ]);
        ip(&["link", "set", &host_link, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            ip(&all);
        };
        inside(&["addr", "add", &format!("{}/30", agent.ns_ip), "dev", "eth0"]);
        inside(&["link", "set", "eth0", "up"]);
        inside(&["link", "set", "lo", "up"]);
        inside(&["route", "add", "default", "via", &agent.host_ip]);
        agent
    }

    /// An agent (not started) in this namespace, for the server on `port`.
    fn agent(&self, port: u16) -> Agent {
        Agent {
            netns: self.netns.clone(),
            host_ip: self.host_ip.clone(),
            ns_ip: self.ns_ip.clone(),
            dir: tempfile::tempdir().expect("temp dir"),
            probe: None,
            child: None,
            kubeconfig: PathBuf::new(),
            name: format!("agent-{port}"),
        }
    }
}

impl Agent {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// `minik agent` in the namespace with `args` after the common ones. Through nsenter,
    /// which enters only the network namespace: `ip netns exec` would also remount /sys,
    /// hiding the cgroup filesystems the agent's containers need.
    fn command(&self, server: &Server, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.netns))
            .arg(minik_bin())
            .args(["agent", "--server"])
            .arg(format!("https://{}:{}", self.host_ip, server.port))
            .arg("--data-dir")
            .arg(self.data())
            .args(["--node-name", &self.name, "--node-ip", &self.ns_ip])
            .args(test_kubelet_args())
            .args(args);
        c
    }

    /// Start the agent with the server's node token.
    fn start(&mut self, server: &Server) {
        let token = server.dir.path().join("data/server/node-token");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = self
            .command(server, &["--token-file", token.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start minik agent");
        self.child = Some(child);
        self.kubeconfig = server.kubeconfig.clone();
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            minik_tests::host::stop(&mut child);
        }
    }
}

impl Agent {
    /// Routes and rules of both ends, for a failed test's log.
    fn diagnose(&self) {
        let ns = format!("--net=/run/netns/{}", self.netns);
        let kc = self.kubeconfig.to_string_lossy().into_owned();
        let runs: Vec<Vec<&str>> = vec![
            vec!["ip", "route"],
            vec!["nsenter", &ns, "ip", "route"],
            vec!["nsenter", &ns, "ip", "-br", "addr"],
            vec!["nsenter", &ns, "nft", "list", "ruleset"],
            vec!["kubectl", "--kubeconfig", &kc, "get", "pods", "-o", "wide"],
            vec![
                "kubectl",
                "--kubeconfig",
                &kc,
                "exec",
                "client",
                "--",
                "ip",
                "route",
            ],
            vec![
                "kubectl",
                "--kubeconfig",
                &kc,
                "exec",
                "client",
                "--",
                "ip",
                "addr",
            ],
        ];
        let ping = format!(
            "ping -c1 -W2 {}",
            self.probe.as_deref().unwrap_or("127.0.0.1")
        );
        let mut runs = runs;
        runs.push(vec![
            "kubectl",
            "--kubeconfig",
            &kc,
            "exec",
            "client",
            "--",
            "sh",
            "-c",
            &ping,
        ]);
        for run in runs {
            if let Ok(out) = Command::new(run[0]).args(&run[1..]).output() {
                eprintln!("---- {run:?}\n{}", text(&out));
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.log());
            self.diagnose();
        }
        // The agent's pods go first, while it runs to stop them.
        if self.child.is_some() {
            let _ = Command::new("kubectl")
                .env("KUBECONFIG", &self.kubeconfig)
                .args(["delete", "pods", "--all", "--grace-period=0", "--force"])
                .args(["--field-selector", &format!("spec.nodeName={}", self.name)])
                .args(["--wait=false"])
                .output();
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline && !sandbox_ids(&self.data()).is_empty() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        self.stop();
        reap(self.dir.path(), &[]);
    }
}

/// A port no one listens on now: names the test's namespace and addresses.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn node(s: &Server, name: &str) -> Option<Value> {
    s.json_opt(&["get", "node", name])
}

fn ready(s: &Server, name: &str) {
    s.eventually(&format!("node {name} Ready"), || {
        (condition(&node(s, name)?, "Ready") == "True").then_some(())
    });
}

fn running_ip(s: &Server, name: &str) -> String {
    s.eventually(&format!("{name} running with an address"), || {
        let p = pod(s, name)?;
        (p["status"]["containerStatuses"][0]["ready"] == true).then_some(())?;
        p["status"]["podIP"].as_str().map(str::to_string)
    })
}

/// The CSRs `keep` picks.
fn csrs_where(s: &Server, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
    let list = s.get_json(&["csr"]);
    let items = list["items"].as_array().into_iter().flatten();
    items.filter(|c| keep(c)).cloned().collect()
}

/// The CSRs of `node` (client and serving), by signer.
fn csrs_of(s: &Server, node: &str) -> Vec<(String, String)> {
    csrs_where(s, |c| {
        let user = c["spec"]["username"].as_str().unwrap_or_default();
        user == format!("system:node:{node}") || user == "system:bootstrap:server"
    })
    .iter()
    .map(|c| {
        let approved = c["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|x| x["type"] == "Approved");
        (
            c["spec"]["signerName"].as_str().unwrap_or_default().into(),
            if approved { "Approved" } else { "Pending" }.into(),
        )
    })
    .collect()
}

fn exec(s: &Server, pod: &str, script: &str) -> (bool, String) {
    let out = s.kubectl(&["exec", pod, "--", "sh", "-c", script]);
    (out.status.success(), text(&out))
}

/// A server (a real node, its address the host end of the veth, `extra` flags) and an
/// agent joined to it from the namespace, both Ready; a web pod on the server's node, a
/// client pod on the agent's and a `web` Service. Dropped in reverse: agent, server, net.
fn two_nodes(extra: &[&str]) -> (Net, Server, Agent) {
    // The server listens where the namespace can reach it, and its node uses the host end
    // of the veth as its address (the agent routes the server's pods through it).
    let port_hint = free_port();
    let net = Net::new(port_hint);
    let cidr = format!(
        "10.{}.{}.0/23",
        200 + (port_hint / 128) % 32,
        (port_hint % 128) * 2
    );
    let host_ip = net.host_ip.clone();
    let mut flags = vec![
        "--bind-address",
        "0.0.0.0",
        "--node-ip",
        &host_ip,
        "--tls-san",
        &host_ip,
        "--cluster-cidr",
        &cidr,
    ];
    flags.extend_from_slice(extra);
    let s = Server::start_node(&flags);
    let mut agent = net.agent(port_hint);
    build_images(&agent.data().join("agent").join("images"));
    agent.start(&s);
    ready(&s, &agent.name);
    let server_node = s.eventually("the server's node", || {
        let list = s.json_opt(&["get", "nodes"])?;
        list["items"]
            .as_array()?
            .iter()
            .find(|n| n["metadata"]["name"] != agent.name.as_str())
            .and_then(|n| n["metadata"]["name"].as_str().map(str::to_string))
    });
    let mut web = pod_of(
        "web",
        "minik/httpd",
        json!({"command": ["sh", "-c",
            "mkdir -p /w && echo \"i am $HOSTNAME\" > /w/index.html && exec httpd -f -p 8080 -h /w"],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}),
        json!({"nodeName": server_node, "terminationGracePeriodSeconds": 0}),
    );
    web["metadata"]["labels"] = json!({"app": "web"});
    create(&s, &web);
    let client = pod_of(
        "client",
        "busybox",
        json!({"command": ["sh", "-c", "echo started on the agent; exec sleep 3600"],
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}),
        json!({"nodeName": agent.name, "terminationGracePeriodSeconds": 0}),
    );
    create(&s, &client);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    (net, s, agent)
}

/// The web pod's answer to the client pod, across the nodes, by IP.
fn web_from_client(s: &Server, agent: &mut Agent) -> String {
    let web_ip = running_ip(s, "web");
    running_ip(s, "client");
    agent.probe = Some(web_ip.clone());
    s.eventually("the web pod from the agent", || {
        let (ok, out) = exec(
            s,
            "client",
            &format!("timeout 5 wget -qO- http://{web_ip}:8080/"),
        );
        ok.then_some(out)
    })
}

#[test]
fn an_agent_joins_runs_pods_that_reach_the_server_node_and_rejoins() {
    let (_net, s, mut agent) = two_nodes(&[]);
    let token = std::fs::read_to_string(s.dir.path().join("data/server/node-token")).unwrap();
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "{token}"
    );
    let n = node(&s, &agent.name).unwrap();
    assert_eq!(n["status"]["addresses"][0]["address"], agent.ns_ip.as_str());
    s.eventually("a podCIDR for the agent's node", || {
        node(&s, &agent.name)?["spec"]["podCIDR"]
            .as_str()
            .map(str::to_string)
    });
    // Both certificates came through approved CSRs.
    let csrs = csrs_of(&s, &agent.name);
    for signer in [
        "kubernetes.io/kube-apiserver-client-kubelet",
        "kubernetes.io/kubelet-serving",
    ] {
        assert!(
            csrs.iter().any(|(sg, st)| sg == signer && st == "Approved"),
            "{signer}: {csrs:?}"
        );
    }
    let web_ip = running_ip(&s, "web");
    let client_ip = running_ip(&s, "client");
    assert_ne!(
        web_ip.rsplit_once('.').map(|p| p.0),
        client_ip.rsplit_once('.').map(|p| p.0),
        "the two nodes have their own pod ranges"
    );
    // Logs and exec reach the agent's kubelet (its CSR-issued serving certificate).
    let logs = ok(s.kubectl(&["logs", "client"]));
    assert!(logs.contains("started on the agent"), "{logs}");
    // Pod to pod across the nodes, by IP; then by the service's name.
    let answer = web_from_client(&s, &mut agent);
    assert!(answer.contains("i am web"), "{answer}");
    let answer = s.eventually("the web service by name from the agent", || {
        let (ok, out) = exec(
            &s,
            "client",
            "timeout 5 wget -qO- http://web.default.svc.cluster.local/",
        );
        ok.then_some(out)
    });
    assert!(answer.contains("i am web"), "{answer}");

    // A restarted agent rejoins as the same node with the certificates it kept.
    let before = csrs_of(&s, &agent.name).len();
    agent.stop();
    agent.start(&s);
    s.eventually("the agent's kubelet back", || {
        exec(&s, "client", "true").0.then_some(())
    });
    ready(&s, &agent.name);
    assert_eq!(csrs_of(&s, &agent.name).len(), before, "no new CSR");
    assert!(pod(&s, "client").is_some());
}

#[test]
fn with_flannel_backend_vxlan_nodes_reach_each_others_pods_through_vxlan() {
    let (net, s, mut agent) = two_nodes(&["--flannel-backend", "vxlan"]);
    let answer = web_from_client(&s, &mut agent);
    assert!(answer.contains("i am web"), "{answer}");
    // Both ends route the other's pods through their VXLAN device, not the veth.
    let agent_cidr = node(&s, &agent.name).unwrap()["spec"]["podCIDR"]
        .as_str()
        .unwrap()
        .to_string();
    let host_routes = text(&Command::new("ip").args(["route"]).output().unwrap());
    let route = host_routes
        .lines()
        .find(|l| l.starts_with(&agent_cidr))
        .unwrap_or_default();
    assert!(
        route.contains("-vxlan") && route.contains("onlink"),
        "{host_routes}"
    );
    let ns = format!("--net=/run/netns/{}", net.netns);
    let ns_routes = text(
        &Command::new("nsenter")
            .args([&ns, "ip", "route"])
            .output()
            .unwrap(),
    );
    assert!(
        ns_routes
            .lines()
            .any(|l| l.contains("dev minik-vxlan") && l.contains("proto 77")),
        "{ns_routes}"
    );
    // Pods' interfaces leave room for the encapsulation.
    let (_, mtu) = exec(&s, "client", "cat /sys/class/net/eth0/mtu");
    assert_eq!(mtu.trim(), "1450");
}

/// Run the agent with `args` until it exits (at most 60 s): (exit code, output).
fn refused(agent: &Agent, s: &Server, args: &[&str]) -> (Option<i32>, String) {
    let mut c = agent.command(s, args);
    let out = c.output().expect("run minik agent");
    (out.status.code(), text(&out))
}

#[test]
fn wrong_tokens_and_an_unreachable_server_are_told_plainly() {
    let port_hint = free_port();
    let net = Net::new(port_hint);
    let s = Server::start_with(&["--bind-address", "0.0.0.0", "--tls-san", &net.host_ip]);
    let agent = net.agent(port_hint);
    let token = std::fs::read_to_string(s.dir.path().join("data/server/node-token")).unwrap();
    let (_, secret) = token.trim().split_once("::server:").unwrap();
    // A token for another CA.
    let other = format!("K10{}::server:{secret}", "0".repeat(64));
    let (code, out) = refused(&agent, &s, &["--token", &other]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("is not the token's"), "{out}");
    // The right CA, a wrong secret.
    let hash = &token.trim()[3..67];
    let wrong = format!("K10{hash}::server:nope");
    let (code, out) = refused(&agent, &s, &["--token", &wrong]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("refused the token"), "{out}");
    // Malformed input is refused before anything is done.
    let (code, out) = refused(&agent, &s, &["--token", "K10abc::server:x"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("64 hex digits"), "{out}");
    assert!(
        !agent
            .data()
            .join("agent")
            .join("client-kubelet.crt")
            .exists()
    );
    // Nothing listens on port 1: the agent says so and keeps trying.
    let mut c = Command::new(minik_bin());
    c.args([
        "agent",
        "--server",
        "https://127.0.0.1:1",
        "--token",
        secret,
    ])
    .arg("--data-dir")
    .arg(agent.data())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("start minik agent");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut said = None;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        if line.contains("cannot reach the server at https://127.0.0.1:1") {
            said = Some(line);
            break;
        }
    }
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(said.is_some_and(|l| l.contains("retrying")));
    assert!(still_running);
}

/// The certificate the agent's kubelet server presents now (DER), checked against the
/// cluster's server CA as the API server checks it.
fn presented_serving_cert(s: &Server, agent: &Agent) -> Vec<u8> {
    use std::sync::Arc;
    let port =
        node(s, &agent.name).unwrap()["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .unwrap();
    let ca = std::fs::read(agent.data().join("agent/server-ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(agent.ns_ip.clone()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = std::net::TcpStream::connect((agent.ns_ip.as_str(), port as u16)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.peer_certificates().unwrap()[0].to_vec()
}

/// The DER of the first certificate in the PEM file `path`.
fn der_of(path: &std::path::Path) -> Vec<u8> {
    let pem = std::fs::read(path).unwrap();
    let cert = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap();
    cert.unwrap().to_vec()
}

/// notAfter of the certificate in the PEM file `path`, as a Unix time.
fn not_after(path: &std::path::Path) -> i64 {
    let der = der_of(path);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.validity().not_after.timestamp()
}

#[test]
fn an_agent_rotates_its_certificates_before_they_expire() {
    // Two-minute certificates (backdated five minutes, as kube-controller-manager does):
    // renewal falls due within about a minute and a half of each issue.
    let (_net, s, agent) = two_nodes(&[
        "--kube-controller-manager-arg",
        "cluster-signing-duration=2m",
    ]);
    let dir = agent.data().join("agent");
    let (client_crt, serving_crt) = (
        dir.join("client-kubelet.crt"),
        dir.join("serving-kubelet.crt"),
    );
    let (first_client, first_serving) = (der_of(&client_crt), der_of(&serving_crt));
    let first_expiry = not_after(&client_crt).max(not_after(&serving_crt));
    assert_eq!(presented_serving_cert(&s, &agent), first_serving);
    minik_tests::server::eventually("both certificates renewed", 240, || {
        (der_of(&client_crt) != first_client && der_of(&serving_crt) != first_serving).then_some(())
    });
    // The node asked for the new ones itself, and they were approved.
    let by_node = |signer: &str| {
        csrs_where(&s, |c| {
            c["spec"]["username"] == format!("system:node:{}", agent.name).as_str()
                && c["spec"]["signerName"] == signer
                && c["status"]["certificate"].is_string()
        })
        .len()
    };
    assert!(by_node("kubernetes.io/kube-apiserver-client-kubelet") >= 1);
    assert!(by_node("kubernetes.io/kubelet-serving") >= 2);
    // The node's kubeconfig carries the renewed client certificate.
    let kubeconfig: Value =
        serde_json::from_slice(&std::fs::read(dir.join("kubelet.kubeconfig")).unwrap()).unwrap();
    let data = kubeconfig["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .unwrap();
    let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap();
    assert_eq!(pem, std::fs::read(&client_crt).unwrap());
    // Past the first certificates' expiry the node keeps working: Ready, new pods run,
    // and the kubelet server presents a renewed certificate the API server accepts.
    minik_tests::server::eventually("the first certificates expired", 240, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        (now > first_expiry + 5).then_some(())
    });
    ready(&s, &agent.name);
    let late = pod_of(
        "late",
        "busybox",
        json!({"command": ["sh", "-c", "echo started late; exec sleep 3600"]}),
        json!({"nodeName": agent.name, "terminationGracePeriodSeconds": 0}),
    );
    create(&s, &late);
    s.eventually(
        "the late pod's log through the renewed serving certificate",
        || {
            let out = s.kubectl(&["logs", "late"]);
            text(&out).contains("started late").then_some(())
        },
    );
    let presented = presented_serving_cert(&s, &agent);
    assert_ne!(presented, first_serving);
    // What it presents is one it asked for (the file may have moved on since).
    let now_kept = der_of(&serving_crt);
    assert!(presented == now_kept || by_node("kubernetes.io/kubelet-serving") >= 3);
}

#[test]
fn kubectl_top_shows_the_usage_the_server_scrapes_from_an_agents_kubelet() {
    let (_net, s, agent) = two_nodes(&[]);
    // A pod on the agent's node holding some memory (a shell variable of ~16 MB).
    let hog = pod_of(
        "hog",
        "busybox",
        json!({"command": ["sh", "-c",
            "x=$(head -c 16000000 /dev/zero | tr '\\0' x); echo held; while true; do sleep 3600; done"],
            "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}),
        json!({"nodeName": agent.name, "terminationGracePeriodSeconds": 0}),
    );
    create(&s, &hog);
    running_ip(&s, "hog");
    /// The row of `name` in `kubectl top <args>` once it has one.
    fn row(s: &Server, args: &[&str], name: &str) -> Option<Vec<String>> {
        let out = s.kubectl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout
            .lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .find(|cols| cols.first().map(String::as_str) == Some(name))
    }
    /// kubectl's cpu (`<n>m`) in millicores and memory (`<n>Mi`) in MiB.
    fn quantities(cpu: &str, memory: &str) -> (u64, u64) {
        let cpu = cpu.strip_suffix('m').and_then(|n| n.parse().ok());
        let memory = memory.strip_suffix("Mi").and_then(|n| n.parse().ok());
        match (cpu, memory) {
            (Some(c), Some(m)) => (c, m),
            _ => panic!("not kubectl top quantities: {cpu:?} {memory:?}"),
        }
    }
    // The agent's kubelet runs in another process: only the server's scraper of its
    // /stats/summary can tell the metrics API what the pod and the node use.
    let pod = s.eventually("the agent's pod in kubectl top", || {
        row(&s, &["top", "pod", "hog"], "hog")
    });
    assert_eq!(pod.len(), 3, "NAME CPU(cores) MEMORY(bytes): {pod:?}");
    let (_, memory) = quantities(&pod[1], &pod[2]);
    assert!(memory >= 10, "the pod holds ~16 MB: {pod:?}");
    let node = s.eventually("the agent's node in kubectl top", || {
        row(&s, &["top", "node", &agent.name], &agent.name)
    });
    assert_eq!(node.len(), 5, "NAME CPU CPU% MEMORY MEMORY%: {node:?}");
    let (_, memory) = quantities(&node[1], &node[3]);
    assert!(memory > 0, "{node:?}");
    // The container's usage, as the agent's kubelet measured it.
    let raw = ok(s.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/hog",
    ]));
    let metrics: Value = serde_json::from_str(&raw).expect("PodMetrics");
    assert_eq!(metrics["containers"][0]["name"], "main", "{metrics}");
}

#[test]
fn an_agent_joins_with_the_servers_agent_token() {
    let port_hint = free_port();
    let net = Net::new(port_hint);
    let s = Server::start_with(&[
        "--bind-address",
        "0.0.0.0",
        "--tls-san",
        &net.host_ip,
        "--agent-token",
        "agent-join-secret",
    ]);
    let mut agent = net.agent(port_hint);
    // The full agent token (K10<hash>::node:<secret>) pins the CA as the server token does.
    let token = s.dir.path().join("data/server/agent-token");
    let log = std::fs::File::create(agent.dir.path().join("agent.log")).expect("agent log");
    let child = agent
        .command(&s, &["--token-file", token.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start minik agent");
    agent.child = Some(child);
    agent.kubeconfig = s.kubeconfig.clone();
    ready(&s, &agent.name);
    // Its client certificate came through a CSR the agent token's bootstrapper asked for,
    // approved like the server token's.
    let csrs = s.get_json(&["csr"]);
    let by_agent_token = csrs["items"].as_array().into_iter().flatten().find(|c| {
        c["spec"]["username"] == "system:bootstrap:agent"
            && c["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
    });
    let csr = by_agent_token.unwrap_or_else(|| panic!("no CSR by the agent token: {csrs}"));
    let approved = csr["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Approved");
    assert!(approved, "{csr}");
}

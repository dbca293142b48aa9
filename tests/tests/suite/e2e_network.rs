//! The pod network, service proxy, cluster DNS and NetworkPolicy of a real node, checked
//! from inside pods with `kubectl exec` and from the host: pod to pod by IP; pod to service
//! by ClusterIP and by name (the FQDN and the short name, through the cluster DNS);
//! NodePort, LoadBalancer and hostPort from the host; a headless service's name; a
//! NetworkPolicy that denies, then one that allows; a deleted endpoint gets no more traffic.

use std::process::Command;

use minik_tests::node::{container, create, host_get, pod, pod_of, ready_node};
use minik_tests::server::{Server, ok, text};
use serde_json::{Value, json};

/// A web pod answering its own name on :8080.
fn web(name: &str) -> Value {
    let mut p = pod_of(
        name,
        "minik/httpd",
        json!({"command": ["sh", "-c",
            "mkdir -p /w && echo \"i am $HOSTNAME\" > /w/index.html && exec httpd -f -p 8080 -h /w"],
            "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}),
        json!({"terminationGracePeriodSeconds": 0}),
    );
    p["metadata"]["labels"] = json!({"app": "web"});
    p
}

fn running_ip(s: &Server, name: &str) -> String {
    s.eventually(&format!("{name} running with an address"), || {
        let p = pod(s, name)?;
        container(&p)["ready"].as_bool().filter(|r| *r)?;
        p["status"]["podIP"].as_str().map(str::to_string)
    })
}

/// `sh -c script` in the client pod: (success, stdout and stderr).
fn in_client(s: &Server, script: &str) -> (bool, String) {
    let out = s.kubectl(&["exec", "client", "--", "sh", "-c", script]);
    (out.status.success(), text(&out))
}

/// GET http://`target`/ from the client pod (5 s at most).
fn fetch(s: &Server, target: &str) -> (bool, String) {
    in_client(s, &format!("timeout 5 wget -qO- http://{target}/"))
}

fn fetch_ok(s: &Server, target: &str) -> String {
    s.eventually(&format!("an answer from {target}"), || {
        let (ok, out) = fetch(s, target);
        ok.then_some(out)
    })
}

#[test]
fn pods_reach_pods_services_and_names_and_policy_applies() {
    let s = Server::start_node(&[]);
    let node = ready_node(&s);
    let cidr = s.eventually("the node's podCIDR", || {
        s.json_opt(&["get", "node", node["metadata"]["name"].as_str()?])?["spec"]["podCIDR"]
            .as_str()
            .map(str::to_string)
    });
    create(&s, &web("web-1"));
    create(&s, &web("web-2"));
    let mut client = pod_of(
        "client",
        "busybox",
        json!({"command": ["sleep", "3600"]}),
        json!({"terminationGracePeriodSeconds": 0}),
    );
    client["metadata"]["labels"] = json!({"role": "client"});
    create(&s, &client);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    );
    let ip1 = running_ip(&s, "web-1");
    let ip2 = running_ip(&s, "web-2");
    let client_ip = running_ip(&s, "client");
    let prefix = cidr.rsplit_once('.').map(|(p, _)| p).expect("a /24");
    for ip in [&ip1, &ip2, &client_ip] {
        assert!(ip.starts_with(&format!("{prefix}.")), "{ip} in {cidr}");
    }
    assert_ne!(ip1, ip2);

    // Pod to pod by IP.
    assert_eq!(fetch_ok(&s, &format!("{ip1}:8080")).trim(), "i am web-1");
    assert_eq!(fetch_ok(&s, &format!("{ip2}:8080")).trim(), "i am web-2");

    // Pod to service by ClusterIP: both endpoints answer, chosen at random.
    let svc = s.get_json(&["service", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"]
        .as_str()
        .expect("clusterIP")
        .to_string();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(fetch_ok(&s, &cluster_ip).trim().to_string());
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(
        seen.len(),
        2,
        "both endpoints answer through {cluster_ip}: {seen:?}"
    );

    // By name: the pod's resolv.conf points at the cluster DNS, which knows the service.
    let (_, resolv) = in_client(&s, "cat /etc/resolv.conf");
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    let fqdn = "web.default.svc.cluster.local";
    let found = s.eventually(&format!("{fqdn} resolves"), || {
        let (ok, out) = in_client(&s, &format!("nslookup {fqdn}"));
        (ok && out.contains(&cluster_ip)).then_some(out)
    });
    assert!(found.contains(&cluster_ip), "{found}");
    // wget resolves through libc, which applies the search domains to the short name.
    for name in [fqdn, "web", "web.default"] {
        let answer = fetch_ok(&s, name);
        assert!(answer.starts_with("i am web-"), "{name}: {answer}");
    }
    let (found, out) = in_client(&s, "nslookup nothing-here.default.svc.cluster.local");
    assert!(!found && out.contains("NXDOMAIN"), "{out}");

    // NodePort from the host, on the node's address.
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_i64()
        .expect("nodePort");
    let internal = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .expect("InternalIP")
        .to_string();
    let host = host_get(&s, &format!("http://{internal}:{node_port}/"));
    assert!(host.starts_with("i am web-"), "{host}");

    // LoadBalancer (ServiceLB): the node's address in the status, the port on the node.
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-lb"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 18081, "targetPort": "http"}]}}),
    );
    let ingress = s.eventually("the LoadBalancer's address", || {
        let svc = s.json_opt(&["get", "service", "web-lb"])?;
        svc["status"]["loadBalancer"]["ingress"][0]["ip"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(ingress, internal);
    let answer = host_get(&s, &format!("http://{ingress}:18081/"));
    assert!(answer.starts_with("i am web-"), "{answer}");

    // A headless service's name gives its pods' addresses.
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-headless"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"},
                "ports": [{"name": "http", "port": 8080}]}}),
    );
    s.eventually("the headless service resolves to both pods", || {
        let (ok, out) = in_client(&s, "nslookup web-headless.default.svc.cluster.local");
        (ok && out.contains(&ip1) && out.contains(&ip2)).then_some(())
    });

    // hostPort: the pod's port on the node's address.
    let host_port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut published = web("published");
    published["metadata"]["labels"] = json!({"app": "published"});
    published["spec"]["containers"][0]["ports"][0]["hostPort"] = json!(host_port);
    create(&s, &published);
    running_ip(&s, "published");
    let answer = host_get(&s, &format!("http://{internal}:{host_port}/"));
    assert_eq!(answer.trim(), "i am published");

    // A deleted endpoint gets no more traffic.
    ok(s.kubectl(&["delete", "pod", "web-1", "--wait=true"]));
    s.eventually("only web-2 answers", || {
        let all: Vec<String> = (0..8)
            .map(|_| fetch(&s, &cluster_ip).1.trim().to_string())
            .collect();
        all.iter().all(|a| a == "i am web-2").then_some(())
    });

    // NetworkPolicy: deny every ingress to web, then allow the client.
    create(
        &s,
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}}),
    );
    s.eventually("the policy denies", || {
        let (ok, _) = fetch(&s, &format!("{ip2}:8080"));
        (!ok).then_some(())
    });
    assert!(!fetch(&s, &cluster_ip).0, "denied through the service too");
    create(
        &s,
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "allow-client"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                    "ports": [{"port": "http"}]}]}}),
    );
    assert_eq!(fetch_ok(&s, &format!("{ip2}:8080")).trim(), "i am web-2");
    assert_eq!(fetch_ok(&s, "web").trim(), "i am web-2");
}

/// A bridge the CNI plugins made, removed with the test.
struct CniBridge(String);

impl Drop for CniBridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[test]
fn with_flannel_backend_none_cni_plugins_give_pods_their_network() {
    let n = std::process::id() % 250;
    let bridge = CniBridge(format!("mkcni{n}"));
    let conf = tempfile::tempdir().expect("conf dir");
    let subnet = format!("10.250.{n}.0/24");
    let list = json!({"cniVersion": "1.0.0", "name": "test-cni", "plugins": [
        {"type": "bridge", "bridge": bridge.0, "isGateway": true, "ipMasq": false,
            "hairpinMode": true,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": conf.path().join("ipam")}}]});
    let conf_dir = conf.path().to_string_lossy().into_owned();
    let s = Server::start_node(&["--flannel-backend", "none", "--cni-conf-dir", &conf_dir]);
    // Without a network configuration the node is not Ready, and says why (as kubelet).
    let message = s.eventually("the node not Ready for want of a network", || {
        let list = s.json_opt(&["get", "nodes"])?;
        let node = list["items"].as_array()?.first()?.clone();
        let ready = node["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        (ready["status"] == "False").then(|| ready["message"].as_str().unwrap_or("").to_string())
    });
    assert!(
        message.contains("container runtime network not ready")
            && message.contains("no network config found"),
        "{message}"
    );
    std::fs::write(conf.path().join("10-test.conflist"), list.to_string()).expect("conf");
    ready_node(&s);
    create(&s, &web("web-1"));
    let client = pod_of(
        "client",
        "busybox",
        json!({"command": ["sleep", "3600"]}),
        json!({"terminationGracePeriodSeconds": 0}),
    );
    create(&s, &client);
    create(
        &s,
        &json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    );
    let ip = running_ip(&s, "web-1");
    assert!(
        ip.starts_with(&format!("10.250.{n}.")),
        "{ip} from the CNI plugins"
    );
    running_ip(&s, "client");
    assert_eq!(fetch_ok(&s, &format!("{ip}:8080")).trim(), "i am web-1");
    assert_eq!(fetch_ok(&s, "web").trim(), "i am web-1");
    // Deleting the pod gives its address back to host-local.
    ok(s.kubectl(&["delete", "pod", "web-1", "--wait=true"]));
    let leases = conf.path().join("ipam").join("test-cni");
    s.eventually("the address is released", || {
        let held = std::fs::read_dir(&leases)
            .ok()?
            .flatten()
            .any(|e| e.file_name() == ip.as_str());
        (!held).then_some(())
    });
}

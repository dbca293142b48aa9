//! The kubelet server of `minik server`'s real node (run as root), on a free port
//! (`--kubelet-arg port=0`) reported in the Node's status.daemonEndpoints: its serving
//! certificate is the cluster's for 127.0.0.1; requests without credentials are 401; the
//! admin's client certificate reads /healthz, /pods, /stats/summary and /metrics/resource
//! of a running busybox pod; a service account's token is authenticated through a
//! TokenReview and authorized per request through a SubjectAccessReview (403 with
//! kubelet's message until RBAC grants it nodes/stats).

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use minik_tests::server::{Server, ok};
use serde_json::{Value, json};

/// The admin credentials and cluster CA of the kubeconfig, as PEM files in `dir`:
/// (ca, cert, key).
fn credentials(s: &Server, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let kc = ok(s.kubectl(&["config", "view", "--raw", "-o", "json"]));
    let kc: Value = serde_json::from_str(&kc).unwrap();
    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("kubeconfig data"))
            .unwrap()
    };
    let files = [
        (
            "ca.crt",
            &kc["clusters"][0]["cluster"]["certificate-authority-data"],
        ),
        (
            "admin.crt",
            &kc["users"][0]["user"]["client-certificate-data"],
        ),
        ("admin.key", &kc["users"][0]["user"]["client-key-data"]),
    ];
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, v)| {
            let p = dir.join(name);
            std::fs::write(&p, decode(v)).unwrap();
            p
        })
        .collect();
    (paths[0].clone(), paths[1].clone(), paths[2].clone())
}

/// A client certificate for `cn` in `dir` (`<file>.crt`, `<file>.key`), signed by the CA
/// `ca` (`<ca>.crt` and `<ca>.key`), or by a CA of its own when None; (cert, key).
fn client_cert(dir: &Path, file: &str, cn: &str, ca: Option<&Path>) -> (PathBuf, PathBuf) {
    let issuer = match ca {
        Some(ca) => {
            let pem = std::fs::read_to_string(ca.with_extension("crt")).unwrap();
            let key = std::fs::read_to_string(ca.with_extension("key")).unwrap();
            rcgen::Issuer::from_ca_cert_pem(&pem, rcgen::KeyPair::from_pem(&key).unwrap()).unwrap()
        }
        None => {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            rcgen::Issuer::new(p, rcgen::KeyPair::generate().unwrap())
        }
    };
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    let (c, k) = (
        dir.join(format!("{file}.crt")),
        dir.join(format!("{file}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

/// GET `path` of the kubelet at 127.0.0.1:`port` with curl (verifying the server against
/// the cluster CA), with extra curl arguments; (status, body).
fn get(port: u16, ca: &Path, path: &str, extra: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[test]
fn the_kubelet_server_authenticates_authorizes_and_serves_stats() {
    let s = Server::start_node(&["--kubelet-arg", "port=0"]);
    // The port the node reports.
    let node = s
        .until(&["get", "nodes"], "the node's kubelet port", |l| {
            l.as_ref()
                .and_then(|l| {
                    l["items"][0]["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()
                })
                .is_some_and(|p| p > 0)
        })
        .unwrap();
    let node = &node["items"][0];
    let name = node["metadata"]["name"].as_str().unwrap().to_string();
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap() as u16;
    assert_ne!(port, 10250);
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = credentials(&s, dir.path());
    let admin = [
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];

    // Anonymous: 401.
    assert_eq!(
        get(port, &ca, "/healthz", &[]),
        (401, "Unauthorized".to_string())
    );
    assert_eq!(get(port, &ca, "/pods", &[]).0, 401);

    // The admin's client certificate (system:admin, system:masters).
    assert_eq!(get(port, &ca, "/healthz", &admin), (200, "ok".to_string()));
    s.apply(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"},
        "spec": {"containers": [{"name": "main", "image": "busybox",
            "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c", "head -c 8000000 /dev/zero | tail -c 1 > /dev/null; sleep 3600"]}]}}));
    s.until(&["get", "pod", "sleeper"], "the pod to run", |p| {
        p.as_ref()
            .is_some_and(|p| p["status"]["phase"] == "Running")
    });
    let (code, body) = get(port, &ca, "/pods", &admin);
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["kind"], "PodList");
    let sleeper = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["name"] == "sleeper")
        .unwrap_or_else(|| panic!("sleeper not in {body}"));
    assert_eq!(sleeper["spec"]["nodeName"], name.as_str());
    assert_eq!(sleeper["status"]["phase"], "Running");

    // The Summary API has the node and the pod, with memory in use.
    let summary = s.eventually("the pod in the stats summary", || {
        let (code, body) = get(port, &ca, "/stats/summary", &admin);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let pod = v["pods"]
            .as_array()?
            .iter()
            .find(|p| p["podRef"]["name"] == "sleeper")?
            .clone();
        (pod["containers"][0]["memory"]["workingSetBytes"].as_u64()? > 0).then_some((v, pod))
    });
    let (summary, pod) = summary;
    assert_eq!(summary["node"]["nodeName"], name.as_str());
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        summary["node"]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(summary["node"]["fs"]["capacityBytes"].as_u64().unwrap() > 0);
    assert!(
        summary["node"]["runtime"]["imageFs"]["usedBytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(pod["podRef"]["namespace"], "default");
    assert_eq!(pod["containers"][0]["name"], "main");
    assert!(pod["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    assert!(
        pod["containers"][0]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .is_some()
    );

    // The resource metrics, as metrics-server scrapes them.
    let (code, text) = get(port, &ca, "/metrics/resource", &admin);
    assert_eq!(code, 200, "{text}");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with(
                "container_memory_working_set_bytes{container=\"main\",namespace=\"default\",\
                 pod=\"sleeper\"}",
            )
        })
        .unwrap_or_else(|| panic!("no working set of sleeper in\n{text}"));
    let value: f64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(value > 0.0, "{line}");
    assert!(
        text.contains("# TYPE node_cpu_usage_seconds_total counter"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "resource_scrape_error 0"),
        "{text}"
    );
    let (code, text) = get(port, &ca, "/metrics", &admin);
    assert_eq!(code, 200);
    assert!(
        text.contains(&format!("kubelet_node_name{{node=\"{name}\"}} 1")),
        "{text}"
    );

    // A service account's token: authenticated, but RBAC grants it nothing on nodes.
    ok(s.kubectl(&["create", "serviceaccount", "scraper"]));
    let token = ok(s.kubectl(&["create", "token", "scraper"]));
    let auth = format!("Authorization: Bearer {}", token.trim());
    let bearer = ["-H", auth.as_str()];
    let user = "system:serviceaccount:default:scraper";
    assert_eq!(
        get(port, &ca, "/metrics/resource", &bearer),
        (
            403,
            format!(
                "Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[metrics])\n"
            )
        )
    );
    assert_eq!(
        get(port, &ca, "/pods", &bearer),
        (
            403,
            format!(
                "Forbidden (user={user}, verb=get, resource=nodes, subresource(s)=[pods proxy])\n"
            )
        )
    );
    // A token that is not one is no user.
    let bad = ["-H", "Authorization: Bearer not-a-token"];
    assert_eq!(get(port, &ca, "/healthz", &bad).0, 401);

    // Granted nodes/stats, it reads the summary (and still not the metrics).
    s.apply(
        &json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "node-stats-reader"},
        "rules": [{"apiGroups": [""], "resources": ["nodes/stats"], "verbs": ["get"]}]}),
    );
    s.apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": "scraper-node-stats"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "node-stats-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "scraper", "namespace": "default"}]}));
    let (code, body) = get(port, &ca, "/stats/summary", &bearer);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node"]["nodeName"], name.as_str());
    assert_eq!(get(port, &ca, "/metrics/resource", &bearer).0, 403);

    // The API server's kubelet client (as kubeadm names it): a certificate of the client
    // CA, allowed once bound to system:kubelet-api-admin; one of another CA is no user.
    let client_ca = s.dir.path().join("data/tls/client-ca");
    let (c, k) = client_cert(
        dir.path(),
        "apiserver",
        "kube-apiserver-kubelet-client",
        Some(&client_ca),
    );
    let apiserver = ["--cert", c.to_str().unwrap(), "--key", k.to_str().unwrap()];
    assert_eq!(
        get(port, &ca, "/healthz", &apiserver),
        (
            403,
            "Forbidden (user=kube-apiserver-kubelet-client, verb=get, resource=nodes, \
             subresource(s)=[healthz proxy])\n"
                .to_string()
        )
    );
    s.apply(&json!({"apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding", "metadata": {"name": "kubeadm:apiserver-kubelet-client"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
            "name": "system:kubelet-api-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
            "name": "kube-apiserver-kubelet-client"}]}));
    assert_eq!(get(port, &ca, "/pods", &apiserver).0, 200);
    assert_eq!(get(port, &ca, "/metrics/resource", &apiserver).0, 200);
    let (c, k) = client_cert(dir.path(), "stranger", "system:admin", None);
    let stranger = ["--cert", c.to_str().unwrap(), "--key", k.to_str().unwrap()];
    assert_eq!(get(port, &ca, "/healthz", &stranger).0, 401);
}

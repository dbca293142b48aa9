//! What a kubelet may do: the Node authorizer lets `system:node:<name>` read only the
//! secrets and config maps of pods bound to it, and NodeRestriction keeps it to its own
//! Node, Lease and pods.

use minik_tests::server::{Server, ok, text};
use serde_json::{Value, json};

/// A kubeconfig for node `name`, with a client certificate from the cluster's client CA.
fn node_kubeconfig(s: &Server, name: &str) -> String {
    let tls = s.dir.path().join("data").join("tls");
    let read = |n: &str| std::fs::read_to_string(tls.join(n)).unwrap();
    let ca_key = rcgen::KeyPair::from_pem(&read("client-ca.key")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&read("client-ca.crt"), ca_key).unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{name}"));
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    let dir = s.dir.path();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: node\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: c\n  context: {{cluster: c, user: node}}\ncurrent-context: c\n",
            port = s.port,
            ca = tls.join("server-ca.crt").display(),
            crt = dir.join(format!("{name}.crt")).display(),
            key = dir.join(format!("{name}.key")).display(),
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

fn pod(name: &str, node: &str, secret: &str, mirror: bool) -> String {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
            "env": [{"name": "S", "valueFrom": {"secretKeyRef": {"name": secret, "key": "a"}}}]}],
            "volumes": [{"name": "v", "configMap": {"name": format!("cm-{secret}")}}]}});
    if mirror {
        p["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "x"});
    }
    p.to_string()
}

#[test]
fn a_node_reaches_only_what_its_pods_use() {
    let s = Server::start();
    for n in ["n1", "n2"] {
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}});
        ok(s.kubectl_stdin(&["create", "-f", "-"], &node.to_string()));
        ok(s.kubectl(&[
            "create",
            "secret",
            "generic",
            &format!("s-{n}"),
            "--from-literal=a=b",
        ]));
        ok(s.kubectl(&[
            "create",
            "configmap",
            &format!("cm-s-{n}"),
            "--from-literal=a=b",
        ]));
        ok(s.kubectl_stdin(
            &["create", "-f", "-"],
            &pod(&format!("p-{n}"), n, &format!("s-{n}"), false),
        ));
    }
    // New nodes start tainted not-ready.
    let taints = ok(s.kubectl(&["get", "node", "n1", "-o", "jsonpath={.spec.taints[*].key}"]));
    assert_eq!(taints, "node.kubernetes.io/not-ready");
    let kc = node_kubeconfig(&s, "n1");
    let n1 = |args: &[&str]| s.kubectl(&[&["--kubeconfig", kc.as_str()][..], args].concat());
    let n1_in = |args: &[&str], input: &str| {
        s.kubectl_stdin(&[&["--kubeconfig", kc.as_str()][..], args].concat(), input)
    };
    assert!(ok(n1(&["auth", "whoami"])).contains("system:node:n1"));
    ok(n1(&["get", "secret", "s-n1"]));
    ok(n1(&["get", "configmap", "cm-s-n1"]));
    ok(n1(&["get", "nodes"]));
    ok(n1(&["get", "pods", "-A"]));
    for denied in [
        &["get", "secret", "s-n2"][..],
        &["get", "secrets"],
        &["get", "configmap", "cm-s-n2"],
    ] {
        let out = n1(denied);
        assert!(
            text(&out).contains("forbidden"),
            "{denied:?}: {}",
            text(&out)
        );
    }
    // Its own node it may change, not another's, and not its restricted labels.
    ok(n1(&["label", "node", "n1", "tier=edge"]));
    assert!(text(&n1(&["label", "node", "n2", "tier=edge"])).contains("forbidden"));
    let out = n1(&[
        "label",
        "node",
        "n1",
        "node-restriction.kubernetes.io/pool=a",
    ]);
    assert!(
        text(&out).contains(
            "node \"n1\" is not allowed to modify labels: node-restriction.kubernetes.io/pool"
        ),
        "{}",
        text(&out)
    );
    // Only mirror pods bound to itself.
    let out = n1_in(&["create", "-f", "-"], &pod("sneaky", "n1", "s-n1", false));
    assert!(
        text(&out).contains("node \"n1\" can only create mirror pods"),
        "{}",
        text(&out)
    );
    let out = n1_in(&["create", "-f", "-"], &pod("mirror2", "n2", "s-n1", true));
    assert!(
        text(&out).contains("can only create pods with spec.nodeName set to itself"),
        "{}",
        text(&out)
    );
    // Mirror pods reference no other objects.
    let out = n1_in(&["create", "-f", "-"], &pod("mirror1", "n1", "s-n1", true));
    assert!(
        text(&out).contains("node \"n1\" can not create pods that reference secrets"),
        "{}",
        text(&out)
    );
    let mut mirror: Value = serde_json::from_str(&pod("mirror1", "n1", "s-n1", true)).unwrap();
    mirror["spec"]["volumes"] = json!([]);
    mirror["spec"]["containers"][0]["env"] = json!([]);
    ok(n1_in(&["create", "-f", "-"], &mirror.to_string()));
    let out = n1(&["delete", "pod", "p-n2", "--wait=false"]);
    assert!(
        text(&out).contains("can only delete pods with spec.nodeName set to itself"),
        "{}",
        text(&out)
    );
    // Its own lease only.
    let lease = |n: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": n, "namespace": "kube-node-lease"}, "spec": {"holderIdentity": n}})
        .to_string()
    };
    ok(n1_in(&["create", "-f", "-"], &lease("n1")));
    assert!(text(&n1_in(&["create", "-f", "-"], &lease("n2"))).contains("forbidden"));
}

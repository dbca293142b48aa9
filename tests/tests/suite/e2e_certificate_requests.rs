//! CertificateSigningRequests: `kubectl certificate approve|deny` through the approval
//! subresource, allowed only to who may `approve` the signer; no system:masters certificates
//! from the kube-apiserver-client signer.

use base64::Engine;
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::json;

fn csr(name: &str, signer: &str, org: Option<&str>) -> String {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "someone");
    if let Some(o) = org {
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, o);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let pem = p.serialize_request(&key).unwrap().pem().unwrap();
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"signerName": signer, "usages": ["client auth"],
            "request": base64::engine::general_purpose::STANDARD.encode(pem)}})
    .to_string()
}

const APPROVER: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: csr-approver}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [certificatesigningrequests, certificatesigningrequests/approval]
  verbs: [get, list, watch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-csr-approver}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: csr-approver}
subjects: [{kind: User, name: bob}]
";

const SIGNERS: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: example-signers}
rules:
- apiGroups: [certificates.k8s.io]
  resources: [signers]
  resourceNames: [example.com/*]
  verbs: [approve]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bob-example-signers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: example-signers}
subjects: [{kind: User, name: bob}]
";

#[test]
fn approving_takes_the_approve_verb_on_the_signer() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "bob-t,bob,u-2\n").unwrap();
    let s = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()]);
    for n in ["one", "two", "three"] {
        ok(s.kubectl_stdin(&["create", "-f", "-"], &csr(n, "example.com/signer", None)));
    }
    ok(s.kubectl(&["certificate", "approve", "one"]));
    let conds = ok(s.kubectl(&[
        "get",
        "csr",
        "one",
        "-o",
        "jsonpath={.status.conditions[*].type}",
    ]));
    assert_eq!(conds, "Approved");
    ok(s.kubectl_stdin(&["apply", "-f", "-"], APPROVER));
    let k = &Kubectl::each(&s)[0];
    let out = k.run(&["--token", "bob-t", "certificate", "approve", "two"]);
    assert!(
        text(&out).contains(
            "user not permitted to approve requests with signerName \"example.com/signer\""
        ),
        "{}",
        text(&out)
    );
    ok(s.kubectl_stdin(&["apply", "-f", "-"], SIGNERS));
    for k in Kubectl::each(&s) {
        ok(k.run(&["--token", "bob-t", "certificate", "deny", "three"]));
    }
    let conds = ok(s.kubectl(&[
        "get",
        "csr",
        "three",
        "-o",
        "jsonpath={.status.conditions[*].type}",
    ]));
    assert_eq!(conds, "Denied");
    // An approved request cannot be denied too.
    let out = s.kubectl(&["certificate", "deny", "one"]);
    assert!(!out.status.success(), "{}", text(&out));
    // No system:masters client certificates by request.
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        &csr(
            "masters",
            "kubernetes.io/kube-apiserver-client",
            Some("system:masters"),
        ),
    );
    assert!(
        text(&out).contains("use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"),
        "{}",
        text(&out)
    );
}

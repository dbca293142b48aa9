//! The controller manager's certificate controllers with kubectl: approved requests of the
//! kubernetes.io signers are signed by the cluster CA the API server trusts for clients
//! (and the certificates work as credentials), kubelet client requests from bootstrap tokens
//! are approved automatically, invalid ones fail, denied ones stay unsigned.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::{Value, json};
use x509_parser::prelude::X509Certificate;

const CLIENT: &str = "kubernetes.io/kube-apiserver-client";
const KUBELET: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// A new key (PEM) and a request (PEM) for `cn` in `orgs`.
fn key_and_request(cn: &str, orgs: &[&str]) -> (String, String) {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    // rcgen keeps one value per attribute type; the organization OID as a custom type
    // carries a second group.
    for (i, o) in orgs.iter().enumerate() {
        let ty = match i {
            0 => rcgen::DnType::OrganizationName,
            _ => rcgen::DnType::CustomDnType(vec![2, 5, 4, 10]),
        };
        p.distinguished_name.push(ty, *o);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
    (key.serialize_pem(), csr)
}

fn csr_json(
    name: &str,
    signer: &str,
    request: &str,
    usages: &[&str],
    seconds: Option<i32>,
) -> String {
    let mut spec = json!({"signerName": signer, "usages": usages,
        "request": STANDARD.encode(request)});
    if let Some(s) = seconds {
        spec["expirationSeconds"] = json!(s);
    }
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name}, "spec": spec})
    .to_string()
}

/// The certificate issued for `name` (PEM), once there is one.
fn issued(s: &Server, name: &str) -> String {
    s.eventually(&format!("a certificate for {name}"), || {
        let b64 = ok(s.kubectl(&["get", "csr", name, "-o", "jsonpath={.status.certificate}"]));
        let pem = STANDARD.decode(b64.trim()).ok()?;
        (!pem.is_empty()).then(|| String::from_utf8(pem).unwrap())
    })
}

fn parse(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    block.contents
}

fn cert(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn client_ca(s: &Server) -> String {
    std::fs::read_to_string(s.dir.path().join("data/tls/client-ca.crt")).unwrap()
}

/// A kubeconfig for this server that authenticates with `cert_pem` and `key_pem`.
fn kubeconfig_with(s: &Server, name: &str, cert_pem: &str, key_pem: &str) -> String {
    let dir = s.dir.path();
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let config = json!({"apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": format!("https://127.0.0.1:{}", s.port),
            "certificate-authority": dir.join("data/tls/server-ca.crt")}}],
        "users": [{"name": "u", "user": {"client-certificate": crt, "client-key": key}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]});
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, config.to_string()).unwrap();
    path.to_string_lossy().into_owned()
}

/// `kubectl auth whoami` as the holder of `kubeconfig`: (username, groups).
fn whoami(k: &Kubectl, kubeconfig: &str) -> (String, Vec<String>) {
    let out = ok(k.run(&["--kubeconfig", kubeconfig, "auth", "whoami", "-o", "json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    let user = &v["status"]["userInfo"];
    let groups = user["groups"].as_array().unwrap().iter();
    (
        user["username"].as_str().unwrap().to_string(),
        groups.map(|g| g.as_str().unwrap().to_string()).collect(),
    )
}

fn conditions(s: &Server, name: &str) -> Vec<Value> {
    let csr = s.get_json(&["csr", name]);
    csr["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn approved_client_requests_get_certificates_the_api_server_accepts() {
    let s = Server::start();
    let ca_pem = client_ca(&s);
    let ca_der = parse(&ca_pem);
    let ca = cert(&ca_der);
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        let name = format!("jane-{i}");
        let (key, request) = key_and_request("jane", &["devs", "qa"]);
        let body = csr_json(
            &name,
            CLIENT,
            &request,
            &["digital signature", "client auth"],
            Some(3600),
        );
        ok(k.stdin(&["create", "-f", "-"], &body));
        ok(k.run(&["certificate", "approve", &name]));
        let pem = issued(&s, &name);
        let der = parse(&pem);
        let c = cert(&der);
        c.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(c.issuer().as_raw(), ca.subject().as_raw());
        let cn: Vec<&str> = c
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        let orgs: Vec<&str> = c
            .subject()
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!((cn, orgs), (vec!["jane"], vec!["devs", "qa"]));
        // An hour, from 5 minutes back.
        let v = c.validity();
        assert_eq!(
            v.not_after.timestamp() - v.not_before.timestamp(),
            3600 + 300
        );
        let eku = c.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert!(c.key_usage().unwrap().unwrap().value.digital_signature());
        assert!(!c.basic_constraints().unwrap().unwrap().value.ca);
        // The certificate is a credential.
        let kc = kubeconfig_with(&s, &name, &pem, &key);
        let (user, groups) = whoami(k, &kc);
        assert_eq!(user, "jane");
        for g in ["devs", "qa", "system:authenticated"] {
            assert!(groups.iter().any(|x| x == g), "{groups:?}");
        }
        let out = k.run(&["get", "csr"]);
        assert!(
            text(&out).contains(&name) && text(&out).contains("Approved,Issued"),
            "{}",
            text(&out)
        );
    }
}

fn bootstrap_token(id: &str, secret: &str) -> String {
    let b = |s: &str| STANDARD.encode(s);
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "data": {"token-id": b(id), "token-secret": b(secret),
            "usage-bootstrap-authentication": b("true")}})
    .to_string()
}

#[test]
fn kubelet_client_requests_from_bootstrap_tokens_are_approved_and_signed() {
    let s = Server::start();
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        &bootstrap_token("abcdef", "0123456789abcdef"),
    ));
    let ca_der = parse(&client_ca(&s));
    let ca = cert(&ca_der);
    let usages = ["digital signature", "key encipherment", "client auth"];
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        let (name, node) = (format!("node-csr-{i}"), format!("system:node:worker-{i}"));
        let (key, request) = key_and_request(&node, &["system:nodes"]);
        let body = csr_json(&name, KUBELET, &request, &usages, None);
        ok(k.stdin(
            &["--token", "abcdef.0123456789abcdef", "create", "-f", "-"],
            &body,
        ));
        let pem = issued(&s, &name);
        let csr = s.get_json(&["csr", &name]);
        assert_eq!(csr["spec"]["username"], "system:bootstrap:abcdef");
        let approved = &conditions(&s, &name)[0];
        assert_eq!(approved["type"], "Approved");
        assert_eq!(approved["reason"], "AutoApproved");
        assert_eq!(
            approved["message"],
            "Auto approving kubelet client certificate after SubjectAccessReview."
        );
        let der = parse(&pem);
        let c = cert(&der);
        c.verify_signature(Some(ca.public_key())).unwrap();
        // The signer's default: a year (the CA outlives it).
        let v = c.validity();
        assert_eq!(
            v.not_after.timestamp() - v.not_before.timestamp(),
            365 * 86400
        );
        let (user, groups) = whoami(k, &kubeconfig_with(&s, &name, &pem, &key));
        assert_eq!(user, node);
        assert!(groups.iter().any(|g| g == "system:nodes"), "{groups:?}");
    }
}

#[test]
fn invalid_requests_fail_and_denied_or_foreign_ones_stay_unsigned() {
    let s = Server::start();
    let k = &Kubectl::each(&s)[0];
    // A kubelet client certificate must be in system:nodes.
    let (_, request) = key_and_request("system:node:x", &["devs"]);
    let usages = ["digital signature", "client auth"];
    ok(k.stdin(
        &["create", "-f", "-"],
        &csr_json("wrong-org", KUBELET, &request, &usages, None),
    ));
    ok(k.run(&["certificate", "approve", "wrong-org"]));
    let failed = s.eventually("the Failed condition", || {
        conditions(&s, "wrong-org")
            .into_iter()
            .find(|c| c["type"] == "Failed")
    });
    assert_eq!(failed["reason"], "SignerValidationFailure");
    assert_eq!(
        failed["message"],
        "subject organization is not system:nodes"
    );
    // Denied, and another signer's: neither is signed.
    let (_, request) = key_and_request("bob", &[]);
    let client_usages = ["client auth"];
    ok(k.stdin(
        &["create", "-f", "-"],
        &csr_json("denied", CLIENT, &request, &client_usages, None),
    ));
    ok(k.run(&["certificate", "deny", "denied"]));
    let foreign = csr_json(
        "foreign",
        "example.com/signer",
        &request,
        &client_usages,
        None,
    );
    ok(k.stdin(&["create", "-f", "-"], &foreign));
    ok(k.run(&["certificate", "approve", "foreign"]));
    // One approved after them is signed: the signer has seen them all by then.
    ok(k.stdin(
        &["create", "-f", "-"],
        &csr_json("after", CLIENT, &request, &client_usages, None),
    ));
    ok(k.run(&["certificate", "approve", "after"]));
    issued(&s, "after");
    for name in ["denied", "foreign", "wrong-org"] {
        let csr = s.get_json(&["csr", name]);
        assert!(csr["status"]["certificate"].is_null(), "{name}: {csr}");
    }
    let denied = conditions(&s, "denied");
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["type"], "Denied");
}

//! Issuing, approving and cleaning, without a server.

use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use super::request::{self, tests::pem};
use super::sign::{self, Authority};

fn ca(days: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "test-ca");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
    p.not_after = OffsetDateTime::now_utc() + time::Duration::days(days);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn durations_follow_kube_controller_manager() {
    let year = sign::DEFAULT_DURATION;
    assert_eq!(sign::duration(None, year), year);
    assert_eq!(sign::duration(Some(3600), year), Duration::from_secs(3600));
    assert_eq!(sign::duration(Some(60), year), Duration::from_secs(600));
    assert_eq!(sign::duration(Some(i32::MAX), year), year);
    let now = OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap();
    let far = now + time::Duration::days(3650);
    let (nb, na) = sign::validity(now, Duration::from_secs(3600), far).unwrap();
    assert_eq!(nb, now - time::Duration::minutes(5));
    assert_eq!(na, now + time::Duration::hours(1));
    // Long certificates are backdated with their start.
    let (nb, na) = sign::validity(now, Duration::from_secs(86400), far).unwrap();
    assert_eq!(na, nb + time::Duration::days(1));
    // Never past the CA's end; nothing from an expired CA.
    let soon = now + time::Duration::minutes(30);
    assert_eq!(sign::validity(now, year, soon).unwrap().1, soon);
    let past = now - time::Duration::minutes(1);
    assert!(sign::validity(now, year, past).is_err());
}

#[test]
fn usages_become_key_usages_in_gos_order() {
    let (bits, ext) = sign::key_usages(&strings(&[
        "client auth",
        "digital signature",
        "server auth",
        "key encipherment",
    ]))
    .unwrap();
    assert_eq!(
        bits,
        [
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyEncipherment
        ]
    );
    assert_eq!(
        ext,
        [
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        ]
    );
    assert_eq!(
        sign::key_usages(&strings(&["flying"])).unwrap_err(),
        "unrecognized usage values: [\"flying\"]"
    );
}

#[test]
fn certificates_carry_the_request_and_verify_against_the_ca() {
    let (ca_pem, ca_key) = ca(3650);
    let authority = Authority::new(&ca_pem, &ca_key).unwrap();
    let text = pem("alice", &["dev", "ops"], &["alice.example", "10.0.0.7"]);
    let req = request::parse(text.as_bytes()).unwrap();
    let now = OffsetDateTime::now_utc();
    let usages = strings(&["digital signature", "client auth"]);
    let out = authority
        .issue(&req, &usages, Duration::from_secs(3600), now)
        .unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(out.as_bytes()).unwrap();
    let cert = block.parse_x509().unwrap();
    let (_, ca_block) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
    let ca_cert = ca_block.parse_x509().unwrap();
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
    assert_eq!(cert.subject().as_raw(), req.subject.as_slice());
    let orgs: Vec<&str> = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap())
        .collect();
    assert_eq!(orgs, ["dev", "ops"]);
    assert_eq!(cert.public_key().raw, req.public_key.as_slice());
    let v = cert.validity();
    assert_eq!(
        v.not_after.timestamp() - v.not_before.timestamp(),
        3600 + 300
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_encipherment());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca);
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(!san.critical);
    let names = &san.value.general_names;
    assert!(names.contains(&GeneralName::DNSName("alice.example")));
    assert!(names.contains(&GeneralName::IPAddress(&[10, 0, 0, 7])));
    // Serial numbers differ between certificates.
    let again = authority
        .issue(&req, &usages, Duration::from_secs(3600), now)
        .unwrap();
    let (_, b2) = x509_parser::pem::parse_x509_pem(again.as_bytes()).unwrap();
    assert_ne!(b2.parse_x509().unwrap().serial, cert.serial);
}

fn csr(value: serde_json::Value) -> CertificateSigningRequest {
    serde_json::from_value(value).unwrap()
}

#[test]
fn kubelet_client_requests_are_recognized_for_their_requester() {
    let text = pem("system:node:n1", &["system:nodes"], &[]);
    let req = request::parse(text.as_bytes()).unwrap();
    let spec = |user: &str, signer: &str| {
        csr(
            json!({"metadata": {"name": "c"}, "spec": {"request": "", "signerName": signer,
            "username": user, "usages": ["digital signature", "client auth"]}}),
        )
    };
    let kubelet = request::KUBELET_CLIENT;
    let subs = |c: &CertificateSigningRequest| -> Vec<&str> {
        super::approver::recognized(c, &req)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    assert_eq!(
        subs(&spec("system:node:n1", kubelet)),
        ["selfnodeclient", "nodeclient"]
    );
    assert_eq!(subs(&spec("system:bootstrap:abc", kubelet)), ["nodeclient"]);
    assert!(subs(&spec("system:node:n1", request::KUBE_APISERVER_CLIENT)).is_empty());
}

#[test]
fn kubelet_serving_requests_are_recognized_only_for_the_node_itself() {
    let text = pem("system:node:n1", &["system:nodes"], &["n1", "10.0.0.7"]);
    let req = request::parse(text.as_bytes()).unwrap();
    let spec = |user: &str, usages: &[&str]| {
        csr(
            json!({"metadata": {"name": "c"}, "spec": {"request": "", "usages": usages,
            "signerName": request::KUBELET_SERVING, "username": user}}),
        )
    };
    let subs = |c: &CertificateSigningRequest| -> Vec<&str> {
        super::approver::recognized(c, &req)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    let serving = ["digital signature", "server auth"];
    assert_eq!(subs(&spec("system:node:n1", &serving)), ["selfnodeserving"]);
    // Another node, a bootstrap token, or a client usage: not recognized.
    assert!(subs(&spec("system:node:n2", &serving)).is_empty());
    assert!(subs(&spec("system:bootstrap:abc", &serving)).is_empty());
    assert!(
        subs(&spec(
            "system:node:n1",
            &["digital signature", "client auth"]
        ))
        .is_empty()
    );
}

#[test]
fn old_and_expired_requests_are_cleaned() {
    let now: Timestamp = "2030-01-02T00:00:00Z".parse().unwrap();
    let at = |t: &str, conds: serde_json::Value, cert: Option<&str>| {
        let mut v = json!({"metadata": {"name": "c", "creationTimestamp": t},
            "spec": {"request": "", "signerName": "example.com/x"},
            "status": {"conditions": conds}});
        if let Some(c) = cert {
            v["status"]["certificate"] = json!(c);
        }
        csr(v)
    };
    let cond = |t: &str, when: &str| json!([{"type": t, "status": "True", "lastUpdateTime": when}]);
    let recent = "2030-01-01T23:30:00Z";
    let old = "2030-01-01T22:00:00Z";
    assert!(super::cleaner::due(&at(recent, json!([]), None), now).is_none());
    assert!(super::cleaner::due(&at("2029-12-31T23:00:00Z", json!([]), None), now).is_some());
    assert!(super::cleaner::due(&at(old, cond("Denied", old), None), now).is_some());
    assert!(super::cleaner::due(&at(old, cond("Denied", recent), None), now).is_none());
    assert!(super::cleaner::due(&at(old, cond("Failed", old), None), now).is_some());
    // Approved but not issued stays; issued an hour ago goes.
    assert!(super::cleaner::due(&at(old, cond("Approved", old), None), now).is_none());
    let encode =
        |pem: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem);
    let b64 = encode(&ca(3650).0);
    assert!(super::cleaner::due(&at(old, cond("Approved", old), Some(&b64)), now).is_some());
    assert!(super::cleaner::due(&at(recent, cond("Approved", recent), Some(&b64)), now).is_none());
    // A certificate that has expired goes at once.
    let short = encode(&ca(1).0);
    let later = Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(48);
    assert_eq!(
        super::cleaner::due(&at(recent, cond("Approved", recent), Some(&short)), later),
        Some("its certificate has expired")
    );
}

//! `minik certificate check|rotate`, and leaf certificates renewed at start when near their
//! end or missing a name the server now needs.

use minik_tests::minik_bin;
use minik_tests::server::{Server, ok, text};

fn minik(args: &[&str], data: &std::path::Path) -> std::process::Output {
    std::process::Command::new(minik_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// The DAYS LEFT column of `check` for one certificate.
fn days_left(check: &str, name: &str) -> i64 {
    let line = check
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not listed:\n{check}"));
    // The column after the expiry time (RFC 3339).
    let cols: Vec<&str> = line.split_whitespace().collect();
    let at = cols
        .iter()
        .position(|c| c.ends_with('Z') && c.contains('T'))
        .expect("expiry");
    cols[at + 1].parse().unwrap()
}

/// A client-admin certificate signed by the cluster's client CA, valid for `days` days.
fn short_lived_admin(tls: &std::path::Path, days: i64) {
    let ca_key = std::fs::read_to_string(tls.join("client-ca.key")).unwrap();
    let ca_pem = std::fs::read_to_string(tls.join("client-ca.crt")).unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca_pem, rcgen::KeyPair::from_pem(&ca_key).unwrap())
            .unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "system:admin");
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer).unwrap();
    std::fs::write(tls.join("client-admin.crt"), cert.pem()).unwrap();
    std::fs::write(tls.join("client-admin.key"), key.serialize_pem()).unwrap();
}

#[test]
fn check_rotate_and_renewal_at_start() {
    let mut s = Server::start();
    let data = s.dir.path().join("data");
    let tls = data.join("tls");
    ok(s.kubectl(&["create", "configmap", "kept"]));
    s.stop();
    let out = minik(&["certificate", "check"], &data);
    let check = ok(out);
    for name in [
        "server-ca",
        "client-ca",
        "serving-kube-apiserver",
        "client-admin",
        "client-auth-proxy",
    ] {
        assert!(check.contains(name), "{check}");
    }
    assert!(days_left(&check, "serving-kube-apiserver") > 300, "{check}");
    assert!(days_left(&check, "server-ca") > 3000, "{check}");
    // Rotation issues new leaves under the same CAs: the old admin kubeconfig still works.
    let before = std::fs::read_to_string(tls.join("serving-kube-apiserver.crt")).unwrap();
    let old_kubeconfig = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let out = ok(minik(&["certificate", "rotate"], &data));
    assert!(out.contains("restart the server"), "{out}");
    let after = std::fs::read_to_string(tls.join("serving-kube-apiserver.crt")).unwrap();
    assert_ne!(before, after);
    assert!(std::fs::read_dir(&tls).unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("backup-")
    }));
    let out = minik(&["certificate", "rotate", "--service", "server-ca"], &data);
    assert!(
        !out.status.success() && text(&out).contains("not a leaf certificate"),
        "{}",
        text(&out)
    );
    s.resume();
    ok(s.kubectl(&["get", "configmap", "kept"]));
    let old = s.dir.path().join("old.yaml");
    std::fs::write(&old, old_kubeconfig).unwrap();
    ok(s.kubectl(&[
        "--kubeconfig",
        old.to_str().unwrap(),
        "get",
        "configmap",
        "kept",
    ]));
    // A leaf within 90 days of its end is renewed at start; a new --tls-san gets a new
    // serving certificate.
    s.stop();
    short_lived_admin(&tls, 10);
    let check = ok(minik(&["certificate", "check"], &data));
    assert!(days_left(&check, "client-admin") <= 10, "{check}");
    assert!(check.contains("RENEWS AT NEXT START"), "{check}");
    s.extra = vec!["--tls-san".into(), "minik.example.test".into()];
    s.resume();
    let check = ok(minik(&["certificate", "check"], &data));
    assert!(days_left(&check, "client-admin") > 300, "{check}");
    let serving = std::fs::read_to_string(tls.join("serving-kube-apiserver.crt")).unwrap();
    let info = minik_auth::certs::inspect("serving", &serving).unwrap();
    assert!(
        info.names.contains(&"minik.example.test".to_string()),
        "{:?}",
        info.names
    );
    assert!(
        info.names.contains(&"127.0.0.1".to_string()),
        "{:?}",
        info.names
    );
    ok(s.kubectl(&["get", "configmap", "kept"]));
}

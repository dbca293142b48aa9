//! Secrets encrypted at rest with --secrets-encryption: the datastore never holds a secret's
//! data in the clear, clients see it as always, and `minik secrets-encrypt rotate` re-seals
//! every secret with a new key that survives a restart.

use base64::Engine;
use minik_tests::minik_bin;
use minik_tests::server::{Server, ok, text};

fn secrets_encrypt(s: &Server, command: &str) -> std::process::Output {
    std::process::Command::new(minik_bin())
        .args(["secrets-encrypt", command, "--kubeconfig"])
        .arg(&s.kubeconfig)
        .output()
        .unwrap()
}

/// Whether any file of the datastore holds `needle`.
fn stored(s: &Server, needle: &str) -> bool {
    let db = s.dir.path().join("data").join("db");
    std::fs::read_dir(&db).unwrap().any(|e| {
        let bytes = std::fs::read(e.unwrap().path()).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

fn active_key(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Active Key: "))
        .unwrap_or_else(|| panic!("no active key in:\n{status}"))
        .to_string()
}

#[test]
fn secrets_are_sealed_and_keys_rotate() {
    let mut s = Server::start_with(&["--secrets-encryption"]);
    let marker = "hunter2-secret-marker";
    let encoded = base64::engine::general_purpose::STANDARD.encode(marker);
    ok(s.kubectl(&[
        "create",
        "secret",
        "generic",
        "s1",
        &format!("--from-literal=password={marker}"),
    ]));
    ok(s.kubectl(&[
        "create",
        "configmap",
        "c1",
        "--from-literal=k=configmap-plain-marker",
    ]));
    let got = ok(s.kubectl(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"]));
    assert_eq!(got, encoded);
    let status = ok(secrets_encrypt(&s, "status"));
    assert!(status.contains("Encryption Status: Enabled"), "{status}");
    let first = active_key(&status);
    assert!(
        status.contains(&format!("Secrets encrypted with {first}: 1")),
        "{status}"
    );
    s.stop();
    assert!(
        !stored(&s, &encoded) && !stored(&s, marker),
        "secret data in the clear"
    );
    assert!(stored(&s, "k8s:enc:aesgcm:v1:"));
    assert!(
        stored(&s, "configmap-plain-marker"),
        "config maps are not sealed"
    );
    // Restarted without the flag, the key on disk still opens (and seals) secrets.
    s.extra.clear();
    s.resume();
    assert_eq!(
        ok(s.kubectl(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"])),
        encoded
    );
    ok(s.kubectl(&["create", "secret", "generic", "s2", "--from-literal=a=b"]));
    let out = ok(secrets_encrypt(&s, "rotate"));
    let second = active_key(&out);
    assert_ne!(first, second);
    assert!(out.contains("Secrets re-encrypted: 2"), "{out}");
    assert!(
        out.contains(&format!("Secrets encrypted with {second}: 2")),
        "{out}"
    );
    assert!(!out.contains(&first), "the old key is still listed: {out}");
    s.stop();
    s.resume();
    assert_eq!(
        ok(s.kubectl(&["get", "secret", "s1", "-o", "jsonpath={.data.password}"])),
        encoded
    );
    ok(s.kubectl(&["get", "secret", "s2"]));
}

#[test]
fn without_encryption_status_says_so_and_rotate_refuses() {
    let s = Server::start();
    ok(s.kubectl(&["create", "secret", "generic", "plain", "--from-literal=a=b"]));
    let status = ok(secrets_encrypt(&s, "status"));
    assert!(status.contains("Encryption Status: Disabled"), "{status}");
    assert!(status.contains("Secrets not encrypted: 1"), "{status}");
    let out = secrets_encrypt(&s, "rotate");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("secrets encryption is not set up"),
        "{}",
        text(&out)
    );
}

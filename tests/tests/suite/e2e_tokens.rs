//! Bootstrap tokens and legacy service-account token secrets authenticate as Kubernetes'
//! do, and stop working when their secret goes (or expires).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::json;

fn unauthorized(out: &std::process::Output) -> bool {
    let t = text(out);
    !out.status.success() && (t.contains("Unauthorized") || t.contains("provide credentials"))
}

fn bootstrap_secret(id: &str, secret: &str, expiration: Option<&str>) -> String {
    let b = |s: &str| STANDARD.encode(s);
    let mut data = json!({"token-id": b(id), "token-secret": b(secret),
        "usage-bootstrap-authentication": b("true"),
        "auth-extra-groups": b("system:bootstrappers:worker")});
    if let Some(e) = expiration {
        data["expiration"] = json!(b(e));
    }
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "data": data})
    .to_string()
}

#[test]
fn bootstrap_tokens_authenticate_until_deleted_or_expired() {
    let s = Server::start();
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        &bootstrap_secret("abcdef", "0123456789abcdef", None),
    ));
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        &bootstrap_secret("old000", "0123456789abcdef", Some("2020-01-01T00:00:00Z")),
    ));
    for k in Kubectl::each(&s) {
        let who = ok(k.run(&[
            "--token",
            "abcdef.0123456789abcdef",
            "auth",
            "whoami",
            "-o",
            "json",
        ]));
        let who: serde_json::Value = serde_json::from_str(&who).unwrap();
        assert_eq!(
            who["status"]["userInfo"]["username"],
            "system:bootstrap:abcdef"
        );
        let groups = who["status"]["userInfo"]["groups"].to_string();
        assert!(
            groups.contains("\"system:bootstrappers\"")
                && groups.contains("system:bootstrappers:worker"),
            "{groups}"
        );
        assert!(unauthorized(&k.run(&[
            "--token",
            "abcdef.0123456789abcdee",
            "get",
            "pods"
        ])));
        assert!(unauthorized(&k.run(&[
            "--token",
            "old000.0123456789abcdef",
            "get",
            "pods"
        ])));
    }
    ok(s.kubectl(&[
        "delete",
        "secret",
        "-n",
        "kube-system",
        "bootstrap-token-abcdef",
    ]));
    assert!(unauthorized(&s.kubectl(&[
        "--token",
        "abcdef.0123456789abcdef",
        "get",
        "pods"
    ])));
}

#[test]
fn legacy_service_account_token_secrets() {
    let s = Server::start();
    ok(s.kubectl(&["create", "serviceaccount", "builder"]));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "builder-token", "annotations": {"kubernetes.io/service-account.name": "builder"}}});
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &secret.to_string()));
    let got: serde_json::Value = serde_json::from_str(&ok(s.kubectl(&[
        "get",
        "secret",
        "builder-token",
        "-o",
        "json",
    ])))
    .unwrap();
    let token = String::from_utf8(
        STANDARD
            .decode(got["data"]["token"].as_str().expect("a token"))
            .unwrap(),
    )
    .unwrap();
    let ca = String::from_utf8(
        STANDARD
            .decode(got["data"]["ca.crt"].as_str().expect("ca.crt"))
            .unwrap(),
    )
    .unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        STANDARD
            .decode(got["data"]["namespace"].as_str().unwrap())
            .unwrap(),
        b"default"
    );
    assert!(got["metadata"]["annotations"]["kubernetes.io/service-account.uid"].is_string());
    for k in Kubectl::each(&s) {
        let who = ok(k.run(&["--token", &token, "auth", "whoami"]));
        assert!(
            who.contains("system:serviceaccount:default:builder"),
            "{who}"
        );
    }
    // A secret for an account that does not exist is refused.
    let orphan = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": "orphan", "annotations": {"kubernetes.io/service-account.name": "nobody"}}});
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &orphan.to_string());
    assert!(
        text(&out).contains("service account \\\"nobody\\\"")
            || text(&out).contains("service account \"nobody\""),
        "{}",
        text(&out)
    );
    ok(s.kubectl(&["delete", "secret", "builder-token"]));
    assert!(unauthorized(
        &s.kubectl(&["--token", &token, "get", "pods"])
    ));
}

fn minik_token(s: &Server, args: &[&str]) -> std::process::Output {
    std::process::Command::new(minik_tests::minik_bin())
        .arg("token")
        .args(args)
        .arg("--kubeconfig")
        .arg(&s.kubeconfig)
        .output()
        .unwrap()
}

#[test]
fn minik_token_create_list_delete() {
    let s = Server::start();
    let token = ok(minik_token(
        &s,
        &[
            "create",
            "--ttl",
            "1h",
            "--description",
            "agent join",
            "--groups",
            "system:bootstrappers:workers",
        ],
    ));
    let token = token.trim();
    let (id, _) = token.split_once('.').expect("id.secret");
    let who = ok(s.kubectl(&["--token", token, "auth", "whoami"]));
    assert!(
        who.contains(&format!("system:bootstrap:{id}"))
            && who.contains("system:bootstrappers:workers"),
        "{who}"
    );
    let list = ok(minik_token(&s, &["list"]));
    let line = list
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains("authentication,signing") && line.contains("agent join"),
        "{line}"
    );
    let out = minik_token(&s, &["create", "--groups", "admins"]);
    assert!(
        !out.status.success() && text(&out).contains("must start with system:bootstrappers:"),
        "{}",
        text(&out)
    );
    ok(minik_token(&s, &["delete", token]));
    assert!(!ok(minik_token(&s, &["list"])).contains(id));
    assert!(unauthorized(&s.kubectl(&["--token", token, "get", "pods"])));
}

//! Webhook token authentication and the webhook authorizer, against services the test
//! serves over HTTPS with its own CA, configured by kubeconfig files as kube-apiserver's are.

use axum::Json;
use axum::routing::post;
use minik_tests::server::{Kubectl, Server, ok, text};
use minik_tests::tls_server::{kubeconfig, serve_tls};
use serde_json::{Value, json};

async fn hooks(cert: &str, key: &str) -> u16 {
    let app = axum::Router::new()
        .route(
            "/authenticate",
            post(|Json(review): Json<Value>| async move {
                let status = match review["spec"]["token"].as_str() {
                    Some("t-carol") => json!({"authenticated": true,
                        "user": {"username": "carol", "uid": "c-1", "groups": ["devs"]}}),
                    _ => json!({"authenticated": false}),
                };
                Json(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}))
            }),
        )
        .route(
            "/authorize",
            post(|Json(review): Json<Value>| async move {
                let spec = &review["spec"];
                let res = spec["resourceAttributes"]["resource"].as_str().unwrap_or("");
                let status = match (spec["user"].as_str(), res) {
                    (Some("carol"), "pods") => json!({"allowed": true}),
                    (Some("carol"), "secrets") => {
                        json!({"allowed": false, "denied": true, "reason": "no secrets for carol"})
                    }
                    _ => json!({"allowed": false}),
                };
                Json(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "status": status}))
            }),
        );
    serve_tls(app, cert, key, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_authenticate_and_authorize() {
    let dir = tempfile::tempdir().unwrap();
    let pki = minik_auth::Pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
    let port = hooks(&pki.serving.cert_pem, &pki.serving.key_pem).await;
    let base = format!("https://127.0.0.1:{port}");
    let authn = kubeconfig(
        dir.path(),
        "authn",
        &format!("{base}/authenticate"),
        &pki.server_ca.cert_pem,
    );
    let authz = kubeconfig(
        dir.path(),
        "authz",
        &format!("{base}/authorize"),
        &pki.server_ca.cert_pem,
    );
    tokio::task::block_in_place(|| {
        let s = Server::start_with(&[
            "--authentication-token-webhook-config-file",
            &authn,
            "--authorization-mode",
            "Node,RBAC,Webhook",
            "--authorization-webhook-config-file",
            &authz,
        ]);
        ok(s.kubectl(&["create", "secret", "generic", "s", "--from-literal=a=b"]));
        for k in Kubectl::each(&s) {
            let carol = |args: &[&str]| k.run(&[&["--token", "t-carol"][..], args].concat());
            let who = ok(carol(&["auth", "whoami"]));
            assert!(who.contains("carol") && who.contains("devs"), "{who}");
            ok(carol(&["get", "pods"]));
            let out = carol(&["get", "secrets"]);
            assert!(!out.status.success());
            assert!(
                text(&out).contains("secrets is forbidden: User \"carol\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\": no secrets for carol"),
                "{}",
                text(&out)
            );
            // No opinion from anyone is a refusal.
            let out = carol(&["get", "configmaps"]);
            assert!(text(&out).contains("forbidden"), "{}", text(&out));
            let out = k.run(&["--token", "t-nobody", "get", "pods"]);
            assert!(!out.status.success());
            assert!(!text(&out).contains("forbidden"), "{}", text(&out));
            ok(k.run(&["get", "secrets"]));
        }
    });
}

#[test]
fn bad_authorization_settings_stop_the_server_at_start() {
    let run = |args: &[&str]| minik_tests::server::start_fails(args, &[]);
    let err = run(&["--authorization-mode", "RBAC,Magic"]);
    assert!(
        err.contains("unknown authorization mode \"Magic\""),
        "{err}"
    );
    let err = run(&["--authorization-mode", "RBAC,Webhook"]);
    assert!(
        err.contains("the Webhook authorization mode needs --authorization-webhook-config-file"),
        "{err}"
    );
    let err = run(&[
        "--authentication-token-webhook-config-file",
        "/nonexistent.yaml",
    ]);
    assert!(
        err.contains("--authentication-token-webhook-config-file: reading /nonexistent.yaml"),
        "{err}"
    );
}

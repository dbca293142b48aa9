//! ImagePolicyWebhook: pods' images reviewed by a service the test serves (its own CA),
//! configured through the AdmissionConfiguration and a kubeconfig file.

use axum::Json;
use axum::routing::post;
use minik_tests::server::{Server, ok, text};
use minik_tests::tls_server::{kubeconfig, serve_tls};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_reviewed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = minik_auth::Pki::load_or_create(&dir.path().join("pki"), &[]).unwrap();
    let app = axum::Router::new().route(
        "/review",
        post(|Json(review): Json<Value>| async move {
            let evil = review["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["image"].as_str().unwrap_or("").contains("evil"));
            let status = if evil {
                json!({"allowed": false, "reason": "evil images are not allowed"})
            } else {
                json!({"allowed": true})
            };
            Json(json!({"apiVersion": "imagepolicy.k8s.io/v1alpha1", "kind": "ImageReview", "status": status}))
        }),
    );
    let port = serve_tls(app, &pki.serving.cert_pem, &pki.serving.key_pem, None).await;
    let kc = kubeconfig(
        dir.path(),
        "images",
        &format!("https://127.0.0.1:{port}/review"),
        &pki.server_ca.cert_pem,
    );
    let config = dir.path().join("admission.yaml");
    std::fs::write(&config, format!("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: ImagePolicyWebhook\n  configuration:\n    imagePolicy:\n      kubeConfigFile: {kc}\n      allowTTL: 50\n      denyTTL: 50\n      defaultAllow: false\n")).unwrap();
    tokio::task::block_in_place(|| {
        let s = Server::start_with(&[
            "--enable-admission-plugins",
            "ImagePolicyWebhook",
            "--admission-control-config-file",
            config.to_str().unwrap(),
        ]);
        ok(s.kubectl(&["run", "good", "--image=busybox"]));
        let out = s.kubectl(&["run", "bad", "--image=example.com/evil:1"]);
        assert!(
            text(&out).contains("image policy webhook backend denied one or more images: evil images are not allowed"),
            "{}",
            text(&out)
        );
    });
}

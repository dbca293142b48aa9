//! A CRD with two versions converted by a webhook (a test HTTPS server on loopback): objects
//! written in one version are stored in the storage version and read, listed and watched in
//! either, converted by the webhook.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::post;
use base64::Engine;
use minik_tests::server::{Kubectl, Server, ok};
use minik_tests::tls_server::serve_tls;
use serde_json::{Value, json};

/// v1 calls it `title`, v2 `heading`.
fn convert(mut obj: Value, to: &str) -> Value {
    let spec = obj["spec"].as_object_mut().expect("spec");
    match to {
        "example.com/v2" => {
            if let Some(t) = spec.remove("title") {
                spec.insert("heading".into(), t);
            }
        }
        _ => {
            if let Some(t) = spec.remove("heading") {
                spec.insert("title".into(), t);
            }
        }
    }
    obj["apiVersion"] = json!(to);
    obj
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_converts_between_versions() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = minik_auth::Pki::load_or_create(dir.path(), &[]).unwrap();
    let calls = Arc::new(Mutex::new(0usize));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/convert",
        post(move |Json(review): Json<Value>| async move {
            *counted.lock().unwrap() += 1;
            let to = review["request"]["desiredAPIVersion"]
                .as_str()
                .unwrap()
                .to_string();
            let objects: Vec<Value> = review["request"]["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| convert(o.clone(), &to))
                .collect();
            Json(
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
                "response": {"uid": review["request"]["uid"], "convertedObjects": objects,
                    "result": {"status": "Success"}}}),
            )
        }),
    );
    let port = serve_tls(app, &pki.serving.cert_pem, &pki.serving.key_pem, None).await;
    let ca = base64::engine::general_purpose::STANDARD.encode(&pki.server_ca.cert_pem);
    let schema = |field: &str| {
        json!({"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object",
            "properties": {field: {"type": "string"}}}}}})
    };
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "notes.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "notes", "singular": "note", "kind": "Note"},
            "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                "clientConfig": {"url": format!("https://127.0.0.1:{port}/convert"), "caBundle": ca}}},
            "versions": [
                {"name": "v1", "served": true, "storage": true, "schema": schema("title")},
                {"name": "v2", "served": true, "storage": false, "schema": schema("heading")}]}});
    let k = Kubectl::each(&s).remove(0);
    tokio::task::block_in_place(|| {
        ok(k.stdin(&["apply", "-f", "-"], &crd.to_string()));
        ok(k.run(&[
            "wait",
            "--for=condition=Established",
            "crd/notes.example.com",
            "--timeout=10s",
        ]));
        // Written as v2, stored as v1 (the storage version).
        let note = json!({"apiVersion": "example.com/v2", "kind": "Note",
            "metadata": {"name": "n1", "namespace": "default"}, "spec": {"heading": "hello"}});
        ok(k.stdin(&["create", "-f", "-"], &note.to_string()));
        let v2: Value = serde_json::from_str(&ok(k.run(&[
            "get",
            "--raw",
            "/apis/example.com/v2/namespaces/default/notes/n1",
        ])))
        .unwrap();
        assert_eq!(v2["spec"], json!({"heading": "hello"}));
        let v1: Value = serde_json::from_str(&ok(k.run(&[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/notes/n1",
        ])))
        .unwrap();
        assert_eq!(v1["apiVersion"], "example.com/v1");
        assert_eq!(v1["spec"], json!({"title": "hello"}));
        let list: Value = serde_json::from_str(&ok(k.run(&[
            "get",
            "--raw",
            "/apis/example.com/v2/namespaces/default/notes",
        ])))
        .unwrap();
        assert_eq!(list["items"][0]["spec"], json!({"heading": "hello"}));
        // A watch of v2 sees the object as v2.
        let watched = ok(k.run(&[
            "get",
            "--raw",
            "/apis/example.com/v2/namespaces/default/notes?watch=true&timeoutSeconds=1",
        ]));
        let first: Value = serde_json::Deserializer::from_str(&watched)
            .into_iter::<Value>()
            .next()
            .expect("an event")
            .unwrap();
        assert_eq!(first["type"], "ADDED");
        assert_eq!(first["object"]["spec"], json!({"heading": "hello"}));
    });
    assert!(*calls.lock().unwrap() >= 3, "the webhook converted");
}

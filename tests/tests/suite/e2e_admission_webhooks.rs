//! Admission webhooks served by the test (HTTPS on loopback, its own CA): a mutating one
//! reached by URL labels config maps with a JSONPatch and warns, a validating one reached
//! through a Service and its Endpoints refuses config maps with a `forbidden` key; selectors,
//! failurePolicy and dry run behave as kube-apiserver's do.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::routing::post;
use base64::Engine;
use minik_tests::server::{Kubectl, Server, ok, text};
use minik_tests::tls_server::serve_tls;
use serde_json::{Value, json};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The test's webhook server: /mutate and /validate; every review it gets is kept.
async fn hooks(seen: Arc<Mutex<Vec<Value>>>, cert: &str, key: &str) -> u16 {
    let (m, v) = (seen.clone(), seen);
    let app = axum::Router::new()
        .route(
            "/mutate",
            post(move |Json(review): Json<Value>| async move {
                let mut seen = review.clone();
                seen["seenBy"] = json!("mutate");
                m.lock().unwrap().push(seen);
                let patch = json!([{"op": "add", "path": "/metadata/labels",
                    "value": {"mutated": "yes"}}]);
                Json(
                    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": true,
                        "warnings": ["labelled by the test webhook"],
                        "patchType": "JSONPatch", "patch": b64(&patch.to_string())}}),
                )
            }),
        )
        .route(
            "/mutate2",
            post(move |Json(review): Json<Value>| async move {
                let patch = json!([{"op": "add", "path": "/metadata/annotations",
                    "value": {"second": "yes"}}]);
                Json(
                    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": {"uid": review["request"]["uid"], "allowed": true,
                        "patchType": "JSONPatch", "patch": b64(&patch.to_string())}}),
                )
            }),
        )
        .route(
            "/validate",
            post(move |Json(review): Json<Value>| async move {
                v.lock().unwrap().push(review.clone());
                let bad = review["request"]["object"]["data"]["forbidden"].is_string();
                let mut response = json!({"uid": review["request"]["uid"], "allowed": !bad});
                if bad {
                    response["status"] = json!({"code": 403, "message": "forbidden key"});
                }
                Json(
                    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                    "response": response}),
                )
            }),
        );
    serve_tls(app, cert, key, None).await
}

fn configs(port: u16, ca: &str) -> String {
    let rules = json!([{"operations": ["CREATE", "UPDATE"], "apiGroups": [""],
        "apiVersions": ["v1"], "resources": ["configmaps"]}]);
    let mutating = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration", "metadata": {"name": "label"},
        "webhooks": [{"name": "label.example.com", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "rules": rules, "reinvocationPolicy": "IfNeeded",
            "objectSelector": {"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
            "matchConditions": [{"name": "not-excluded",
                "expression": "object.metadata.name != 'excluded'"}],
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate"), "caBundle": ca}}]});
    let second = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration", "metadata": {"name": "zz-second"},
        "webhooks": [{"name": "second.example.com", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "rules": rules,
            "clientConfig": {"url": format!("https://127.0.0.1:{port}/mutate2"), "caBundle": ca}}]});
    let validating = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "deny"},
        "webhooks": [{"name": "deny.example.com", "admissionReviewVersions": ["v1"],
            "sideEffects": "None", "rules": rules,
            "namespaceSelector": {"matchLabels": {"checked": "yes"}},
            "clientConfig": {"service": {"namespace": "hooks", "name": "hooks", "port": 443,
                "path": "/validate"}, "caBundle": ca}}]});
    let service = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "hooks", "namespace": "hooks"},
        "spec": {"ports": [{"port": 443, "targetPort": port}]}});
    let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "hooks", "namespace": "hooks"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": port}]}]});
    let ns = json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "hooks", "labels": {"checked": "yes"}}});
    [ns, service, endpoints, mutating, second, validating]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_mutate_one_request_and_deny_another() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // The webhook's own CA; its certificate names the service as the server dials it.
    let pki = minik_auth::Pki::load_or_create(dir.path(), &["hooks.hooks.svc".into()]).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let port = hooks(seen.clone(), &pki.serving.cert_pem, &pki.serving.key_pem).await;
    let ca = b64(&pki.server_ca.cert_pem);
    tokio::task::block_in_place(|| {
        let kubectls = Kubectl::each(&s);
        ok(kubectls[0].stdin(&["apply", "-f", "-"], &configs(port, &ca)));
        for (i, k) in kubectls.iter().enumerate() {
            // Mutated: the label is there, and the webhook's warning reaches kubectl.
            let name = format!("plain{i}");
            let out = k.run(&[
                "create",
                "configmap",
                &name,
                "-n",
                "hooks",
                "--from-literal=a=b",
            ]);
            assert!(out.status.success(), "{}", text(&out));
            assert!(
                text(&out).contains("Warning: labelled by the test webhook"),
                "{}",
                text(&out)
            );
            let label = ok(k.run(&[
                "get",
                "configmap",
                &name,
                "-n",
                "hooks",
                "-o",
                "jsonpath={.metadata.labels.mutated}",
            ]));
            assert_eq!(label, "yes");
            // Denied, with the webhook's message, and nothing stored.
            let bad = format!("bad{i}");
            let out = k.run(&[
                "create",
                "configmap",
                &bad,
                "-n",
                "hooks",
                "--from-literal=forbidden=x",
            ]);
            assert!(!out.status.success());
            assert!(
                text(&out).contains(
                    "admission webhook \"deny.example.com\" denied the request: forbidden key"
                ),
                "{}",
                text(&out)
            );
            let out = k.run(&["get", "configmap", &bad, "-n", "hooks"]);
            assert!(text(&out).contains("NotFound"), "{}", text(&out));
        }
        // The objectSelector leaves labelled objects alone; the namespaceSelector keeps
        // the validating webhook out of other namespaces.
        let k = &kubectls[0];
        let skipped = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "skipped", "namespace": "hooks", "labels": {"skip": "true"}}});
        ok(k.stdin(&["create", "-f", "-"], &skipped.to_string()));
        let labels = ok(k.run(&[
            "get",
            "cm",
            "skipped",
            "-n",
            "hooks",
            "-o",
            "jsonpath={.metadata.labels}",
        ]));
        assert!(!labels.contains("mutated"), "{labels}");
        ok(k.run(&[
            "create",
            "configmap",
            "elsewhere",
            "--from-literal=forbidden=x",
        ]));
        // A dry run reaches webhooks without side effects, and stores nothing.
        let out = ok(k.run(&[
            "create",
            "configmap",
            "dry",
            "-n",
            "hooks",
            "--from-literal=a=b",
            "--dry-run=server",
            "-o",
            "jsonpath={.metadata.labels.mutated}",
        ]));
        assert_eq!(out, "yes");
        assert!(!text(&k.run(&["get", "cm", "dry", "-n", "hooks"])).contains("dry "));
    });
    let reviews = seen.lock().unwrap().clone();
    // The label webhook (IfNeeded) saw plain0 again after the second webhook changed it.
    let label_calls = reviews
        .iter()
        .filter(|r| r["seenBy"] == "mutate" && r["request"]["name"] == "plain0")
        .count();
    assert_eq!(label_calls, 2, "the label webhook is called again, once");
    let again = reviews
        .iter()
        .filter(|r| r["seenBy"] == "mutate" && r["request"]["name"] == "plain0")
        .nth(1)
        .expect("the second call");
    assert_eq!(
        again["request"]["object"]["metadata"]["annotations"]["second"],
        "yes"
    );
    let first = &reviews[0]["request"];
    assert_eq!(first["operation"], "CREATE");
    assert_eq!(
        first["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(first["userInfo"]["username"], "system:admin");
    assert!(reviews.iter().any(|r| r["request"]["dryRun"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_webhooks_fail_closed_unless_ignored() {
    let s = Server::start();
    let hook = |name: &str, policy: &str| {
        json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": name},
            "webhooks": [{"name": format!("{name}.example.com"), "admissionReviewVersions": ["v1"],
                "sideEffects": "None", "failurePolicy": policy, "timeoutSeconds": 2,
                "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                    "resources": ["secrets"]}],
                "clientConfig": {"url": "https://127.0.0.1:1/nothing-here"}}]})
        .to_string()
    };
    tokio::task::block_in_place(|| {
        ok(s.kubectl_stdin(&["apply", "-f", "-"], &hook("lenient", "Ignore")));
        ok(s.kubectl(&["create", "secret", "generic", "one", "--from-literal=a=b"]));
        ok(s.kubectl_stdin(&["apply", "-f", "-"], &hook("strict", "Fail")));
        let out = s.kubectl(&["create", "secret", "generic", "two", "--from-literal=a=b"]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("failed calling webhook \"strict.example.com\""),
            "{}",
            text(&out)
        );
        // The webhook configuration itself can always be fixed.
        ok(s.kubectl(&["delete", "validatingwebhookconfiguration", "strict"]));
        ok(s.kubectl(&["create", "secret", "generic", "two", "--from-literal=a=b"]));
    });
}

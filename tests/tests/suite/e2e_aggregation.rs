//! API aggregation against a real `minik server`: a test API server (HTTPS on loopback,
//! trusting only minik's request-header CA) registered by an APIService gets the proxied
//! requests with the front-proxy certificate and the user headers, and kubectl lists its
//! resources through discovery.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use base64::Engine;
use minik_tests::server::{Kubectl, Server, ok, text};
use minik_tests::tls_server::serve_tls;
use serde_json::{Value, json};

/// (path, X-Remote-User, X-Remote-Group values) of each request the test server got.
type Seen = Arc<Mutex<Vec<(String, String, Vec<String>)>>>;

fn record(seen: &Seen, path: &str, headers: &HeaderMap) {
    let user = headers
        .get("x-remote-user")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let groups = headers
        .get_all("x-remote-group")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    seen.lock().unwrap().push((path.to_string(), user, groups));
}

fn test_api(seen: Seen) -> Router {
    let discovery = {
        let seen = seen.clone();
        move |headers: HeaderMap| async move {
            record(&seen, "/apis/test.minik.dev/v1", &headers);
            axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "test.minik.dev/v1",
                "resources": [{"name": "things", "singularName": "thing", "namespaced": true,
                    "kind": "Thing", "verbs": ["get", "list"], "shortNames": ["th"]}]}))
        }
    };
    let things = move |headers: HeaderMap| async move {
        record(&seen, "things", &headers);
        axum::Json(
            json!({"kind": "ThingList", "apiVersion": "test.minik.dev/v1",
            "metadata": {"resourceVersion": "1"},
            "items": [{"kind": "Thing", "apiVersion": "test.minik.dev/v1",
                "metadata": {"name": "thing-one", "namespace": "default",
                    "creationTimestamp": "2026-01-01T00:00:00Z"}}]}),
        )
    };
    Router::new()
        .route("/apis/test.minik.dev/v1", get(discovery))
        .route(
            "/apis/test.minik.dev/v1/namespaces/default/things",
            get(things),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiservice_proxies_with_front_proxy_identity() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // The test server's own certificate, for test-api.default.svc.
    let pki =
        minik_auth::Pki::load_or_create(dir.path(), &["test-api.default.svc".into()]).unwrap();
    let request_header_ca =
        std::fs::read_to_string(s.dir.path().join("data/tls/request-header-ca.crt")).unwrap();
    let seen: Seen = Arc::default();
    let port = serve_tls(
        test_api(seen.clone()),
        &pki.serving.cert_pem,
        &pki.serving.key_pem,
        Some(&request_header_ca),
    )
    .await;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&pki.server_ca.cert_pem);
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "test-api", "namespace": "default"},
            "spec": {"ports": [{"port": 443, "targetPort": port}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "test-api", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": port}]}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": "v1.test.minik.dev"},
            "spec": {"group": "test.minik.dev", "version": "v1", "caBundle": ca_bundle,
                "service": {"namespace": "default", "name": "test-api", "port": 443},
                "groupPriorityMinimum": 1000, "versionPriority": 15}}]});
    let k = Kubectl::each(&s).remove(0);
    let kubectls = Kubectl::each(&s);
    // kubectl runs as a process: block this worker while the test server keeps serving.
    let out = tokio::task::block_in_place(move || {
        ok(k.stdin(&["apply", "-f", "-"], &objects.to_string()));
        let wait = k.run(&[
            "wait",
            "--for=condition=Available",
            "apiservice/v1.test.minik.dev",
            "--timeout=20s",
        ]);
        assert!(wait.status.success(), "{}", text(&wait));
        kubectls
            .iter()
            .map(|k| ok(k.run(&["get", "things"])))
            .collect::<Vec<_>>()
    });
    for listed in out {
        assert!(listed.contains("thing-one"), "{listed}");
    }
    let seen = seen.lock().unwrap().clone();
    let listed: Vec<_> = seen.iter().filter(|(p, _, _)| p == "things").collect();
    assert!(!listed.is_empty(), "{seen:?}");
    for (_, user, groups) in listed {
        assert_eq!(user, "system:admin");
        assert!(groups.contains(&"system:masters".to_string()), "{groups:?}");
    }
    // The APIService reports itself available.
    let svc: Value = serde_json::from_str(&ok(s.kubectl(&[
        "get",
        "apiservice",
        "v1.test.minik.dev",
        "-o",
        "json",
    ])))
    .unwrap();
    assert_eq!(svc["status"]["conditions"][0]["type"], "Available");
    assert_eq!(svc["status"]["conditions"][0]["status"], "True");
}

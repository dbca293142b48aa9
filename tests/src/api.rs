//! The API server in process (router over an in-memory store), for tests that need no
//! socket.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use minik_apiserver::{AppState, app};
use minik_registry::Registry;
use minik_store::StoreOptions;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The API router in process over an in-memory store.
pub struct Api {
    pub router: axum::Router,
    pub store: std::sync::Arc<dyn minik_store::Backend>,
}

/// A fresh API with the `default` namespace.
pub async fn api() -> Api {
    let options = StoreOptions {
        compaction_interval: Duration::ZERO,
        ..Default::default()
    };
    let store = minik_store::open("memory://", std::path::Path::new("/"), options)
        .await
        .unwrap();
    let registry = Registry::new(store.clone());
    let crds = registry.clone();
    tokio::spawn(async move { crds.run_crd_controller().await });
    let api = Api {
        router: app(AppState::new(registry)),
        store,
    };
    let (code, _) = api
        .call(
            Method::POST,
            "/api/v1/namespaces",
            Some(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}})),
        )
        .await;
    assert_eq!(code, 201);
    api
}

impl Api {
    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap());
        self.send(method, uri, "application/json", body).await
    }

    /// PATCH with a patch type's content type (`application/merge-patch+json`, ...).
    pub async fn patch(&self, uri: &str, ctype: &str, body: &str) -> (u16, Value) {
        self.send(Method::PATCH, uri, ctype, Some(body.as_bytes().to_vec()))
            .await
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        ctype: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", ctype)
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .unwrap();
        self.request(req).await
    }

    /// Send `req`; its status code and JSON body.
    pub async fn request(&self, req: Request<Body>) -> (u16, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (code, v)
    }

    /// The first `n` lines of a watch response.
    pub async fn watch_lines(&self, uri: &str, n: usize) -> Vec<Value> {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        self.watch_request(req, n).await
    }

    /// The first `n` lines of the watch response to `req`.
    pub async fn watch_request(&self, req: Request<Body>, n: usize) -> Vec<Value> {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body().into_data_stream();
        let mut buf = Vec::new();
        let mut lines = Vec::new();
        while lines.len() < n {
            let chunk =
                tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut body))
                    .await
                    .expect("a watch event in 10 s")
                    .expect("stream open")
                    .unwrap();
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                lines.push(serde_json::from_slice(&line).unwrap());
            }
        }
        lines
    }
}

/// `req` as the server's own components send it (through the in-process client).
pub fn from_component(mut req: Request<Body>) -> Request<Body> {
    use minik_apiserver::authn::{LocalIdentity, UserInfo};
    req.extensions_mut().insert(LocalIdentity(UserInfo {
        name: "system:kube-controller-manager".into(),
        uid: String::new(),
        groups: vec!["system:authenticated".into()],
    }));
    req
}

/// The names of a list's items.
pub fn item_names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect()
}

pub fn deploy(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

pub const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

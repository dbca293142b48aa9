//! API semantics through the router in process (no socket): status codes and Status bodies,
//! status subresource, generation, finalizers, dry run, preconditions, deletecollection,
//! and 410 Gone for compacted versions.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use minik_apiserver::{AppState, app};
use minik_registry::Registry;
use minik_store::StoreOptions;
use serde_json::{Value, json};
use tower::ServiceExt;

struct Api {
    router: axum::Router,
    store: std::sync::Arc<dyn minik_store::Backend>,
}

async fn api() -> Api {
    let options = StoreOptions {
        compaction_interval: Duration::ZERO,
        ..Default::default()
    };
    let store = minik_store::open("memory://", std::path::Path::new("/"), options)
        .await
        .unwrap();
    let registry = Registry::new(store.clone());
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
    async fn call(&self, method: Method, uri: &str, body: Option<Value>) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(match body {
                Some(b) => Body::from(serde_json::to_vec(&b).unwrap()),
                None => Body::empty(),
            })
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
        (code, v)
    }

    /// The first `n` lines of a watch response.
    async fn watch_lines(&self, uri: &str, n: usize) -> Vec<Value> {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
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

/// The names of a list's items.
fn item_names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect()
}

fn deploy(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn status_bodies_for_errors() {
    let api = api().await;
    let (code, body) = api
        .call(Method::GET, &format!("{DEPLOYS}/nope"), None)
        .await;
    assert_eq!(code, 404);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "NotFound");
    assert_eq!(body["details"]["group"], "apps");
    assert_eq!(body["message"], "deployments.apps \"nope\" not found");
    let (code, body) = api
        .call(
            Method::GET,
            "/apis/apps/v1/namespaces/default/nothings",
            None,
        )
        .await;
    assert_eq!((code, body["reason"].as_str()), (404, Some("NotFound")));
    let (code, body) = api
        .call(
            Method::POST,
            DEPLOYS,
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})),
        )
        .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    let (code, body) = api
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "UPPER"}})),
        )
        .await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let big = "x".repeat(4 << 20);
    let (code, body) = api
        .call(Method::POST, "/api/v1/namespaces/default/configmaps", Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"a": big}})))
        .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );
    let (_, list) = api.call(Method::GET, "/api/v1/configmaps", None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing stored");
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let api = api().await;
    let (code, created) = api
        .call(Method::POST, DEPLOYS, Some(deploy("web", 1)))
        .await;
    assert_eq!(code, 201);
    assert_eq!(created["metadata"]["generation"], 1);
    // Status written through the main resource is ignored.
    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 5});
    let (code, updated) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(with_status))
        .await;
    assert_eq!(code, 200);
    assert!(
        updated
            .get("status")
            .is_none_or(|s| s.get("replicas").is_none())
    );
    assert_eq!(
        updated["metadata"]["generation"], 1,
        "no spec change, no new generation"
    );
    // Through /status it lands, and the spec stays.
    let mut status = updated.clone();
    status["status"] = json!({"replicas": 5});
    status["spec"]["replicas"] = json!(9);
    let (code, after) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web/status"), Some(status))
        .await;
    assert_eq!(code, 200);
    assert_eq!(after["status"]["replicas"], 5);
    assert_eq!(after["spec"]["replicas"], 1);
    // A spec change bumps generation.
    let mut scaled = after.clone();
    scaled["spec"]["replicas"] = json!(3);
    let (_, scaled) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(scaled))
        .await;
    assert_eq!(scaled["metadata"]["generation"], 2);
    // The stale one is refused.
    let (code, body) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(after))
        .await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
}

#[tokio::test]
async fn finalizers_dry_run_preconditions_and_collections() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let mut held = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
    let (code, _) = api
        .call(
            Method::POST,
            &format!("{cms}?dryRun=All"),
            Some(held.clone()),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(
        api.call(Method::GET, &format!("{cms}/held"), None).await.0,
        404,
        "dry run stores nothing"
    );
    let (_, created) = api.call(Method::POST, cms, Some(held.clone())).await;
    let (code, deleting) = api.call(Method::DELETE, &format!("{cms}/held"), None).await;
    assert_eq!(code, 200);
    assert!(deleting["metadata"]["deletionTimestamp"].is_string());
    // Still there until the finalizer goes.
    let (_, now) = api.call(Method::GET, &format!("{cms}/held"), None).await;
    assert!(now["metadata"]["deletionTimestamp"].is_string());
    held = now.clone();
    held["metadata"]["finalizers"] = json!([]);
    let (code, _) = api
        .call(Method::PUT, &format!("{cms}/held"), Some(held))
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.call(Method::GET, &format!("{cms}/held"), None).await.0,
        404
    );
    // Preconditions.
    let (_, c) = api
        .call(
            Method::POST,
            cms,
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})),
        )
        .await;
    let wrong = json!({"preconditions": {"uid": created["metadata"]["uid"]}});
    let (code, body) = api
        .call(Method::DELETE, &format!("{cms}/c"), Some(wrong))
        .await;
    assert_eq!((code, body["reason"].as_str()), (409, Some("Conflict")));
    let right = json!({"preconditions": {"uid": c["metadata"]["uid"]}});
    assert_eq!(
        api.call(Method::DELETE, &format!("{cms}/c"), Some(right))
            .await
            .0,
        200
    );
    // deletecollection with a selector.
    for (name, app) in [("a", "x"), ("b", "x"), ("k", "keep")] {
        api.call(Method::POST, cms, Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": app}}}))).await;
    }
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{cms}?labelSelector=app%3Dx"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    let (_, left) = api.call(Method::GET, cms, None).await;
    let names = item_names(&left);
    assert_eq!(names, ["k"]);
}

#[tokio::test]
async fn watch_events_selectors_and_gone() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (_, a) = api.call(Method::POST, cms, Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"tier": "fe"}}}))).await;
    let rv = a["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // Moving out of the selection is DELETED for a selecting watcher; into it, ADDED.
    let mut relabel = a.clone();
    relabel["metadata"]["labels"] = json!({"tier": "be"});
    let (_, moved) = api
        .call(Method::PUT, &format!("{cms}/a"), Some(relabel))
        .await;
    let mut back = moved.clone();
    back["metadata"]["labels"] = json!({"tier": "fe"});
    api.call(Method::PUT, &format!("{cms}/a"), Some(back)).await;
    api.call(Method::DELETE, &format!("{cms}/a"), None).await;
    let lines = api
        .watch_lines(
            &format!("{cms}?watch=true&resourceVersion={rv}&labelSelector=tier%3Dfe"),
            3,
        )
        .await;
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["DELETED", "ADDED", "DELETED"]);
    // Initial events then a bookmark marking their end (watch-list).
    api.call(
        Method::POST,
        cms,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}})),
    )
    .await;
    let lines = api
        .watch_lines(&format!("{cms}?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"), 2)
        .await;
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[1]["type"], "BOOKMARK");
    assert_eq!(
        lines[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // After compaction, an old version is 410 Gone: an ERROR event for watch.
    let current = api.store.current_revision().await.unwrap();
    api.store.compact(current).await.unwrap();
    let lines = api
        .watch_lines(&format!("{cms}?watch=true&resourceVersion={rv}"), 1)
        .await;
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(lines[0]["object"]["code"], 410);
    assert_eq!(lines[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn expired_continue_token_is_gone() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    for i in 0..5 {
        api.call(Method::POST, cms, Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}}))).await;
    }
    let (_, page) = api.call(Method::GET, &format!("{cms}?limit=2"), None).await;
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    api.call(Method::DELETE, &format!("{cms}/c4"), None).await;
    let current = api.store.current_revision().await.unwrap();
    api.store.compact(current).await.unwrap();
    let (code, body) = api
        .call(
            Method::GET,
            &format!("{cms}?limit=2&continue={token}"),
            None,
        )
        .await;
    assert_eq!((code, body["reason"].as_str()), (410, Some("Expired")));
    let (code, _) = api
        .call(
            Method::GET,
            &format!("{cms}?limit=2&continue=garbage"),
            None,
        )
        .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn metrics_and_gzip() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    for i in 0..150 {
        let data = json!({"a": "x".repeat(1024)});
        api.call(Method::POST, cms, Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("c{i}")}, "data": data}))).await;
    }
    let get = |uri: &str| {
        Request::builder()
            .uri(uri)
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .unwrap()
    };
    let big = api.router.clone().oneshot(get(cms)).await.unwrap();
    assert_eq!(big.headers().get("content-encoding").unwrap(), "gzip");
    let small = api
        .router
        .clone()
        .oneshot(get(&format!("{cms}/c1")))
        .await
        .unwrap();
    assert!(small.headers().get("content-encoding").is_none());
    // A watch is a stream: never compressed, events arrive as they happen.
    let watch = api
        .router
        .clone()
        .oneshot(get(&format!("{cms}?watch=true&resourceVersion=0")))
        .await
        .unwrap();
    assert!(watch.headers().get("content-encoding").is_none());
    let mut body = watch.into_body().into_data_stream();
    let first =
        tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut body)).await;
    assert!(first.is_ok_and(|c| c.is_some()));
    let (code, text) = api.call(Method::GET, "/metrics", None).await;
    assert_eq!(code, 200);
    let text = text.as_str().unwrap().to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("apiserver_request_total{")
                && l.contains("verb=\"CREATE\"")
                && l.contains("resource=\"configmaps\"")
                && l.contains("code=\"201\"")
                && l.ends_with(" 150")),
        "{text}"
    );
    assert!(
        text.contains("apiserver_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(
            "apiserver_registered_watchers{group=\"\",version=\"v1\",kind=\"ConfigMap\"} 1"
        ),
        "{text}"
    );
    drop(body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_cache_serves_many_watchers_and_recent_versions() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm =
        |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    // The first watch starts the cache for configmaps.
    let mut watchers = Vec::new();
    for _ in 0..50 {
        let a = Api {
            router: api.router.clone(),
            store: api.store.clone(),
        };
        watchers.push(tokio::spawn(async move {
            a.watch_lines(
                "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=0",
                3,
            )
            .await
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, first) = api.call(Method::POST, cms, Some(cm("one"))).await;
    api.call(Method::POST, cms, Some(cm("two"))).await;
    api.call(Method::DELETE, &format!("{cms}/one"), None).await;
    for w in watchers {
        let lines = w.await.unwrap();
        let got: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    l["type"].as_str().unwrap().to_string(),
                    l["object"]["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("ADDED".into(), "one".into()),
                ("ADDED".into(), "two".into()),
                ("DELETED".into(), "one".into())
            ]
        );
    }
    // A watch from a version the cache has: the changes after it, from memory.
    let rv = first["metadata"]["resourceVersion"].as_str().unwrap();
    let lines = api
        .watch_lines(&format!("{cms}?watch=true&resourceVersion={rv}"), 2)
        .await;
    assert_eq!(lines[0]["object"]["metadata"]["name"], "two");
    assert_eq!(lines[1]["type"], "DELETED");
    // resourceVersion=0 lists come from the cache and see what the cache has applied.
    let (code, list) = api
        .call(Method::GET, &format!("{cms}?resourceVersion=0"), None)
        .await;
    assert_eq!(code, 200);
    let names = item_names(&list);
    assert_eq!(names, ["two"]);
}

#[tokio::test]
async fn defaults_validation_and_cluster_ips() {
    let api = api().await;
    let (code, d) = api
        .call(Method::POST, DEPLOYS, Some(deploy("web", 2)))
        .await;
    assert_eq!(code, 201);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
    let mut bad = deploy("bad", 1);
    bad["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let (code, body) = api.call(Method::POST, DEPLOYS, Some(bad)).await;
    assert_eq!((code, body["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        body["details"]["causes"][0]["field"],
        "spec.template.metadata.labels"
    );
    let mut moved = d.clone();
    moved["spec"]["selector"]["matchLabels"] = json!({"app": "x"});
    moved["spec"]["template"]["metadata"]["labels"] = json!({"app": "x"});
    let (code, body) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web"), Some(moved))
        .await;
    assert_eq!(
        (code, body["details"]["causes"][0]["field"].as_str()),
        (422, Some("spec.selector"))
    );

    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    let (code, p) = api.call(Method::POST, pods, Some(pod)).await;
    assert_eq!(code, 201);
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let mut changed = p.clone();
    changed["spec"]["containers"][0]["name"] = json!("renamed");
    let (code, _) = api
        .call(Method::PUT, &format!("{pods}/p"), Some(changed))
        .await;
    assert_eq!(code, 422, "pod spec is immutable but for images");
    let mut image = p.clone();
    image["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    assert_eq!(
        api.call(Method::PUT, &format!("{pods}/p"), Some(image))
            .await
            .0,
        200
    );

    let svcs = "/api/v1/namespaces/default/services";
    let svc = |name: &str, ip: Option<&str>| {
        let mut s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    };
    let (code, a) = api.call(Method::POST, svcs, Some(svc("a", None))).await;
    assert_eq!(code, 201);
    let ip = a["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.43."), "{ip}");
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80);
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(&ip))))
        .await;
    assert_eq!(code, 422, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("already allocated"),
        "{b}"
    );
    let (code, _) = api
        .call(
            Method::GET,
            &format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}"),
            None,
        )
        .await;
    assert_eq!(code, 200);
    api.call(Method::DELETE, &format!("{svcs}/a"), None).await;
    let (code, _) = api
        .call(
            Method::GET,
            &format!("/apis/networking.k8s.io/v1/ipaddresses/{ip}"),
            None,
        )
        .await;
    assert_eq!(code, 404, "the IP is released with its service");
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(&ip))))
        .await;
    assert_eq!(
        (code, b["spec"]["clusterIP"].as_str()),
        (201, Some(ip.as_str()))
    );
}

#[tokio::test]
async fn subresources_scale_binding_eviction_ephemeral_finalize() {
    let api = api().await;
    api.call(Method::POST, DEPLOYS, Some(deploy("web", 1)))
        .await;
    let (code, scale) = api
        .call(Method::GET, &format!("{DEPLOYS}/web/scale"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=web");
    let mut up = scale.clone();
    up["spec"]["replicas"] = json!(4);
    let (code, scaled) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web/scale"), Some(up))
        .await;
    assert_eq!((code, scaled["spec"]["replicas"].as_i64()), (200, Some(4)));
    let (_, d) = api.call(Method::GET, &format!("{DEPLOYS}/web"), None).await;
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(4), Some(2))
    );
    let (code, _) = api
        .call(Method::PUT, &format!("{DEPLOYS}/web/scale"), Some(scale))
        .await;
    assert_eq!(code, 409, "a stale Scale is refused");
    let (code, _) = api
        .call(
            Method::GET,
            "/api/v1/namespaces/default/configmaps/x/scale",
            None,
        )
        .await;
    assert_eq!(code, 404);

    let pods = "/api/v1/namespaces/default/pods";
    for name in ["p", "q"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        api.call(Method::POST, pods, Some(pod)).await;
    }
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
    let (code, _) = api
        .call(
            Method::POST,
            &format!("{pods}/p/binding"),
            Some(binding.clone()),
        )
        .await;
    assert_eq!(code, 201);
    let (_, p) = api.call(Method::GET, &format!("{pods}/p"), None).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    assert_eq!(p["status"]["conditions"][0]["type"], "PodScheduled");
    let (code, body) = api
        .call(Method::POST, &format!("{pods}/p/binding"), Some(binding))
        .await;
    assert_eq!(code, 409, "{body}");

    let eph = {
        let mut p = p.clone();
        p["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
        p
    };
    let (code, with) = api
        .call(
            Method::PUT,
            &format!("{pods}/p/ephemeralcontainers"),
            Some(eph),
        )
        .await;
    assert_eq!(
        (
            code,
            with["spec"]["ephemeralContainers"][0]["name"].as_str()
        ),
        (200, Some("debug"))
    );

    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "keep-p"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "p"}}}});
    api.call(
        Method::POST,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        Some(pdb),
    )
    .await;
    let eviction = |name: &str| json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}});
    let (code, body) = api
        .call(
            Method::POST,
            &format!("{pods}/p/eviction"),
            Some(eviction("p")),
        )
        .await;
    assert_eq!(
        (code, body["reason"].as_str()),
        (429, Some("TooManyRequests"))
    );
    let (code, _) = api
        .call(
            Method::POST,
            &format!("{pods}/q/eviction"),
            Some(eviction("q")),
        )
        .await;
    assert_eq!(code, 201);
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/q"), None).await.0,
        404
    );

    let (_, ns) = api
        .call(Method::GET, "/api/v1/namespaces/default", None)
        .await;
    let mut fin = ns.clone();
    fin["spec"]["finalizers"] = json!(["kubernetes"]);
    let (code, out) = api
        .call(
            Method::PUT,
            "/api/v1/namespaces/default/finalize",
            Some(fin),
        )
        .await;
    assert_eq!(
        (code, out["spec"]["finalizers"][0].as_str()),
        (200, Some("kubernetes"))
    );
}

#[tokio::test]
async fn graceful_pod_deletion() {
    let api = api().await;
    let pods = "/api/v1/namespaces/default/pods";
    for name in ["running", "pending"] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 20}});
        api.call(Method::POST, pods, Some(pod)).await;
    }
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "running"}, "target": {"kind": "Node", "name": "n1"}});
    api.call(
        Method::POST,
        &format!("{pods}/running/binding"),
        Some(binding),
    )
    .await;
    // Never scheduled: gone at once.
    let (code, body) = api
        .call(Method::DELETE, &format!("{pods}/pending"), None)
        .await;
    assert_eq!((code, body["kind"].as_str()), (200, Some("Status")));
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/pending"), None)
            .await
            .0,
        404
    );
    // On a node: marked, with its grace period, until the kubelet (here: a forced delete) ends it.
    let (code, marked) = api
        .call(Method::DELETE, &format!("{pods}/running"), None)
        .await;
    assert_eq!(code, 200);
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 20);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let (_, shorter) = api
        .call(
            Method::DELETE,
            &format!("{pods}/running?gracePeriodSeconds=5"),
            None,
        )
        .await;
    assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 5);
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/running"), None)
            .await
            .0,
        200
    );
    let (code, _) = api
        .call(
            Method::DELETE,
            &format!("{pods}/running"),
            Some(json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        api.call(Method::GET, &format!("{pods}/running"), None)
            .await
            .0,
        404
    );
}

/// Read one server-to-client WebSocket text frame (unmasked, as servers send them).
async fn ws_frame(r: &mut tokio::io::BufReader<tokio::net::TcpStream>) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await.unwrap();
    let len = match head[1] & 0x7f {
        126 => r.read_u16().await.unwrap() as usize,
        127 => r.read_u64().await.unwrap() as usize,
        n => n as usize,
    };
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await.unwrap();
    (head[0] & 0x0f, payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_over_websocket() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    api.call(
        Method::POST,
        cms,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ws1"}})),
    )
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    for (protocol, base64) in [("binary.k8s.io", false), ("base64.binary.k8s.io", true)] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut r = tokio::io::BufReader::new(tcp);
        let req = format!(
            "GET {cms}?watch=true HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        );
        r.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut status = String::new();
        r.read_line(&mut status).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
        }
        let (opcode, payload) = ws_frame(&mut r).await;
        assert_eq!(opcode, 1, "a text frame");
        let text = if base64 {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(&payload)
                .unwrap()
        } else {
            payload
        };
        let event: Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(event["type"], "ADDED");
        assert_eq!(event["object"]["metadata"]["name"], "ws1");
    }
}

#[tokio::test]
async fn node_ports_are_allocated_once() {
    let api = api().await;
    let svcs = "/api/v1/namespaces/default/services";
    let svc = |name: &str, node_port: Option<i64>| {
        let mut port = json!({"port": 80});
        if let Some(p) = node_port {
            port["nodePort"] = json!(p);
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [port]}})
    };
    let (code, a) = api.call(Method::POST, svcs, Some(svc("a", None))).await;
    assert_eq!(code, 201);
    let port = a["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&port));
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(port))))
        .await;
    assert_eq!(code, 422, "{b}");
    assert_eq!(b["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
    let (code, _) = api.call(Method::POST, svcs, Some(svc("c", Some(80)))).await;
    assert_eq!(code, 422, "out of range");
    // The failed creates left nothing behind: after a is gone, its port can be had.
    api.call(Method::DELETE, &format!("{svcs}/a"), None).await;
    let (code, b) = api
        .call(Method::POST, svcs, Some(svc("b", Some(port))))
        .await;
    assert_eq!(
        (code, b["spec"]["ports"][0]["nodePort"].as_i64()),
        (201, Some(port))
    );
    let (_, list) = api
        .call(Method::GET, "/apis/networking.k8s.io/v1/ipaddresses", None)
        .await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only b's ClusterIP is held"
    );
}

#[tokio::test]
async fn protobuf_answers_for_protobuf_only_clients() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let (_, created) = api
        .call(Method::POST, cms, Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pb"}, "data": {"k": "v"}})))
        .await;
    let get = |uri: String, accept: &'static str| {
        let router = api.router.clone();
        async move {
            let req = Request::builder()
                .uri(uri)
                .header("accept", accept)
                .body(Body::empty())
                .unwrap();
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, ctype, body)
        }
    };
    let pb = "application/vnd.kubernetes.protobuf";
    let (code, ctype, body) = get(format!("{cms}/pb"), pb).await;
    assert_eq!((code, ctype.as_str()), (200, pb));
    assert!(body.starts_with(b"k8s\0"));
    let decoded = minik_api::proto::decode_envelope(&body).unwrap();
    assert_eq!(decoded["data"], created["data"]);
    assert_eq!(decoded["metadata"]["uid"], created["metadata"]["uid"]);
    let (code, _, body) = get(cms.to_string(), pb).await;
    assert_eq!(code, 200);
    let list = minik_api::proto::decode_envelope(&body).unwrap();
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"][0]["metadata"]["name"], "pb");
    // Clients that also take JSON get JSON; a protobuf-only watch is refused.
    let (_, ctype, _) = get(
        format!("{cms}/pb"),
        "application/vnd.kubernetes.protobuf,application/json",
    )
    .await;
    assert_eq!(ctype, "application/json");
    let (code, _, _) = get(format!("{cms}?watch=true"), pb).await;
    assert_eq!(code, 406);
}

/// Garbage in any content type gets a 4xx Status and changes nothing; the server stays up.
#[tokio::test]
async fn garbage_bodies_are_client_errors() {
    let api = api().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"".to_vec()),
        ("application/json", b"null".to_vec()),
        ("application/json", b"[1,2]".to_vec()),
        ("application/json", deep.clone().into_bytes()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        ("application/yaml", b"a: [unclosed".to_vec()),
        ("application/yaml", b"*alias".to_vec()),
        ("application/yaml", deep.into_bytes()),
        ("application/vnd.kubernetes.protobuf", b"k8s\0".to_vec()),
        (
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01".to_vec(),
        ),
        (
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x12\x05\x0a\x03\xff\xff\xff".to_vec(),
        ),
        ("text/plain", b"hello".to_vec()),
    ];
    for path in [
        "/api/v1/namespaces/default/configmaps",
        "/apis/apps/v1/namespaces/default/deployments",
        "/api/v1/namespaces",
    ] {
        for (ctype, body) in &bodies {
            for method in [Method::POST, Method::PUT] {
                let uri = if method == Method::PUT {
                    format!("{path}/x")
                } else {
                    path.to_string()
                };
                let req = Request::builder()
                    .method(method.clone())
                    .uri(&uri)
                    .header("content-type", *ctype)
                    .body(Body::from(body.clone()))
                    .unwrap();
                let resp = api.router.clone().oneshot(req).await.unwrap();
                let code = resp.status().as_u16();
                assert!(
                    (400..500).contains(&code),
                    "{method} {uri} {ctype} {:?}: {code}",
                    String::from_utf8_lossy(&body[..body.len().min(20)])
                );
            }
        }
    }
    let (_, cms) = api.call(Method::GET, "/api/v1/configmaps", None).await;
    assert_eq!(item_names(&cms).len(), 0);
    let (_, nss) = api.call(Method::GET, "/api/v1/namespaces", None).await;
    assert_eq!(item_names(&nss), ["default"]);
    for bad in [
        "/api/v1/namespaces/%ff/configmaps",
        "/api/v1/namespaces/default/configmaps?limit=-1&labelSelector=a%20in%20",
        "/apis//v1/x",
        "/api/v1/namespaces/default/configmaps/a/b/c/d",
    ] {
        let (code, _) = api.call(Method::GET, bad, None).await;
        assert!((400..500).contains(&code) || code == 200, "{bad}: {code}");
    }
}

#[tokio::test]
async fn events_are_one_storage_in_two_groups() {
    let api = api().await;
    let core = "/api/v1/namespaces/default/events";
    let v1 = "/apis/events.k8s.io/v1/namespaces/default/events";
    let (code, _) = api
        .call(Method::POST, core, Some(json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "from-core"},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started", "message": "hello", "type": "Normal", "count": 1})))
        .await;
    assert_eq!(code, 201);
    let watch = {
        let a = Api {
            router: api.router.clone(),
            store: api.store.clone(),
        };
        tokio::spawn(async move {
            a.watch_lines(
                "/apis/events.k8s.io/v1/namespaces/default/events?watch=true&resourceVersion=0",
                2,
            )
            .await
        })
    };
    let (code, created) = api
        .call(Method::POST, v1, Some(json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "from-v1"},
            "eventTime": "2026-11-30T10:00:00.000000Z", "reportingController": "minik/test", "reportingInstance": "i",
            "action": "Testing", "reason": "Tested", "regarding": {"kind": "Pod", "name": "q"}, "note": "hi there", "type": "Normal"})))
        .await;
    assert_eq!(code, 201, "{created}");
    let (_, list) = api.call(Method::GET, v1, None).await;
    assert_eq!(item_names(&list), ["from-core", "from-v1"]);
    assert_eq!(list["items"][0]["note"], "hello");
    assert_eq!(list["items"][0]["regarding"]["name"], "p");
    let (_, core_view) = api
        .call(Method::GET, &format!("{core}/from-v1"), None)
        .await;
    assert_eq!(core_view["message"], "hi there");
    assert_eq!(core_view["involvedObject"]["name"], "q");
    assert_eq!(core_view["reportingComponent"], "minik/test");
    let lines = watch.await.unwrap();
    assert_eq!(lines[0]["object"]["note"], "hello");
    assert_eq!(lines[1]["object"]["regarding"]["name"], "q");
    assert_eq!(
        api.call(Method::DELETE, &format!("{v1}/from-core"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        api.call(Method::GET, &format!("{core}/from-core"), None)
            .await
            .0,
        404
    );
}

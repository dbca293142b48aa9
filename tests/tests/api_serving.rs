//! Serving: metrics, gzip, protobuf answers.
//! Through the router in process (no socket), except the WebSocket test.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use minik_tests::api::api;
use serde_json::json;
use tower::ServiceExt;

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

#[tokio::test]
async fn deprecated_resources_warn() {
    let api = api().await;
    for (uri, want) in [
        (
            "/api/v1/componentstatuses",
            "v1 ComponentStatus is deprecated in v1.19+",
        ),
        (
            "/api/v1/namespaces/default/endpoints",
            "v1 Endpoints is deprecated in v1.33+",
        ),
    ] {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = api.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let warning = resp.headers().get("warning").unwrap().to_str().unwrap();
        assert!(
            warning.starts_with("299 - \"") && warning.contains(want),
            "{warning}"
        );
    }
    let req = Request::builder()
        .uri("/api/v1/namespaces/default/configmaps")
        .body(Body::empty())
        .unwrap();
    assert!(
        api.router
            .clone()
            .oneshot(req)
            .await
            .unwrap()
            .headers()
            .get("warning")
            .is_none()
    );
}

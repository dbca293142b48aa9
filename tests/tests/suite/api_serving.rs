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
    // Clients that also take JSON get JSON.
    let (_, ctype, _) = get(
        format!("{cms}/pb"),
        "application/vnd.kubernetes.protobuf,application/json",
    )
    .await;
    assert_eq!(ctype, "application/json");
}

#[tokio::test]
async fn protobuf_watch_is_length_framed_watch_events() {
    use prost::Message;
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let req = Request::builder()
        .uri(format!("{cms}?watch=true&resourceVersion=0"))
        .header("accept", "application/vnd.kubernetes.protobuf")
        .body(Body::empty())
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    for name in ["w1", "w2"] {
        api.call(Method::POST, cms, Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}}))).await;
    }
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    while events.len() < 2 {
        let chunk =
            tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut body))
                .await
                .expect("an event within 5 s")
                .expect("stream open")
                .unwrap();
        buf.extend_from_slice(&chunk);
        while buf.len() >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
            if buf.len() < 4 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
            let ev =
                k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent::decode(&frame[..]).unwrap();
            let raw = ev.object.unwrap().raw.unwrap();
            let obj = minik_api::proto::decode_envelope(&raw).unwrap();
            events.push((ev.r#type.unwrap(), obj));
        }
    }
    assert_eq!(events[0].0, "ADDED");
    assert_eq!(events[0].1["kind"], "ConfigMap");
    assert_eq!(events[0].1["data"]["k"], "w1");
    assert_eq!(events[1].1["metadata"]["name"], "w2");
}

#[tokio::test]
async fn openapi_v2_and_v3_carry_patch_and_list_extensions() {
    let api = api().await;
    let (code, v2) = api.call(Method::GET, "/openapi/v2", None).await;
    assert_eq!(code, 200);
    assert_eq!(v2["swagger"], "2.0");
    let containers = &v2["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        containers["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Container"
    );
    let deploy = &v2["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deploy["x-kubernetes-group-version-kind"][0]["kind"],
        "Deployment"
    );
    // A reference with a description is a plain $ref in v2.
    assert_eq!(
        deploy["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    assert!(
        v2["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"].is_object()
    );
    let (_, v3) = api.call(Method::GET, "/openapi/v3/api/v1", None).await;
    let ports = &v3["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["ports"];
    assert_eq!(
        ports["x-kubernetes-list-map-keys"],
        json!(["containerPort", "protocol"])
    );
    let selector =
        &v3["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"];
    assert_eq!(selector["x-kubernetes-map-type"], "atomic");
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

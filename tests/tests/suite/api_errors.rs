//! Errors: Status bodies with the right codes, bad bodies of every kind, expired continue tokens.
//! Through the router in process (no socket), except the WebSocket test.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use minik_tests::api::{DEPLOYS, api, item_names};
use serde_json::json;
use tower::ServiceExt;

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

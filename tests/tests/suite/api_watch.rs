//! Watch: selector transitions, watch-list bookmarks, 410, the watch cache, WebSocket.
//! Through the router in process (no socket), except the WebSocket test.

use std::time::Duration;

use axum::http::Method;
use minik_tests::api::{Api, api, item_names};
use serde_json::{Value, json};

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

/// The server's own components (requests of the in-process client, which carry its
/// identity) get watch events without managedFields, as plain objects and as metadata;
/// every other watcher gets them, and otherwise the same events.
#[tokio::test]
async fn in_process_watchers_get_events_without_managed_fields() {
    let api = api().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "a", "labels": {"tier": "fe"}}, "data": {"k": "v"}});
    let (code, _) = api
        .call(
            Method::POST,
            &format!("{cms}?fieldManager=tester"),
            Some(cm),
        )
        .await;
    assert_eq!(code, 201);
    let uri = format!("{cms}?watch=true&resourceVersion=0");
    let metadata = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let request = |accept: &str, local: bool| {
        let req = axum::http::Request::builder()
            .uri(&uri)
            .header("accept", accept)
            .body(axum::body::Body::empty())
            .unwrap();
        match local {
            true => minik_tests::api::from_component(req),
            false => req,
        }
    };
    for accept in ["application/json", metadata] {
        let plain = api.watch_request(request(accept, false), 1).await;
        let lean = api.watch_request(request(accept, true), 1).await;
        let fields = &plain[0]["object"]["metadata"]["managedFields"];
        assert_eq!(fields[0]["manager"], "tester", "{accept}: {plain:?}");
        let mut expected = plain[0].clone();
        let meta = expected["object"]["metadata"].as_object_mut().unwrap();
        meta.remove("managedFields");
        assert_eq!(lean[0], expected, "{accept}");
    }
}

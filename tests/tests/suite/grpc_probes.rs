//! The kubelet's grpc probe (minik_kubelet::probes::grpc) against a real gRPC health
//! server on 127.0.0.1: SERVING passes; NOT_SERVING, an unknown service, nothing
//! listening and a server that never answers fail, with kubelet's messages.

use std::time::Duration;

use minik_kubelet::probes::grpc::check;
use minik_kubelet::probes::net::Endpoint;
use minik_tests::grpc_health::{HealthServer, NOT_SERVING, SERVING};

/// The host's network, as for a hostNetwork pod.
fn host() -> Endpoint {
    Endpoint {
        netns: None,
        pod_ip: None,
    }
}

const TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn serving_passes_and_not_serving_fails() {
    let server = HealthServer::start();
    server.set("", SERVING);
    check(&host(), "127.0.0.1", server.port(), "", TIMEOUT)
        .await
        .unwrap();
    server.set("", NOT_SERVING);
    let failed = check(&host(), "127.0.0.1", server.port(), "", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        failed,
        r#"service unhealthy (responded with "NOT_SERVING")"#
    );
    // Statuses other than the four known are named by their number, as Go does.
    server.set("", 9);
    let failed = check(&host(), "127.0.0.1", server.port(), "", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(failed, r#"service unhealthy (responded with "9")"#);
}

#[tokio::test]
async fn the_service_asked_for_is_the_probes() {
    let server = HealthServer::start();
    server.set("", NOT_SERVING);
    server.set("orders", SERVING);
    check(&host(), "127.0.0.1", server.port(), "orders", TIMEOUT)
        .await
        .unwrap();
    let failed = check(&host(), "127.0.0.1", server.port(), "payments", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(
        failed,
        "error: health rpc probe failed: rpc error: code = NotFound desc = unknown service"
    );
}

#[tokio::test]
async fn nothing_listening_fails() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let failed = check(&host(), "127.0.0.1", port, "", TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        failed.starts_with(&format!(
            "error: failed to connect service at \"127.0.0.1:{port}\": "
        )),
        "{failed}"
    );
    assert!(failed.ends_with("connection refused"), "{failed}");
}

#[tokio::test]
async fn a_server_that_never_answers_fails_after_the_timeout() {
    // The kernel accepts connections into the backlog; nobody ever reads or writes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let failed = check(&host(), "127.0.0.1", port, "", TIMEOUT)
        .await
        .unwrap_err();
    assert!(failed.starts_with("timeout: "), "{failed}");
    assert!(failed.contains("within 1s"), "{failed}");
    drop(listener);
}

#[tokio::test]
async fn a_server_without_the_health_service_fails() {
    // An HTTP/2 server that is not gRPC at all: the call fails, the probe does not hang.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new();
    let serve = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let failed = check(&host(), "127.0.0.1", port, "", TIMEOUT)
        .await
        .unwrap_err();
    assert!(failed.starts_with("error: "), "{failed}");
    serve.abort();
}

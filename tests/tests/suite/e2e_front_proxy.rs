//! Front-proxy authentication: a proxy with a certificate from the request-header CA and an
//! allowed name says who the user is in X-Remote-User / X-Remote-Group; nobody else can.

use http_body_util::{BodyExt, Full};
use minik_registry::client::{ClientCert, TlsTarget, connect};
use minik_tests::server::Server;
use serde_json::Value;

/// POST a SelfSubjectReview with `cert` and `headers`; (status, body).
async fn whoami(s: &Server, cert: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let tls = s.dir.path().join("data").join("tls");
    let read = |n: &str| std::fs::read_to_string(tls.join(n)).unwrap();
    let target = TlsTarget {
        addr: format!("127.0.0.1:{}", s.port).parse().unwrap(),
        server_name: "127.0.0.1".into(),
        ca_bundle: Some(read("server-ca.crt").into_bytes()),
        insecure: false,
    };
    let client = ClientCert {
        cert_pem: read(&format!("{cert}.crt")),
        key_pem: read(&format!("{cert}.key")),
    };
    let mut sender = connect::<Full<bytes::Bytes>>(&target, Some(&client))
        .await
        .unwrap();
    let mut req = hyper::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .header("host", "127.0.0.1");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let resp = sender
        .send_request(req.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_user() {
    let s = tokio::task::block_in_place(Server::start);
    let headers = [
        ("x-remote-user", "alice"),
        ("x-remote-group", "devs"),
        ("x-remote-group", "ops"),
    ];
    let (code, body) = whoami(&s, "client-auth-proxy", &headers).await;
    assert_eq!(code, 201, "{body}");
    let info = &body["status"]["userInfo"];
    assert_eq!(info["username"], "alice");
    assert_eq!(
        info["groups"],
        serde_json::json!(["devs", "ops", "system:authenticated"])
    );
    // The proxy without a user header is nobody the client CA knows.
    let (code, _) = whoami(&s, "client-auth-proxy", &[]).await;
    assert_eq!(code, 401);
    // A client of the client CA cannot claim to be someone else.
    let (code, body) = whoami(&s, "client-admin", &headers).await;
    assert_eq!(code, 201);
    assert_eq!(body["status"]["userInfo"]["username"], "system:admin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_proxy_names_are_trusted() {
    let s = tokio::task::block_in_place(|| {
        Server::start_with(&["--requestheader-allowed-names", "some-other-proxy"])
    });
    let (code, _) = whoami(&s, "client-auth-proxy", &[("x-remote-user", "alice")]).await;
    assert_eq!(code, 401);
}

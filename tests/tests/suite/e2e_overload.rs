//! Overload protection against a real `minik server`: a flood of concurrent requests from
//! one user gets 429s (with Retry-After) while a second user is still served, and the server
//! stays up. Raw HTTP/1.1 connections (kube-rs would retry the 429s itself).

use http_body_util::{BodyExt, Empty};
use minik_registry::client::{ClientCert, TlsTarget, connect};
use minik_tests::server::Server;

type Body = Empty<bytes::Bytes>;

/// Send `n` GETs of `path` one after another on one connection; their status codes and
/// whether each 429 had Retry-After.
async fn burst(
    target: TlsTarget,
    cert: Option<ClientCert>,
    token: Option<String>,
    path: String,
    n: usize,
) -> Vec<(u16, bool)> {
    let mut sender = connect::<Body>(&target, cert.as_ref())
        .await
        .expect("connect");
    let mut out = Vec::new();
    for _ in 0..n {
        let mut req = http::Request::get(path.as_str()).header("host", "localhost");
        if let Some(t) = &token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .expect("send");
        let code = resp.status().as_u16();
        let retry = resp.headers().contains_key("retry-after");
        let _ = resp.into_body().collect().await;
        out.push((code, retry));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_noisy_user_does_not_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "bob-t,bob,u-2\n").unwrap();
    let s = Server::start_with(&[
        "--max-requests-inflight",
        "8",
        "--token-auth-file",
        tokens.to_str().unwrap(),
    ]);
    assert!(
        s.kubectl(&[
            "create",
            "rolebinding",
            "bob-view",
            "--clusterrole=view",
            "--user=bob",
            "-n",
            "default"
        ])
        .status
        .success()
    );
    for i in 0..6 {
        let name = format!("c{i}");
        assert!(
            s.kubectl(&["create", "configmap", &name, "--from-literal=v=x"])
                .status
                .success()
        );
    }
    let tls = s.dir.path().join("data/tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).unwrap();
    let target = TlsTarget {
        addr: format!("127.0.0.1:{}", s.port).parse().unwrap(),
        server_name: "localhost".into(),
        ca_bundle: Some(read("server-ca.crt").into_bytes()),
        insecure: false,
    };
    let admin = ClientCert {
        cert_pem: read("client-admin.crt"),
        key_pem: read("client-admin.key"),
    };
    // 2,000 requests from the admin on 64 connections at once.
    let flood: Vec<_> = (0..64)
        .map(|_| {
            tokio::spawn(burst(
                target.clone(),
                Some(admin.clone()),
                None,
                "/api/v1/namespaces/default/configmaps?limit=100".into(),
                32,
            ))
        })
        .collect();
    let bob = tokio::spawn(burst(
        target.clone(),
        None,
        Some("bob-t".into()),
        "/api/v1/namespaces/default/configmaps/c1".into(),
        20,
    ));
    let mut flooded = Vec::new();
    for f in flood {
        flooded.extend(f.await.unwrap());
    }
    let bob = bob.await.unwrap();
    let refused: Vec<_> = flooded.iter().filter(|(c, _)| *c == 429).collect();
    assert!(
        !refused.is_empty(),
        "no 429 among {} requests",
        flooded.len()
    );
    assert!(
        refused.iter().all(|(_, retry)| *retry),
        "429 without Retry-After"
    );
    assert!(flooded.iter().all(|(c, _)| *c == 200 || *c == 429));
    assert!(
        bob.iter().all(|(c, _)| *c == 200),
        "bob was not served: {bob:?}"
    );
    assert!(
        s.kubectl(&["get", "--raw", "/readyz"]).status.success(),
        "the server is up"
    );
    // The API Priority and Fairness objects are served, as on any cluster.
    let out = s.kubectl(&[
        "get",
        "flowschemas,prioritylevelconfigurations",
        "-o",
        "name",
    ]);
    let names = String::from_utf8_lossy(&out.stdout).to_string();
    for n in [
        "flowschema.flowcontrol.apiserver.k8s.io/exempt",
        "flowschema.flowcontrol.apiserver.k8s.io/catch-all",
        "flowschema.flowcontrol.apiserver.k8s.io/global-default",
        "prioritylevelconfiguration.flowcontrol.apiserver.k8s.io/catch-all",
    ] {
        assert!(names.contains(n), "{n} missing: {names}");
    }
}

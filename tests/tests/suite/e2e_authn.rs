//! Authentication against a real `minik server`: the admin certificate, a static token,
//! `kubectl auth whoami`, and 401 for a bad token or a certificate another CA signed; a
//! broken token file stops the server at start with a clear message.

use base64::Engine;
use minik_tests::server::{Kubectl, Server, ok, text};

/// A kubeconfig for the server with another client certificate.
fn kubeconfig_with_cert(s: &Server, cert_pem: &str, key_pem: &str) -> std::path::PathBuf {
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let ca = std::fs::read_to_string(s.dir.path().join("data/tls/server-ca.crt")).unwrap();
    let path = s.dir.path().join("stranger.yaml");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n",
        s.port,
        b64(&ca),
        b64(cert_pem),
        b64(key_pem)
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// How kubectl reports a 401.
fn unauthorized(out: &str) -> bool {
    out.contains("Unauthorized") || out.contains("asked for the client to provide credentials")
}

#[test]
fn users_from_certificates_and_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "t0ken,alice,u-1,\"devs,qa\"\n").unwrap();
    let s = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()]);
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        let me = ok(k.run(&["auth", "whoami", "-o", "json"]));
        let me: serde_json::Value = serde_json::from_str(&me).unwrap();
        assert_eq!(me["status"]["userInfo"]["username"], "system:admin");
        let groups = me["status"]["userInfo"]["groups"].to_string();
        assert!(groups.contains("system:masters") && groups.contains("system:authenticated"));
        let alice = ok(k.run(&["--token", "t0ken", "auth", "whoami"]));
        assert!(alice.contains("alice") && alice.contains("devs"), "{alice}");
        let bad = k.run(&["--token", "wrong", "get", "ns"]);
        assert!(!bad.status.success());
        assert!(unauthorized(&text(&bad)), "{}", text(&bad));
    }
    // A certificate from another CA (with O=system:masters, even) is refused.
    let other = minik_auth::Pki::load_or_create(&dir.path().join("other"), &[]).unwrap();
    let stranger = kubeconfig_with_cert(&s, &other.admin.cert_pem, &other.admin.key_pem);
    let out = std::process::Command::new("kubectl")
        .args(["get", "ns"])
        .env("KUBECONFIG", &stranger)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(unauthorized(&text(&out)), "{}", text(&out));
}

#[test]
fn a_broken_token_file_stops_the_server_at_start() {
    let err = minik_tests::server::start_fails(
        &["--token-auth-file", "tokens.csv"],
        &[("tokens.csv", "only-a-token\n")],
    );
    assert!(
        err.contains("tokens.csv:1") && err.contains("token and a user name"),
        "{err}"
    );
}

#[test]
fn rbac_bindings_decide_and_can_i_answers() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "alice-t,alice,u-1\nbob-t,bob,u-2\n").unwrap();
    let s = Server::start_with(&["--token-auth-file", tokens.to_str().unwrap()]);
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "alice-view",
        "--clusterrole=view",
        "--user=alice",
        "-n",
        "default",
    ]));
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        let alice = |args: &[&str]| k.run(&[&["--token", "alice-t"][..], args].concat());
        assert!(alice(&["get", "pods", "-n", "default"]).status.success());
        let denied = alice(&["create", "configmap", "x", "-n", "default"]);
        assert!(!denied.status.success());
        assert!(
            text(&denied).contains("configmaps is forbidden: User \"alice\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""),
            "{}",
            text(&denied)
        );
        // Elsewhere, and for bob, nothing.
        assert!(
            !alice(&["get", "pods", "-n", "kube-system"])
                .status
                .success()
        );
        let can = |token: &str, args: &[&str]| {
            let out = k.run(&[&["--token", token, "auth", "can-i"][..], args].concat());
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(can("alice-t", &["list", "pods", "-n", "default"]), "yes");
        assert_eq!(
            can("alice-t", &["create", "configmaps", "-n", "default"]),
            "no"
        );
        assert_eq!(can("bob-t", &["list", "pods", "-n", "default"]), "no");
        // Every authenticated user may discover the API and ask who it is.
        assert!(
            k.run(&["--token", "bob-t", "api-versions"])
                .status
                .success()
        );
        assert!(ok(k.run(&["--token", "bob-t", "auth", "whoami"])).contains("bob"));
        assert_eq!(ok(k.run(&["auth", "can-i", "*", "*"])).trim(), "yes");
        // Impersonation: the admin may; bob may not until a role lets him.
        assert!(
            k.run(&["--as", "alice", "get", "pods", "-n", "default"])
                .status
                .success()
        );
        let as_alice = k.run(&["--as", "alice", "get", "pods", "-n", "kube-system"]);
        assert!(
            text(&as_alice).contains("User \"alice\" cannot list"),
            "{}",
            text(&as_alice)
        );
        let refused = k.run(&[
            "--token", "bob-t", "--as", "alice", "get", "pods", "-n", "default",
        ]);
        assert!(
            text(&refused).contains("User \"bob\" cannot impersonate resource \"users\""),
            "{}",
            text(&refused)
        );
    }
    // A role labelled to aggregate into `view` extends it.
    let extra = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: secrets-reader\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}\nrules:\n- {apiGroups: [\"\"], resources: [secrets], verbs: [list]}\n";
    let can_list_secrets = || {
        let out = s.kubectl(&[
            "--token", "alice-t", "auth", "can-i", "list", "secrets", "-n", "default",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_list_secrets(), "no");
    ok(s.kubectl_stdin(&["apply", "-f", "-"], extra));
    assert_eq!(can_list_secrets(), "yes");
    // The review APIs.
    let list = ok(s.kubectl(&[
        "--token", "alice-t", "auth", "can-i", "--list", "-n", "default",
    ]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{list}"
    );
    let review = |doc: &str| -> serde_json::Value {
        let out = ok(s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], doc));
        serde_json::from_str(&out).unwrap()
    };
    let token =
        review("apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec: {token: alice-t}\n");
    assert_eq!(token["status"]["authenticated"], true);
    assert_eq!(token["status"]["user"]["username"], "alice");
    let sar = review(
        "apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec: {user: alice, resourceAttributes: {verb: delete, resource: pods, namespace: default}}\n",
    );
    assert_eq!(sar["status"]["allowed"], false);
    ok(s.kubectl(&[
        "create",
        "clusterrole",
        "impersonator",
        "--verb=impersonate",
        "--resource=users",
    ]));
    ok(s.kubectl(&[
        "create",
        "clusterrolebinding",
        "bob-impersonates",
        "--clusterrole=impersonator",
        "--user=bob",
    ]));
    let as_alice = ok(s.kubectl(&["--token", "bob-t", "--as", "alice", "auth", "whoami"]));
    assert!(
        as_alice.contains("alice") && !as_alice.contains("bob"),
        "{as_alice}"
    );
}

#[test]
fn service_account_tokens() {
    let s = Server::start();
    ok(s.kubectl(&["create", "serviceaccount", "robot"]));
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "robot-view",
        "--clusterrole=view",
        "--serviceaccount=default:robot",
    ]));
    ok(s.kubectl(&["run", "p", "--image=busybox", "--restart=Never"]));
    for k in Kubectl::each(&s) {
        eprintln!("kubectl: {}", k.bin);
        let token = ok(k.run(&["create", "token", "robot"])).trim().to_string();
        let as_robot = |args: &[&str]| k.run(&[&["--token", token.as_str()][..], args].concat());
        assert!(as_robot(&["get", "pods"]).status.success());
        let me = ok(as_robot(&["auth", "whoami"]));
        assert!(
            me.contains("system:serviceaccount:default:robot")
                && me.contains("system:serviceaccounts:default"),
            "{me}"
        );
        assert!(!as_robot(&["create", "configmap", "x"]).status.success());
        // The issuer's discovery documents, readable by service accounts.
        let config = ok(as_robot(&[
            "get",
            "--raw",
            "/.well-known/openid-configuration",
        ]));
        assert!(config.contains("\"jwks_uri\""), "{config}");
        assert!(ok(as_robot(&["get", "--raw", "/openid/v1/jwks"])).contains("\"ES256\""));
        let short = k.run(&["create", "token", "robot", "--duration", "5m"]);
        assert!(
            text(&short).contains("less than 10 minutes"),
            "{}",
            text(&short)
        );
    }
    // A token bound to a pod works until the pod is gone.
    let bound = ok(s.kubectl(&[
        "create",
        "token",
        "robot",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "p",
    ]))
    .trim()
    .to_string();
    assert!(
        s.kubectl(&["--token", &bound, "get", "pods"])
            .status
            .success()
    );
    ok(s.kubectl(&["delete", "pod", "p", "--grace-period=0", "--force"]));
    let after = s.kubectl(&["--token", &bound, "get", "pods"]);
    assert!(unauthorized(&text(&after)), "{}", text(&after));
    // So does every token once its service account is deleted.
    let token = ok(s.kubectl(&["create", "token", "robot"]))
        .trim()
        .to_string();
    ok(s.kubectl(&["delete", "serviceaccount", "robot"]));
    assert!(unauthorized(&text(
        &s.kubectl(&["--token", &token, "get", "pods"])
    )));
}

//! The smaller controllers of a real `minik server`, driven by kubectl: default service
//! accounts, the root CA ConfigMap, bootstrap tokens (cleaner and cluster-info signer), pod
//! garbage collection, ClusterRole aggregation and node IPAM (a node's podCIDR is given
//! once and may not be changed afterwards).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use minik_tests::server::{Server, ok};
use serde_json::{Value, json};

/// The cluster CA from the kubeconfig the server wrote.
fn cluster_ca(s: &Server) -> String {
    let kc = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let line = kc
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data:"))
        .unwrap();
    String::from_utf8(STANDARD.decode(line.trim()).unwrap()).unwrap()
}

#[test]
fn namespaces_get_a_default_service_account_and_the_root_ca() {
    let s = Server::start();
    ok(s.kubectl(&["create", "namespace", "team"]));
    for ns in ["default", "kube-system", "kube-public", "team"] {
        s.until(&["get", "sa", "default", "-n", ns], ns, Option::is_some);
    }
    ok(s.kubectl(&["delete", "sa", "default", "-n", "team"]));
    s.until(
        &["get", "sa", "default", "-n", "team"],
        "recreated",
        Option::is_some,
    );

    let ca = cluster_ca(&s);
    let has_ca = |v: &Option<Value>| {
        v.as_ref()
            .is_some_and(|cm| cm["data"] == json!({"ca.crt": ca}))
    };
    let args = ["get", "configmap", "kube-root-ca.crt", "-n", "team"];
    s.until(&args, "root CA published", has_ca);
    ok(s.kubectl(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"data":{"ca.crt":"forged","extra":"x"}}"#,
    ]));
    s.until(&args, "root CA restored after an edit", has_ca);
    ok(s.kubectl(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"]));
    s.until(&args, "root CA restored after a delete", has_ca);
}

fn token_secret(id: &str, secret: &str, expiration: Option<String>) -> Value {
    let mut data = json!({"token-id": id, "token-secret": secret,
        "usage-bootstrap-signing": "true", "usage-bootstrap-authentication": "true"});
    if let Some(e) = expiration {
        data["expiration"] = json!(e);
    }
    // (data, not stringData: what `minik token create` writes too.)
    let encoded: serde_json::Map<String, Value> = data
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), json!(STANDARD.encode(v.as_str().unwrap_or("")))))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
        "data": encoded})
}

/// cluster-bootstrap's detached JWS: HS256 keyed by the token secret, kid the token id.
fn jws(content: &str, id: &str, secret: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{id}"}}"#));
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let sig = ring::hmac::sign(&key, input.as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[test]
fn bootstrap_tokens_sign_cluster_info_and_expire() {
    let s = Server::start();
    let args = ["get", "configmap", "cluster-info", "-n", "kube-public"];
    let info = s.until(&args, "cluster-info", Option::is_some).unwrap();
    let kubeconfig = info["data"]["kubeconfig"].as_str().unwrap().to_string();
    assert!(
        kubeconfig.contains(&format!("server: https://127.0.0.1:{}", s.port)),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains(&STANDARD.encode(cluster_ca(&s))));

    let in_an_hour = rfc3339(chrono_now() + 3600);
    s.apply(&token_secret(
        "abcdef",
        "0123456789abcdef",
        Some(in_an_hour),
    ));
    let want = jws(&kubeconfig, "abcdef", "0123456789abcdef");
    s.until(&args, "signed by the token", |v| {
        v.as_ref()
            .is_some_and(|cm| cm["data"]["jws-kubeconfig-abcdef"] == want.as_str())
    });

    // Expired tokens are deleted, and sign no more.
    s.apply(&token_secret(
        "zyxwvu",
        "0123456789abcdef",
        Some("2020-01-01T00:00:00Z".into()),
    ));
    let gone = [
        "get",
        "secret",
        "bootstrap-token-zyxwvu",
        "-n",
        "kube-system",
    ];
    s.until(&gone, "expired token deleted", Option::is_none);
    let short = rfc3339(chrono_now() + 3);
    s.apply(&token_secret("qrstuv", "0123456789abcdef", Some(short)));
    s.until(&args, "signed by the short-lived token", |v| {
        v.as_ref()
            .is_some_and(|cm| cm["data"]["jws-kubeconfig-qrstuv"].is_string())
    });
    let gone = [
        "get",
        "secret",
        "bootstrap-token-qrstuv",
        "-n",
        "kube-system",
    ];
    s.until(&gone, "token deleted once expired", Option::is_none);
    s.until(&args, "its signature removed", |v| {
        v.as_ref().is_some_and(|cm| {
            cm["data"]["jws-kubeconfig-qrstuv"].is_null()
                && cm["data"]["jws-kubeconfig-abcdef"] == want.as_str()
        })
    });
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Seconds since the epoch as RFC 3339 (UTC), by `date`.
fn rfc3339(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn pods_of_deleted_nodes_are_collected() {
    let s = Server::start();
    s.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gone"}}));
    s.apply(&json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "orphan", "namespace": "default"},
        "spec": {"nodeName": "gone", "containers": [{"name": "c", "image": "busybox"}]}}));
    ok(s.kubectl(&["delete", "node", "gone"]));
    // After the quarantine (40 s), the pod goes.
    s.until(
        &["get", "pod", "orphan"],
        "orphaned pod deleted",
        Option::is_none,
    );
}

#[test]
fn cluster_roles_aggregate_labelled_roles() {
    let s = Server::start();
    for name in ["admin", "edit", "view"] {
        let agg = s.json_opt(&["get", "clusterrole", &format!("system:aggregate-to-{name}")]);
        assert!(agg.is_some(), "system:aggregate-to-{name}");
    }
    // Roles that exist at start are aggregated too (the workers wait for the caches).
    s.until(
        &["get", "clusterrole", "view"],
        "view takes in the metrics reader",
        |v| {
            v.as_ref()
                .is_some_and(|v| v["rules"].to_string().contains("metrics.k8s.io"))
        },
    );
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "lease-edit",
            "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "list", "create"]}]});
    s.apply(&role);
    let has_leases = |v: &Option<Value>| {
        v.as_ref().is_some_and(|r| {
            r["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|rule| rule["resources"] == json!(["leases"]))
        })
    };
    let edit = s
        .until(
            &["get", "clusterrole", "edit"],
            "edit aggregates",
            has_leases,
        )
        .unwrap();
    // edit keeps what it had: its aggregate-to roles' rules.
    assert!(edit["rules"].as_array().unwrap().iter().any(|r| {
        r["resources"]
            .as_array()
            .is_some_and(|x| x.contains(&json!("secrets")))
    }));
    // The view role does not take it; admin has its own rules and edit's.
    let view = s.json_opt(&["get", "clusterrole", "view"]);
    assert!(!has_leases(&view));
    let admin = s.json_opt(&["get", "clusterrole", "admin"]).unwrap();
    assert!(
        admin["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"] == json!(["rolebindings", "roles"]))
    );
    // A user bound to edit gets it.
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "e",
        "--clusterrole=edit",
        "--user=alice",
    ]));
    let can = |verb: &str| {
        s.kubectl(&[
            "auth",
            "can-i",
            verb,
            "leases.coordination.k8s.io",
            "--as=alice",
        ])
        .status
        .success()
    };
    s.eventually("alice may create leases", || can("create").then_some(()));
    ok(s.kubectl(&["delete", "clusterrole", "lease-edit"]));
    s.until(
        &["get", "clusterrole", "edit"],
        "edit loses the rule",
        |v| v.is_some() && !has_leases(v),
    );
    s.eventually("alice may no longer create leases", || {
        (!can("create")).then_some(())
    });
}

#[test]
fn a_nodes_pod_cidr_is_given_once() {
    let s = Server::start();
    s.apply(&json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ipam-1"}}));
    let node = s.until(&["get", "node", "ipam-1"], "a podCIDR", |n| {
        n.as_ref().is_some_and(|n| n["spec"]["podCIDR"].is_string())
    });
    let node = node.unwrap();
    let cidr = node["spec"]["podCIDR"].clone();
    assert_eq!(node["spec"]["podCIDRs"], json!([cidr]));
    let out = s.kubectl(&[
        "patch",
        "node",
        "ipam-1",
        "--type=merge",
        "-p",
        r#"{"spec":{"podCIDR":"10.42.250.0/24","podCIDRs":["10.42.250.0/24"]}}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may not change podCIDR except from \"\" to valid"),
        "{err}"
    );
    let after = s.get_json(&["node", "ipam-1"]);
    assert_eq!(after["spec"]["podCIDR"], cidr);
}

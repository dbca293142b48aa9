//! Tests of RBAC decisions through the authorizer's cache: right answers, changes of roles
//! and bindings seen by the next decision once the watch cache has them, and no sharing of
//! entries between users, groups or namespaces.

use std::sync::Arc;

use minik_registry::{DeleteParams, Registry, WriteParams};
use serde_json::{Value, json};

use super::rbac::{self, rbac};
use super::rbac_cache::RbacCache;
use super::{Attributes, Authorizer, Decision, Mode};
use crate::authn::UserInfo;

/// An in-memory registry with namespaces a and b.
async fn registry() -> Registry {
    let store = minik_store::open("memory://", std::path::Path::new("/"), Default::default())
        .await
        .unwrap();
    let reg = Registry::new(store);
    let namespaces = minik_api::builtin("", "v1", "namespaces");
    for ns in ["a", "b"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        reg.create(namespaces, None, obj, &WriteParams::default())
            .await
            .unwrap();
    }
    reg
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        uid: String::new(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

fn on(verb: &str, resource: &str, ns: &str) -> Attributes {
    Attributes {
        verb: verb.into(),
        resource_request: true,
        resource: resource.into(),
        namespace: ns.into(),
        ..Default::default()
    }
}

/// The cache of a RBAC-only chain.
fn cache(mode: &Mode) -> &RbacCache {
    match mode.0.first() {
        Some(Authorizer::Rbac(c)) => c,
        _ => panic!("not an RBAC chain"),
    }
}

async fn allowed(mode: &Mode, reg: &Registry, u: &UserInfo, a: &Attributes) -> bool {
    mode.decide(reg, u, a).await == Decision::Allow
}

/// Run a write of `plural` and wait until the watch cache has applied it.
async fn settle<F: Future>(reg: &Registry, plural: &str, write: F) {
    let before = reg.last_change(rbac(plural)).await.unwrap();
    write.await;
    for _ in 0..500 {
        if reg.last_change(rbac(plural)).await.unwrap() > before {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the watch cache of {plural} never saw the write");
}

async fn create(reg: &Registry, plural: &str, ns: Option<&str>, obj: Value) {
    let info = rbac(plural);
    settle(reg, plural, async {
        reg.create(info, ns, obj, &WriteParams::default())
            .await
            .unwrap();
    })
    .await;
}

async fn replace(
    reg: &Registry,
    plural: &str,
    ns: Option<&str>,
    name: &str,
    edit: impl FnOnce(&mut Value),
) {
    let info = rbac(plural);
    let mut obj = reg.get(info, ns, name).await.unwrap();
    edit(&mut obj);
    settle(reg, plural, async {
        reg.update(info, ns, name, obj, false, &WriteParams::default())
            .await
            .unwrap();
    })
    .await;
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name}, "rules": rules})
}

fn role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name}, "rules": rules})
}

fn binding(kind: &str, name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
        "metadata": {"name": name}, "subjects": subjects,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}})
}

fn pod_rules(verbs: &[&str]) -> Value {
    json!([{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}])
}

#[tokio::test]
async fn bindings_and_role_edits_are_seen() {
    let reg = registry().await;
    let mode = Mode::rbac();
    let alice = user("alice", &[]);
    create(
        &reg,
        "clusterroles",
        None,
        cluster_role("reader", pod_rules(&["get", "list"])),
    )
    .await;
    let subjects = json!([{"kind": "User", "name": "alice"}]);
    let rb = binding(
        "RoleBinding",
        "alice-reads",
        "ClusterRole",
        "reader",
        subjects,
    );
    create(&reg, "rolebindings", Some("a"), rb).await;

    assert!(allowed(&mode, &reg, &alice, &on("get", "pods", "a")).await);
    assert!(!allowed(&mode, &reg, &alice, &on("delete", "pods", "a")).await);
    assert!(!allowed(&mode, &reg, &alice, &on("get", "pods", "b")).await);
    assert!(!allowed(&mode, &reg, &alice, &on("list", "pods", "")).await);
    assert!(!allowed(&mode, &reg, &user("bob", &[]), &on("get", "pods", "a")).await);
    // alice in a, b and cluster-wide; bob in a.
    assert_eq!(cache(&mode).len(), 4);

    replace(&reg, "clusterroles", None, "reader", |r| {
        r["rules"] = pod_rules(&["get", "list", "delete"]);
    })
    .await;
    assert!(allowed(&mode, &reg, &alice, &on("delete", "pods", "a")).await);

    settle(&reg, "rolebindings", async {
        reg.delete(
            rbac("rolebindings"),
            Some("a"),
            "alice-reads",
            &DeleteParams::default(),
        )
        .await
        .unwrap();
    })
    .await;
    assert!(!allowed(&mode, &reg, &alice, &on("get", "pods", "a")).await);
}

#[tokio::test]
async fn users_groups_and_namespaces_do_not_share_entries() {
    let reg = registry().await;
    let mode = Mode::rbac();
    create(
        &reg,
        "clusterroles",
        None,
        cluster_role("reader", pod_rules(&["get"])),
    )
    .await;
    let crb = binding(
        "ClusterRoleBinding",
        "readers",
        "ClusterRole",
        "reader",
        json!([{"kind": "Group", "name": "readers"}]),
    );
    create(&reg, "clusterrolebindings", None, crb).await;
    create(
        &reg,
        "roles",
        Some("a"),
        role(
            "secrets",
            json!([
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        ),
    )
    .await;
    let rb = binding(
        "RoleBinding",
        "sa-secrets",
        "Role",
        "secrets",
        json!([{"kind": "ServiceAccount", "namespace": "a", "name": "sa1"}]),
    );
    create(&reg, "rolebindings", Some("a"), rb).await;

    let get_pods = on("get", "pods", "x");
    assert!(allowed(&mode, &reg, &user("carol", &["readers"]), &get_pods).await);
    assert!(!allowed(&mode, &reg, &user("carol", &[]), &get_pods).await);
    assert!(!allowed(&mode, &reg, &user("carol", &["writers"]), &get_pods).await);
    assert!(
        allowed(
            &mode,
            &reg,
            &user("dan", &["writers", "readers"]),
            &get_pods
        )
        .await
    );

    let secrets_a = on("get", "secrets", "a");
    let sa1 = user("system:serviceaccount:a:sa1", &[]);
    assert!(allowed(&mode, &reg, &sa1, &secrets_a).await);
    assert!(!allowed(&mode, &reg, &sa1, &on("get", "secrets", "b")).await);
    for other in [
        "system:serviceaccount:a:sa10",
        "system:serviceaccount:a:sa",
        "system:serviceaccount:b:sa1",
    ] {
        assert!(
            !allowed(&mode, &reg, &user(other, &[]), &secrets_a).await,
            "{other}"
        );
    }
    // Asked again: the same answers, from the entries made above.
    let entries = cache(&mode).len();
    assert!(allowed(&mode, &reg, &sa1, &secrets_a).await);
    assert!(!allowed(&mode, &reg, &user("carol", &[]), &get_pods).await);
    assert_eq!(cache(&mode).len(), entries);

    // The rules a review lists are those the uncached resolver finds, in the same order.
    let cached = mode.rbac_rules(&reg, &sa1, "a").await;
    assert_eq!(*cached, rbac::rules_for(&reg, &sa1, "a").await);
    assert!(Arc::ptr_eq(
        &cached,
        &mode.rbac_rules(&reg, &sa1, "a").await
    ));
}

#[tokio::test]
async fn aggregated_rules_follow_labels() {
    let reg = registry().await;
    let mode = Mode::rbac();
    let mut agg = cluster_role("agg", json!([]));
    agg["aggregationRule"] =
        json!({"clusterRoleSelectors": [{"matchLabels": {"example.com/agg": "true"}}]});
    create(&reg, "clusterroles", None, agg).await;
    let crb = binding(
        "ClusterRoleBinding",
        "erin-agg",
        "ClusterRole",
        "agg",
        json!([{"kind": "User", "name": "erin"}]),
    );
    create(&reg, "clusterrolebindings", None, crb).await;
    let erin = user("erin", &[]);
    let get_cm = on("get", "configmaps", "a");
    let cm_rules = json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]);
    create(&reg, "clusterroles", None, cluster_role("extra", cm_rules)).await;
    assert!(!allowed(&mode, &reg, &erin, &get_cm).await);

    replace(&reg, "clusterroles", None, "extra", |r| {
        r["metadata"]["labels"] = json!({"example.com/agg": "true"});
    })
    .await;
    assert!(allowed(&mode, &reg, &erin, &get_cm).await);
}

#[tokio::test]
async fn a_change_drops_every_entry() {
    let reg = registry().await;
    let c = RbacCache::default();
    let u = user("u", &[]);
    // Prime the cache at the version now, then change a role: the cache moves on.
    c.rules(&reg, &u, "").await;
    assert_eq!(c.len(), 1);
    create(
        &reg,
        "clusterroles",
        None,
        cluster_role("r", pod_rules(&["get"])),
    )
    .await;
    c.rules(&reg, &user("v", &[]), "").await;
    assert_eq!(c.len(), 1, "the change dropped the old entry");
}

#[test]
fn rules_match_resources_subresources_and_paths() {
    let rule = json!({"apiGroups": ["", "apps"], "resources": ["pods/log", "*/scale", "services"],
        "verbs": ["get"], "resourceNames": ["web"]});
    let with = |resource: &str, sub: &str, name: &str| Attributes {
        verb: "get".into(),
        resource_request: true,
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
        ..Default::default()
    };
    assert!(rbac::rule_allows(&rule, &with("pods", "log", "web")));
    assert!(!rbac::rule_allows(&rule, &with("pods", "log", "db")));
    assert!(!rbac::rule_allows(&rule, &with("pods", "", "web")));
    assert!(!rbac::rule_allows(&rule, &with("pods", "exec", "web")));
    assert!(!rbac::rule_allows(&rule, &with("pod", "s/log", "web")));
    assert!(rbac::rule_allows(
        &rule,
        &with("deployments", "scale", "web")
    ));
    assert!(rbac::rule_allows(&rule, &with("services", "", "web")));
    assert!(!rbac::rule_allows(
        &rule,
        &with("services", "status", "web")
    ));
    let urls = json!({"nonResourceURLs": ["/healthz", "/api/*"], "verbs": ["get"]});
    let path = |p: &str| Attributes::non_resource("get", p);
    assert!(rbac::rule_allows(&urls, &path("/healthz")));
    assert!(rbac::rule_allows(&urls, &path("/api/v1")));
    assert!(!rbac::rule_allows(&urls, &path("/healthz/ready")));
}

//! The garbage collector with the real binary and real kubectl: background, foreground and
//! orphan cascades of Deployments, ConfigMaps owning ConfigMaps, and custom resources.

use minik_tests::server::{Kubectl, Server, ok, text};

fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: c, image: registry.k8s.io/pause:3.10}}]}}
"
    )
}

/// `kubectl get` names (one per line), empty when none.
fn names(k: &Kubectl, args: &[&str]) -> Vec<String> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "name"]);
    ok(k.run(&all)).lines().map(str::to_string).collect()
}

/// Create a deployment and wait for its ReplicaSet and two pods.
fn deploy(s: &Server, k: &Kubectl, name: &str) {
    ok(k.stdin(&["apply", "-f", "-"], &deployment(name)));
    let selector = format!("app={name}");
    s.eventually("a ReplicaSet and two pods", || {
        let rs = names(k, &["rs", "-l", &selector]);
        let pods = names(k, &["pods", "-l", &selector]);
        (rs.len() == 1 && pods.len() == 2).then_some(())
    });
}

#[test]
fn deleting_a_deployment_cascades_in_the_background() {
    let s = Server::start();
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        eprintln!("kubectl: {}", k.bin);
        let name = format!("bg{i}");
        deploy(&s, k, &name);
        ok(k.run(&["delete", "deployment", &name]));
        let selector = format!("app={name}");
        s.eventually("ReplicaSets and pods collected", || {
            names(k, &["rs,pods", "-l", &selector])
                .is_empty()
                .then_some(())
        });
    }
}

#[test]
fn orphan_and_foreground_cascades() {
    let s = Server::start();
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        eprintln!("kubectl: {}", k.bin);
        // Orphan: the ReplicaSet stays, without an ownerReference, with its pods.
        let name = format!("orphan{i}");
        deploy(&s, k, &name);
        ok(k.run(&["delete", "deployment", &name, "--cascade=orphan"]));
        let selector = format!("app={name}");
        let rs = names(k, &["rs", "-l", &selector]);
        assert_eq!(rs.len(), 1, "the ReplicaSet is orphaned, not deleted");
        let owners = ok(k.run(&["get", &rs[0], "-o", "jsonpath={.metadata.ownerReferences}"]));
        assert_eq!(owners, "", "no ownerReference left");
        assert_eq!(names(k, &["pods", "-l", &selector]).len(), 2);
        // The orphaned ReplicaSet is not collected later either.
        ok(k.run(&["get", &rs[0]]));
        ok(k.run(&["delete", &rs[0]]));

        // Foreground: kubectl waits for the Deployment, which goes only after its
        // ReplicaSet and the ReplicaSet's pods.
        let name = format!("fg{i}");
        deploy(&s, k, &name);
        ok(k.run(&["delete", "deployment", &name, "--cascade=foreground"]));
        let selector = format!("app={name}");
        assert_eq!(
            names(k, &["rs,pods", "-l", &selector]),
            Vec::<String>::new()
        );
    }
}

#[test]
fn foreground_deletion_waits_for_blocking_dependents() {
    let s = Server::start();
    let k = &Kubectl::each(&s)[0];
    ok(k.run(&["create", "configmap", "parent"]));
    let uid = ok(k.run(&["get", "cm", "parent", "-o", "jsonpath={.metadata.uid}"]));
    let child = |name: &str, block: bool, finalizers: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  finalizers: {finalizers}\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: parent, uid: {uid}, blockOwnerDeletion: {block}}}]\n"
        )
    };
    ok(k.stdin(
        &["apply", "-f", "-"],
        &child("held", true, "[example.com/hold]"),
    ));
    ok(k.stdin(&["apply", "-f", "-"], &child("loose", false, "[]")));
    ok(k.run(&[
        "delete",
        "cm",
        "parent",
        "--cascade=foreground",
        "--wait=false",
    ]));
    // Both dependents are deleted; the held one stays (its finalizer) and so does the owner.
    s.eventually("the held dependent being deleted", || {
        let ts = ok(k.run(&[
            "get",
            "cm",
            "held",
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ]));
        (!ts.is_empty() && names(k, &["cm", "loose", "--ignore-not-found"]).is_empty())
            .then_some(())
    });
    let fin = ok(k.run(&[
        "get",
        "cm",
        "parent",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]));
    assert_eq!(fin, "[\"foregroundDeletion\"]");
    // Once the blocking dependent goes, so does the owner.
    ok(k.run(&[
        "patch",
        "cm",
        "held",
        "--type=merge",
        "-p",
        "{\"metadata\":{\"finalizers\":null}}",
    ]));
    s.eventually("the owner gone", || {
        names(k, &["cm", "parent", "held", "--ignore-not-found"])
            .is_empty()
            .then_some(())
    });
}

#[test]
fn configmaps_owned_by_configmaps_and_custom_resources() {
    let s = Server::start();
    let k = &Kubectl::each(&s)[0];
    ok(k.run(&["create", "configmap", "a"]));
    ok(k.run(&["create", "configmap", "b"]));
    let uid = |n: &str| ok(k.run(&["get", "cm", n, "-o", "jsonpath={.metadata.uid}"]));
    let (a, b) = (uid("a"), uid("b"));
    let owned = |name: &str, owners: &[(&str, &str)]| {
        let refs: Vec<String> = owners
            .iter()
            .map(|(n, u)| format!("{{apiVersion: v1, kind: ConfigMap, name: {n}, uid: {u}}}"))
            .collect();
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences: [{}]\n",
            refs.join(", ")
        )
    };
    ok(k.stdin(&["apply", "-f", "-"], &owned("only-a", &[("a", &a)])));
    ok(k.stdin(
        &["apply", "-f", "-"],
        &owned("a-and-b", &[("a", &a), ("b", &b)]),
    ));
    // An owner that never existed: collected at once.
    ok(k.stdin(
        &["apply", "-f", "-"],
        &owned("dangling", &[("ghost", "0000-ghost")]),
    ));
    s.eventually("the dangling dependent collected", || {
        names(k, &["cm", "dangling", "--ignore-not-found"])
            .is_empty()
            .then_some(())
    });
    // Still owned: kept.
    ok(k.run(&["get", "cm", "only-a", "a-and-b"]));

    ok(k.run(&["delete", "cm", "a"]));
    s.eventually("only-a collected, a-and-b released from a", || {
        let gone = names(k, &["cm", "only-a", "--ignore-not-found"]).is_empty();
        let owners = ok(k.run(&[
            "get",
            "cm",
            "a-and-b",
            "-o",
            "jsonpath={.metadata.ownerReferences[*].name}",
        ]));
        (gone && owners == "b").then_some(())
    });

    // A custom resource owned by a ConfigMap (a kind defined after the collector started).
    let crd = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
";
    ok(k.stdin(&["apply", "-f", "-"], crd));
    let wait = k.run(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=30s",
    ]);
    assert!(wait.status.success(), "{}", text(&wait));
    let gadget = format!(
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n  ownerReferences: [{{apiVersion: v1, kind: ConfigMap, name: b, uid: {b}}}]\n"
    );
    ok(k.stdin(&["apply", "-f", "-"], &gadget));
    ok(k.run(&["delete", "cm", "b"]));
    s.eventually("the gadget and a-and-b collected", || {
        let left = names(k, &["gadgets,cm", "--ignore-not-found"]);
        (!left
            .iter()
            .any(|n| n.contains("/g") || n.contains("a-and-b")))
        .then_some(())
    });
}

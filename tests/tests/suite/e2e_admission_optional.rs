//! The optional admission plugins turned on with --enable-admission-plugins, and the
//! default-on RuntimeClass, DefaultIngressClass and PersistentVolumeClaimResize.

use minik_tests::server::{Server, ok, text};
use serde_json::{Value, json};

fn create(s: &Server, obj: Value) -> std::process::Output {
    s.kubectl_stdin(&["create", "-f", "-"], &obj.to_string())
}

fn pod(name: &str, ns: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "busybox",
        "resources": spec.get("resources").cloned().unwrap_or(json!({}))}]);
    if let Some(m) = spec.as_object_mut() {
        m.remove("resources");
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn get(s: &Server, what: &[&str]) -> Value {
    serde_json::from_str(&ok(s.kubectl(&[what, &["-o", "json"]].concat()))).unwrap()
}

#[test]
fn optional_plugins() {
    let s = Server::start_with(&[
        "--enable-admission-plugins",
        "NamespaceAutoProvision,PodNodeSelector,PodTolerationRestriction,ExtendedResourceToleration,DenyServiceExternalIPs,LimitPodHardAntiAffinityTopology,AlwaysPullImages",
    ]);
    // A namespace appears for the first object written into it.
    ok(s.kubectl(&["create", "configmap", "x", "-n", "brand-new"]));
    ok(s.kubectl(&["get", "namespace", "brand-new"]));
    // The namespace's node selector and tolerations.
    ok(s.kubectl(&["create", "namespace", "team"]));
    ok(s.kubectl(&["annotate", "namespace", "team",
        "scheduler.alpha.kubernetes.io/node-selector=env=prod",
        r#"scheduler.alpha.kubernetes.io/defaultTolerations=[{"key":"dedicated","operator":"Equal","value":"team","effect":"NoSchedule"}]"#,
        r#"scheduler.alpha.kubernetes.io/tolerationsWhitelist=[{"key":"dedicated","operator":"Equal","value":"team","effect":"NoSchedule"},{"key":"example.com/gpu","operator":"Exists","effect":"NoSchedule"}]"#]));
    ok(create(
        &s,
        pod(
            "p",
            "team",
            json!({"resources": {"limits": {"example.com/gpu": "1"}}}),
        ),
    ));
    let p = get(&s, &["get", "pod", "p", "-n", "team"]);
    assert_eq!(p["spec"]["nodeSelector"], json!({"env": "prod"}));
    let keys: Vec<&str> = p["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert!(
        keys.contains(&"dedicated") && keys.contains(&"example.com/gpu"),
        "{keys:?}"
    );
    assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
    let out = create(
        &s,
        pod("dev", "team", json!({"nodeSelector": {"env": "dev"}})),
    );
    assert!(
        text(&out)
            .contains("pod node label selector conflicts with its namespace node label selector"),
        "{}",
        text(&out)
    );
    let out = create(
        &s,
        pod(
            "odd",
            "team",
            json!({"tolerations": [{"key": "other", "operator": "Exists"}]}),
        ),
    );
    assert!(
        text(&out).contains("conflict with its namespace whitelist"),
        "{}",
        text(&out)
    );
    // External IPs and zone-wide hard anti-affinity are refused.
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
        "spec": {"ports": [{"port": 80}], "externalIPs": ["192.0.2.10"]}});
    assert!(text(&create(&s, svc)).contains("use of external IPs is denied by admission control"));
    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "a"}}, "topologyKey": "topology.kubernetes.io/zone"}]}});
    let out = create(&s, pod("anti", "default", json!({"affinity": anti})));
    assert!(
        text(&out).contains("TopologyKey other than kubernetes.io/hostname"),
        "{}",
        text(&out)
    );
}

#[test]
fn runtime_classes_ingress_classes_and_claim_resizing() {
    let s = Server::start();
    let out = create(
        &s,
        pod("nope", "default", json!({"runtimeClassName": "missing"})),
    );
    assert!(
        text(&out).contains("RuntimeClass \"missing\" not found"),
        "{}",
        text(&out)
    );
    ok(create(
        &s,
        json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "sandboxed"},
        "handler": "runc", "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
        "scheduling": {"nodeSelector": {"sandbox": "yes"}}}),
    ));
    ok(create(
        &s,
        pod("sb", "default", json!({"runtimeClassName": "sandboxed"})),
    ));
    let p = get(&s, &["get", "pod", "sb"]);
    assert_eq!(
        p["spec"]["overhead"],
        json!({"cpu": "250m", "memory": "64Mi"})
    );
    assert_eq!(p["spec"]["nodeSelector"], json!({"sandbox": "yes"}));
    ok(create(
        &s,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "nginx", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
        "spec": {"controller": "example.com/ingress"}}),
    ));
    ok(create(
        &s,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}}),
    ));
    assert_eq!(
        get(&s, &["get", "ingress", "web"])["spec"]["ingressClassName"],
        "nginx"
    );
    ok(create(
        &s,
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fixed"},
        "provisioner": "example.com/fixed"}),
    ));
    ok(create(
        &s,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"storageClassName": "fixed", "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}),
    ));
    let out = s.kubectl(&[
        "patch",
        "pvc",
        "data",
        "--type=merge",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
    ]);
    assert!(
        text(&out).contains("only dynamically provisioned pvc can be resized"),
        "{}",
        text(&out)
    );
}

#[test]
fn owner_references_take_the_right_to_block_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    std::fs::write(&tokens, "bob-t,bob,u-2\n").unwrap();
    let s = Server::start_with(&[
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--enable-admission-plugins",
        "OwnerReferencesPermissionEnforcement",
    ]);
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "bob-edit",
        "--clusterrole=edit",
        "--user=bob",
    ]));
    ok(s.kubectl(&["create", "configmap", "owner"]));
    let uid = ok(s.kubectl(&["get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"]));
    let child = |name: &str, block: bool| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                "uid": uid, "blockOwnerDeletion": block}]}})
        .to_string()
    };
    let bob = |input: String| s.kubectl_stdin(&["--token", "bob-t", "create", "-f", "-"], &input);
    ok(bob(child("free", false)));
    let out = bob(child("blocking", true));
    assert!(
        text(&out).contains("cannot set blockOwnerDeletion if an ownerReference refers to a resource you can't set finalizers on: v1, Kind=ConfigMap, owner"),
        "{}",
        text(&out)
    );
    let finalizers = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: finalizers, namespace: default}\nrules:\n- apiGroups: ['']\n  resources: [configmaps/finalizers]\n  verbs: [update]\n";
    ok(s.kubectl_stdin(&["apply", "-f", "-"], finalizers));
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "bob-finalizers",
        "--role=finalizers",
        "--user=bob",
    ]));
    ok(bob(child("blocking", true)));
}

#[test]
fn event_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("admission.yaml");
    std::fs::write(&config, "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n- name: EventRateLimit\n  configuration:\n    apiVersion: eventratelimit.admission.k8s.io/v1alpha1\n    kind: Configuration\n    limits:\n    - type: Namespace\n      qps: 0.01\n      burst: 3\n").unwrap();
    let s = Server::start_with(&[
        "--enable-admission-plugins",
        "EventRateLimit",
        "--admission-control-config-file",
        config.to_str().unwrap(),
    ]);
    let event = |i: usize| {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": format!("e{i}")},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Test", "message": "m", "type": "Normal"})
    };
    for i in 0..3 {
        ok(create(&s, event(i)));
    }
    let out = create(&s, event(3));
    assert!(
        text(&out).contains("limit reached on type Namespace for key default"),
        "{}",
        text(&out)
    );
    // Another namespace has its own bucket.
    ok(s.kubectl(&["create", "namespace", "other"]));
    let mut e = event(4);
    e["metadata"]["namespace"] = json!("other");
    ok(create(&s, e));
}

/// Wait (up to 20 s) until `kubectl get <what>` says NotFound.
fn gone(s: &Server, what: &[&str]) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if text(&s.kubectl(&[&["get"][..], what].concat())).contains("NotFound") {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    false
}

#[test]
fn claims_in_use_are_kept_until_their_pods_go() {
    let s = Server::start();
    ok(create(
        &s,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    ));
    let fin = ok(s.kubectl(&[
        "get",
        "pvc",
        "data",
        "-o",
        "jsonpath={.metadata.finalizers}",
    ]));
    assert_eq!(fin, r#"["kubernetes.io/pvc-protection"]"#);
    ok(create(
        &s,
        pod(
            "user",
            "default",
            json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}),
        ),
    ));
    ok(s.kubectl(&["delete", "pvc", "data", "--wait=false"]));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let deleting = ok(s.kubectl(&[
        "get",
        "pvc",
        "data",
        "-o",
        "jsonpath={.metadata.deletionTimestamp}",
    ]));
    assert!(
        !deleting.is_empty(),
        "the claim in use is kept while terminating"
    );
    ok(s.kubectl(&["delete", "pod", "user", "--grace-period=0", "--force"]));
    assert!(
        gone(&s, &["pvc", "data"]),
        "the claim goes with its last pod"
    );
    ok(create(
        &s,
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "vol"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/tmp/vol"}}}),
    ));
    let fin = ok(s.kubectl(&["get", "pv", "vol", "-o", "jsonpath={.metadata.finalizers}"]));
    assert_eq!(fin, r#"["kubernetes.io/pv-protection"]"#);
    ok(s.kubectl(&["delete", "pv", "vol", "--wait=false"]));
    assert!(gone(&s, &["pv", "vol"]), "an unbound volume goes");
}

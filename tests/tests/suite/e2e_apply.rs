//! Server-side apply against a real `minik server`, with kube-rs and with the real kubectl:
//! field managers, conflicts, force, apply of status and scale.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::{Value, json};

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]}}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_apply_conflicts_force_and_status() {
    // Apply semantics alone: no deployment controller writing status and revisions too.
    let s = Server::start_with(&["--disable-controller-manager"]);
    let deps: Api<Deployment> = Api::namespaced(s.kube_client().await, "default");
    let alice = PatchParams::apply("alice");
    let created = deps
        .patch("web", &alice, &Patch::Apply(deployment(1, "busybox")))
        .await
        .unwrap();
    assert_eq!(created.spec.replicas, Some(1));
    // Bob applies the same replicas: shared, no conflict; then a different one: 409.
    let bob = PatchParams::apply("bob");
    let bob_same = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 1}});
    deps.patch("web", &bob, &Patch::Apply(&bob_same))
        .await
        .unwrap();
    let bob_more = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let alice_more = deployment(3, "busybox");
    match deps.patch("web", &alice, &Patch::Apply(&alice_more)).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 409);
            assert!(e.message.contains("\"bob\""), "{}", e.message);
            assert!(e.message.contains(".spec.replicas"), "{}", e.message);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Force wins and takes the field; bob keeps nothing else and disappears.
    let forced = deps
        .patch("web", &bob.clone().force(), &Patch::Apply(&bob_more))
        .await
        .unwrap();
    assert_eq!(forced.spec.replicas, Some(5));
    let managers: Vec<String> = forced
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert_eq!(managers, ["alice", "bob"]);
    // Alice changes the image she alone owns: no conflict.
    let alice_new_image = deployment(5, "busybox:2");
    let d = deps
        .patch("web", &alice, &Patch::Apply(&alice_new_image))
        .await
        .unwrap();
    let c = &d.spec.template.spec.unwrap().containers[0];
    assert_eq!(c.image.as_deref(), Some("busybox:2"));
    // Status through apply, by a controller.
    let status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "status": {"replicas": 2, "readyReplicas": 1}});
    let d = deps
        .patch_status("web", &PatchParams::apply("ctl"), &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(d.status.as_ref().unwrap().ready_replicas, Some(1));
    let ctl = d
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("ctl"))
        .unwrap();
    assert_eq!(ctl.subresource.as_deref(), Some("status"));
    assert_eq!(ctl.operation.as_deref(), Some("Apply"));
    // Removing a field from an apply configuration removes it from the object.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"a": "1", "b": "2"}});
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(s.kube_client().await, "default");
    cms.patch("c", &alice, &Patch::Apply(&cm)).await.unwrap();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"a": "1"}});
    let got = cms.patch("c", &alice, &Patch::Apply(&cm)).await.unwrap();
    assert_eq!(got.data.unwrap().keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn kubectl_server_side_apply() {
    let s = Server::start();
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        eprintln!("kubectl: {}", k.bin);
        let ns = format!("a{i}");
        ok(k.run(&["create", "namespace", &ns]));
        let n = ["-n", ns.as_str()];
        let yaml = |replicas: i64| {
            let mut d = deployment(replicas, "busybox");
            d["metadata"]["namespace"] = json!(ns);
            d.to_string()
        };
        let out = ok(k.stdin(
            &[&n[..], &["apply", "--server-side", "-f", "-"]].concat(),
            &yaml(1),
        ));
        assert!(out.contains("serverside-applied"), "{out}");
        let other = k.stdin(
            &[
                &n[..],
                &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            ]
            .concat(),
            &yaml(2),
        );
        assert!(!other.status.success());
        assert!(text(&other).contains("conflict"), "{}", text(&other));
        ok(k.stdin(
            &[
                &n[..],
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=other",
                    "--force-conflicts",
                    "-f",
                    "-",
                ],
            ]
            .concat(),
            &yaml(2),
        ));
        let d: Value = serde_json::from_str(&ok(k.run(
            &[
                &n[..],
                &[
                    "get",
                    "deploy",
                    "web",
                    "-o",
                    "json",
                    "--show-managed-fields",
                ],
            ]
            .concat(),
        )))
        .unwrap();
        assert_eq!(d["spec"]["replicas"], 2);
        let fields = d["metadata"]["managedFields"].as_array().unwrap();
        let other = fields.iter().find(|f| f["manager"] == "other").unwrap();
        assert_eq!(other["fieldsV1"]["f:spec"]["f:replicas"], json!({}));
        let kubectl = fields.iter().find(|f| f["manager"] == "kubectl").unwrap();
        assert!(
            kubectl["fieldsV1"]["f:spec"].get("f:replicas").is_none(),
            "{kubectl}"
        );
        // From client-side to server-side apply: the fields the last-applied annotation set
        // move to kubectl without conflicts, even a changed one.
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "csa", "namespace": ns}, "data": {"a": "1", "b": "1"}});
        ok(k.stdin(&["apply", "-f", "-"], &cm.to_string()));
        cm["data"]["a"] = json!("2");
        let get = || -> Value {
            serde_json::from_str(&ok(
                k.run(&[&n[..], &["get", "cm", "csa", "-o", "json"]].concat())
            ))
            .unwrap()
        };
        ok(k.stdin(&["apply", "--server-side", "-f", "-"], &cm.to_string()));
        assert_eq!(get()["data"], json!({"a": "2", "b": "1"}));
        // Then an ordinary re-apply of the same configuration changes nothing.
        ok(k.stdin(&["apply", "--server-side", "-f", "-"], &cm.to_string()));
        assert_eq!(get()["data"], json!({"a": "2", "b": "1"}));
    }
}

//! Namespace deletion as Kubernetes does it, with the real binary and real kubectl: the
//! namespace turns Terminating, the namespace controller empties it (honouring finalizers),
//! reports what is left in its conditions, and finalizes it; nothing new may be created in
//! it meanwhile. Without the controller manager it stays Terminating.

use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::Value;

fn get_json(k: &Kubectl, args: &[&str]) -> Value {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    serde_json::from_str(&ok(k.run(&all))).expect("json")
}

fn condition<'a>(ns: &'a Value, type_: &str) -> Option<&'a Value> {
    ns["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

const CONTENT: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: NS}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: NS}
stringData: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: registry.k8s.io/pause:3.10}]}
";

#[test]
fn deleting_a_namespace_empties_it_and_it_goes() {
    let s = Server::start();
    for (i, k) in Kubectl::each(&s).iter().enumerate() {
        eprintln!("kubectl: {}", k.bin);
        let ns = format!("team{i}");
        ok(k.run(&["create", "namespace", &ns]));
        let created = get_json(k, &["namespace", &ns]);
        assert_eq!(
            created["spec"]["finalizers"],
            serde_json::json!(["kubernetes"])
        );
        assert_eq!(created["status"]["phase"], "Active");
        ok(k.stdin(&["apply", "-f", "-"], &CONTENT.replace("NS", &ns)));
        s.eventually("the deployment's pods", || {
            let pods = ok(k.run(&["get", "pods", "-n", &ns, "-o", "name"]));
            (pods.lines().count() == 2).then_some(())
        });
        // kubectl waits until the namespace is gone.
        ok(k.run(&["delete", "namespace", &ns]));
        let gone = k.run(&["get", "namespace", &ns]);
        assert!(text(&gone).contains("NotFound"), "{}", text(&gone));
        let left = ok(k.run(&["get", "all,cm,secrets", "-n", &ns, "-o", "name"]));
        assert_eq!(left.trim(), "", "nothing is left in it");
        // The name can be used again at once.
        ok(k.run(&["create", "namespace", &ns]));
    }
}

#[test]
fn a_terminating_namespace_refuses_content_and_waits_for_finalizers() {
    let s = Server::start();
    let k = &Kubectl::each(&s)[0];
    ok(k.run(&["create", "namespace", "held"]));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep, namespace: held, finalizers: [example.com/hold]}\n";
    ok(k.stdin(&["apply", "-f", "-"], cm));
    ok(k.run(&["create", "configmap", "plain", "-n", "held"]));
    ok(k.run(&["delete", "namespace", "held", "--wait=false"]));

    let ns = get_json(k, &["namespace", "held"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert!(ns["metadata"]["deletionTimestamp"].is_string());
    let new = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: new, namespace: held}\n";
    let refused = k.stdin(&["create", "-f", "-"], new);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("Error from server (Forbidden)")
            && text(&refused).contains(
                "unable to create new content in namespace held because it is being terminated"
            ),
        "{}",
        text(&refused)
    );

    // The controller deletes what it can and says what holds the rest.
    let ns = s.eventually("conditions naming the finalizer", || {
        let ns = get_json(k, &["namespace", "held"]);
        let fin = condition(&ns, "NamespaceFinalizersRemaining")?;
        (fin["status"] == "True").then_some(ns)
    });
    let fin = condition(&ns, "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(fin["reason"], "SomeFinalizerRemain");
    assert_eq!(
        fin["message"],
        "Some finalizers are remaining: example.com/hold in 1 resource instances"
    );
    let content = condition(&ns, "NamespaceContentRemaining").unwrap();
    assert_eq!(
        (&content["status"], &content["reason"], &content["message"]),
        (
            &"True".into(),
            &"SomeResourcesRemain".into(),
            &"Some resources are remaining: configmaps. has 1 resource instances".into()
        )
    );
    let discovery = condition(&ns, "NamespaceDeletionDiscoveryFailure").unwrap();
    assert_eq!(
        (&discovery["status"], &discovery["reason"]),
        (&"False".into(), &"ResourcesDiscovered".into())
    );
    let names = ok(k.run(&["get", "cm", "-n", "held", "-o", "name"]));
    assert_eq!(names.trim(), "configmap/keep");
    assert_eq!(
        get_json(k, &["namespace", "held"])["spec"]["finalizers"],
        serde_json::json!(["kubernetes"])
    );

    // Its finalizer gone, the object goes, and then the namespace.
    ok(k.run(&[
        "patch",
        "cm",
        "keep",
        "-n",
        "held",
        "--type=merge",
        "-p",
        "{\"metadata\":{\"finalizers\":null}}",
    ]));
    s.eventually("the namespace gone", || {
        let out = k.run(&["get", "namespace", "held"]);
        text(&out).contains("NotFound").then_some(())
    });
}

#[test]
fn without_the_controller_manager_a_namespace_stays_terminating() {
    let s = Server::start_with(&["--disable-controller-manager"]);
    let k = &Kubectl::each(&s)[0];
    ok(k.run(&["create", "namespace", "stuck"]));
    ok(k.run(&["create", "configmap", "c", "-n", "stuck"]));
    ok(k.run(&["delete", "namespace", "stuck", "--wait=false"]));
    let ns = get_json(k, &["namespace", "stuck"]);
    assert_eq!(ns["status"]["phase"], "Terminating");
    assert_eq!(ns["spec"]["finalizers"], serde_json::json!(["kubernetes"]));
    // Deleting it again changes nothing.
    ok(k.run(&["delete", "namespace", "stuck", "--wait=false"]));
    assert_eq!(
        ok(k.run(&["get", "cm", "-n", "stuck", "-o", "name"])).trim(),
        "configmap/c"
    );
    // Finalizing it by hand (what the controller would do) lets it go.
    let mut body = get_json(k, &["namespace", "stuck"]);
    body["spec"]["finalizers"] = serde_json::json!([]);
    let out = k.stdin(
        &[
            "replace",
            "--raw",
            "/api/v1/namespaces/stuck/finalize",
            "-f",
            "-",
        ],
        &body.to_string(),
    );
    ok(out);
    let gone = k.run(&["get", "namespace", "stuck"]);
    assert!(text(&gone).contains("NotFound"), "{}", text(&gone));
}

//! The ResourceQuota controller of a real `minik server` with simulated nodes: a new quota
//! gets its usage counted, pods that finish give theirs back, and a changed quota is
//! recounted; kubectl shows it.

use minik_tests::server::{Server, ok, text};
use serde_json::{Value, json};

fn pod(name: &str, cpu: &str, exit_after: Option<&str>) -> Value {
    let mut annotations = json!({});
    if let Some(after) = exit_after {
        annotations["simulation.minik.io/exit-after"] = json!(after);
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "team", "annotations": annotations},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"},
                "limits": {"cpu": cpu, "memory": "64Mi"}}}]}})
}

fn used(q: &Option<Value>, name: &str) -> Option<String> {
    q.as_ref()?["status"]["used"][name]
        .as_str()
        .map(str::to_string)
}

#[test]
fn quotas_are_counted_replenished_and_recounted() {
    let s = Server::start_with(&["--simulated-nodes", "1"]);
    ok(s.kubectl(&["create", "namespace", "team"]));
    s.apply(&pod("long", "500m", None));
    s.apply(&pod("short", "250m", Some("2")));
    ok(s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "-n",
        "team",
    ]));
    ok(s.kubectl(&["scale", "deployment", "web", "--replicas=0", "-n", "team"]));
    ok(s.kubectl(&["create", "configmap", "c1", "-n", "team"]));
    // The quota arrives after the objects: the controller counts what is there.
    s.apply(&json!({"apiVersion": "v1", "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": "team"},
        "spec": {"hard": {"pods": "10", "requests.cpu": "4", "limits.memory": "1Gi",
            "count/deployments.apps": "3", "configmaps": "5", "services.nodeports": "2"}}}));
    let args = ["get", "resourcequota", "q", "-n", "team"];
    // kube-root-ca.crt is a ConfigMap of the namespace too.
    let q = s.until(&args, "usage counted", |q| {
        used(q, "count/deployments.apps").as_deref() == Some("1")
            && used(q, "configmaps").as_deref() == Some("2")
            && used(q, "services.nodeports").as_deref() == Some("0")
    });
    let q = q.unwrap();
    assert_eq!(q["status"]["hard"]["pods"], "10", "{q:#}");
    // The short pod may have finished already; the long one counts until it goes.
    s.until(&args, "the finished pod gives its share back", |q| {
        used(q, "pods").as_deref() == Some("1")
            && used(q, "requests.cpu").as_deref() == Some("500m")
            && used(q, "limits.memory").as_deref() == Some("64Mi")
    });
    let short = s.get_json(&["pod", "short", "-n", "team"]);
    assert_eq!(short["status"]["phase"], "Succeeded", "{short:#}");
    // kubectl describe shows used against hard.
    let out = ok(s.kubectl(&["describe", "quota", "q", "-n", "team"]));
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["requests.cpu", "500m", "4"]),
        "{out}"
    );
    // Admission still refuses what would go over, against the counted usage.
    let big = pod("big", "3800m", None);
    let out = s.kubectl_stdin(&["create", "-f", "-"], &big.to_string());
    assert!(!out.status.success());
    assert!(text(&out).contains("exceeded quota: q"), "{}", text(&out));
    // A changed quota is recounted: a removed name leaves used, a new one joins it.
    ok(s.kubectl(&[
        "patch",
        "resourcequota",
        "q",
        "-n",
        "team",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/hard/configmaps"},{"op":"add","path":"/spec/hard/secrets","value":"4"}]"#,
    ]));
    s.until(&args, "recounted after the change", |q| {
        used(q, "configmaps").is_none()
            && used(q, "secrets").as_deref() == Some("0")
            && q.as_ref()
                .is_some_and(|q| q["status"]["hard"].get("configmaps").is_none())
    });
    // Deleting the long pod gives everything back.
    ok(s.kubectl(&["delete", "pod", "long", "-n", "team", "--wait=false"]));
    s.until(&args, "the deleted pod gives its share back", |q| {
        used(q, "pods").as_deref() == Some("0") && used(q, "requests.cpu").as_deref() == Some("0")
    });
}

//! The StatefulSet controller with the real binary and real kubectl: ordered creation and
//! reverse-order scale down, claims from volumeClaimTemplates and their retention policy,
//! Parallel pod management, and partitioned rolling updates with `kubectl rollout
//! status|history|undo` on simulated nodes.

use std::time::Duration;

use minik_tests::server::{Kubectl, Server, ok, text};

/// A StatefulSet manifest; `pod_spec` adds fields to the pod template's spec.
fn statefulset(name: &str, replicas: u32, extra_spec: &str, image: &str, pod_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  serviceName: {name}
  selector: {{matchLabels: {{app: {name}}}}}
{extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{pod_spec}
      containers:
      - name: c
        image: {image}
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"
    )
}

/// Pods no scheduler binds, whose status the test sets as a kubelet would.
const MANUAL: &str = "      schedulerName: manual";

/// The names of the pods (or claims) selected by `app=<app>`, sorted.
fn names(s: &Server, kind: &str, app: &str) -> Vec<String> {
    let list = s.get_json(&[kind, "-l", &format!("app={app}")]);
    let mut names: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// What a kubelet would report: the pod is Running and Ready.
fn make_ready(s: &Server, pod: &str) {
    let status =
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#;
    ok(s.kubectl(&[
        "patch",
        "pod",
        pod,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]));
}

/// Wait until the set's status shows the controller has seen `replicas` pods.
fn observed(s: &Server, set: &str, replicas: i64) {
    s.eventually("the status counts the pods", || {
        let v = s.get_json(&["sts", set]);
        (v["status"]["replicas"] == replicas).then_some(())
    });
}

#[test]
fn ordered_ready_creates_in_order_and_scales_down_from_the_highest() {
    let s = Server::start();
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        &statefulset("web", 3, "", "busybox:1", MANUAL),
    ));
    s.eventually("web-0", || {
        (names(&s, "pods", "web") == ["web-0"]).then_some(())
    });
    observed(&s, "web", 1);
    // The pod's identity and its claim.
    let pod = s.get_json(&["pod", "web-0"]);
    assert_eq!(
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-0"
    );
    assert_eq!(
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"],
        "0"
    );
    assert!(
        pod["metadata"]["labels"]["controller-revision-hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("web-"))
    );
    assert_eq!(pod["spec"]["hostname"], "web-0");
    assert_eq!(pod["spec"]["subdomain"], "web");
    let volume = &pod["spec"]["volumes"][0];
    assert_eq!(volume["name"], "data");
    assert_eq!(volume["persistentVolumeClaim"]["claimName"], "data-web-0");
    let claim = s.get_json(&["pvc", "data-web-0"]);
    assert_eq!(claim["metadata"]["labels"]["app"], "web");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    // web-1 waits for web-0 to be Running and Ready.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(names(&s, "pods", "web"), ["web-0"]);
    make_ready(&s, "web-0");
    s.eventually("web-1 after web-0 is ready", || {
        (names(&s, "pods", "web") == ["web-0", "web-1"]).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(names(&s, "pods", "web"), ["web-0", "web-1"]);
    make_ready(&s, "web-1");
    s.eventually("web-2", || {
        (names(&s, "pods", "web").len() == 3).then_some(())
    });
    make_ready(&s, "web-2");
    let out = ok(s.kubectl(&["rollout", "status", "sts/web", "--timeout=60s"]));
    assert!(out.contains("3 new pods have been updated"), "{out}");
    assert_eq!(
        names(&s, "pvc", "web"),
        ["data-web-0", "data-web-1", "data-web-2"]
    );
    // Scale down: web-2 goes first, and web-1 waits until web-2 is gone.
    ok(s.kubectl(&[
        "patch",
        "pod",
        "web-2",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]));
    ok(s.kubectl(&["scale", "sts", "web", "--replicas=1"]));
    s.eventually("web-2 terminating", || {
        s.get_json(&["pod", "web-2"])["metadata"]["deletionTimestamp"]
            .is_string()
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(s.get_json(&["pod", "web-1"])["metadata"]["deletionTimestamp"].is_null());
    ok(s.kubectl(&[
        "patch",
        "pod",
        "web-2",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]));
    s.eventually("only web-0 left", || {
        (names(&s, "pods", "web") == ["web-0"]).then_some(())
    });
    // Claims are retained by default.
    assert_eq!(names(&s, "pvc", "web").len(), 3);
    let events = ok(s.kubectl(&["get", "events", "--field-selector=involvedObject.name=web"]));
    assert!(
        events.contains("create Pod web-1 in StatefulSet web successful"),
        "{events}"
    );
    assert!(
        events.contains("delete Pod web-2 in StatefulSet web successful"),
        "{events}"
    );
}

#[test]
fn parallel_creates_all_at_once_and_claims_follow_the_retention_policy() {
    let s = Server::start();
    let spec = "  podManagementPolicy: Parallel
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Retain}
  ordinals: {start: 5}";
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        &statefulset("db", 3, spec, "busybox:1", MANUAL),
    ));
    s.eventually("three pods at once, none ready", || {
        (names(&s, "pods", "db") == ["db-5", "db-6", "db-7"]).then_some(())
    });
    let claims = s.eventually("three claims", || {
        let c = names(&s, "pvc", "db");
        (c.len() == 3).then_some(c)
    });
    assert_eq!(claims, ["data-db-5", "data-db-6", "data-db-7"]);
    let set_uid = s.get_json(&["sts", "db"])["metadata"]["uid"].clone();
    // whenDeleted: Delete makes the set the claims' controller, as Kubernetes sets it.
    s.eventually("claims owned by the set", || {
        let c = s.get_json(&["pvc", "data-db-6"]);
        let refs = &c["metadata"]["ownerReferences"];
        (refs[0]["kind"] == "StatefulSet"
            && refs[0]["uid"] == set_uid
            && refs[0]["controller"] == true)
            .then_some(())
    });
    // Back to Retain: the references go.
    ok(s.kubectl(&[
        "patch",
        "sts",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain"}}}"#,
    ]));
    s.eventually("claims released", || {
        let c = s.get_json(&["pvc", "data-db-6"]);
        c["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty)
            .then_some(())
    });
    // whenScaled: Delete: a scaled-down pod owns its claims, which go with it.
    ok(s.kubectl(&[
        "patch",
        "sts",
        "db",
        "--type=merge",
        "-p",
        r#"{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}"#,
    ]));
    ok(s.kubectl(&["scale", "sts", "db", "--replicas=1"]));
    s.eventually("db-5 and its claim left", || {
        (names(&s, "pods", "db") == ["db-5"] && names(&s, "pvc", "db") == ["data-db-5"])
            .then_some(())
    });
}

#[test]
fn partitioned_rolling_update_history_and_undo_on_simulated_nodes() {
    let s = Server::start_with(&["--simulated-nodes", "3"]);
    let spec = "  updateStrategy: {type: RollingUpdate, rollingUpdate: {partition: 1}}";
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        &statefulset("web", 3, spec, "busybox:1", ""),
    ));
    let out = ok(s.kubectl(&["rollout", "status", "sts/web", "--timeout=90s"]));
    assert!(out.contains("partitioned roll out complete"), "{out}");
    let first = s.get_json(&["sts", "web"])["status"]["currentRevision"].clone();
    ok(s.kubectl(&["set", "image", "sts/web", "c=busybox:2"]));
    let out = s.kubectl(&["rollout", "status", "sts/web", "--timeout=90s"]);
    assert!(
        text(&out).contains("partitioned roll out complete: 2 new pods have been updated"),
        "{}",
        text(&out)
    );
    let image = |pod: &str| s.get_json(&["pod", pod])["spec"]["containers"][0]["image"].clone();
    assert_eq!(image("web-2"), "busybox:2");
    assert_eq!(image("web-1"), "busybox:2");
    assert_eq!(image("web-0"), "busybox:1");
    let status = s.get_json(&["sts", "web"])["status"].clone();
    assert_eq!(status["updatedReplicas"], 2);
    assert_eq!(status["currentRevision"], first);
    assert_ne!(status["updateRevision"], first);
    // The revisions: two, numbered, owned by the set; `rollout history` reads them.
    let revisions = s.get_json(&["controllerrevisions", "-l", "app=web"]);
    let numbers: Vec<i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    assert_eq!(numbers.len(), 2, "{revisions}");
    let history = ok(s.kubectl(&["rollout", "history", "sts/web"]));
    assert!(history.contains('1') && history.contains('2'), "{history}");
    for k in Kubectl::each(&s) {
        let shown = ok(k.run(&["rollout", "history", "sts/web", "--revision=1"]));
        assert!(shown.contains("busybox:1"), "{}: {shown}", k.bin);
        let status = ok(k.run(&["rollout", "status", "sts/web", "--timeout=60s"]));
        assert!(
            status.contains("complete") || status.contains("successfully"),
            "{status}"
        );
    }
    // Undo brings back revision 1's template, renumbered 3; the updated pods roll back.
    ok(s.kubectl(&["rollout", "undo", "sts/web"]));
    let out = ok(s.kubectl(&["rollout", "status", "sts/web", "--timeout=90s"]));
    assert!(out.contains("partitioned roll out complete"), "{out}");
    s.eventually("web-2 back on busybox:1", || {
        (image("web-2") == "busybox:1" && image("web-1") == "busybox:1").then_some(())
    });
    let revisions = s.get_json(&["controllerrevisions", "-l", "app=web"]);
    let mut numbers: Vec<i64> = revisions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    numbers.sort();
    assert_eq!(numbers, [2, 3]);
}

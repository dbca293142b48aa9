//! Deployments on simulated nodes with both kubectls: `rollout status`, a rolling image
//! change, `rollout history|undo|restart|pause|resume`, `scale`, and the Recreate strategy;
//! the ReplicaSets and events the deployment controller leaves behind.

use minik_tests::server::{Kubectl, Server, ok};

fn replicasets(s: &Server, app: &str) -> Vec<(String, i64, String)> {
    let list = s.get_json(&["rs", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rs| {
            (
                rs["metadata"]["name"].as_str().unwrap().to_string(),
                rs["spec"]["replicas"].as_i64().unwrap_or(0),
                rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

fn rollout(k: &Kubectl, name: &str) -> String {
    ok(k.run(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=90s",
    ]))
}

#[test]
fn rolling_updates_history_undo_and_scale() {
    let s = Server::start_with(&["--simulated-nodes", "3"]);
    for (i, k) in Kubectl::each(&s).into_iter().enumerate() {
        let name = format!("web{i}");
        ok(k.run(&[
            "create",
            "deployment",
            &name,
            "--image=busybox",
            "--replicas=4",
        ]));
        let out = rollout(&k, &name);
        assert!(out.contains("successfully rolled out"), "{out}");
        let d = s.get_json(&["deployment", &name]);
        assert_eq!(d["status"]["availableReplicas"], 4);
        assert_eq!(
            d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "1"
        );
        let conds = d["status"]["conditions"].as_array().unwrap();
        let progressing = conds.iter().find(|c| c["type"] == "Progressing").unwrap();
        assert_eq!(progressing["reason"], "NewReplicaSetAvailable");
        ok(k.run(&[
            "set",
            "image",
            &format!("deployment/{name}"),
            "busybox=busybox:2",
        ]));
        rollout(&k, &name);
        let sets = replicasets(&s, &name);
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert!(
            sets.iter().any(|(_, n, rev)| *n == 4 && rev == "2"),
            "{sets:?}"
        );
        assert!(
            sets.iter().any(|(_, n, rev)| *n == 0 && rev == "1"),
            "{sets:?}"
        );
        let history = ok(k.run(&["rollout", "history", &format!("deployment/{name}")]));
        assert!(
            history.contains("\n1 ") && history.contains("\n2 "),
            "{history}"
        );
        // Undo brings the first ReplicaSet back as revision 3; no new one is made.
        ok(k.run(&["rollout", "undo", &format!("deployment/{name}")]));
        rollout(&k, &name);
        let sets = replicasets(&s, &name);
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert!(
            sets.iter().any(|(_, n, rev)| *n == 4 && rev == "3"),
            "{sets:?}"
        );
        let image = s.get_json(&["deployment", &name])["spec"]["template"]["spec"]["containers"][0]
            ["image"]
            .clone();
        assert_eq!(image, "busybox");
        ok(k.run(&["scale", &format!("deployment/{name}"), "--replicas=2"]));
        s.eventually("scaled to 2", || {
            let d = s.get_json(&["deployment", &name]);
            (d["status"]["replicas"] == 2 && d["status"]["availableReplicas"] == 2).then_some(())
        });
        // Paused: a template change makes no new ReplicaSet until resumed.
        ok(k.run(&["rollout", "pause", &format!("deployment/{name}")]));
        ok(k.run(&[
            "set",
            "image",
            &format!("deployment/{name}"),
            "busybox=busybox:3",
        ]));
        s.eventually("paused condition", || {
            let d = s.get_json(&["deployment", &name]);
            let conds = d["status"]["conditions"].as_array()?.clone();
            conds
                .iter()
                .any(|c| c["type"] == "Progressing" && c["reason"] == "DeploymentPaused")
                .then_some(())
        });
        assert_eq!(replicasets(&s, &name).len(), 2);
        ok(k.run(&["rollout", "resume", &format!("deployment/{name}")]));
        rollout(&k, &name);
        assert_eq!(replicasets(&s, &name).len(), 3);
        ok(k.run(&["rollout", "restart", &format!("deployment/{name}")]));
        rollout(&k, &name);
        assert_eq!(replicasets(&s, &name).len(), 4);
        let events = ok(s.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason=ScalingReplicaSet"),
            "-o",
            "jsonpath={.items[*].message}",
        ]));
        assert!(events.contains("Scaled up replica set"), "{events}");
    }
    // Per-controller metrics: queue depth, reconciles by result and their latency; the
    // scheduler's attempts; both lease holders.
    let metrics = ok(s.kubectl(&["get", "--raw", "/metrics"]));
    for want in [
        "workqueue_depth{name=\"deployment\"}",
        "controller_runtime_reconcile_total{controller=\"replicaset\",result=\"success\"}",
        "controller_runtime_reconcile_time_seconds_count{name=\"deployment\"}",
        "scheduler_schedule_attempts_total{result=\"scheduled\"}",
    ] {
        assert!(metrics.contains(want), "/metrics has {want}");
    }
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let l = s.get_json(&["lease", "-n", "kube-system", lease]);
        assert!(
            l["spec"]["holderIdentity"]
                .as_str()
                .is_some_and(|h| !h.is_empty())
        );
    }
}

#[test]
fn recreate_replaces_every_pod_at_once() {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    ok(s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: rec}
spec:
  replicas: 3
  strategy: {type: Recreate}
  selector: {matchLabels: {app: rec}}
  template:
    metadata: {labels: {app: rec}}
    spec: {containers: [{name: c, image: busybox}]}
",
    ));
    ok(s.kubectl(&["rollout", "status", "deployment/rec", "--timeout=90s"]));
    ok(s.kubectl(&["set", "image", "deployment/rec", "c=busybox:2"]));
    ok(s.kubectl(&["rollout", "status", "deployment/rec", "--timeout=90s"]));
    let pods = s.get_json(&["pods", "-l", "app=rec"]);
    let images: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["busybox:2"; 3]);
    // The old ReplicaSet went to zero in one step, not one pod at a time.
    let events = ok(s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=rec,reason=ScalingReplicaSet",
        "-o",
        "jsonpath={.items[*].message}",
    ]));
    assert!(events.contains("from 3 to 0"), "{events}");
}

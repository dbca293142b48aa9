//! The DaemonSet controller with the real binary and real kubectl on simulated nodes: a pod
//! per eligible node (taints, tolerations, nodeSelector), reacting to nodes tainted,
//! relabelled and added, and rolling updates (maxUnavailable, maxSurge) with `kubectl
//! rollout status|history|undo`.

use minik_tests::server::{Kubectl, Server, ok, text};

fn daemonset(name: &str, extra_spec: &str, pod_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
{extra_spec}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{pod_spec}
      containers: [{{name: c, image: 'busybox:1'}}]
"
    )
}

/// The nodes the DaemonSet's live pods are bound to, sorted.
fn placed(s: &Server, app: &str) -> Vec<String> {
    let pods = s.get_json(&["pods", "-l", &format!("app={app}")]);
    let mut nodes: Vec<String> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    nodes.sort();
    nodes
}

fn wait_placed(s: &Server, app: &str, want: &[&str]) {
    s.eventually(&format!("{app} on {want:?}"), || {
        (placed(s, app) == want).then_some(())
    });
}

fn wait_nodes(s: &Server, n: usize) {
    s.eventually("the simulated nodes", || {
        let nodes = s.get_json(&["nodes"]);
        (nodes["items"].as_array().map_or(0, Vec::len) == n).then_some(())
    });
}

#[test]
fn one_pod_per_eligible_node_following_taints_labels_and_new_nodes() {
    let mut s = Server::start_with(&["--simulated-nodes", "3"]);
    wait_nodes(&s, 3);
    ok(s.kubectl(&["taint", "nodes", "sim-2", "dedicated=db:NoSchedule"]));
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &daemonset("agent", "", "")));
    let tolerant =
        "      tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]";
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &daemonset("tolerant", "", tolerant)));
    let picky = "      nodeSelector: {disk: ssd}";
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &daemonset("picky", "", picky)));
    wait_placed(&s, "agent", &["sim-0", "sim-1"]);
    wait_placed(&s, "tolerant", &["sim-0", "sim-1", "sim-2"]);
    let out = ok(s.kubectl(&["rollout", "status", "ds/agent", "--timeout=60s"]));
    assert!(out.contains("successfully rolled out"), "{out}");
    let status = s.get_json(&["ds", "agent"])["status"].clone();
    assert_eq!(status["desiredNumberScheduled"], 2, "{status}");
    assert_eq!(status["numberReady"], 2, "{status}");
    assert_eq!(status["numberMisscheduled"], 0, "{status}");
    // Pods are pinned to their node and tolerate node problems.
    let pod = &s.get_json(&["pods", "-l", "app=agent"])["items"][0];
    let required =
        &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"];
    let term = &required["nodeSelectorTerms"][0];
    assert_eq!(term["matchFields"][0]["key"], "metadata.name");
    assert_eq!(term["matchFields"][0]["values"][0], pod["spec"]["nodeName"]);
    let tolerations = pod["spec"]["tolerations"].to_string();
    for key in ["not-ready", "unreachable", "unschedulable", "disk-pressure"] {
        assert!(
            tolerations.contains(&format!("node.kubernetes.io/{key}")),
            "{tolerations}"
        );
    }
    assert!(pod["metadata"]["labels"]["controller-revision-hash"].is_string());
    // No node has disk=ssd yet; labelling one brings a pod, unlabelling takes it away.
    assert!(placed(&s, "picky").is_empty());
    ok(s.kubectl(&["label", "node", "sim-1", "disk=ssd"]));
    wait_placed(&s, "picky", &["sim-1"]);
    ok(s.kubectl(&["label", "node", "sim-1", "disk-"]));
    wait_placed(&s, "picky", &[]);
    // Untainting sim-2 lets the agent there.
    ok(s.kubectl(&["taint", "nodes", "sim-2", "dedicated=db:NoSchedule-"]));
    wait_placed(&s, "agent", &["sim-0", "sim-1", "sim-2"]);
    // A node joining gets its daemons.
    s.extra = vec!["--simulated-nodes".into(), "4".into()];
    s.restart(false);
    wait_nodes(&s, 4);
    wait_placed(&s, "agent", &["sim-0", "sim-1", "sim-2", "sim-3"]);
    s.eventually("four desired", || {
        (s.get_json(&["ds", "agent"])["status"]["desiredNumberScheduled"] == 4).then_some(())
    });
}

fn images(s: &Server, app: &str) -> Vec<String> {
    let pods = s.get_json(&["pods", "-l", &format!("app={app}")]);
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[test]
fn rolling_updates_with_rollout_status_history_and_undo() {
    let s = Server::start_with(&["--simulated-nodes", "3"]);
    wait_nodes(&s, 3);
    let surge =
        "  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}";
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &daemonset("agent", "", "")));
    ok(s.kubectl_stdin(&["apply", "-f", "-"], &daemonset("surge", surge, "")));
    for ds in ["ds/agent", "ds/surge"] {
        ok(s.kubectl(&["rollout", "status", ds, "--timeout=60s"]));
        ok(s.kubectl(&["set", "image", ds, "c=busybox:2"]));
    }
    for (ds, app) in [("ds/agent", "agent"), ("ds/surge", "surge")] {
        let out = s.kubectl(&["rollout", "status", ds, "--timeout=90s"]);
        assert!(
            text(&out).contains("successfully rolled out"),
            "{}",
            text(&out)
        );
        s.eventually(&format!("{app} all on busybox:2"), || {
            let imgs = images(&s, app);
            (imgs.len() == 3 && imgs.iter().all(|i| i == "busybox:2")).then_some(())
        });
        let status = s.get_json(&[ds])["status"].clone();
        assert_eq!(status["updatedNumberScheduled"], 3, "{status}");
        assert_eq!(status["numberAvailable"], 3, "{status}");
    }
    // Two revisions, which `rollout history` lists and `rollout undo` goes back to.
    let revisions = s.get_json(&["controllerrevisions", "-l", "app=agent"]);
    assert_eq!(
        revisions["items"].as_array().map_or(0, Vec::len),
        2,
        "{revisions}"
    );
    for k in Kubectl::each(&s) {
        let shown = ok(k.run(&["rollout", "history", "ds/agent", "--revision=1"]));
        assert!(shown.contains("busybox:1"), "{}: {shown}", k.bin);
        let status = ok(k.run(&["rollout", "status", "ds/agent", "--timeout=60s"]));
        assert!(
            status.contains("complete") || status.contains("successfully"),
            "{status}"
        );
    }
    ok(s.kubectl(&["rollout", "undo", "ds/agent"]));
    let out = ok(s.kubectl(&["rollout", "status", "ds/agent", "--timeout=90s"]));
    assert!(out.contains("successfully rolled out"), "{out}");
    s.eventually("agent back on busybox:1", || {
        let imgs = images(&s, "agent");
        (imgs.len() == 3 && imgs.iter().all(|i| i == "busybox:1")).then_some(())
    });
    let revisions = s.get_json(&["controllerrevisions", "-l", "app=agent"]);
    let mut numbers: Vec<i64> = revisions["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["revision"].as_i64())
        .collect();
    numbers.sort();
    assert_eq!(numbers, [2, 3]);
}

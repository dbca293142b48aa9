//! The node lifecycle controller against a simulated node that stops heartbeating
//! (`simulation.minik.io/heartbeat: "stop"`): after the grace period its conditions go
//! Unknown and it is tainted unreachable; pods that tolerate that for 5 s are evicted, a
//! Deployment's pods come back on the other node; when the heartbeat resumes, the node is
//! Ready again and the taints are gone.

use minik_tests::server::{Server, eventually, ok};
use serde_json::{Value, json};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn condition(node: &Value, type_: &str) -> Value {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

fn unreachable_taints(node: &Value) -> Vec<String> {
    let mut effects: Vec<String> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["key"] == UNREACHABLE)
        .filter_map(|t| t["effect"].as_str().map(str::to_string))
        .collect();
    effects.sort();
    effects
}

/// (name, node, being deleted) of the pods labelled `app=<app>`.
fn pods(s: &Server, app: &str) -> Vec<(String, String, bool)> {
    let list = s.get_json(&["pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                !p["metadata"]["deletionTimestamp"].is_null(),
            )
        })
        .collect()
}

fn running_on(s: &Server, app: &str, node: &str) -> usize {
    pods(s, app)
        .iter()
        .filter(|(_, n, deleting)| n == node && !deleting)
        .count()
}

#[test]
fn a_silent_node_becomes_unreachable_and_its_pods_move() {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    // Everything starts on sim-0.
    ok(s.kubectl(&["cordon", "sim-1"]));
    let toleration = json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
        "tolerationSeconds": 5}]);
    let short = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "short", "labels": {"app": "short"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], "tolerations": toleration}});
    s.apply(&short);
    let web = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}],
                    "tolerations": toleration}}}});
    s.apply(&web);
    s.eventually("pods running on sim-0", || {
        (running_on(&s, "short", "sim-0") == 1 && running_on(&s, "web", "sim-0") == 2).then_some(())
    });
    ok(s.kubectl(&["uncordon", "sim-1"]));

    ok(s.kubectl(&[
        "annotate",
        "node",
        "sim-0",
        "simulation.minik.io/heartbeat=stop",
    ]));
    // Grace period (40 s) after the last renewal, plus the monitor's period.
    let node = eventually("sim-0 unreachable", 180, || {
        let node = s.get_json(&["node", "sim-0"]);
        (condition(&node, "Ready")["status"] == "Unknown"
            && unreachable_taints(&node) == ["NoExecute", "NoSchedule"])
        .then_some(node)
    });
    let ready = condition(&node, "Ready");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(condition(&node, "MemoryPressure")["status"], "Unknown");
    // sim-1 still heartbeats.
    let other = s.get_json(&["node", "sim-1"]);
    assert_eq!(condition(&other, "Ready")["status"], "True");
    assert!(unreachable_taints(&other).is_empty());

    // Pods tolerating the taint for 5 s are evicted: the lone pod is gone for good, the
    // Deployment's come back on sim-1.
    eventually("the short pod evicted", 60, || {
        pods(&s, "short")
            .iter()
            .all(|(_, _, deleting)| *deleting)
            .then_some(())
    });
    s.eventually("web recreated on sim-1", || {
        (running_on(&s, "web", "sim-1") == 2 && running_on(&s, "web", "sim-0") == 0).then_some(())
    });
    s.eventually("an eviction event", || {
        let events = s.get_json(&["events"]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| {
                e["reason"] == "TaintManagerEviction" && e["involvedObject"]["name"] == "short"
            })
            .then_some(())
    });

    // The heartbeat resumes: Ready again, the taints go.
    ok(s.kubectl(&[
        "annotate",
        "node",
        "sim-0",
        "simulation.minik.io/heartbeat-",
    ]));
    eventually("sim-0 ready and untainted", 90, || {
        let node = s.get_json(&["node", "sim-0"]);
        (condition(&node, "Ready")["status"] == "True" && unreachable_taints(&node).is_empty())
            .then_some(())
    });
}

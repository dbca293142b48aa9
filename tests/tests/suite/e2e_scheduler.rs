//! The scheduler on simulated nodes, seen through kubectl: taints and tolerations, node
//! selectors, pod anti-affinity, topology spread, cordoned nodes, preemption, and
//! FailedScheduling events worded like kube-scheduler's.

use minik_tests::server::{Server, eventually, ok, text};
use serde_json::Value;

fn pod_json(s: &Server, name: &str) -> Value {
    serde_json::from_str(&ok(s.kubectl(&["get", "pod", name, "-o", "json"]))).unwrap()
}

/// The node a pod was bound to, once it is Running.
fn running_on(s: &Server, name: &str) -> String {
    eventually(&format!("pod {name} running"), 30, || {
        let p = pod_json(s, name);
        (p["status"]["phase"] == "Running")
            .then(|| p["spec"]["nodeName"].as_str().unwrap().to_string())
    })
}

/// The message of the pod's FailedScheduling event.
fn failed_scheduling(s: &Server, name: &str) -> String {
    eventually(&format!("FailedScheduling for {name}"), 30, || {
        let out = ok(s.kubectl(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name},reason=FailedScheduling"),
            "-o",
            "jsonpath={.items[*].message}",
        ]));
        (!out.is_empty()).then_some(out)
    })
}

fn apply(s: &Server, yaml: &str) {
    ok(s.kubectl_stdin(&["apply", "-f", "-"], yaml));
}

#[test]
fn taints_selectors_and_cordons() {
    let s = Server::start_with(&["--simulated-nodes", "3"]);
    eventually("3 ready nodes", 30, || {
        let out = ok(s.kubectl(&["get", "nodes", "--no-headers"]));
        (out.matches(" Ready ").count() == 3).then_some(())
    });
    ok(s.kubectl(&[
        "taint",
        "nodes",
        "sim-0",
        "sim-1",
        "dedicated=db:NoSchedule",
    ]));
    ok(s.kubectl(&["run", "plain", "--image=busybox"]));
    assert_eq!(running_on(&s, "plain"), "sim-2");
    // Pinned to a tainted node it does not tolerate: nowhere fits.
    apply(
        &s,
        "apiVersion: v1
kind: Pod
metadata: {name: pinned}
spec:
  nodeSelector: {kubernetes.io/hostname: sim-0}
  containers: [{name: c, image: busybox}]
",
    );
    let msg = failed_scheduling(&s, "pinned");
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    let p = pod_json(&s, "pinned");
    let cond = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "Unschedulable");
    // The same with a toleration lands there.
    apply(
        &s,
        "apiVersion: v1
kind: Pod
metadata: {name: tolerant}
spec:
  nodeSelector: {kubernetes.io/hostname: sim-0}
  tolerations: [{key: dedicated, operator: Equal, value: db, effect: NoSchedule}]
  containers: [{name: c, image: busybox}]
",
    );
    assert_eq!(running_on(&s, "tolerant"), "sim-0");
    // Removing the taint lets the pinned pod in (a node change retries it).
    ok(s.kubectl(&["taint", "nodes", "sim-0", "dedicated=db:NoSchedule-"]));
    assert_eq!(running_on(&s, "pinned"), "sim-0");
    // Every node cordoned: a new pod waits; uncordoned, it runs.
    ok(s.kubectl(&["cordon", "sim-0", "sim-1", "sim-2"]));
    ok(s.kubectl(&["run", "late", "--image=busybox"]));
    let msg = failed_scheduling(&s, "late");
    assert!(
        msg.starts_with("0/3 nodes are available: 3 node(s) were unschedulable."),
        "{msg}"
    );
    // sim-1 still has its taint: only sim-2 will do.
    ok(s.kubectl(&["uncordon", "sim-1", "sim-2"]));
    assert_eq!(running_on(&s, "late"), "sim-2");
    let events = ok(s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=late,reason=Scheduled",
        "-o",
        "jsonpath={.items[*].message}",
    ]));
    assert_eq!(events, "Successfully assigned default/late to sim-2");
}

#[test]
fn anti_affinity_and_spread() {
    let s = Server::start_with(&["--simulated-nodes", "3"]);
    apply(
        &s,
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: one-per-node}
spec:
  replicas: 4
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - {labelSelector: {matchLabels: {app: solo}}, topologyKey: kubernetes.io/hostname}
      containers: [{name: c, image: busybox}]
",
    );
    let placed = eventually("3 solo pods running and 1 pending", 40, || {
        let out = ok(s.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=solo",
            "-o",
            "jsonpath={range .items[*]}{.status.phase} {.spec.nodeName}{\"\\n\"}{end}",
        ]));
        let running: Vec<&str> = out.lines().filter(|l| l.starts_with("Running")).collect();
        let pending = out.lines().filter(|l| l.trim() == "Pending").count();
        (running.len() == 3 && pending == 1).then(|| {
            let mut nodes: Vec<String> = running
                .iter()
                .map(|l| l.split(' ').nth(1).unwrap().to_string())
                .collect();
            nodes.sort();
            nodes
        })
    });
    assert_eq!(placed, ["sim-0", "sim-1", "sim-2"]);
    let pending = ok(s.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=solo",
        "--field-selector",
        "status.phase=Pending",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]));
    let msg = failed_scheduling(&s, &pending);
    assert!(
        msg.starts_with("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."),
        "{msg}"
    );
    apply(&s, "apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 6
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      topologySpreadConstraints:
      - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: spread}}}
      containers: [{name: c, image: busybox}]
");
    ok(s.kubectl(&["rollout", "status", "deployment/spread", "--timeout=60s"]));
    let out = ok(s.kubectl(&[
        "get",
        "pods",
        "-l",
        "app=spread",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]));
    for node in ["sim-0", "sim-1", "sim-2"] {
        assert_eq!(out.split(' ').filter(|n| *n == node).count(), 2, "{out}");
    }
}

#[test]
fn higher_priority_pods_preempt_lower_ones() {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    apply(
        &s,
        "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: low}
value: 100
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
",
    );
    let big = |name: &str, class: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  priorityClassName: {class}
  containers: [{{name: c, image: busybox, resources: {{requests: {{cpu: \"20\"}}}}}}]
"
        )
    };
    apply(&s, &big("low-a", "low"));
    apply(&s, &big("low-b", "low"));
    let a = running_on(&s, "low-a");
    let b = running_on(&s, "low-b");
    assert_ne!(a, b, "20 of 32 cpus each: one per node");
    apply(&s, &big("vip", "high"));
    let node = running_on(&s, "vip");
    let victim = if node == a { "low-a" } else { "low-b" };
    eventually("the victim gone", 30, || {
        let out = s.kubectl(&["get", "pod", victim]);
        (!out.status.success() && text(&out).contains("NotFound")).then_some(())
    });
    let events = ok(s.kubectl(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={victim},reason=Preempted"),
        "-o",
        "jsonpath={.items[*].message}",
    ]));
    assert!(events.starts_with("Preempted by pod "), "{events}");
    // The other low pod is untouched.
    let other = if victim == "low-a" { "low-b" } else { "low-a" };
    assert_eq!(pod_json(&s, other)["status"]["phase"], "Running");
}

//! Persistent volumes with the real binary, kubectl and simulated nodes: the default
//! `local-path` class (WaitForFirstConsumer) and its provisioner, the PV controller's
//! binding of static volumes, reclaim policies, pvc-protection, the scheduler's
//! VolumeBinding, and StatefulSet claims.

use std::path::PathBuf;

use minik_tests::server::{Server, ok};
use serde_json::Value;

fn start() -> Server {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    s.eventually("2 ready nodes", || {
        let out = ok(s.kubectl(&["get", "nodes", "--no-headers"]));
        (out.matches(" Ready ").count() == 2).then_some(())
    });
    s
}

fn apply(s: &Server, yaml: &str) {
    ok(s.kubectl_stdin(&["apply", "-f", "-"], yaml));
}

fn claim(name: &str, class: Option<&str>, size: &str) -> String {
    let class = class.map_or(String::new(), |c| format!("  storageClassName: \"{c}\"\n"));
    format!(
        "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: {name}}}
spec:
{class}  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: {size}}}}}
"
    )
}

fn pod(name: &str, claim: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
{extra_spec}  containers: [{{name: c, image: busybox, volumeMounts: [{{name: d, mountPath: /data}}]}}]
  volumes: [{{name: d, persistentVolumeClaim: {{claimName: {claim}}}}}]
"
    )
}

/// A static hostPath volume of `class`, optionally only on `node`.
fn volume(name: &str, class: &str, size: &str, node: Option<&str>) -> String {
    let affinity = node.map_or(String::new(), |n| {
        format!(
            "  nodeAffinity: {{required: {{nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: [{n}]}}]}}]}}}}\n"
        )
    });
    format!(
        "apiVersion: v1
kind: PersistentVolume
metadata: {{name: {name}}}
spec:
  storageClassName: {class}
  capacity: {{storage: {size}}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: /tmp/{name}}}
{affinity}"
    )
}

/// (reason, message) of the events about `name`.
fn events(s: &Server, name: &str) -> Vec<(String, String)> {
    let list = s.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (f("reason"), f("message"))
        })
        .collect()
}

fn wait_event(s: &Server, name: &str, reason: &str) -> String {
    s.eventually(&format!("{reason} event for {name}"), || {
        events(s, name)
            .into_iter()
            .find(|(r, _)| r == reason)
            .map(|(_, m)| m)
    })
}

fn phase(s: &Server, kind: &str, name: &str) -> String {
    let v = s.get_json(&[kind, name]);
    v["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn wait_phase(s: &Server, kind: &str, name: &str, want: &str) -> Value {
    s.eventually(&format!("{kind} {name} {want}"), || {
        let v = s.get_json(&[kind, name]);
        (v["status"]["phase"] == want).then_some(v)
    })
}

fn gone(s: &Server, kind: &str, name: &str) {
    s.eventually(&format!("{kind} {name} gone"), || {
        let out = s.kubectl(&["get", kind, name]);
        (!out.status.success()).then_some(())
    });
}

fn data_dir(s: &Server) -> PathBuf {
    s.dir.path().join("data")
}

#[test]
fn default_class_provisions_on_the_consumers_node_and_deletes_after() {
    let s = start();
    let class = s.get_json(&["storageclass", "local-path"]);
    assert_eq!(
        class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(class["provisioner"], "rancher.io/local-path");
    assert_eq!(class["volumeBindingMode"], "WaitForFirstConsumer");
    assert_eq!(class["reclaimPolicy"], "Delete");

    apply(&s, &claim("data", None, "1Gi"));
    let c = s.get_json(&["pvc", "data"]);
    assert_eq!(c["spec"]["storageClassName"], "local-path");
    let message = wait_event(&s, "data", "WaitForFirstConsumer");
    assert_eq!(
        message,
        "waiting for first consumer to be created before binding"
    );
    assert_eq!(phase(&s, "pvc", "data"), "Pending");
    assert_eq!(ok(s.kubectl(&["get", "pv", "-o", "name"])), "");

    apply(&s, &pod("user", "data", ""));
    let c = wait_phase(&s, "pvc", "data", "Bound");
    let node = s.eventually("the pod is scheduled", || {
        let p = s.get_json(&["pod", "user"]);
        p["spec"]["nodeName"].as_str().map(str::to_string)
    });
    let uid = c["metadata"]["uid"].as_str().unwrap().to_string();
    let pv_name = format!("pvc-{uid}");
    assert_eq!(c["spec"]["volumeName"], pv_name.as_str());
    let a = &c["metadata"]["annotations"];
    assert_eq!(a["volume.kubernetes.io/selected-node"], node.as_str());
    assert_eq!(a["pv.kubernetes.io/bind-completed"], "yes");
    assert_eq!(a["pv.kubernetes.io/bound-by-controller"], "yes");
    assert_eq!(
        a["volume.kubernetes.io/storage-provisioner"],
        "rancher.io/local-path"
    );
    assert_eq!(c["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(c["status"]["accessModes"][0], "ReadWriteOnce");
    let v = wait_phase(&s, "pv", &pv_name, "Bound");
    assert_eq!(
        v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
            [0],
        node.as_str()
    );
    assert_eq!(v["spec"]["claimRef"]["uid"], uid.as_str());
    assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(
        v["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rancher.io/local-path"
    );
    let dir = data_dir(&s)
        .join("storage")
        .join(format!("{pv_name}_default_data"));
    assert_eq!(v["spec"]["hostPath"]["path"], dir.to_str().unwrap());
    assert!(dir.is_dir(), "{} exists", dir.display());
    assert_eq!(
        wait_event(&s, "data", "ProvisioningSucceeded"),
        format!("Successfully provisioned volume {pv_name}")
    );
    s.eventually("the pod runs", || {
        (phase(&s, "pod", "user") == "Running").then_some(())
    });

    // pvc-protection: the claim of a running pod stays until the pod goes.
    ok(s.kubectl(&["delete", "pvc", "data", "--wait=false"]));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let c = s.get_json(&["pvc", "data"]);
    assert!(c["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(c["status"]["phase"], "Bound");
    assert!(dir.is_dir());
    ok(s.kubectl(&["delete", "pod", "user", "--wait=false"]));
    gone(&s, "pvc", "data");
    // Reclaim policy Delete: the volume and its directory go.
    gone(&s, "pv", &pv_name);
    assert!(!dir.exists(), "{} is removed", dir.display());
}

#[test]
fn a_retain_class_keeps_the_released_volume_and_its_data() {
    let s = start();
    apply(
        &s,
        "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: keep}
provisioner: rancher.io/local-path
reclaimPolicy: Retain
volumeBindingMode: Immediate
",
    );
    // Immediate: provisioned at once, without a pod.
    apply(&s, &claim("kept", Some("keep"), "2Gi"));
    let c = wait_phase(&s, "pvc", "kept", "Bound");
    let pv_name = c["spec"]["volumeName"].as_str().unwrap().to_string();
    let v = wait_phase(&s, "pv", &pv_name, "Bound");
    assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(v["spec"]["capacity"]["storage"], "2Gi");
    let dir = PathBuf::from(v["spec"]["hostPath"]["path"].as_str().unwrap());
    assert!(dir.starts_with(data_dir(&s).join("storage")));
    assert!(dir.is_dir());
    ok(s.kubectl(&["delete", "pvc", "kept"]));
    let v = wait_phase(&s, "pv", &pv_name, "Released");
    assert_eq!(v["spec"]["claimRef"]["name"], "kept");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(phase(&s, "pv", &pv_name), "Released");
    assert!(dir.is_dir(), "retained data stays");
}

#[test]
fn static_volumes_bind_to_the_smallest_matching_claim() {
    let mut s = start();
    apply(&s, &volume("small", "manual", "1Gi", None));
    apply(&s, &volume("big", "manual", "5Gi", None));
    apply(&s, &volume("other", "fast", "2Gi", None));
    wait_phase(&s, "pv", "small", "Available");
    apply(&s, &claim("two", Some("manual"), "2Gi"));
    let c = wait_phase(&s, "pvc", "two", "Bound");
    assert_eq!(c["spec"]["volumeName"], "big");
    assert_eq!(c["status"]["capacity"]["storage"], "5Gi");
    let v = wait_phase(&s, "pv", "big", "Bound");
    assert_eq!(v["spec"]["claimRef"]["name"], "two");
    assert_eq!(v["spec"]["claimRef"]["uid"], c["metadata"]["uid"]);
    assert_eq!(
        v["metadata"]["annotations"]["pv.kubernetes.io/bound-by-controller"],
        "yes"
    );
    apply(&s, &claim("one", Some("manual"), "500Mi"));
    let c = wait_phase(&s, "pvc", "one", "Bound");
    assert_eq!(c["spec"]["volumeName"], "small");
    assert_eq!(phase(&s, "pv", "other"), "Available");
    // No class and no volume: nothing to bind to, nobody to ask.
    apply(&s, &claim("none", Some(""), "1Gi"));
    assert_eq!(
        wait_event(&s, "none", "FailedBinding"),
        "no persistent volumes available for this claim and no storage class is set"
    );
    assert_eq!(phase(&s, "pvc", "none"), "Pending");
    // A static volume that only the claim it names may take.
    apply(
        &s,
        &format!(
            "{}  claimRef: {{namespace: default, name: mine}}\n",
            volume("reserved", "manual", "3Gi", None)
        ),
    );
    apply(&s, &claim("mine", Some("manual"), "1Gi"));
    let c = wait_phase(&s, "pvc", "mine", "Bound");
    assert_eq!(c["spec"]["volumeName"], "reserved");
    // Retain (the default for static volumes): released when the claim goes.
    ok(s.kubectl(&["delete", "pvc", "one"]));
    wait_phase(&s, "pv", "small", "Released");
    // Bindings survive a restart of the controllers.
    s.restart(false);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(phase(&s, "pvc", "two"), "Bound");
    assert_eq!(phase(&s, "pv", "big"), "Bound");
    assert_eq!(phase(&s, "pv", "small"), "Released");
}

#[test]
fn the_scheduler_follows_volume_node_affinity_and_waits_for_claims() {
    let s = start();
    apply(&s, &volume("pinned", "pinned", "1Gi", Some("sim-1")));
    apply(&s, &claim("pinned", Some("pinned"), "1Gi"));
    wait_phase(&s, "pvc", "pinned", "Bound");
    for name in ["a", "b", "c"] {
        apply(&s, &pod(name, "pinned", ""));
    }
    for name in ["a", "b", "c"] {
        let node = s.eventually("scheduled", || {
            let p = s.get_json(&["pod", name]);
            p["spec"]["nodeName"].as_str().map(str::to_string)
        });
        assert_eq!(node, "sim-1", "pod {name} goes where its volume is");
    }
    apply(
        &s,
        &pod(
            "elsewhere",
            "pinned",
            "  nodeSelector: {kubernetes.io/hostname: sim-0}\n",
        ),
    );
    assert_eq!(
        wait_event(&s, "elsewhere", "FailedScheduling"),
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had volume node affinity conflict. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );

    apply(&s, &pod("early", "later", ""));
    assert_eq!(
        wait_event(&s, "early", "FailedScheduling"),
        "0/2 nodes are available: persistentvolumeclaim \"later\" not found. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // The claim appears: the pod is scheduled and its volume provisioned on its node.
    apply(&s, &claim("later", None, "1Gi"));
    let node = s.eventually("scheduled once the claim exists", || {
        let p = s.get_json(&["pod", "early"]);
        p["spec"]["nodeName"].as_str().map(str::to_string)
    });
    let c = wait_phase(&s, "pvc", "later", "Bound");
    let v = s.get_json(&["pv", c["spec"]["volumeName"].as_str().unwrap()]);
    assert_eq!(
        v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
            [0],
        node.as_str()
    );

    // A claim of an Immediate class that nothing binds keeps its pods pending.
    apply(&s, &claim("unbound", Some("nothing"), "1Gi"));
    apply(&s, &pod("stuck", "unbound", ""));
    assert_eq!(
        wait_event(&s, "stuck", "FailedScheduling"),
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // A matching volume appears and is bound; then the pod fits.
    apply(&s, &volume("late", "nothing", "1Gi", Some("sim-0")));
    let node = s.eventually("scheduled once the claim is bound", || {
        let p = s.get_json(&["pod", "stuck"]);
        p["spec"]["nodeName"].as_str().map(str::to_string)
    });
    assert_eq!(node, "sim-0");
}

#[test]
fn statefulset_claims_are_provisioned_where_their_pods_run() {
    let s = start();
    apply(
        &s,
        "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 2
  serviceName: db
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: busybox, volumeMounts: [{name: data, mountPath: /data}]}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
",
    );
    for i in 0..2 {
        let c = wait_phase(&s, "pvc", &format!("data-db-{i}"), "Bound");
        assert_eq!(c["spec"]["storageClassName"], "local-path");
        let node = s.eventually("the pod is scheduled", || {
            let p = s.get_json(&["pod", &format!("db-{i}")]);
            p["spec"]["nodeName"].as_str().map(str::to_string)
        });
        let v = s.get_json(&["pv", c["spec"]["volumeName"].as_str().unwrap()]);
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
                [0],
            node.as_str()
        );
    }
}

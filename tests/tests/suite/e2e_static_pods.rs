//! Static pods of the real node (run as root): a manifest in
//! `<data-dir>/agent/pod-manifests` runs as a pod whose mirror pod `<name>-<node>` the API
//! shows with kubelet's annotations and the Node as owner; deleting the mirror pod brings it
//! back without touching the containers, editing the manifest replaces the pod, and
//! removing it stops the pod and deletes the mirror pod.

use std::path::{Path, PathBuf};

use minik_tests::node::{cri_log_lines, log_path, pids_with_cmdline};
use minik_tests::server::{Server, ok};
use serde_json::{Value, json};

/// Removes the manifests a test wrote (before the server is dropped, so its pods stop).
struct Manifests(PathBuf);

impl Drop for Manifests {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0.join("web.yaml"));
    }
}

/// A busybox pod that prints `marker` and runs until TERM.
fn manifest(marker: &str) -> String {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web",
        "labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 5, "containers": [{"name": "main",
            "image": "busybox", "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "-c",
                format!("echo {marker}; trap 'exit 0' TERM; while true; do sleep 1; done")]}]}});
    // YAML is a superset of JSON; the file is read as YAML.
    serde_json::to_string_pretty(&pod).unwrap()
}

/// Write the manifest atomically (as editors and config tools do).
fn write(dir: &Path, text: &str) {
    let tmp = dir.join(".web.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("web.yaml")).unwrap();
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["containerStatuses"][0]["state"]["running"].is_object()
}

fn annotation<'a>(pod: &'a Value, key: &str) -> &'a str {
    pod["metadata"]["annotations"][key].as_str().unwrap_or("")
}

/// What the container printed: its log is under the static pod's uid (the hash).
fn logged(pod: &Value) -> Vec<String> {
    let mut p = pod.clone();
    p["metadata"]["uid"] = json!(annotation(pod, "kubernetes.io/config.mirror"));
    cri_log_lines(&std::fs::read_to_string(log_path(&p, "main")).unwrap_or_default())
}

#[test]
fn static_pods_run_from_manifests_with_mirror_pods() {
    let s = Server::start_node(&[]);
    let dir = s.dir.path().join("data/agent/pod-manifests");
    let _cleanup = Manifests(dir.clone());
    let node = s.until(&["get", "nodes"], "the node", |l| {
        l.as_ref()
            .and_then(|l| l["items"].as_array())
            .is_some_and(|i| i.len() == 1)
    });
    let node = node.unwrap()["items"][0].clone();
    let node_name = node["metadata"]["name"].as_str().unwrap().to_string();
    let mirror_name = format!("web-{node_name}");
    std::fs::create_dir_all(&dir).unwrap();
    let v1 = "static-pod-v1-e2e";
    write(&dir, &manifest(v1));

    // The mirror pod appears, Running, with kubelet's annotations and the Node as owner.
    let first = s
        .until(
            &["get", "pod", &mirror_name],
            "the mirror pod Running",
            |p| {
                p.as_ref()
                    .is_some_and(|p| running(p) && !logged(p).is_empty())
            },
        )
        .unwrap();
    let hash = annotation(&first, "kubernetes.io/config.hash");
    assert_eq!(hash.len(), 32, "{first}");
    assert_eq!(annotation(&first, "kubernetes.io/config.mirror"), hash);
    assert_eq!(annotation(&first, "kubernetes.io/config.source"), "file");
    assert!(!annotation(&first, "kubernetes.io/config.seen").is_empty());
    assert_eq!(first["spec"]["nodeName"], node_name.as_str());
    let owner = &first["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["name"], node_name.as_str());
    assert_eq!(owner["uid"], node["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    assert_eq!(logged(&first), [v1]);
    let container = first["status"]["containerStatuses"][0].clone();
    assert_eq!(container["restartCount"], 0);
    assert!(!pids_with_cmdline(v1).is_empty());

    // The static pod's usage shows under its mirror pod in the metrics API (`kubectl top`).
    let metrics = format!("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/{mirror_name}");
    let usage: Value = s.eventually("the static pod's metrics", || {
        let out = s.kubectl(&["get", "--raw", &metrics]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())?
    });
    assert_eq!(usage["containers"][0]["name"], "main", "{usage}");

    // A deleted mirror pod comes back; the containers keep running.
    ok(s.kubectl(&["delete", "pod", &mirror_name, "--wait=false"]));
    let again = s
        .until(&["get", "pod", &mirror_name], "the mirror pod back", |p| {
            p.as_ref()
                .is_some_and(|p| p["metadata"]["uid"] != first["metadata"]["uid"] && running(p))
        })
        .unwrap();
    let c = &again["status"]["containerStatuses"][0];
    assert_eq!(c["containerID"], container["containerID"]);
    assert_eq!(c["restartCount"], 0);
    assert_eq!(annotation(&again, "kubernetes.io/config.mirror"), hash);
    assert_eq!(logged(&again), [v1]);

    // An edited manifest replaces the pod: the old containers stop, new ones run.
    let v2 = "static-pod-v2-e2e";
    write(&dir, &manifest(v2));
    let edited = s
        .until(
            &["get", "pod", &mirror_name],
            "the edited pod running",
            |p| {
                p.as_ref().is_some_and(|p| {
                    annotation(p, "kubernetes.io/config.mirror") != hash
                        && running(p)
                        && !logged(p).is_empty()
                })
            },
        )
        .unwrap();
    assert_eq!(logged(&edited), [v2]);
    assert_ne!(
        edited["status"]["containerStatuses"][0]["containerID"],
        container["containerID"]
    );
    assert_eq!(
        annotation(&edited, "kubernetes.io/config.mirror"),
        annotation(&edited, "kubernetes.io/config.hash")
    );
    assert!(pids_with_cmdline(v1).is_empty(), "the old pod still runs");

    // A removed manifest stops the pod and deletes the mirror pod.
    std::fs::remove_file(dir.join("web.yaml")).unwrap();
    s.eventually("the mirror pod deleted", || {
        s.json_opt(&["get", "pod", &mirror_name])
            .is_none()
            .then_some(())
    });
    s.eventually("the static pod's containers stopped", || {
        pids_with_cmdline(v2).is_empty().then_some(())
    });
}

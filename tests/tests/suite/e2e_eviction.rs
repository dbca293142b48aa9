//! Eviction under disk pressure on the real node (run as root): with the hard
//! nodefs.available threshold just under the free space, a pod that fills its emptyDir is
//! evicted as kubelet does it (Failed, reason Evicted, kubelet's message, a
//! DisruptionTarget condition, a Warning event), the node reports DiskPressure, and a quiet
//! pod within its requests keeps running.

use std::path::Path;
use std::process::Command;

use minik_tests::server::{Server, ok};
use serde_json::{Value, json};

/// Bytes available on the filesystem of `dir` (`df`).
fn available(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's available bytes")
}

fn busybox(name: &str, script: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "scratch", "emptyDir": {}}],
            "containers": [{"name": name, "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script], "resources": resources,
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}]}})
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[test]
fn a_pod_filling_the_disk_is_evicted_and_a_quiet_one_stays() {
    let mut s = Server::start_node(&[]);
    // The hog waits for the word (a file the test drops into its emptyDir) to write 800 MiB.
    let hog = busybox(
        "hog",
        "while [ ! -f /scratch/go ]; do sleep 1; done; \
         dd if=/dev/zero of=/scratch/fill bs=1M count=800; sync; sleep 3600",
        json!({}),
    );
    let quiet = busybox(
        "quiet",
        "echo quiet > /scratch/q; sleep 3600",
        json!({"requests": {"ephemeral-storage": "50Mi", "memory": "16Mi", "cpu": "10m"}}),
    );
    for pod in [&hog, &quiet] {
        s.eventually("creating a pod", || {
            let out = s.kubectl_stdin(&["apply", "-f", "-"], &pod.to_string());
            out.status.success().then_some(())
        });
    }
    let running = |name: &str| {
        s.until(&["get", "pod", name], "the pod Running", |p| {
            p.as_ref()
                .is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .unwrap()
    };
    let hog_uid = running("hog")["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    running("quiet");

    // Now that both run: the threshold 400 MiB under what is free (tests running beside it
    // write and free files too, so the margin is wide both ways) (a restart applies it;
    // containers outlive it).
    let data = s.dir.path().join("data");
    let threshold = (available(&data) >> 20).saturating_sub(400);
    s.extra = vec![
        "--kubelet-arg".into(),
        format!(
            "eviction-hard=memory.available<100Mi,nodefs.available<{threshold}Mi,\
             imagefs.available<1%,nodefs.inodesFree<1%,imagefs.inodesFree<1%"
        ),
        "--kubelet-arg".into(),
        "port=0".into(),
    ];
    s.restart(false);
    let scratch = data.join(format!(
        "agent/pods/{hog_uid}/volumes/kubernetes.io~empty-dir/scratch"
    ));
    std::fs::write(scratch.join("go"), "").unwrap();

    let evicted = s
        .until(&["get", "pod", "hog"], "the hog evicted", |p| {
            p.as_ref().is_some_and(|p| p["status"]["phase"] == "Failed")
        })
        .unwrap();
    let status = &evicted["status"];
    assert_eq!(status["reason"], "Evicted", "{status}");
    let message = status["message"].as_str().unwrap();
    let prefix = format!(
        "The node was low on resource: ephemeral-storage. Threshold quantity: {threshold}Mi, available: "
    );
    assert!(message.starts_with(&prefix), "{message}");
    assert!(
        message.contains("Container hog was using ")
            && message.ends_with("request is 0, has larger consumption of ephemeral-storage. "),
        "{message}"
    );
    let target = condition(&evicted, "DisruptionTarget").expect("a DisruptionTarget condition");
    assert_eq!(target["status"], "True");
    assert_eq!(target["reason"], "TerminationByKubelet");
    // Its containers are killed, and its data goes with them.
    s.until(&["get", "pod", "hog"], "the hog's container killed", |p| {
        p.as_ref()
            .is_some_and(|p| p["status"]["containerStatuses"][0]["state"]["terminated"].is_object())
    });
    s.eventually("the hog's data removed", || {
        (!scratch.join("fill").exists()).then_some(())
    });
    let events = s.get_json(&[
        "events",
        "--field-selector",
        "involvedObject.name=hog,reason=Evicted",
    ]);
    let event = &events["items"][0];
    assert_eq!(event["type"], "Warning", "{events}");
    assert_eq!(event["message"], message);

    // The node says so (the condition stays for the pressure transition period).
    s.until(&["get", "nodes"], "DiskPressure on the node", |l| {
        l.as_ref()
            .and_then(|l| l["items"][0].get("status").cloned())
            .is_some_and(|st| {
                condition(&json!({"status": st}), "DiskPressure")
                    .is_some_and(|c| c["status"] == "True")
            })
    });
    // The quiet pod, within its requests, was not evicted.
    let quiet = s.get_json(&["pod", "quiet"]);
    assert_eq!(quiet["status"]["phase"], "Running", "{quiet}");
    assert!(condition(&quiet, "DisruptionTarget").is_none());
    ok(s.kubectl(&[
        "delete",
        "pod",
        "hog",
        "quiet",
        "--grace-period=0",
        "--force",
    ]));
}

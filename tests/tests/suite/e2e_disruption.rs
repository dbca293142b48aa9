//! PodDisruptionBudgets and ReplicationControllers on simulated nodes, driven by kubectl:
//! `kubectl get pdb` shows the disruptions the disruption controller allows, `kubectl drain`
//! evicts one pod at a time as the budget allows (and times out when it allows none), and a
//! ReplicationController keeps its replicas through `kubectl scale rc` and pod deletions.

use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::{Value, json};

fn deployment(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
}

fn pdb(name: &str, budget: Value) -> Value {
    let mut spec = json!({"selector": {"matchLabels": {"app": name}}});
    if let (Some(s), Some(b)) = (spec.as_object_mut(), budget.as_object()) {
        s.extend(b.clone());
    }
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": spec})
}

/// The running, ready pods labelled `app=<app>` that are not being deleted: (name, node).
fn ready_pods(s: &Server, app: &str) -> Vec<(String, String)> {
    let list = s.get_json(&["pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// All pods labelled `app=<app>`, whatever their state.
fn pod_names(s: &Server, app: &str) -> Vec<String> {
    let list = s.get_json(&["pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Run a Deployment of `replicas` whose pods all land on sim-0 (sim-1 cordoned meanwhile).
fn deploy_on_sim0(s: &Server, name: &str, replicas: usize) {
    ok(s.kubectl(&["cordon", "sim-1"]));
    s.apply(&deployment(name, replicas as i64));
    s.eventually("pods ready on sim-0", || {
        let pods = ready_pods(s, name);
        (pods.len() == replicas && pods.iter().all(|(_, n)| n == "sim-0")).then_some(())
    });
    ok(s.kubectl(&["uncordon", "sim-1"]));
}

/// The ALLOWED DISRUPTIONS column of `kubectl get pdb <name>`.
fn allowed_disruptions(s: &Server, name: &str) -> Option<String> {
    let out = ok(s.kubectl(&["get", "pdb", name]));
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()?
        .split("  ")
        .filter(|c| !c.is_empty())
        .collect();
    let col = header
        .iter()
        .position(|h| h.trim() == "ALLOWED DISRUPTIONS")?;
    let row: Vec<&str> = lines.next()?.split_whitespace().collect();
    row.get(col).map(|v| v.to_string())
}

#[test]
fn drain_evicts_as_the_budget_allows() {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    deploy_on_sim0(&s, "web", 3);
    s.apply(&pdb("web", json!({"minAvailable": 2})));
    s.eventually("1 disruption allowed", || {
        (allowed_disruptions(&s, "web").as_deref() == Some("1")).then_some(())
    });
    let status = s.get_json(&["pdb", "web"])["status"].clone();
    assert_eq!(status["currentHealthy"], 3);
    assert_eq!(status["desiredHealthy"], 2);
    assert_eq!(status["expectedPods"], 3);
    let cond = &status["conditions"][0];
    assert_eq!(
        (cond["type"].as_str(), cond["status"].as_str()),
        (Some("DisruptionAllowed"), Some("True"))
    );
    assert_eq!(cond["reason"], "SufficientPods");

    // The three pods on sim-0 go one at a time: the others are refused until the
    // replacement of the last one evicted is ready on sim-1.
    let out = s.kubectl(&[
        "drain",
        "sim-0",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=150s",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{t}"
    );
    assert!(t.contains("node/sim-0 drained"), "{t}");
    s.eventually("three ready pods on sim-1", || {
        let pods = ready_pods(&s, "web");
        (pods.len() == 3 && pods.iter().all(|(_, n)| n == "sim-1")).then_some(())
    });
    let node = s.get_json(&["node", "sim-0"]);
    assert_eq!(node["spec"]["unschedulable"], true);
}

#[test]
fn drain_times_out_when_the_budget_allows_nothing() {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    deploy_on_sim0(&s, "db", 2);
    s.apply(&pdb("db", json!({"maxUnavailable": 0})));
    s.eventually("budget observed", || {
        let st = s.get_json(&["pdb", "db"])["status"].clone();
        (st["expectedPods"] == 2 && st["desiredHealthy"] == 2).then_some(())
    });
    assert_eq!(allowed_disruptions(&s, "db").as_deref(), Some("0"));
    let before = pod_names(&s, "db");
    let out = s.kubectl(&["drain", "sim-0", "--ignore-daemonsets", "--timeout=12s"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{t}"
    );
    // Nothing was evicted.
    let mut after: Vec<String> = ready_pods(&s, "db").into_iter().map(|(n, _)| n).collect();
    after.sort();
    let mut before = before;
    before.sort();
    assert_eq!(after, before);
}

#[test]
fn replication_controllers_keep_their_replicas() {
    let s = Server::start_with(&["--simulated-nodes", "2"]);
    for (i, k) in Kubectl::each(&s).into_iter().enumerate() {
        let name = format!("rc{i}");
        // No selector: it defaults to the template's labels.
        let rc = json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": name},
            "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        ok(k.stdin(&["apply", "-f", "-"], &rc.to_string()));
        s.eventually("3 ready pods", || {
            (ready_pods(&s, &name).len() == 3).then_some(())
        });
        s.eventually("status counts them", || {
            let st = s.get_json(&["rc", &name])["status"].clone();
            (st["readyReplicas"] == 3 && st["availableReplicas"] == 3).then_some(())
        });
        let table = ok(k.run(&["get", "rc", &name]));
        let header: Vec<&str> = table
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            "{table}"
        );
        let got = s.get_json(&["rc", &name]);
        assert_eq!(got["spec"]["selector"], json!({"app": name}));
        let pod = s.get_json(&["pods", "-l", &format!("app={name}")])["items"][0].clone();
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "ReplicationController");
        assert_eq!(owner["apiVersion"], "v1");
        assert_eq!(owner["controller"], true);

        let out = ok(k.run(&["scale", "rc", &name, "--replicas=1"]));
        assert!(out.contains("scaled"), "{out}");
        s.eventually("scaled down to 1", || {
            (pod_names(&s, &name).len() == 1).then_some(())
        });
        let survivor = pod_names(&s, &name).remove(0);
        ok(k.run(&["delete", "pod", &survivor, "--wait=false"]));
        s.eventually("a replacement", || {
            let pods = ready_pods(&s, &name);
            (pods.len() == 1 && pods[0].0 != survivor).then_some(())
        });
        ok(k.run(&["delete", "rc", &name]));
        s.eventually("pods collected", || {
            pod_names(&s, &name).is_empty().then_some(())
        });
    }
}

/// POST an Eviction for `pod` through `kubectl create --raw`.
fn evict(s: &Server, pod: &str) -> std::process::Output {
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod}});
    let path = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
    s.kubectl_stdin(&["create", "--raw", &path, "-f", "-"], &body.to_string())
}

#[test]
fn unhealthy_pods_go_as_the_eviction_policy_says() {
    let s = Server::start_with(&["--simulated-nodes", "1"]);
    let pod = |name: &str, annotations: Value| {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "x"}, "annotations": annotations},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    };
    s.apply(&pod("healthy", json!({})));
    // Its container keeps exiting: Running, never Ready.
    s.apply(&pod(
        "crashing",
        json!({"simulation.minik.io/exit-after": "0"}),
    ));
    s.apply(&pdb("x", json!({"minAvailable": 2})));
    s.eventually("one healthy of two", || {
        let st = s.get_json(&["pdb", "x"])["status"].clone();
        let crashing = s.get_json(&["pod", "crashing"]);
        (st["currentHealthy"] == 1
            && st["desiredHealthy"] == 2
            && crashing["status"]["phase"] == "Running")
            .then_some(())
    });
    // IfHealthyBudget (the default): the budget is not met, so not even the unready pod.
    let out = evict(&s, "crashing");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Cannot evict pod as it would violate the pod's disruption budget"),
        "{}",
        text(&out)
    );
    ok(s.kubectl(&[
        "patch",
        "pdb",
        "x",
        "--type=merge",
        "-p",
        r#"{"spec":{"unhealthyPodEvictionPolicy":"AlwaysAllow"}}"#,
    ]));
    // AlwaysAllow: the unready pod goes, the ready one is still guarded.
    s.eventually("the unready pod evicted", || {
        evict(&s, "crashing").status.success().then_some(())
    });
    s.eventually("the evicted pod gone", || {
        s.json_opt(&["get", "pod", "crashing"])
            .is_none()
            .then_some(())
    });
    let out = evict(&s, "healthy");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(s.json_opt(&["get", "pod", "healthy"]).is_some());
}

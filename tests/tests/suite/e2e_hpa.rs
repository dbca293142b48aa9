//! The resource metrics API and the HorizontalPodAutoscaler on a real `minik server` with
//! simulated nodes, driven by both kubectls: `kubectl top` shows the usage that pods'
//! `simulation.minik.io/cpu-usage` and `memory-usage` annotations give, the APIService
//! `v1beta1.metrics.k8s.io` is Available, RBAC guards the metrics, and HPAs created by
//! `kubectl autoscale` scale Deployments up and down (and a custom resource through its
//! scale subresource) with upstream's events and conditions.

use minik_tests::server::{Kubectl, Server, ok, text};
use serde_json::{Value, json};

fn server() -> Server {
    Server::start_with(&["--simulated-nodes", "2"])
}

/// A Deployment of one pod asking 100m of cpu and using `cpu` (the annotation).
fn deployment(name: &str, cpu: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name},
                    "annotations": {"simulation.minik.io/cpu-usage": cpu}},
                "spec": {"containers": [{"name": "app", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m"}}}]}}}})
}

/// The line of `kubectl top ...` output that starts with `name`, once there is one.
fn top_line(k: &Kubectl, args: &[&str], name: &str) -> Option<String> {
    let out = k.run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .map(str::to_string)
}

fn columns(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn kubectl_top_shows_annotated_usage_through_the_metrics_api() {
    let s = server();
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "busy", "labels": {"app": "busy"}, "annotations": {
            "simulation.minik.io/cpu-usage": "a=150m,b=100m",
            "simulation.minik.io/memory-usage": "64Mi"}},
        "spec": {"containers": [{"name": "a", "image": "busybox"},
            {"name": "b", "image": "busybox"}]}});
    s.apply(&pod);
    s.apply(
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "idle"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    );
    for k in Kubectl::each(&s) {
        let svc = ok(k.run(&["get", "apiservices", "v1beta1.metrics.k8s.io"]));
        let line = svc.lines().nth(1).unwrap_or_default().to_string();
        assert_eq!(
            columns(&line)[..3],
            ["v1beta1.metrics.k8s.io", "Local", "True"],
            "{svc}"
        );
        let resources = ok(k.run(&["api-resources", "--api-group=metrics.k8s.io"]));
        assert!(
            resources.contains("PodMetrics") && resources.contains("NodeMetrics"),
            "{resources}"
        );
        let busy = s.eventually("busy in kubectl top pods", || {
            top_line(&k, &["top", "pods"], "busy")
        });
        assert_eq!(columns(&busy)[1..], ["250m", "128Mi"], "{busy}");
        // Without annotations: 1m and 4Mi.
        let idle = s.eventually("idle in kubectl top pods", || {
            top_line(&k, &["top", "pods"], "idle")
        });
        assert_eq!(columns(&idle)[1..], ["1m", "4Mi"], "{idle}");
        let containers = ok(k.run(&["top", "pods", "busy", "--containers"]));
        assert!(
            containers
                .lines()
                .any(|l| columns(l) == ["busy", "a", "150m", "64Mi"]),
            "{containers}"
        );
        let selected = ok(k.run(&["top", "pods", "-l", "app=busy"]));
        assert!(
            selected.contains("busy") && !selected.contains("idle"),
            "{selected}"
        );
    }
    // The nodes: each its pods' sum.
    let busy = s.get_json(&["pod", "busy"]);
    let node = busy["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let idle_node = s.get_json(&["pod", "idle"])["spec"]["nodeName"].clone();
    let k = Kubectl::each(&s).remove(0);
    let line = s.eventually("the node in kubectl top nodes", || {
        top_line(&k, &["top", "nodes"], &node)
    });
    let expected = if idle_node == json!(node) {
        ["251m", "132Mi"]
    } else {
        ["250m", "128Mi"]
    };
    assert_eq!(columns(&line)[1], expected[0], "{line}");
    assert_eq!(columns(&line)[3], expected[1], "{line}");
    // The API as metrics-server serves it.
    let m: Value = serde_json::from_str(&ok(s.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dbusy",
    ])))
    .unwrap();
    assert_eq!(m["kind"], "PodMetricsList");
    assert_eq!(m["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(m["items"][0]["metadata"]["labels"]["app"], "busy");
    assert!(
        m["items"][0]["window"]
            .as_str()
            .is_some_and(|w| w.ends_with('s'))
    );
    let missing = s.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
    ]);
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("podmetrics.metrics.k8s.io \"default/nope\" not found"),
        "{}",
        text(&missing)
    );
    // Reading metrics takes RBAC on metrics.k8s.io (which view has, aggregated).
    ok(s.kubectl(&[
        "create",
        "rolebinding",
        "viewers",
        "--clusterrole=view",
        "--user=alice",
    ]));
    s.eventually("alice reads pod metrics", || {
        s.kubectl(&["top", "pods", "--as=alice"])
            .status
            .success()
            .then_some(())
    });
    let denied = s.kubectl(&["top", "pods", "--as=bob"]);
    assert!(!denied.status.success());
    assert!(
        text(&denied).contains("cannot list resource \"pods\" in API group \"metrics.k8s.io\""),
        "{}",
        text(&denied)
    );
}

/// The HPA's status, once `check` holds on it.
fn hpa_until(s: &Server, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    s.until(&["get", "hpa", name], what, |h| {
        h.as_ref().is_some_and(&check)
    })
    .unwrap_or_default()
}

fn condition<'a>(hpa: &'a Value, type_: &str) -> &'a Value {
    hpa["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn rescale_events(s: &Server, hpa: &str) -> Vec<String> {
    let events = s.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.name={hpa},reason=SuccessfulRescale"),
    ]);
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn kubectl_autoscale_scales_deployments_up_and_down() {
    let s = server();
    let kubectls = Kubectl::each(&s);
    for (i, k) in kubectls.iter().enumerate() {
        let name = format!("web-{i}");
        s.apply(&deployment(&name, "200m"));
        ok(k.run(&[
            "autoscale",
            "deployment",
            &name,
            "--cpu-percent=50",
            "--min=1",
            "--max=4",
        ]));
    }
    for i in 0..kubectls.len() {
        let name = format!("web-{i}");
        s.until(&["get", "deployment", &name], "scaled up to 4", |d| {
            d.as_ref().is_some_and(|d| d["spec"]["replicas"] == 4)
        });
        // Once the new pods' samples count, the metric asks for 16: limited to 4.
        let hpa = hpa_until(&s, &name, "4 replicas at 200%, limited", |h| {
            h["status"]["currentReplicas"] == 4
                && h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"]
                    == 200
                && condition(h, "ScalingLimited")["reason"] == "TooManyReplicas"
        });
        assert_eq!(hpa["status"]["desiredReplicas"], 4);
        assert!(hpa["status"]["lastScaleTime"].is_string());
        assert_eq!(
            condition(&hpa, "ScalingActive")["reason"],
            "ValidMetricFound"
        );
        for k in &kubectls {
            let table = ok(k.run(&["get", "hpa", &name]));
            assert!(table.contains("cpu: 200%/50%"), "{table}");
        }
        // autoscaling/v1 shows the same HPA with its cpu fields.
        let v1 = s.get_json(&["horizontalpodautoscalers.v1.autoscaling", &name]);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 200);
        assert!(
            rescale_events(&s, &name).contains(
                &"New size: 4; reason: cpu resource utilization (percentage of request) above target".to_string()
            ),
            "{:?}",
            rescale_events(&s, &name)
        );
    }
    // Usage drops (new pods from a new template): with a short scale-down window the
    // HPA scales down to its minimum.
    ok(s.kubectl(&[
        "patch",
        "hpa",
        "web-0",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":5}}}}"#,
    ]));
    ok(s.kubectl(&["patch", "deployment", "web-0", "--type=merge", "-p",
        r#"{"spec":{"template":{"metadata":{"annotations":{"simulation.minik.io/cpu-usage":"10m"}}}}}"#]));
    s.until(&["get", "deployment", "web-0"], "scaled down to 1", |d| {
        d.as_ref().is_some_and(|d| d["spec"]["replicas"] == 1)
    });
    let hpa = hpa_until(&s, "web-0", "status at 10%", |h| {
        h["status"]["currentReplicas"] == 1
            && h["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] == 10
    });
    // At its minimum, 10% of 50% asks for no fewer.
    assert_eq!(
        condition(&hpa, "ScalingLimited")["reason"],
        "DesiredWithinRange"
    );
    assert!(
        rescale_events(&s, "web-0")
            .contains(&"New size: 1; reason: All metrics below target".to_string())
    );
}

#[test]
fn hpas_scale_custom_resources_and_explain_what_they_cannot_do() {
    let s = server();
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}},
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas",
                    "labelSelectorPath": ".status.selector"}}}]}});
    s.apply(&crd);
    s.eventually("widgets served", || {
        s.kubectl(&["get", "widgets"])
            .status
            .success()
            .then_some(())
    });
    s.apply(&json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"replicas": 2}}));
    ok(s.kubectl(&[
        "patch",
        "widget",
        "w",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":2,"selector":"app=widget"}}"#,
    ]));
    for i in 0..2 {
        s.apply(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("widget-{i}"), "labels": {"app": "widget"},
                "annotations": {"simulation.minik.io/cpu-usage": "app=300m,side=1m"}},
            "spec": {"containers": [
                {"name": "app", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "side", "image": "busybox", "resources": {"requests": {"cpu": "900m"}}}]}}));
    }
    // The app container alone is at 300%: ceil(3 × 2) = 6, at most 5.
    s.apply(&json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "w"},
        "spec": {"scaleTargetRef": {"apiVersion": "example.com/v1", "kind": "Widget", "name": "w"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "ContainerResource", "containerResource": {"name": "cpu",
                "container": "app", "target": {"type": "Utilization", "averageUtilization": 100}}}]}}));
    s.until(&["get", "widget", "w"], "the widget scaled to 5", |w| {
        w.as_ref().is_some_and(|w| w["spec"]["replicas"] == 5)
    });
    let hpa = hpa_until(&s, "w", "container metric in the status", |h| {
        h["status"]["currentMetrics"][0]["containerResource"]["current"]["averageUtilization"]
            == 300
    });
    assert_eq!(
        hpa["status"]["currentMetrics"][0]["containerResource"]["container"],
        "app"
    );

    // Metrics of the custom metrics API: not served, and said so.
    s.apply(&deployment("web", "50m"));
    s.apply(
        &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "qps"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3, "metrics": [{"type": "Pods", "pods": {"metric": {"name": "qps"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}]}}),
    );
    let hpa = hpa_until(&s, "qps", "ScalingActive False", |h| {
        condition(h, "ScalingActive")["status"] == "False"
    });
    let active = condition(&hpa, "ScalingActive");
    assert_eq!(active["reason"], "FailedGetPodsMetric");
    assert!(
        active["message"]
            .as_str()
            .is_some_and(|m| m.contains("custom.metrics.k8s.io")),
        "{active}"
    );
    assert_eq!(
        condition(&hpa, "AbleToScale")["reason"],
        "SucceededGetScale"
    );

    // A second HPA for the same pods: neither may decide.
    s.apply(
        &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "twin"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3}}),
    );
    let hpa = hpa_until(&s, "twin", "AmbiguousSelector", |h| {
        condition(h, "ScalingActive")["reason"] == "AmbiguousSelector"
    });
    let message = condition(&hpa, "ScalingActive")["message"].clone();
    assert!(
        message
            .as_str()
            .is_some_and(|m| m.contains("controlled by multiple HPAs: [default/qps default/twin]")),
        "{message}"
    );

    // A target that does not exist.
    s.apply(
        &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "nope"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "nope"},
            "maxReplicas": 3}}),
    );
    let hpa = hpa_until(&s, "nope", "AbleToScale False", |h| {
        condition(h, "AbleToScale")["status"] == "False"
    });
    let able = condition(&hpa, "AbleToScale");
    assert_eq!(able["reason"], "FailedGetScale");
    assert!(
        able["message"]
            .as_str()
            .is_some_and(|m| m.contains("deployments.apps \"nope\" not found")),
        "{able}"
    );
}

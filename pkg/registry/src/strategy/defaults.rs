//! Defaulting of built-in kinds, as kube-apiserver's SetDefaults_* functions do it.

use serde_json::{Map, Value, json};

/// Set `obj[key]` to `value` when it is absent or null.
pub(crate) fn default(obj: &mut Value, key: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        match m.get(key) {
            Some(v) if !v.is_null() => {}
            _ => {
                m.insert(key.into(), value);
            }
        }
    }
}

/// A Secret's `stringData` is write-only: its values go into `data` (base64), replacing
/// entries of the same key, as the v1 Secret conversion does on every write.
pub(crate) fn secret(obj: &mut Value) {
    use base64::Engine;
    default(obj, "type", json!("Opaque"));
    let Some(m) = obj.as_object_mut() else { return };
    let Some(strings) = m.remove("stringData") else {
        return;
    };
    let Some(strings) = strings.as_object().filter(|s| !s.is_empty()) else {
        return;
    };
    let data = m.entry("data").or_insert_with(|| json!({}));
    if !data.is_object() {
        *data = json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        data[k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// A HorizontalPodAutoscaler's defaults (SetDefaults_HorizontalPodAutoscaler): one replica at
/// least, 80% CPU utilization when no metric is given, and the default scaling rules filled
/// into a `behavior` that is given.
pub(crate) fn hpa(version: &str, obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    default(spec, "minReplicas", json!(1));
    if version == "v1" {
        default(spec, "targetCPUUtilizationPercentage", json!(80));
        return;
    }
    if spec["metrics"].as_array().is_none_or(Vec::is_empty) {
        spec["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}]);
    }
    let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) else {
        return;
    };
    let rules = [
        (
            "scaleUp",
            json!(0),
            json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
        (
            "scaleDown",
            Value::Null,
            json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
        ),
    ];
    for (direction, window, policies) in rules {
        default(behavior, direction, json!({}));
        let r = &mut behavior[direction];
        if !window.is_null() {
            default(r, "stabilizationWindowSeconds", window);
        }
        default(r, "selectPolicy", json!("Max"));
        default(r, "policies", policies);
    }
}

/// An update strategy: RollingUpdate unless set, and the rolling update's unset fields.
fn rolling(spec: &mut Value, field: &str, defaults: Value) {
    default(spec, field, json!({}));
    let strategy = &mut spec[field];
    default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type") == Some(&json!("RollingUpdate")) {
        default(strategy, "rollingUpdate", json!({}));
        for (k, v) in defaults.as_object().into_iter().flatten() {
            default(&mut strategy["rollingUpdate"], k, v.clone());
        }
    }
}

fn each(obj: &mut Value, pointer: &str, f: impl Fn(&mut Value)) {
    if let Some(Value::Array(items)) = obj.pointer_mut(pointer) {
        items.iter_mut().for_each(f);
    }
}

pub(super) fn container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let tag = image.rsplit('/').next().unwrap_or("");
    let latest = !image.contains('@') && (!tag.contains(':') || tag.ends_with(":latest"));
    default(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    each(c, "/ports", |p| default(p, "protocol", json!("TCP")));
    for name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(name).filter(|p| p.is_object()) {
            probe(p);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c.pointer_mut(&format!("/lifecycle/{hook}/httpGet")) {
            http_get(h);
        }
    }
}

/// SetDefaults_Probe: a probe's timings and thresholds.
fn probe(p: &mut Value) {
    default(p, "timeoutSeconds", json!(1));
    default(p, "periodSeconds", json!(10));
    default(p, "successThreshold", json!(1));
    default(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet") {
        http_get(h);
    }
}

/// SetDefaults_HTTPGetAction.
fn http_get(h: &mut Value) {
    if h.is_object() {
        default(h, "path", json!("/"));
        default(h, "scheme", json!("HTTP"));
    }
}

/// Defaults of a PodSpec (also inside templates).
pub(crate) fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    each(spec, "/containers", container);
    each(spec, "/initContainers", container);
}

/// Defaults of a Pod.
pub(crate) fn pod(obj: &mut Value) {
    if let Some(spec) = obj.get_mut("spec") {
        pod_spec(spec);
        default(spec, "enableServiceLinks", json!(true));
    }
    // A new pod is Pending; the kubelet moves it on (status writes keep their phase).
    let qos = qos_class(obj);
    match obj.get_mut("status").and_then(Value::as_object_mut) {
        Some(status) => {
            status.entry("phase").or_insert_with(|| json!("Pending"));
            status.insert("qosClass".into(), json!(qos));
        }
        None => obj["status"] = json!({"phase": "Pending", "qosClass": qos}),
    }
}

/// The QoS class of a pod from its containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["/spec/containers", "/spec/initContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .collect();
    let res = |c: &Value, kind: &str| -> Map<String, Value> {
        c.pointer(&format!("/resources/{kind}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let any = containers
        .iter()
        .any(|c| !res(c, "requests").is_empty() || !res(c, "limits").is_empty());
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let (req, lim) = (res(c, "requests"), res(c, "limits"));
        ["cpu", "memory"]
            .iter()
            .all(|r| lim.get(*r).is_some() && req.get(*r).is_none_or(|q| Some(q) == lim.get(*r)))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Defaults of a Service (the ClusterIP is allocated separately).
pub(crate) fn service(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec") else {
        return;
    };
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let external_name = spec.get("type") == Some(&json!("ExternalName"));
    if !external_name {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
    each(spec, "/ports", |p| {
        default(p, "protocol", json!("TCP"));
        let port = p.get("port").cloned().unwrap_or(Value::Null);
        default(p, "targetPort", port);
    });
    if matches!(
        spec.get("type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    ) {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    // Defaulting runs on status writes too: keep what a load balancer controller wrote.
    match obj.get_mut("status").and_then(Value::as_object_mut) {
        Some(status) => {
            status.entry("loadBalancer").or_insert_with(|| json!({}));
        }
        None => obj["status"] = json!({"loadBalancer": {}}),
    }
}

fn template(obj: &mut Value) {
    if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
        pod_spec(spec);
    }
}

/// A ReplicationController without a selector (or labels) takes its template's labels.
fn rc_selector(obj: &mut Value) {
    let Some(labels) = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.is_object())
        .cloned()
    else {
        return;
    };
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
    if empty(obj.pointer("/spec/selector")) {
        obj["spec"]["selector"] = labels.clone();
    }
    if empty(obj.pointer("/metadata/labels")) && obj["metadata"].is_object() {
        obj["metadata"]["labels"] = labels;
    }
}

/// Defaults of volumes, claims and storage classes (SetDefaults_PersistentVolume,
/// _PersistentVolumeClaim, _StorageClass).
pub(crate) fn storage(kind: &str, obj: &mut Value) {
    match kind {
        "PersistentVolume" => {
            default(obj, "spec", json!({}));
            default(
                &mut obj["spec"],
                "persistentVolumeReclaimPolicy",
                json!("Retain"),
            );
            default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
            default(obj, "status", json!({}));
            default(&mut obj["status"], "phase", json!("Pending"));
        }
        "PersistentVolumeClaim" => {
            default(obj, "spec", json!({}));
            default(&mut obj["spec"], "volumeMode", json!("Filesystem"));
            default(obj, "status", json!({}));
            default(&mut obj["status"], "phase", json!("Pending"));
        }
        "StorageClass" => {
            default(obj, "reclaimPolicy", json!("Delete"));
            default(obj, "volumeBindingMode", json!("Immediate"));
        }
        _ => {}
    }
}

/// Defaults of the workload kinds.
pub(crate) fn workload(kind: &str, obj: &mut Value) {
    if kind == "ReplicationController" {
        rc_selector(obj);
    }
    template(obj);
    let Some(spec) = obj.get_mut("spec") else {
        return;
    };
    match kind {
        "Deployment" => {
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            rolling(
                spec,
                "strategy",
                json!({"maxUnavailable": "25%", "maxSurge": "25%"}),
            );
        }
        "ReplicaSet" | "ReplicationController" => default(spec, "replicas", json!(1)),
        "StatefulSet" => {
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            rolling(spec, "updateStrategy", json!({"partition": 0}));
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        "DaemonSet" => {
            default(spec, "revisionHistoryLimit", json!(10));
            rolling(
                spec,
                "updateStrategy",
                json!({"maxUnavailable": 1, "maxSurge": 0}),
            );
        }
        "Job" => {
            default(spec, "backoffLimit", json!(6));
            default(spec, "completionMode", json!("NonIndexed"));
            default(spec, "suspend", json!(false));
            // With a podFailurePolicy only failed pods are replaced.
            let replace = match spec.get("podFailurePolicy") {
                Some(p) if !p.is_null() => "Failed",
                _ => "TerminatingOrFailed",
            };
            default(spec, "podReplacementPolicy", json!(replace));
            let rules = spec
                .pointer_mut("/podFailurePolicy/rules")
                .and_then(Value::as_array_mut);
            for rule in rules.into_iter().flatten() {
                let patterns = rule
                    .get_mut("onPodConditions")
                    .and_then(Value::as_array_mut);
                for p in patterns.into_iter().flatten() {
                    default(p, "status", json!("True"));
                }
            }
            if spec.get("completions").is_none_or(Value::is_null)
                && spec.get("parallelism").is_none_or(Value::is_null)
            {
                default(spec, "completions", json!(1));
            }
            default(spec, "parallelism", json!(1));
            if let Some(t) = spec.pointer_mut("/template/spec") {
                default(t, "restartPolicy", json!("Never"));
            }
        }
        "CronJob" => {
            default(spec, "concurrencyPolicy", json!("Allow"));
            default(spec, "suspend", json!(false));
            default(spec, "successfulJobsHistoryLimit", json!(3));
            default(spec, "failedJobsHistoryLimit", json!(1));
            if let Some(t) = spec.pointer_mut("/jobTemplate/spec/template/spec") {
                pod_spec(t);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults() {
        let mut p = json!({"spec": {"containers": [
            {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "reg/x:1.2", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        pod(&mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(
            p["spec"]["containers"][1]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(p["status"]["phase"], "Pending");
        let mut probed = json!({"spec": {"containers": [{"name": "a", "image": "x:1",
            "readinessProbe": {"httpGet": {"port": 80}, "periodSeconds": 2},
            "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}}}]}});
        pod(&mut probed);
        let c = &probed["spec"]["containers"][0];
        let r = &c["readinessProbe"];
        assert_eq!(
            (
                &r["timeoutSeconds"],
                &r["periodSeconds"],
                &r["successThreshold"],
                &r["failureThreshold"]
            ),
            (&json!(1), &json!(2), &json!(1), &json!(3))
        );
        assert_eq!(
            (&r["httpGet"]["path"], &r["httpGet"]["scheme"]),
            (&json!("/"), &json!("HTTP"))
        );
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["path"], "/stop");
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(p["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn deployment_and_service_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}});
        workload("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        service(&mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["status"], json!({"loadBalancer": {}}));
        // A load balancer controller's status survives defaulting (status writes).
        let ingress = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.2"}]}});
        s["status"] = ingress.clone();
        service(&mut s);
        assert_eq!(s["status"], ingress);
    }

    #[test]
    fn job_defaults_follow_the_pod_failure_policy() {
        let mut j = json!({"spec": {"template": {"spec": {}}}});
        workload("Job", &mut j);
        assert_eq!(j["spec"]["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(j["spec"]["completions"], 1);
        assert_eq!(j["spec"]["backoffLimit"], 6);
        let rules =
            json!([{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]);
        let mut j =
            json!({"spec": {"podFailurePolicy": {"rules": rules}, "template": {"spec": {}}}});
        workload("Job", &mut j);
        assert_eq!(j["spec"]["podReplacementPolicy"], "Failed");
        let pattern = &j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0];
        assert_eq!(pattern["status"], "True");
    }
}

//! Validation of built-in kinds (kube-apiserver's ValidateX functions), the common rules:
//! required fields, names, value ranges and immutable fields. Errors are field causes.

use serde_json::{Value, json};

use crate::error::Cause;

fn cause(field: impl Into<String>, reason: &str, message: impl Into<String>) -> Cause {
    Cause {
        field: field.into(),
        reason: reason.into(),
        message: message.into(),
    }
}

fn required(field: &str) -> Cause {
    cause(field, "FieldValueRequired", "Required value")
}

fn invalid(field: &str, value: &Value, detail: &str) -> Cause {
    cause(
        field,
        "FieldValueInvalid",
        format!("Invalid value: {value}: {detail}"),
    )
}

fn immutable(field: &str, value: &Value) -> Cause {
    invalid(field, value, "field is immutable")
}

fn containers(spec: &Value, base: &str, out: &mut Vec<Cause>) {
    let list = spec.get("containers").and_then(Value::as_array);
    if list.is_none_or(Vec::is_empty) {
        out.push(required(&format!("{base}.containers")));
    }
    let mut seen = Vec::new();
    for (field, items) in [
        ("containers", list),
        (
            "initContainers",
            spec.get("initContainers").and_then(Value::as_array),
        ),
    ] {
        for (i, c) in items.into_iter().flatten().enumerate() {
            let at = format!("{base}.{field}[{i}]");
            match c.get("name").and_then(Value::as_str) {
                None | Some("") => out.push(required(&format!("{at}.name"))),
                Some(n) if !minik_api::is_dns1123_label(n) => out.push(invalid(
                    &format!("{at}.name"),
                    &json!(n),
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                )),
                Some(n) if seen.contains(&n) => out.push(cause(format!("{at}.name"), "FieldValueDuplicate", format!("Duplicate value: {}", json!(n)))),
                Some(n) => seen.push(n),
            }
            if c.get("image")
                .and_then(Value::as_str)
                .is_none_or(|i| i.trim().is_empty())
            {
                out.push(required(&format!("{at}.image")));
            }
        }
    }
    if let Some(p) = spec.get("restartPolicy").and_then(Value::as_str)
        && !["Always", "OnFailure", "Never"].contains(&p)
    {
        out.push(cause(
            format!("{base}.restartPolicy"),
            "FieldValueNotSupported",
            format!(
                "Unsupported value: {}: supported values: \"Always\", \"OnFailure\", \"Never\"",
                json!(p)
            ),
        ));
    }
}

/// The parts of a pod spec an update may change; everything else must stay.
fn pod_spec_frozen(spec: &Value) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = s.get_mut(list) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("image");
                }
            }
        }
    }
    if let Some(m) = s.as_object_mut() {
        for k in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "schedulingGates",
        ] {
            m.remove(k);
        }
    }
    s
}

fn selector_matches_template(obj: &Value, out: &mut Vec<Cause>) {
    let Some(selector) = obj.pointer("/spec/selector") else {
        out.push(required("spec.selector"));
        return;
    };
    let labels = obj
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    let matches = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let empty = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.is_empty())
        && selector
            .get("matchExpressions")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    if empty {
        out.push(invalid(
            "spec.selector",
            selector,
            "empty selector is invalid for deployment",
        ));
    } else if !matches {
        out.push(invalid(
            "spec.template.metadata.labels",
            &labels,
            "`selector` does not match template `labels`",
        ));
    }
}

fn config_keys(obj: &Value, out: &mut Vec<Cause>) {
    for field in ["data", "binaryData", "stringData"] {
        for key in obj
            .get(field)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            let ok = !key.is_empty()
                && key.len() <= 253
                && key != "."
                && key != ".."
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !ok {
                out.push(invalid(&format!("{field}[{key}]"), &json!(key), "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
            }
        }
    }
}

fn service(obj: &Value, out: &mut Vec<Cause>) {
    let spec = obj.get("spec").cloned().unwrap_or(json!({}));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        out.push(cause(
            "spec.type",
            "FieldValueNotSupported",
            format!("Unsupported value: {}", json!(ty)),
        ));
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = spec.get("ports").and_then(Value::as_array);
    if ty != "ExternalName" && !headless && ports.is_none_or(Vec::is_empty) {
        out.push(required("spec.ports"));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            out.push(invalid(
                &format!("spec.ports[{i}].port"),
                &json!(port),
                "must be between 1 and 65535, inclusive",
            ));
        }
        if ports.is_some_and(|ps| ps.len() > 1)
            && p.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            out.push(required(&format!("spec.ports[{i}].name")));
        }
    }
}

/// A node's pod ranges, once given, stay (the node IPAM may give them once).
fn pod_cidrs_kept(old: &Value, new: &Value, out: &mut Vec<Cause>) {
    for field in ["podCIDR", "podCIDRs"] {
        let before = old.pointer(&format!("/spec/{field}"));
        let set = before
            .is_some_and(|v| v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty()));
        if set && before != new.pointer(&format!("/spec/{field}")) {
            out.push(cause(
                format!("spec.{field}"),
                "FieldValueForbidden",
                "Forbidden: node updates may not change podCIDR except from \"\" to valid",
            ));
            return;
        }
    }
}

/// Problems with `new` (and, on update, with how it changed from `old`).
pub(crate) fn validate(group: &str, kind: &str, old: Option<&Value>, new: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    match (group, kind) {
        ("", "Pod") => {
            containers(new.get("spec").unwrap_or(&Value::Null), "spec", &mut out);
            if old.is_none() {
                super::ephemeral::on_create(&new["spec"], &mut out);
            }
            if let Some(old) = old
                && pod_spec_frozen(&old["spec"]) != pod_spec_frozen(&new["spec"])
            {
                out.push(cause("spec", "FieldValueForbidden", "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
            }
            // A finished pod stays finished (a late status write of a kubelet that had not
            // seen it finish, e.g. after an eviction, is refused).
            let phase = |p: &Value| p.pointer("/status/phase").cloned().unwrap_or(Value::Null);
            if let Some(old) = old
                && matches!(phase(old).as_str(), Some("Succeeded" | "Failed"))
                && phase(old) != phase(new)
            {
                out.push(cause(
                    "status.phase",
                    "FieldValueForbidden",
                    format!(
                        "Forbidden: may not transition from terminal phase {}",
                        phase(old)
                    ),
                ));
            }
        }
        ("", "Service") => {
            service(new, &mut out);
            if let Some(old) = old {
                let (o, n) = (
                    old.pointer("/spec/clusterIP"),
                    new.pointer("/spec/clusterIP"),
                );
                if o.is_some() && n.is_some() && o != n {
                    out.push(immutable("spec.clusterIP", n.unwrap_or(&Value::Null)));
                }
            }
        }
        ("", "ConfigMap" | "Secret") => {
            config_keys(new, &mut out);
            if let Some(old) = old
                && old.get("immutable") == Some(&json!(true))
            {
                for field in ["data", "binaryData"] {
                    if old.get(field) != new.get(field) {
                        out.push(cause(
                            field,
                            "FieldValueForbidden",
                            "Forbidden: field is immutable when `immutable` is set",
                        ));
                    }
                }
            }
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            selector_matches_template(new, &mut out);
            if let Some(t) = new.pointer("/spec/template/spec") {
                containers(t, "spec.template.spec", &mut out);
            }
            if let Some(r) = new.pointer("/spec/replicas").and_then(Value::as_i64)
                && r < 0
            {
                out.push(invalid(
                    "spec.replicas",
                    &json!(r),
                    "must be greater than or equal to 0",
                ));
            }
            if let Some(old) = old
                && old.pointer("/spec/selector") != new.pointer("/spec/selector")
            {
                out.push(immutable(
                    "spec.selector",
                    new.pointer("/spec/selector").unwrap_or(&Value::Null),
                ));
            }
        }
        ("", "Node") => {
            if let Some(old) = old {
                pod_cidrs_kept(old, new, &mut out);
            }
        }
        ("batch", "Job") => {
            if let Some(t) = new.pointer("/spec/template/spec") {
                containers(t, "spec.template.spec", &mut out);
                if t.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
                    out.push(cause(
                        "spec.template.spec.restartPolicy",
                        "FieldValueNotSupported",
                        "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods() {
        let bad = json!({"spec": {"containers": [{"name": "a"}, {"name": "a", "image": "x"}]}});
        let causes = validate("", "Pod", None, &bad);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.containers[0].image", "spec.containers[1].name"]
        );
        assert_eq!(
            validate("", "Pod", None, &json!({"spec": {}}))[0].field,
            "spec.containers"
        );
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}], "nodeName": ""}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("x:2");
        assert!(validate("", "Pod", Some(&old), &new).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        assert_eq!(validate("", "Pod", Some(&old), &new)[0].field, "spec");
        let mut failed = old.clone();
        failed["status"] = json!({"phase": "Failed", "reason": "Evicted"});
        let mut running = failed.clone();
        running["status"]["phase"] = json!("Running");
        assert_eq!(
            validate("", "Pod", Some(&failed), &running)[0].field,
            "status.phase"
        );
        assert!(validate("", "Pod", Some(&failed), &failed).is_empty());
    }

    #[test]
    fn node_pod_cidrs_are_given_once() {
        let bare = json!({"spec": {}});
        let given = json!({"spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"]}});
        assert!(validate("", "Node", Some(&bare), &given).is_empty());
        assert!(validate("", "Node", Some(&given), &given).is_empty());
        let other = json!({"spec": {"podCIDR": "10.42.2.0/24", "podCIDRs": ["10.42.2.0/24"]}});
        let causes = validate("", "Node", Some(&given), &other);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.podCIDR");
        assert!(causes[0].message.contains("may not change podCIDR"));
        assert_eq!(
            validate("", "Node", Some(&given), &bare)[0].field,
            "spec.podCIDR"
        );
    }

    #[test]
    fn deployments_and_config() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        assert_eq!(
            validate("apps", "Deployment", None, &d)[0].field,
            "spec.template.metadata.labels"
        );
        let cm = json!({"data": {"ok.key": "1", "bad key": "2"}});
        assert_eq!(
            validate("", "ConfigMap", None, &cm)[0].field,
            "data[bad key]"
        );
        let svc = json!({"spec": {"ports": [{"port": 0}]}});
        assert_eq!(
            validate("", "Service", None, &svc)[0].field,
            "spec.ports[0].port"
        );
    }
}

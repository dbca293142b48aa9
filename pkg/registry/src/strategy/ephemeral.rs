//! A pod's ephemeral containers as kube-apiserver takes them through the
//! `ephemeralcontainers` subresource: defaulted as other containers are, then validated
//! (validateEphemeralContainers): each named by a DNS label unique among all the pod's
//! containers, with an image, a targetContainerName naming one of its init or app
//! containers, none of the fields that would make it part of the workload (ports, probes,
//! lifecycle, resources, resize and restart policies) and no subPath mounts. A pod may not
//! be created with any.

use serde_json::{Value, json};

use crate::error::Cause;

/// The fields an ephemeral container may not have, in the order kube-apiserver reports
/// them (EphemeralContainerCommon's field order).
const FORBIDDEN: [&str; 9] = [
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "restartPolicyRules",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

const NOT_ALLOWED: &str = "Forbidden: cannot be set for an Ephemeral Container";

fn cause(field: String, reason: &str, message: String) -> Cause {
    Cause {
        field,
        reason: reason.into(),
        message,
    }
}

/// Whether a field is set as Go's zero-value test sees it after decoding: present and not
/// null. `resources` is a struct, set when one of its members is.
fn is_set(c: &Value, field: &str) -> bool {
    match c.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::Object(m)) if field == "resources" => m.values().any(|v| !v.is_null()),
        Some(_) => true,
    }
}

/// Default each of `containers` as the API server does every container of a pod.
pub(crate) fn default(containers: &mut [Value]) {
    containers.iter_mut().for_each(super::defaults::container);
}

/// A pod with ephemeral containers may not be created.
pub(crate) fn on_create(spec: &Value, out: &mut Vec<Cause>) {
    let given = spec
        .get("ephemeralContainers")
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty());
    if given {
        out.push(cause(
            "spec.ephemeralContainers".into(),
            "FieldValueForbidden",
            "Forbidden: cannot be set on create".into(),
        ));
    }
}

/// Problems with the ephemeral containers of pod spec `spec`.
pub(crate) fn validate(spec: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let names = |list: &str| -> Vec<String> {
        spec.get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("name")?.as_str().map(str::to_string))
            .collect()
    };
    let others: Vec<String> = names("containers")
        .into_iter()
        .chain(names("initContainers"))
        .collect();
    let mut all = others.clone();
    let list = spec.get("ephemeralContainers").and_then(Value::as_array);
    for (i, c) in list.into_iter().flatten().enumerate() {
        let at = format!("spec.ephemeralContainers[{i}]");
        match c.get("name").and_then(Value::as_str) {
            None | Some("") => out.push(cause(
                format!("{at}.name"),
                "FieldValueRequired",
                "Required value".into(),
            )),
            Some(n) if !minik_api::is_dns1123_label(n) => out.push(cause(
                format!("{at}.name"),
                "FieldValueInvalid",
                format!("Invalid value: {}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character", json!(n)),
            )),
            Some(n) if all.iter().any(|a| a == n) => out.push(cause(
                format!("{at}.name"),
                "FieldValueDuplicate",
                format!("Duplicate value: {}", json!(n)),
            )),
            Some(n) => all.push(n.to_string()),
        }
        if c.get("image")
            .and_then(Value::as_str)
            .is_none_or(|i| i.trim().is_empty())
        {
            out.push(cause(
                format!("{at}.image"),
                "FieldValueRequired",
                "Required value".into(),
            ));
        }
        if let Some(t) = c.get("targetContainerName").and_then(Value::as_str)
            && !t.is_empty()
            && !others.iter().any(|o| o == t)
        {
            out.push(cause(
                format!("{at}.targetContainerName"),
                "FieldValueNotFound",
                format!("Not found: {}", json!(t)),
            ));
        }
        for field in FORBIDDEN.iter().filter(|f| is_set(c, f)) {
            out.push(cause(
                format!("{at}.{field}"),
                "FieldValueForbidden",
                NOT_ALLOWED.into(),
            ));
        }
        let mounts = c.get("volumeMounts").and_then(Value::as_array);
        for (j, m) in mounts.into_iter().flatten().enumerate() {
            for field in ["subPath", "subPathExpr"] {
                if m.get(field)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    out.push(cause(
                        format!("{at}.volumeMounts[{j}].{field}"),
                        "FieldValueForbidden",
                        NOT_ALLOWED.into(),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ephemeral: Value) -> Value {
        json!({"containers": [{"name": "app", "image": "busybox"}],
            "initContainers": [{"name": "init", "image": "busybox"}],
            "ephemeralContainers": ephemeral})
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn what_kubectl_debug_sends_is_valid() {
        let mut list = vec![json!({"name": "debugger-x", "image": "busybox",
            "targetContainerName": "app", "stdin": true, "tty": true,
            "terminationMessagePolicy": "File", "resources": {},
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]})];
        default(&mut list);
        assert_eq!(list[0]["imagePullPolicy"], "Always");
        assert_eq!(list[0]["terminationMessagePath"], "/dev/termination-log");
        assert!(validate(&spec(json!(list))).is_empty());
        let mut out = Vec::new();
        on_create(&spec(json!([])), &mut out);
        assert!(out.is_empty());
        on_create(&spec(json!(list)), &mut out);
        assert_eq!(out[0].message, "Forbidden: cannot be set on create");
    }

    #[test]
    fn workload_fields_names_and_targets_are_refused() {
        let causes = validate(&spec(json!([
            {"name": "a", "image": "busybox", "ports": [{"containerPort": 80}],
             "resources": {"limits": {"cpu": "1"}}, "readinessProbe": {"exec": {"command": ["true"]}},
             "lifecycle": {}, "restartPolicy": "Always",
             "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x"}]},
            {"name": "app", "image": "busybox"},
            {"name": "b", "targetContainerName": "nope"},
            {"name": "c", "image": "busybox", "targetContainerName": "init"},
        ])));
        assert_eq!(
            fields(&causes),
            [
                "spec.ephemeralContainers[0].ports",
                "spec.ephemeralContainers[0].resources",
                "spec.ephemeralContainers[0].restartPolicy",
                "spec.ephemeralContainers[0].readinessProbe",
                "spec.ephemeralContainers[0].lifecycle",
                "spec.ephemeralContainers[0].volumeMounts[0].subPath",
                "spec.ephemeralContainers[1].name",
                "spec.ephemeralContainers[2].image",
                "spec.ephemeralContainers[2].targetContainerName",
            ]
        );
        assert_eq!(causes[0].message, NOT_ALLOWED);
        assert_eq!(causes[6].message, "Duplicate value: \"app\"");
        assert_eq!(causes[8].message, "Not found: \"nope\"");
    }
}

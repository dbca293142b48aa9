//! The downward API's fieldRef values: pod metadata, spec.nodeName and
//! spec.serviceAccountName, and the node's and pod's addresses (kubelet's
//! podFieldSelectorRuntimeValue and fieldpath.ExtractFieldPathAsString).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

/// The addresses the kubelet knows that the pod object may not have yet.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub host_ips: Vec<String>,
    pub pod_ips: Vec<String>,
}

/// A string as Go's %q writes it.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `key="value"` lines, sorted by key (labels and annotations in a volume).
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `metadata.labels['key']` -> ("metadata.labels", "key").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (field, rest) = path.split_once("['")?;
    Some((field, rest.strip_suffix("']")?))
}

/// The value of `path` for `pod`.
pub fn value(pod: &Pod, path: &str, addresses: &Addresses) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    if let Some((field, key)) = subscript(path) {
        return match field {
            "metadata.labels" => Ok(labels.get(key).cloned().unwrap_or_default()),
            "metadata.annotations" => Ok(annotations.get(key).cloned().unwrap_or_default()),
            _ => Err(format!("unsupported fieldPath: {path}")),
        };
    }
    let status_ips = |ips: &[String]| ips.join(",");
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(labels),
        "metadata.annotations" => format_map(annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => addresses.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => status_ips(&addresses.host_ips),
        "status.podIP" => addresses.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => status_ips(&addresses.pod_ips),
        _ => return Err(format!("unsupported fieldPath: {path}")),
    })
}

/// The pod's container (app or init) named `name`, for a resourceFieldRef's containerName.
pub fn container<'a>(pod: &'a Pod, name: &str) -> Result<&'a Container, String> {
    pod.spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == name)
        .ok_or_else(|| format!("container {name:?} not found in the pod"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn fields_of_the_pod_and_its_node() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "a \"b\"\n")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                service_account_name: Some("sa".into()),
                ..Default::default()
            }),
            status: None,
        };
        let a = Addresses {
            host_ips: vec!["192.168.1.2".into()],
            pod_ips: vec!["10.42.0.3".into(), "fd00::3".into()],
        };
        let v = |p: &str| value(&pod, p, &a);
        assert_eq!(v("metadata.name").as_deref(), Ok("p"));
        assert_eq!(v("metadata.labels['app']").as_deref(), Ok("web"));
        assert_eq!(v("metadata.annotations['x']").as_deref(), Ok(""));
        assert_eq!(
            v("metadata.labels").as_deref(),
            Ok("app=\"web\"\ntier=\"a \\\"b\\\"\\n\"")
        );
        assert_eq!(v("spec.nodeName").as_deref(), Ok("n1"));
        assert_eq!(v("spec.serviceAccountName").as_deref(), Ok("sa"));
        assert_eq!(v("status.hostIP").as_deref(), Ok("192.168.1.2"));
        assert_eq!(v("status.podIPs").as_deref(), Ok("10.42.0.3,fd00::3"));
        assert!(v("spec.containers").is_err());
        assert_eq!(go_quote("é\u{1}"), "\"é\\x01\"");
    }
}

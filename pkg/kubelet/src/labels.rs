//! `--node-label` and `--node-taint` as kubelet reads `--node-labels` and
//! `--register-with-taints`: `key=value` labels (valid label keys and values; of the
//! kubernetes.io and k8s.io namespaces only the ones a kubelet may set), and
//! `key[=value]:Effect` taints.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

/// Labels in the kubernetes.io and k8s.io namespaces a kubelet may set on its Node.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
];

/// Namespaces (and their subdomains) in the kubernetes.io space a kubelet may label with.
const KUBELET_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

fn in_domain(namespace: &str, domain: &str) -> bool {
    namespace == domain || namespace.ends_with(&format!(".{domain}"))
}

/// Whether a kubelet may set label `key` (kubelet's IsKubeletLabel).
fn kubelet_may_set(key: &str) -> bool {
    let Some((namespace, _)) = key.split_once('/') else {
        return true;
    };
    let kubernetes = in_domain(namespace, "kubernetes.io") || in_domain(namespace, "k8s.io");
    !kubernetes
        || KUBELET_LABELS.contains(&key)
        || KUBELET_NAMESPACES.iter().any(|d| in_domain(namespace, d))
}

/// A label name or value: at most 63 characters, alphanumerics with `-`, `_` and `.`
/// inside, starting and ending with an alphanumeric.
fn valid_name(s: &str) -> bool {
    s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// A DNS subdomain (a label key's prefix).
fn valid_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A qualified name: `[prefix/]name`.
pub fn valid_key(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => valid_subdomain(prefix) && valid_name(name),
        None => valid_name(key),
    }
}

/// Parse `--node-label` values (`key=value`).
pub fn parse_labels(flags: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut forbidden = Vec::new();
    for flag in flags {
        let (key, value) = flag
            .split_once('=')
            .ok_or_else(|| format!("--node-label {flag:?} is not key=value"))?;
        if !valid_key(key) {
            return Err(format!(
                "--node-label {flag:?}: {key:?} is not a valid label key"
            ));
        }
        if !value.is_empty() && !valid_name(value) {
            return Err(format!(
                "--node-label {flag:?}: {value:?} is not a valid label value"
            ));
        }
        if !kubelet_may_set(key) {
            forbidden.push(key.to_string());
        }
        labels.insert(key.to_string(), value.to_string());
    }
    if !forbidden.is_empty() {
        return Err(format!(
            "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-label: {forbidden:?}; \
             kubernetes.io labels a node may set are {KUBELET_LABELS:?} and the \
             kubelet.kubernetes.io/ and node.kubernetes.io/ namespaces"
        ));
    }
    Ok(labels)
}

/// Parse one `--node-taint` (`key=value:Effect` or `key:Effect`).
pub fn parse_taint(flag: &str) -> Result<Taint, String> {
    let (kv, effect) = flag
        .rsplit_once(':')
        .ok_or_else(|| format!("--node-taint {flag:?} is not key=value:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(format!(
            "--node-taint {flag:?}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if !valid_key(key) {
        return Err(format!(
            "--node-taint {flag:?}: {key:?} is not a valid taint key"
        ));
    }
    if let Some(v) = value.filter(|v| !v.is_empty() && !valid_name(v)) {
        return Err(format!(
            "--node-taint {flag:?}: {v:?} is not a valid taint value"
        ));
    }
    Ok(Taint {
        key: key.into(),
        value: value.filter(|v| !v.is_empty()).map(str::to_string),
        effect: effect.into(),
        time_added: None,
    })
}

/// Parse every `--node-taint`.
pub fn parse_taints(flags: &[String]) -> Result<Vec<Taint>, String> {
    flags.iter().map(|f| parse_taint(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_are_key_value_and_kubelet_owned() {
        let l = parse_labels(&strings(&[
            "tier=web",
            "example.com/disk=ssd",
            "node.kubernetes.io/pool=a",
            "empty=",
        ]))
        .unwrap();
        assert_eq!(l["tier"], "web");
        assert_eq!(l["example.com/disk"], "ssd");
        assert_eq!(l["empty"], "");
        assert!(parse_labels(&strings(&["novalue"])).is_err());
        assert!(parse_labels(&strings(&["bad key=x"])).is_err());
        assert!(parse_labels(&strings(&["k=bad value"])).is_err());
        let e = parse_labels(&strings(&["node-role.kubernetes.io/worker=true"])).unwrap_err();
        assert!(e.contains("node-role.kubernetes.io/worker"), "{e}");
        assert!(parse_labels(&strings(&["topology.kubernetes.io/zone=z1"])).is_ok());
    }

    #[test]
    fn taints_have_an_effect() {
        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("example.com/special:NoExecute").unwrap();
        assert_eq!(t.key, "example.com/special");
        assert_eq!(t.value, None);
        assert!(parse_taint("k=v").is_err());
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert!(parse_taint("=v:NoSchedule").is_err());
    }
}

//! Name rules of Kubernetes objects (apimachinery's validation).

/// An RFC 1123 label: at most 63 characters of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0] != b'-'
        && s.as_bytes()[s.len() - 1] != b'-'
}

/// An RFC 1123 subdomain: at most 253 characters, dot-separated labels.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Check an object's name as the apiserver does for `resource`; the error is the message
/// kube-apiserver gives.
pub fn validate_name(resource: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name or generateName is required".into());
    }
    if name == "." || name == ".." || name.contains('/') || name.contains('%') {
        return Err(format!(
            "{name:?}: may not be '.' or '..' and may not contain '/' or '%'"
        ));
    }
    // Namespaces, services and a few more are labels; most kinds are subdomains; RBAC and
    // a few others take any path segment.
    match resource {
        "namespaces" | "services" => {
            if !is_dns1123_label(name) {
                return Err(format!(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'): {name:?}"
                ));
            }
        }
        "roles" | "clusterroles" | "rolebindings" | "clusterrolebindings" => {}
        _ => {
            if !is_dns1123_subdomain(name) {
                return Err(format!(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*'): {name:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_subdomains() {
        assert!(is_dns1123_label("a-1"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label("A"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(validate_name("configmaps", "my.cm").is_ok());
        assert!(validate_name("namespaces", "my.ns").is_err());
        assert!(validate_name("clusterroles", "system:admin").is_ok());
        assert!(validate_name("pods", "").is_err());
        assert!(validate_name("pods", "..").is_err());
    }
}

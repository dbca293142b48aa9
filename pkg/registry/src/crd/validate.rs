//! Validation of a CustomResourceDefinition itself (the common rules of kube-apiserver's
//! ValidateCustomResourceDefinition): its name, group, names, scope and versions.

use serde_json::{Value, json};

use crate::error::Cause;

fn cause(field: &str, reason: &str, message: String) -> Cause {
    Cause {
        field: field.into(),
        reason: reason.into(),
        message,
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn definition(old: Option<&Value>, crd: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let (group, plural) = (text(crd, "/spec/group"), text(crd, "/spec/names/plural"));
    let name = text(crd, "/metadata/name");
    if name != format!("{plural}.{group}") {
        out.push(cause(
            "metadata.name",
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if group.is_empty() {
        out.push(cause(
            "spec.group",
            "FieldValueRequired",
            "Required value".into(),
        ));
    } else if !group.contains('.') || !minik_api::is_dns1123_subdomain(group) {
        out.push(cause(
            "spec.group",
            "FieldValueInvalid",
            format!("Invalid value: \"{group}\": should be a domain with at least one dot"),
        ));
    }
    for (field, pointer) in [
        ("spec.names.plural", "/spec/names/plural"),
        ("spec.names.kind", "/spec/names/kind"),
    ] {
        if text(crd, pointer).is_empty() {
            out.push(cause(field, "FieldValueRequired", "Required value".into()));
        }
    }
    if !plural.is_empty() && !minik_api::is_dns1123_label(plural) {
        out.push(cause(
            "spec.names.plural",
            "FieldValueInvalid",
            format!("Invalid value: \"{plural}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'"),
        ));
    }
    let scope = text(crd, "/spec/scope");
    if scope != "Namespaced" && scope != "Cluster" {
        out.push(cause(
            "spec.scope",
            "FieldValueNotSupported",
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        out.push(cause(
            "spec.versions",
            "FieldValueInvalid",
            "Invalid value: \"null\": must have exactly one version marked as storage version"
                .into(),
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage") == Some(&json!(true)))
        .count();
    if !versions.is_empty() && storage != 1 {
        out.push(cause(
            "spec.versions",
            "FieldValueInvalid",
            "Invalid value: \"array\": must have exactly one version marked as storage version"
                .into(),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let vname = text(v, "/name");
        if !minik_api::is_dns1123_label(vname) {
            out.push(cause(
                &format!("spec.versions[{i}].name"),
                "FieldValueInvalid",
                format!("Invalid value: \"{vname}\": a DNS-1035 label is required"),
            ));
        }
    }
    if let Some(old) = old {
        for (field, pointer) in [("spec.group", "/spec/group"), ("spec.scope", "/spec/scope")] {
            if text(old, pointer) != text(crd, pointer) {
                out.push(cause(
                    field,
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: \"{}\": field is immutable",
                        text(crd, pointer)
                    ),
                ));
            }
        }
    }
    out
}

/// Kubernetes' order of versions, most preferred first: GA, then beta, then alpha, higher
/// numbers first; other names after, alphabetically.
pub(crate) fn priority(version: &str) -> (u8, i64, i64, String) {
    let parse = || -> Option<(u8, i64, i64)> {
        let rest = version.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (rank, label) in [(1, "beta"), (2, "alpha")] {
            if let Some(n) = tail.strip_prefix(label) {
                let minor: i64 = if n.is_empty() { 0 } else { n.parse().ok()? };
                return Some((rank, -major, -minor));
            }
        }
        None
    };
    match parse() {
        Some((rank, major, minor)) => (rank, major, minor, String::new()),
        None => (3, 0, 0, version.to_string()),
    }
}

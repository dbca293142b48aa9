//! Label and field selectors, as list and watch take them.

use serde_json::Value;

use crate::error::{ApiError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Exists,
    NotExists,
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
}

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    reqs: Vec<(String, Op)>,
}

fn set_values(s: &str) -> Result<Vec<String>> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("unable to parse requirement: values {s:?}"))
        })?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    /// Parse a label selector (`a=b,c!=d,e in (f,g),!h,i`).
    /// A metav1.LabelSelector (`{}` and null select everything).
    pub fn from_label_selector(sel: Option<&Value>) -> Result<Self> {
        Self::labels(&selector_string(sel.filter(|s| !s.is_null())))
    }

    pub fn labels(s: &str) -> Result<Self> {
        Self::parse(s, true)
    }

    /// Parse a field selector (`metadata.name=x,spec.nodeName!=y`).
    /// The keys the selector tests.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.reqs.iter().map(|(k, _)| k.as_str())
    }

    pub fn fields(s: &str) -> Result<Self> {
        Self::parse(s, false)
    }

    fn parse(s: &str, sets: bool) -> Result<Self> {
        let mut reqs = Vec::new();
        for part in minik_api::selector::split_requirements(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let bad = || ApiError::BadRequest(format!("unable to parse requirement: {part:?}"));
            let req = if let Some((k, v)) = part.split_once("!=") {
                (k.trim().to_string(), Op::NotEq(v.trim().to_string()))
            } else if let Some((k, v)) = part.split_once("==") {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if let Some((k, v)) = part.split_once('=') {
                (k.trim().to_string(), Op::Eq(v.trim().to_string()))
            } else if sets && let Some((k, v)) = part.split_once(" notin ") {
                (k.trim().to_string(), Op::NotIn(set_values(v)?))
            } else if sets && let Some((k, v)) = part.split_once(" in ") {
                (k.trim().to_string(), Op::In(set_values(v)?))
            } else if sets && let Some(k) = part.strip_prefix('!') {
                (k.trim().to_string(), Op::NotExists)
            } else if sets {
                (part.to_string(), Op::Exists)
            } else {
                return Err(bad());
            };
            if req.0.is_empty() || req.0.contains(' ') {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether `get(key)` satisfies every requirement.
    fn matches_with(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|(k, op)| {
            let v = get(k);
            match op {
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
                Op::Eq(want) => v.as_deref() == Some(want.as_str()),
                Op::NotEq(want) => v.as_deref() != Some(want.as_str()),
                Op::In(set) => v.is_some_and(|v| set.contains(&v)),
                Op::NotIn(set) => v.is_none_or(|v| !set.contains(&v)),
            }
        })
    }

    /// Match against an object's labels.
    pub fn matches_labels(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.matches_with(|k| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// Match against an object's fields by dotted path (`spec.nodeName`).
    pub fn matches_fields(&self, obj: &Value) -> bool {
        self.matches_with(|path| {
            let pointer = format!("/{}", path.replace('.', "/"));
            match obj.pointer(&pointer) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                Some(Value::Number(n)) => Some(n.to_string()),
                // An absent field compares as the empty string, as the apiserver's field
                // sets do (e.g. spec.nodeName= for unscheduled pods).
                _ => Some(String::new()),
            }
        })
    }
}

/// `k=v,k2 in (a,b)` from a label selector (or a plain map, as ReplicationController has).
pub fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let labels = sel
        .get("matchLabels")
        .or(Some(sel))
        .and_then(Value::as_object);
    let mut parts: Vec<String> = labels
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
        .collect();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e.get("operator").and_then(Value::as_str) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("env", false),
            ("!env", true),
            ("tier,app in (x,web)", true),
            ("", true),
        ] {
            assert_eq!(
                Selector::labels(sel).unwrap().matches_labels(&o),
                want,
                "{sel}"
            );
        }
        assert!(Selector::labels("a in b").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {"nodeName": "n1"},
            "status": {"phase": "Running"}});
        assert!(
            Selector::fields("metadata.name=p")
                .unwrap()
                .matches_fields(&o)
        );
        assert!(
            Selector::fields("spec.nodeName=n1,status.phase!=Failed")
                .unwrap()
                .matches_fields(&o)
        );
        assert!(
            !Selector::fields("metadata.namespace=x")
                .unwrap()
                .matches_fields(&o)
        );
        let unscheduled = json!({"spec": {}});
        assert!(
            Selector::fields("spec.nodeName=")
                .unwrap()
                .matches_fields(&unscheduled)
        );
        assert!(Selector::fields("name").is_err());
    }
}

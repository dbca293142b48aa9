//! What webhooks and admission policies share: which requests a rule names, namespace and
//! object selectors, the AdmissionRequest a request is described as, and CEL evaluation over
//! it (`object`, `oldObject`, `request`, `params`, `namespaceObject`).

use minik_registry::admission::{Attributes, Operation};
use minik_registry::{Registry, Result, Selector};
use serde_json::{Value, json};

fn listed(list: &Value, wanted: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v == "*" || v == wanted))
}

/// Whether a RuleWithOperations (or a NamedRuleWithOperations) names the request.
pub(crate) fn rule_matches(rule: &Value, attrs: &Attributes<'_>) -> bool {
    let info = attrs.info;
    if !listed(&rule["operations"], attrs.operation.as_str())
        || !listed(&rule["apiGroups"], info.group)
        || !listed(&rule["apiVersions"], info.version)
    {
        return false;
    }
    let scope = rule.get("scope").and_then(Value::as_str).unwrap_or("*");
    let scoped = match scope {
        "Cluster" => !info.namespaced,
        "Namespaced" => info.namespaced,
        _ => true,
    };
    if !scoped {
        return false;
    }
    let names = rule["resourceNames"].as_array();
    if names.is_some_and(|n| !n.is_empty() && !n.iter().any(|n| n == attrs.name)) {
        return false;
    }
    let sub = attrs.subresource.unwrap_or("");
    rule["resources"].as_array().into_iter().flatten().any(|r| {
        let r = r.as_str().unwrap_or("");
        let (res, rsub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == info.plural) && (rsub == "*" || rsub == sub)
    })
}

/// Whether any of `rules` names the request.
pub(crate) fn any_rule(rules: &Value, attrs: &Attributes<'_>) -> bool {
    rules
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| rule_matches(r, attrs))
}

/// The namespace a request is in (the namespace itself for a Namespace).
pub(crate) async fn namespace_object(
    reg: &Registry,
    attrs: &Attributes<'_>,
    obj: &Value,
) -> Result<Option<Value>> {
    if crate::is_core(attrs, "namespaces") {
        return Ok(Some(obj.clone()));
    }
    let Some(ns) = attrs.namespace else {
        return Ok(None);
    };
    let all = crate::cached(reg, "", "v1", "namespaces", None).await?;
    Ok(all
        .iter()
        .find(|n| n["metadata"]["name"] == ns)
        .map(|n| (**n).clone()))
}

/// A namespaceSelector: cluster-scoped objects (other than namespaces) always match.
pub(crate) fn namespace_selected(selector: Option<&Value>, namespace: Option<&Value>) -> bool {
    let Some(ns) = namespace else { return true };
    Selector::from_label_selector(selector).is_ok_and(|s| s.matches_labels(ns))
}

/// An objectSelector matches the new object or the old one.
pub(crate) fn object_selected(
    selector: Option<&Value>,
    obj: &Value,
    attrs: &Attributes<'_>,
) -> bool {
    let Ok(s) = Selector::from_label_selector(selector) else {
        return false;
    };
    s.is_empty() || s.matches_labels(obj) || attrs.old.is_some_and(|o| s.matches_labels(o))
}

/// The AdmissionRequest that describes a request.
pub(crate) fn request(attrs: &Attributes<'_>, obj: &Value, uid: &str) -> Value {
    let info = attrs.info;
    let kind = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let resource = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let object = match attrs.operation {
        Operation::Delete => Value::Null,
        _ => obj.clone(),
    };
    let options = match attrs.operation {
        Operation::Create => json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
        Operation::Update => json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
        Operation::Delete => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
        Operation::Connect => Value::Null,
    };
    let mut user = json!({"username": attrs.user.name, "groups": attrs.user.groups});
    if !attrs.user.uid.is_empty() {
        user["uid"] = json!(attrs.user.uid);
    }
    let mut req = json!({
        "uid": uid, "kind": kind, "resource": resource,
        "requestKind": kind, "requestResource": resource,
        "name": attrs.name, "operation": attrs.operation.as_str(),
        "userInfo": user, "object": object,
        "oldObject": attrs.old.cloned().unwrap_or(Value::Null),
        "dryRun": attrs.dry_run, "options": options,
    });
    if let Some(ns) = attrs.namespace {
        req["namespace"] = json!(ns);
    }
    if let Some(s) = attrs.subresource {
        req["subResource"] = json!(s);
        req["requestSubResource"] = json!(s);
    }
    req
}

/// Variables a CEL expression sees.
#[derive(Clone, Copy)]
pub(crate) struct Vars<'a> {
    pub request: &'a Value,
    pub params: Option<&'a Value>,
    pub namespace: Option<&'a Value>,
    /// `variables.<name>` of a policy.
    pub variables: Option<&'a std::collections::HashMap<String, cel::Value>>,
}

/// Evaluate `source` over a request.
pub(crate) fn eval(source: &str, vars: &Vars<'_>) -> std::result::Result<cel::Value, String> {
    let program = minik_registry::cel_program(source)?;
    let mut ctx = cel::Context::default();
    let mut add = |name: &str, v: &Value| -> std::result::Result<(), String> {
        ctx.add_variable_from_value(name, cel::to_value(v).map_err(|e| e.to_string())?);
        Ok(())
    };
    add("object", &vars.request["object"])?;
    add("oldObject", &vars.request["oldObject"])?;
    add("request", vars.request)?;
    add("params", vars.params.unwrap_or(&Value::Null))?;
    add("namespaceObject", vars.namespace.unwrap_or(&Value::Null))?;
    let variables = vars.variables.cloned().unwrap_or_default();
    ctx.add_variable_from_value("variables", cel::Value::Map(variables.into()));
    program.execute(&ctx).map_err(|e| e.to_string())
}

/// Evaluate a boolean expression.
pub(crate) fn eval_bool(source: &str, vars: &Vars<'_>) -> std::result::Result<bool, String> {
    match eval(source, vars)? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(format!("expression {source:?} gave {other:?}, not a bool")),
    }
}

/// matchConditions: Ok(true) when every one holds; Err when one cannot be evaluated.
pub(crate) fn conditions_hold(
    conditions: Option<&Value>,
    vars: &Vars<'_>,
) -> std::result::Result<bool, String> {
    for c in conditions.and_then(Value::as_array).into_iter().flatten() {
        let expr = c["expression"].as_str().unwrap_or("true");
        let holds = eval_bool(expr, vars)
            .map_err(|e| format!("matchCondition {:?}: {e}", c["name"].as_str().unwrap_or("")))?;
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Requests about admission's own configuration are never sent to webhooks or policies, so
/// a broken one can always be fixed.
pub(crate) fn exempt(attrs: &Attributes<'_>) -> bool {
    attrs.info.group == "admissionregistration.k8s.io"
}

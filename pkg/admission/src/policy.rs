//! ValidatingAdmissionPolicy: CEL validations a ValidatingAdmissionPolicyBinding applies to
//! the requests both its policy's matchConstraints and its matchResources name, with the
//! binding's params object (paramKind / paramRef), the policy's variables and
//! matchConditions. A failed validation denies, warns or is only audited, as the binding's
//! validationActions say.

use std::collections::HashMap;

use minik_registry::admission::{Attributes, Verdict};
use minik_registry::{ApiError, Registry, Result, Selector};
use serde_json::{Value, json};

use crate::Plugin;
use crate::matching::{self, Vars};

pub struct Policies;

const GROUP: &str = "admissionregistration.k8s.io";

/// Whether a MatchResources names the request.
fn resources_match(m: &Value, attrs: &Attributes<'_>, obj: &Value, ns: Option<&Value>) -> bool {
    if m.is_null() {
        return true;
    }
    let rules = &m["resourceRules"];
    (rules.is_null() || matching::any_rule(rules, attrs))
        && !matching::any_rule(&m["excludeResourceRules"], attrs)
        && matching::namespace_selected(m.get("namespaceSelector"), ns)
        && matching::object_selected(m.get("objectSelector"), obj, attrs)
}

/// The params objects a binding names (None: the policy takes no params).
async fn params(
    reg: &Registry,
    policy: &Value,
    binding: &Value,
    attrs: &Attributes<'_>,
) -> std::result::Result<Option<Vec<Value>>, String> {
    let kind = &policy["spec"]["paramKind"];
    if kind.is_null() {
        return Ok(None);
    }
    let api_version = kind["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let info = reg
        .resources()
        .into_iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind["kind"])
        .ok_or_else(|| {
            format!(
                "paramKind {api_version}, Kind={} is not served",
                kind["kind"]
            )
        })?;
    let r = &binding["spec"]["paramRef"];
    let ns = match r["namespace"].as_str() {
        Some(n) if !n.is_empty() => Some(n),
        _ if info.namespaced => attrs.namespace,
        _ => None,
    };
    let found: Vec<Value> = match r["name"].as_str() {
        Some(name) => reg.get(info, ns, name).await.ok().into_iter().collect(),
        None => {
            let sel =
                Selector::from_label_selector(r.get("selector")).map_err(|e| e.to_string())?;
            let params = minik_registry::ListParams {
                label_selector: sel,
                resource_version: Some("0".into()),
                ..Default::default()
            };
            let list = reg
                .list(info, ns, &params)
                .await
                .map_err(|e| e.to_string())?;
            list.items.iter().map(|o| (**o).clone()).collect()
        }
    };
    if found.is_empty() && r["parameterNotFoundAction"] != "Allow" {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(Some(found))
}

/// The policy's variables, in order (each may use the ones before it).
fn variables(
    policy: &Value,
    vars: &Vars<'_>,
) -> std::result::Result<HashMap<String, cel::Value>, String> {
    let mut out = HashMap::new();
    for v in policy["spec"]["variables"].as_array().into_iter().flatten() {
        let name = v["name"].as_str().unwrap_or("").to_string();
        let so_far = Vars {
            variables: Some(&out),
            ..*vars
        };
        let value = matching::eval(v["expression"].as_str().unwrap_or("null"), &so_far)
            .map_err(|e| format!("variable {name:?}: {e}"))?;
        out.insert(name, value);
    }
    Ok(out)
}

/// The first validation that fails: (message, reason).
fn failed_validation(
    policy: &Value,
    vars: &Vars<'_>,
) -> std::result::Result<Option<(String, String)>, String> {
    for v in policy["spec"]["validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let expr = v["expression"].as_str().unwrap_or("true");
        if matching::eval_bool(expr, vars)? {
            continue;
        }
        let from_expr =
            v["messageExpression"]
                .as_str()
                .and_then(|m| match matching::eval(m, vars) {
                    Ok(cel::Value::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
                    _ => None,
                });
        let message = from_expr
            .or_else(|| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("failed expression: {expr}"));
        let reason = v["reason"].as_str().unwrap_or("Invalid").to_string();
        return Ok(Some((message, reason)));
    }
    Ok(None)
}

fn code(reason: &str) -> u16 {
    match reason {
        "Unauthorized" => 401,
        "Forbidden" => 403,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

impl Policies {
    /// Judge one binding; Err(why) when it could not be evaluated.
    async fn judge(
        &self,
        reg: &Registry,
        policy: &Value,
        binding: &Value,
        attrs: &Attributes<'_>,
        request: &Value,
        ns: Option<&Value>,
    ) -> std::result::Result<Option<(String, String)>, String> {
        let params = params(reg, policy, binding, attrs).await?;
        let candidates: Vec<Option<&Value>> = match &params {
            None => vec![None],
            Some(p) if p.is_empty() => return Ok(None),
            Some(p) => p.iter().map(Some).collect(),
        };
        for param in candidates {
            let base = Vars {
                request,
                params: param,
                namespace: ns,
                variables: None,
            };
            if !matching::conditions_hold(policy["spec"].get("matchConditions"), &base)? {
                return Ok(None);
            }
            let values = variables(policy, &base)?;
            let vars = Vars {
                variables: Some(&values),
                ..base
            };
            if let Some(f) = failed_validation(policy, &vars)? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}

#[async_trait::async_trait]
impl Plugin for Policies {
    async fn validate(
        &self,
        reg: &Registry,
        attrs: &Attributes<'_>,
        obj: &Value,
    ) -> Result<Verdict> {
        let mut verdict = Verdict::default();
        if matching::exempt(attrs) {
            return Ok(verdict);
        }
        let bindings =
            crate::cached(reg, GROUP, "v1", "validatingadmissionpolicybindings", None).await?;
        if bindings.is_empty() {
            return Ok(verdict);
        }
        let policies = crate::cached(reg, GROUP, "v1", "validatingadmissionpolicies", None).await?;
        let ns = matching::namespace_object(reg, attrs, obj).await?;
        let request = matching::request(attrs, obj, "");
        for binding in &bindings {
            let name = binding["spec"]["policyName"].as_str().unwrap_or("");
            let Some(policy) = policies.iter().find(|p| p["metadata"]["name"] == name) else {
                continue;
            };
            if !resources_match(&policy["spec"]["matchConstraints"], attrs, obj, ns.as_ref())
                || !resources_match(&binding["spec"]["matchResources"], attrs, obj, ns.as_ref())
            {
                continue;
            }
            let bname = binding["metadata"]["name"].as_str().unwrap_or("");
            let outcome = self
                .judge(reg, policy, binding, attrs, &request, ns.as_ref())
                .await;
            let (message, reason) = match outcome {
                Ok(None) => continue,
                Ok(Some(f)) => f,
                Err(e) if policy["spec"]["failurePolicy"] == "Ignore" => {
                    tracing::warn!(policy = name, binding = bname, error = %e, "policy could not be evaluated; ignored");
                    continue;
                }
                Err(e) => (
                    format!("expression could not be evaluated: {e}"),
                    "Invalid".into(),
                ),
            };
            let actions: Vec<&str> = binding["spec"]["validationActions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if actions.contains(&"Warn") {
                verdict.warnings.push(format!(
                    "Validation failed for ValidatingAdmissionPolicy '{name}' with binding '{bname}': {message}"
                ));
            }
            if actions.contains(&"Audit") {
                let failure = json!([{"message": message, "policy": name, "binding": bname,
                    "expressionIndex": 0, "validationActions": actions}]);
                minik_registry::admission::annotate(
                    "validation.policy.admission.k8s.io/validation_failure",
                    failure.to_string(),
                );
            }
            if actions.contains(&"Deny") {
                return Err(ApiError::Denied {
                    code: code(&reason),
                    message: format!(
                        "ValidatingAdmissionPolicy '{name}' with binding '{bname}' denied request: {message}"
                    ),
                });
            }
        }
        Ok(verdict)
    }
}

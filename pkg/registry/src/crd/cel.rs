//! `x-kubernetes-validations`: CEL rules evaluated with `self` (and `oldSelf` on updates,
//! for transition rules) at the node that carries them, reported with the rule's message or
//! messageExpression.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use serde_json::Value;

use crate::error::Cause;

static PROGRAMS: LazyLock<Mutex<HashMap<String, Arc<cel::Program>>>> =
    LazyLock::new(Default::default);

/// A compiled CEL program, compiled once per source text.
pub fn program(source: &str) -> Result<Arc<cel::Program>, String> {
    let mut cache = PROGRAMS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(source) {
        return Ok(p.clone());
    }
    let p = Arc::new(cel::Program::compile(source).map_err(|e| e.to_string())?);
    cache.insert(source.to_string(), p.clone());
    Ok(p)
}

/// Evaluate `source` with `self` (and `oldSelf`).
fn eval(source: &str, this: &Value, old: Option<&Value>) -> Result<cel::Value, String> {
    let p = program(source)?;
    let mut ctx = cel::Context::default();
    ctx.add_variable_from_value("self", cel::to_value(this).map_err(|e| e.to_string())?);
    if let Some(o) = old {
        ctx.add_variable_from_value("oldSelf", cel::to_value(o).map_err(|e| e.to_string())?);
    }
    p.execute(&ctx).map_err(|e| e.to_string())
}

/// Check the rules of `s` and of everything under it.
pub(crate) fn validate(
    v: &Value,
    old: Option<&Value>,
    s: &Value,
    path: &str,
    out: &mut Vec<Cause>,
) {
    for rule in s
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        check_rule(rule, v, old, path, out);
    }
    let child = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, cv) in m {
                if let Some(cs) = props.and_then(|p| p.get(k)).or(additional) {
                    let co = old.and_then(|o| o.get(k));
                    validate(cv, co, cs, &child(k), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    let was = old.and_then(|o| correlated(s, item, o));
                    validate(item, was, is, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The old item a new list item is, for transition rules: by the keys of a list-map, or
/// equal value in a set (other lists have no identity across versions).
fn correlated<'a>(s: &Value, item: &Value, old: &'a Value) -> Option<&'a Value> {
    let old_items = old.as_array()?;
    match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = s
                .get("x-kubernetes-list-map-keys")?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            old_items
                .iter()
                .find(|o| keys.iter().all(|k| o.get(*k) == item.get(*k)))
        }
        Some("set") => old_items.iter().find(|o| *o == item),
        _ => None,
    }
}

fn check_rule(rule: &Value, v: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Cause>) {
    let Some(source) = rule.get("rule").and_then(Value::as_str) else {
        return;
    };
    let transition = source.contains("oldSelf");
    if transition && old.is_none() {
        return;
    }
    let field = match rule.get("fieldPath").and_then(Value::as_str) {
        Some(fp) => format!("{path}{fp}"),
        None => path.to_string(),
    };
    let message = match eval(source, v, old) {
        Ok(cel::Value::Bool(true)) => return,
        Ok(cel::Value::Bool(false)) => rule_message(rule, source, v, old),
        Ok(other) => format!("rule {source:?} did not evaluate to a bool: {other:?}"),
        Err(e) => format!("rule {source:?} could not be evaluated: {e}"),
    };
    let shown = match v {
        Value::Object(_) => "\"object\"".to_string(),
        Value::Array(_) => "\"array\"".to_string(),
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    let reason = match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => "FieldValueForbidden",
        Some("FieldValueRequired") => "FieldValueRequired",
        Some("FieldValueDuplicate") => "FieldValueDuplicate",
        _ => "FieldValueInvalid",
    };
    out.push(Cause {
        field,
        message: format!("Invalid value: {shown}: {message}"),
        reason: reason.into(),
    });
}

/// The message of a failed rule: its messageExpression, else its message, else the rule.
fn rule_message(rule: &Value, source: &str, v: &Value, old: Option<&Value>) -> String {
    if let Some(expr) = rule.get("messageExpression").and_then(Value::as_str)
        && let Ok(cel::Value::String(s)) = eval(expr, v, old)
    {
        return s.to_string();
    }
    match rule.get("message").and_then(Value::as_str) {
        Some(m) => m.to_string(),
        None => format!("failed rule: {source}"),
    }
}
